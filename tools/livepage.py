"""The live hall page: what a hall manager keeps open on a screen while the hall works.

    server = start("hall.sqlite", host="127.0.0.1", port=8080)   # serves in a daemon thread
    ...
    server.shutdown()                                             # stops and closes the socket

`/` is one page (Chinese + English) that fetches `/api/live` every 2 s: today's waiting per
service and serving per counter (the queue authority's retained `state`, else counted from
its events), 满意率 so far today, the latest bad ratings and each device's health (retained
`status`, outbox backlog and paper from `state` where present, else from its latest
heartbeat / printer.status event, last event time). Everything comes from the hall database
(tools/halldb.py), opened read-only for each request: the collector writes it at the same
time (WAL), and a reader never blocks it.

"Today" is the business day the devices themselves report (the newest `day` in events and
`state` payloads), never the host clock: a simulated hall running days ahead shows its day.
Only verified events count (the `events` table); suspect ones are shown as a count.
"""
import calendar
import collections
import json
import socket
import sqlite3
import threading
import time
from http.server import ThreadingHTTPServer

from tools import halldb
from tools.localweb import LOOPBACK_NAMES, LocalHandler
from tools.verify import Metrics

BAD_SHOWN = 20          # latest bad ratings on the page
# Event types whose data carries the business day (`day`): "today" is the newest of these.
_DAY_TYPES = ("ticket.issued", "ticket.refused", "ticket.called", "ticket.parked", "ticket.unparked",
              "ticket.walkin", "service.finished", "service.ended", "rating.submitted",
              "rating.expired", "day.reset", "clock.set")
_AUTHORITY = ("all", "kiosk")       # roles that keep the queue
_NO_PRINTER = ("counter", "screen")  # their `printer` field is a default, not a printer


# --- reading the database -------------------------------------------------------------------

def open_ro(path):
    return halldb.connect_ro(path)


def _json(text):
    try:
        v = json.loads(text)
    except (TypeError, ValueError):
        return None
    return v if isinstance(v, dict) else None


def _devices(db):
    """Every device the database knows. Events are walked device by device along the primary
    key (one index seek each), not scanned: the page asks every 2 s of a table that grows."""
    names = set()
    row = db.execute("SELECT MIN(device) FROM events").fetchone()
    while row and row[0] is not None:
        names.add(row[0])
        row = db.execute("SELECT MIN(device) FROM events WHERE device > ?", (row[0],)).fetchone()
    names.update(r[0] for r in db.execute("SELECT DISTINCT device FROM status"))
    return sorted(names)


def _payloads(db):
    """{device: {"status": dict, "state": dict}} from the latest retained payloads."""
    out = {}
    for device, kind, payload, received in db.execute("SELECT device, kind, payload, received FROM status"):
        p = _json(payload)
        if p is not None:
            out.setdefault(device, {})[kind] = p
    return out


def _latest_by_device(db, etype, since_ts=None):
    """{device: (seq, ts, data)} of each device's newest event of one type, read along the
    (type, ts) index; since_ts bounds it for frequent types (heartbeats)."""
    sql = "SELECT device, MAX(seq), ts, data FROM events WHERE type = ?"
    args = [etype]
    if since_ts is not None:
        sql += " AND ts >= ?"
        args.append(since_ts)
    out = {}
    for device, seq, ts, data in db.execute(sql + " GROUP BY device", args):
        out[device] = (seq, ts, _json(data) or {})
    return out


def business_day(db, payloads):
    """The newest business day the devices report, or None before any. The newest event of
    each day-carrying type is one index seek; `state` payloads say the day too."""
    days = []
    for etype in _DAY_TYPES:
        row = db.execute("SELECT data FROM events WHERE type = ? ORDER BY ts DESC LIMIT 1", (etype,)).fetchone()
        if row:
            days.append((_json(row[0]) or {}).get("day"))
    days.extend(p.get("state", {}).get("day") for p in payloads.values())
    days = [d for d in days if halldb.is_day(d)]
    return max(days) if days else None


def day_window(day):
    """Device-clock bounds that surely hold business day `day` (whatever the hall's time zone
    and reset hour): used to read the (type, ts) index, rows are then matched on data.day."""
    start = calendar.timegm(time.strptime(day, "%Y-%m-%d"))
    return start - 2 * 86400, start + 3 * 86400


def _day_events(db, types, day):
    lo, hi = day_window(day)
    sql = ("SELECT device, seq, type, ts, data FROM events WHERE type IN (%s) AND ts >= ? AND ts < ? "
           "AND json_extract(data, '$.day') = ? ORDER BY ts, device, seq" % ",".join("?" * len(types)))
    for device, seq, etype, ts, data in db.execute(sql, list(types) + [lo, hi, day]):
        yield device, seq, etype, ts, _json(data) or {}


# --- the figures ----------------------------------------------------------------------------

def satisfaction(db, day):
    """(Metrics total summary for the day, newest bad ratings first): the same definition as
    `tools.verify --metrics` (满意率 = scores 5, 4, 3 / all ratings)."""
    m = Metrics()
    bad = []
    for device, seq, etype, ts, data in _day_events(db, ("rating.submitted", "rating.expired",
                                                         "service.finished"), day):
        m.add({"type": etype, "data": data, "dev": device, "seq": seq})
        score = data.get("score")
        if etype == "rating.submitted" and isinstance(score, int) and 1 <= score <= 2:
            bad.append({"device": device, "seq": seq, "ts": ts, "score": score, "reason": data.get("reason"),
                        "counter": data.get("counter"), "staff": data.get("staff"),
                        "ticket": data.get("ticket"), "service": data.get("service"),
                        "followup": data.get("followup") is True})
    bad.sort(key=lambda b: (b["ts"], b["device"], b["seq"]), reverse=True)
    total = m.report()["total"]
    total["definition"] = "satisfaction_rate = ratings scored 5, 4 or 3 / all ratings; bad = 2 and 1"
    return total, bad[:BAD_SHOWN]


def _roles(db):
    return {d: data.get("role") for d, (seq, ts, data) in _latest_by_device(db, "device.boot").items()}


def _authorities(db, day, roles, payloads):
    """Devices that keep the queue: by the role they booted with; a device whose boot the
    database never saw counts if its `state` shows issued tickets or it issued one today."""
    issuing = set()
    if day:
        issuing = {d for d, *_ in _day_events(db, ("ticket.issued",), day)}
    out = []
    for device in sorted(set(roles) | set(payloads) | issuing):
        role = roles.get(device)
        if role is not None:
            keep = role in _AUTHORITY
        else:
            issued = (payloads.get(device, {}).get("state") or {}).get("issued")
            keep = device in issuing or (isinstance(issued, dict) and any(
                isinstance(v, int) and v > 0 for v in issued.values()))
        if keep:
            out.append(device)
    return out


def _counter_key(cid):
    cid = str(cid)
    return (0, int(cid), "") if cid.isdigit() and cid.isascii() else (1, 0, cid)


def _dict(v):
    return v if isinstance(v, dict) else {}


def _queue_from_state(device, state):
    """The queue from a retained `state` payload: unsigned, any broker client can write it, so
    every part is type-checked (a list where a dict belongs must not stop the page)."""
    issued = _dict(state.get("issued"))
    waiting = [{"device": device, "service": s, "waiting": n, "issued": issued.get(s),
                "source": "state"} for s, n in sorted(_dict(state.get("waiting")).items())]
    counters = []
    for cid, c in sorted(_dict(state.get("counters")).items(), key=lambda kv: _counter_key(kv[0])):
        c = c if isinstance(c, dict) else {}
        counters.append({"device": device, "counter": cid, "state": c.get("state"), "reason": c.get("reason"),
                         "staff": c.get("staff"), "serving": c.get("serving"), "source": "state"})
    return waiting, counters


# What each event does to a counter (serving: the ticket, None = nobody) and to the queue.
_SERVES = ("ticket.called", "ticket.unparked", "ticket.walkin")
_ENDS = ("service.finished", "service.ended", "ticket.skipped", "ticket.parked", "ticket.transferred",
         "ticket.requeued")
_COUNTER_STATE = {"counter.paused": "paused", "counter.resumed": "open", "counter.closed": "closed"}


def _queue_from_events(db, device, day):
    """No retained `state` from this kiosk: its day told by its own events. Waiting is
    approximate (issued - called + requeued + transferred in), hence source "events"."""
    lo, hi = day_window(day)
    rows = db.execute("SELECT type, data FROM events WHERE device = ? AND ts >= ? AND ts < ? ORDER BY seq",
                      (device, lo, hi))
    waiting, issued, counters = {}, {}, {}
    for etype, data in rows:
        d = _json(data) or {}
        if etype == "day.reset":
            waiting, issued = {}, {}
            for c in counters.values():
                c["serving"] = None
            continue
        if d.get("day") not in (None, day):
            continue
        svc, cid = d.get("service"), d.get("counter")
        if etype == "ticket.issued":
            issued[svc] = issued.get(svc, 0) + 1
            waiting[svc] = waiting.get(svc, 0) + 1
        elif etype == "ticket.walkin":   # issued and called at once: never waited
            issued[svc] = issued.get(svc, 0) + 1
        elif etype == "ticket.called":
            waiting[svc] = waiting.get(svc, 0) - 1
        elif etype == "ticket.requeued":
            waiting[svc] = waiting.get(svc, 0) + 1
        elif etype == "ticket.transferred" and d.get("to_service"):
            waiting[d["to_service"]] = waiting.get(d["to_service"], 0) + 1
        if cid is None:
            continue
        c = counters.setdefault(str(cid), {"state": "open", "reason": None, "staff": None, "serving": None})
        if d.get("staff") is not None:
            c["staff"] = d["staff"]
        if etype in _SERVES:
            c["serving"] = d.get("ticket")
        elif etype in _ENDS:
            c["serving"] = None
        elif etype in _COUNTER_STATE:
            c["state"], c["reason"] = _COUNTER_STATE[etype], d.get("reason")
    wl = [{"device": device, "service": s, "waiting": max(0, n), "issued": issued.get(s, 0), "source": "events"}
          for s, n in sorted(waiting.items(), key=lambda kv: str(kv[0]))]
    cl = [dict(c, device=device, counter=cid, source="events")
          for cid, c in sorted(counters.items(), key=lambda kv: _counter_key(kv[0]))]
    return wl, cl


def hall_queue(db, day, roles, payloads):
    """(waiting per service, serving per counter) over every queue authority."""
    waiting, counters = [], []
    for device in _authorities(db, day, roles, payloads):
        state = payloads.get(device, {}).get("state")
        if state is not None and isinstance(state.get("waiting"), dict):
            w, c = _queue_from_state(device, state)
        elif day:
            w, c = _queue_from_events(db, device, day)
        else:
            continue
        waiting += w
        counters += c
    return waiting, counters


def health(db, devices, roles, payloads, day, suspects):
    """One row per device: presence, backlog, paper, last event, suspect messages (suspects:
    halldb.suspect_counts)."""
    since = day_window(day)[0] if day else None
    beats = _latest_by_device(db, "device.heartbeat", since)
    papers = _latest_by_device(db, "printer.status")
    suspect = collections.Counter()
    for (dev, _verdict), n in suspects.items():
        suspect[dev] += n
    rows = []
    for device in devices:
        p = payloads.get(device, {})
        status, state = p.get("status") or {}, p.get("state") or {}
        last = db.execute("SELECT seq, ts, type FROM events WHERE device = ? ORDER BY seq DESC LIMIT 1",
                          (device,)).fetchone()
        beat = beats.get(device)
        outbox = state.get("outbox")
        if outbox is None and beat:
            outbox = beat[2].get("outbox")
        paper = state.get("printer")
        if paper is None:
            # the newer of the printer's own report and the heartbeat's copy of it
            paper_evt = papers.get(device)
            cands = [(paper_evt[0], paper_evt[2].get("state"))] if paper_evt else []
            if beat:
                cands.append((beat[0], beat[2].get("printer")))
            paper = max(cands)[1] if cands else None
        role = roles.get(device)
        rows.append({
            "device": device, "role": role,
            "status": status.get("state"), "boot": status.get("boot"), "fw": status.get("fw"),
            "status_ts": status.get("ts"),
            "outbox": outbox, "paper": None if role in _NO_PRINTER else paper,
            "last_seq": last[0] if last else None, "last_event_ts": last[1] if last else None,
            "last_event": last[2] if last else None,
            "heartbeat_ts": beat[1] if beat else None,
            "suspect": suspect.get(device, 0),
        })
    return rows


def live(db):
    """The whole /api/live document."""
    payloads = _payloads(db)
    devices = _devices(db)
    roles = _roles(db)
    suspects = halldb.suspect_counts(db)    # per device and in all: one read of the table
    day = business_day(db, payloads)
    if day:
        sat, bad = satisfaction(db, day)
    else:
        sat, bad = Metrics().report()["total"], []
    waiting, counters = hall_queue(db, day, roles, payloads)
    return {
        "day": day,
        "generated": round(time.time(), 3),
        "waiting": waiting,
        "waiting_total": sum(w["waiting"] for w in waiting if isinstance(w["waiting"], int)),
        "counters": counters,
        "satisfaction": sat,
        "bad_ratings": bad,
        "devices": health(db, devices, roles, payloads, day, suspects),
        "suspect_total": sum(suspects.values()),
    }


# --- HTTP -----------------------------------------------------------------------------------



class _Handler(LocalHandler):
    server_version = "qterm-live/1"
    timeout = 20     # a connection that sends nothing is closed: idle sockets must not pile up threads

    def do_GET(self):
        if not self._host_ok():
            return self._send(421, "text/plain; charset=utf-8", b"unexpected Host header\n")
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._send(200, "text/html; charset=utf-8", PAGE.encode())
        if path == "/live.js":
            return self._send(200, "text/javascript; charset=utf-8", SCRIPT.encode())
        if path == "/api/live":
            try:
                db = open_ro(self.server.db_path)
                try:
                    doc, code = live(db), 200
                finally:
                    db.close()
            except sqlite3.Error as e:   # no database yet, or a moment of trouble: say so
                doc, code = {"error": "hall database %s: %s" % (self.server.db_path, e)}, 503
            except Exception as e:  # noqa: BLE001 - data nobody foresaw: the page says so, and goes on
                doc, code = {"error": "cannot show the hall database %s: %s: %s"
                                      % (self.server.db_path, type(e).__name__, e)}, 500
            body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()
            return self._send(code, "application/json; charset=utf-8", body)
        return self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _host_ok(self):
        if not self.server.loopback:
            return True
        return self.loopback_host() or self.host_name() == self.server.host.lower()


class LiveServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, db_path, host, port):
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]     # "[::1]" as written in a URL or HOST:PORT
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.db_path = db_path
        self.host = host
        self.loopback = host in LOOPBACK_NAMES or host.startswith("127.")
        super().__init__((host, port), _Handler)
        self.thread = None

    @property
    def url(self):
        host, port = self.server_address[:2]
        return "http://%s:%d/" % ("[%s]" % host if ":" in host else host, port)

    def shutdown(self):
        """Stop serving and release the port."""
        super().shutdown()
        self.server_close()
        if self.thread is not None:
            self.thread.join(5)


def start(db_path, host="127.0.0.1", port=8080):
    """Serve the live page for the hall database at db_path on exactly host:port (port 0: any
    free port, see .server_address / .url). Returns the running server; .shutdown() stops it."""
    server = LiveServer(db_path, host, port)
    server.thread = threading.Thread(target=server.serve_forever, name="qterm-livepage", daemon=True)
    server.thread.start()
    return server


# --- the page -------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>大厅实时 Hall live</title>
<style>
body{font-family:"Noto Sans CJK SC","WenQuanYi Micro Hei",sans-serif;margin:16px;background:#f4f5f7;color:#222}
h1{font-size:22px;margin:0 0 8px}h2{font-size:16px;margin:0 0 6px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:12px}
section{overflow-x:auto;background:#fff;border-radius:6px;padding:10px 12px;box-shadow:0 1px 2px #0002}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eee}th{color:#666;font-weight:normal}
.wide{grid-column:1/-1}.big{font-size:40px;font-weight:bold}.muted{color:#888;font-size:13px}
.online{color:#17803d}.offline{color:#c62828;font-weight:bold}.warn{color:#c62828}
#conn.lost{color:#c62828;font-weight:bold}
</style></head><body>
<h1>大厅实时 Hall live · <span id="day">—</span></h1>
<div class="muted">更新 Updated <span id="updated">—</span> · <span id="conn">连接中 Connecting</span></div>
<div class="grid">
<section><h2>满意率 Satisfaction (今日 today)</h2>
<div class="big" id="rate">—</div>
<div class="muted" id="rate-detail"></div></section>
<section><h2>等候 Waiting (<span id="waiting-total">0</span>)</h2>
<table><thead><tr><th>业务 Service</th><th>等候 Waiting</th><th>已取号 Issued</th></tr></thead>
<tbody id="waiting"></tbody></table></section>
<section><h2>窗口 Counters</h2>
<table><thead><tr><th>窗口 Counter</th><th>状态 State</th><th>工号 Staff</th><th>正在办理 Serving</th></tr></thead>
<tbody id="counters"></tbody></table></section>
<section><h2>差评 Bad ratings</h2>
<table><thead><tr><th>时间 Time</th><th>评分 Score</th><th>原因 Reason</th><th>窗口 Counter</th>
<th>工号 Staff</th><th>票号 Ticket</th></tr></thead><tbody id="bad"></tbody></table></section>
<section class="wide"><h2>设备 Devices</h2>
<table><thead><tr><th>设备 Device</th><th>角色 Role</th><th>在线 Status</th><th>待发 Outbox</th>
<th>纸 Paper</th><th>最后事件 Last event</th><th>可疑 Suspect</th></tr></thead>
<tbody id="devices"></tbody></table></section>
</div>
<script src="/live.js"></script>
</body></html>
"""

# Plain DOM, textContent only: staff ids and reasons are device text, never markup.
SCRIPT = r"""
"use strict";
const SCORE = {1: "1 非常不满意 Very poor", 2: "2 不满意 Poor"};
const STATE = {open: "办理中 Open", paused: "暂停 Paused", closed: "关闭 Closed"};
const STATUS = {online: "在线 Online", offline: "离线 Offline"};
const PAPER = {ok: "正常 OK", near_end: "将尽 Low", out: "缺纸 Out", offline: "脱机 Offline"};
function $(id) { return document.getElementById(id); }
function time(ts) { return ts == null ? "—" : new Date(ts * 1000).toLocaleTimeString("zh-CN", {hour12: false}); }
function show(v) { return v == null || v === "" ? "—" : String(v); }
function rows(id, items, cells) {
  const body = $(id);
  body.replaceChildren(...items.map(item => {
    const tr = document.createElement("tr");
    for (const [text, cls] of cells(item)) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    return tr;
  }));
}
function render(d) {
  $("day").textContent = show(d.day);
  $("updated").textContent = time(d.generated);
  const s = d.satisfaction;
  $("rate").textContent = s.satisfaction_rate == null ? "—" : (s.satisfaction_rate * 100).toFixed(1) + "%";
  $("rate-detail").textContent = "评价 Ratings " + s.ratings + " · 满意 Satisfied " + s.satisfied +
    " · 差评 Bad " + s.bad + " · 5/4/3/2/1: " + ["5", "4", "3", "2", "1"].map(k => s.scores[k]).join("/");
  $("waiting-total").textContent = d.waiting_total;
  rows("waiting", d.waiting, w => [[w.service + (w.source === "events" ? " *" : "")], [show(w.waiting)], [show(w.issued)]]);
  rows("counters", d.counters, c => [[c.counter], [show(STATE[c.state] || c.state) + (c.reason ? " (" + c.reason + ")" : ""),
    c.state === "open" ? "" : "warn"], [show(c.staff)], [show(c.serving)]]);
  rows("bad", d.bad_ratings, b => [[time(b.ts)], [SCORE[b.score] || b.score, "warn"], [show(b.reason)],
    [show(b.counter)], [show(b.staff)], [show(b.ticket)]]);
  rows("devices", d.devices, v => [[v.device], [show(v.role)], [show(STATUS[v.status] || v.status), show(v.status)],
    [show(v.outbox), v.outbox > 0 ? "warn" : ""], [show(PAPER[v.paper] || v.paper), v.paper && v.paper !== "ok" ? "warn" : ""],
    [time(v.last_event_ts) + (v.last_event ? " " + v.last_event : "")], [show(v.suspect), v.suspect ? "warn" : ""]]);
}
async function refresh() {
  try {
    const r = await fetch("/api/live", {cache: "no-store"});
    const d = await r.json();
    if (d.error) throw new Error(d.error);
    render(d);
    $("conn").textContent = "实时 Live";
    $("conn").className = "";
  } catch (e) {
    $("conn").textContent = "连接中断 Connection lost: " + e.message;
    $("conn").className = "lost";
  }
  setTimeout(refresh, 2000);
}
refresh();
"""
