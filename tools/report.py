"""The hall report: 满意率 and GB/T 32169.4 figures, charts, CSVs and GB/T 39734 rating records.

    tools/qterm report --db hall.sqlite [--from DAY --to DAY] [--config KIOSK.json]
                       [--followup-days N] --out DIR

Reads the hall database that `qterm collect` fills (tools/halldb.py): figures come from its
verified events only; suspect rows (forged, unsigned, malformed) are counted per device and
shown, never counted; devices with unannounced seq gaps are marked. DAY is a business day
(YYYY-MM-DD, the `day` the devices put in their events). Writes into DIR:

  index.html                    self-contained page (inline SVG charts, Chinese and English)
  figures_by_{counter,staff,service,day}.csv   one row per group, and the total
  ratings.csv, bad_ratings.csv  every rating; the 差评 list with follow-up deadline and state
  gbt39734_records.json / .csv  one record per rating in the GB/T 39734-2020 shape
  figures.json                  everything above as data

The services' names and wait targets (target_min) are not in the events: they come from the
kiosk's (or the `all` device's) config file given with --config; without it every service
has the firmware's default target of 15 min and is named by its code. A 差评's follow-up is
due --followup-days working days (default 3; Saturdays and Sundays skipped) after the day
of the rating; `tools/qterm followup` records it.
Exit status: 0 report written, 1 the database cannot be read or holds no events for the
days asked, 2 usage (bad day, bad config file).
"""
import collections
import datetime
import json
import os
import sqlite3

from tools import halldb
from tools.device import ToolError
from tools.verify import _merged, _split

# the event types the figures and the joins need (everything else is device health)
TYPES = ("ticket.issued", "ticket.walkin", "ticket.called", "ticket.skipped", "service.finished",
         "rating.submitted", "rating.expired", "day.reset", "clock.set")
SCORES = {5: ("非常满意", "Very satisfied"), 4: ("满意", "Satisfied"), 3: ("基本满意", "Basically satisfied"),
          2: ("不满意", "Dissatisfied"), 1: ("非常不满意", "Very dissatisfied")}
SATISFIED = (5, 4, 3)       # as tools/verify.py Metrics: 满意率 = (5 + 4 + 3) / all ratings
DIMENSIONS = (("counter", "窗口", "Counter"), ("staff", "工作人员", "Staff"),
              ("service", "事项", "Service"), ("day", "日期", "Day"))
DEFAULT_TARGET_MIN = 15     # firmware/config.py normalise(): a service's default target_min
CHANNEL = "现场评价器 on-site rating pad"

# (key, 中文, English) of a figures row, in column order
FIGURES = (
    ("ratings", "评价数", "ratings"),
    ("satisfied", "满意数(5+4+3)", "satisfied (5+4+3)"),
    ("satisfaction_rate", "满意率", "satisfaction rate"),
    ("bad", "差评数(2+1)", "bad ratings (2+1)"),
    ("bad_rate", "差评率", "bad-rating rate"),
    ("s5", "非常满意", "score 5"), ("s4", "满意", "score 4"), ("s3", "基本满意", "score 3"),
    ("s2", "不满意", "score 2"), ("s1", "非常不满意", "score 1"),
    ("expired", "未评价(超时)", "expired, not rated"),
    ("finished", "办结数", "services finished"),
    ("rated_share", "参评率", "rated share"),
    ("avg_wait_s", "平均等候(秒)", "average wait (s)"),
    ("over_target", "超时等候数", "waits over target"),
    ("over_target_share", "超时等候率", "share of waits over target"),
    ("avg_service_s", "平均办理(秒)", "average service time (s)"),
    ("called", "叫号数", "calls"),
    ("skipped", "过号数", "skipped (no-show)"),
    ("no_show_rate", "过号率", "no-show rate"),
    ("issued", "取号数", "tickets issued"),
)

# the GB/T 39734-2020 rating record: (key, 中文 field name)
GBT_FIELDS = (
    ("record_id", "办件编号"), ("rating_id", "评价编号"), ("service_code", "事项编码"),
    ("service_name", "事项名称"), ("counter", "窗口"), ("staff_id", "工作人员编号"),
    ("apply_time", "申请时间"), ("done_time", "办结时间"), ("level", "评价等级"),
    ("level_name", "评价等级名称"), ("reason_code", "差评原因编码"), ("reason", "差评原因"),
    ("rating_time", "评价时间"), ("channel", "评价渠道"), ("rating_device", "评价设备"),
)

DEFINITIONS = (
    ("满意率 satisfaction rate", "ratings scored 5, 4 or 3 (非常满意/满意/基本满意) / all ratings"),
    ("差评率 bad-rating rate", "ratings scored 2 or 1 (不满意/非常不满意) / all ratings"),
    ("参评率 rated share", "ratings / services finished (service.finished); an expired window "
                         "(rating.expired: nobody pressed) is not a rating and is counted apart"),
    ("平均等候 average wait", "mean waited_s of the finished services (from ticket issued to its first call)"),
    ("超时等候率 over-target share", "finished services with waited_s > the service's target_min x 60 / "
                                  "services finished with a known wait"),
    ("平均办理 average service time", "mean served_s of the finished services (first call to finish)"),
    ("过号率 no-show rate", "ticket.skipped / ticket.called: calls (a ticket requeued or transferred "
                          "and called again counts again) that ended in 过号, by staff or after the "
                          "last recall; walk-ins and parked tickets called back are not calls"),
    ("分组 grouping", "ratings by the counter, staff, service and business day they name; finished "
                    "services, calls and no-shows by those of the kiosk's (or the `all` device's) event; "
                    "tickets issued by service and day only"),
)

Ev = collections.namedtuple("Ev", "device seq type ts data day")


# --- the hall's own words: names, targets, time zone ------------------------------------

class HallInfo:
    """What the events do not carry: service names and wait targets, counter names, reason
    texts, the time zone. From the kiosk's config, or the firmware's defaults."""

    def __init__(self, cfg=None, source=None):
        from firmware import config as fwconfig
        self.source = source
        cfg = fwconfig.normalise(cfg) if cfg else {}
        self.tz_min = cfg.get("tz_offset_min", 480)
        self.reset_hour = cfg.get("day_reset_hour", 3)
        self.name = cfg.get("hall") or {"zh": "服务大厅", "en": "Service hall"}
        self.services = {s["code"]: s for s in cfg.get("services", ())}
        self.counters = {c["id"]: c for c in cfg.get("counters", ())}
        reasons = (cfg.get("rating") or {}).get("reasons") or [
            {"code": c, "zh": zh, "en": en} for c, zh, en in fwconfig.DEFAULT_REASONS]
        self.reasons = {r["code"]: r for r in reasons}
        self.tz = datetime.timezone(datetime.timedelta(minutes=self.tz_min))

    @classmethod
    def load(cls, path):
        """From a config file checked as the firmware checks it (ToolError 2 when it is not valid)."""
        if path is None:
            return cls()
        from firmware import config as fwconfig
        from tools.validate import load
        try:
            cfg = load(path)
        except ToolError as e:
            raise ToolError(str(e), 2)
        errors = fwconfig.validate(cfg)
        if errors:
            raise ToolError("--config %s is not a valid device config: %s" % (
                path, "; ".join(fwconfig.describe(errors[:5]))), 2)
        return cls(cfg, path)

    def target_s(self, code):
        s = self.services.get(code)
        return 60 * (s["target_min"] if s else DEFAULT_TARGET_MIN)

    def target_from_config(self, code):
        return code in self.services

    def service_name(self, code):
        s = self.services.get(code)
        return "%s %s" % (s["name"]["zh"], s["name"].get("en", "")) if s else str(code)

    def counter_name(self, cid):
        c = self.counters.get(cid)
        return "%s %s" % (c["name"]["zh"], c["name"].get("en", "")) if c and c.get("name") else "%s号窗口 Counter %s" % (cid, cid)

    def reason_text(self, code):
        if code in (None, "none"):
            return "未选择原因 No reason chosen"
        r = self.reasons.get(code)
        return "%s %s" % (r["zh"], r["en"]) if r else str(code)

    def local(self, ts):
        return datetime.datetime.fromtimestamp(ts, self.tz)

    def iso(self, ts):
        return self.local(ts).isoformat() if ts is not None else None

    def hour(self, ts):
        return (ts + 60 * self.tz_min) // 3600 % 24     # arithmetic: called for every event

    def business_day(self, ts):
        """The firmware's rule for an event that names no day: local date, the day starting at day_reset_hour."""
        return (self.local(ts) - datetime.timedelta(hours=self.reset_hour)).date().isoformat()


# --- reading --------------------------------------------------------------------------

def open_db(path, write=False):
    """The hall database (ToolError 1 when it is missing or not a hall database: never created
    here). Read-only unless write (followup records): a report never writes, and neither
    makes a file that is not a hall database into one."""
    if not os.path.isfile(path):
        raise ToolError("no hall database at %s" % path, 1)
    try:
        db = halldb.connect_ro(path)
        db.execute("SELECT count(*) FROM events").fetchone()
        db.execute("SELECT count(*) FROM followups").fetchone()
        if write:
            db.close()
            db = halldb.connect(path)
    except sqlite3.Error as e:
        raise ToolError("cannot read the hall database %s: %s" % (path, e), 1)
    return db


# device clocks the report can show as dates: year 1 to 9999 (a clock in milliseconds is not)
_TS_MIN, _TS_MAX = -62135596800 + 86400, 253402300799 - 86400
# data fields used as join keys: a list or object there (a device bug) is compared as its JSON text
_KEYS = ("ticket", "counter", "service", "req", "fin_seq", "kiosk", "staff")


def _hashable(data):
    bad = [k for k in _KEYS if isinstance(data.get(k), (list, dict))]
    if not bad:
        return data
    data = dict(data)
    for k in bad:
        data[k] = json.dumps(data[k], ensure_ascii=False, sort_keys=True)
    return data


def read_events(db, hall, unreadable=None):
    """The business events of every device, each with its business day: its own `day`, else
    (ticket.skipped names none) the last day its device named before it in seq order. Events
    whose data is not an object or whose clock is no date (a device counting milliseconds)
    are left out, and listed in unreadable as (device, seq) when a list is given; a `day`
    that is no date is not believed (the day comes from the clock)."""
    out = []
    device = day = None
    for dev, seq, etype, ts, data in halldb.events(db, TYPES):
        if dev != device:
            device, day = dev, None
        if not isinstance(data, dict) or not _TS_MIN < ts < _TS_MAX:
            if unreadable is not None:
                unreadable.append((dev, seq))
            continue
        if halldb.is_day(data.get("day")):
            day = data["day"]
        out.append(Ev(dev, seq, etype, ts, _hashable(data), day or hall.business_day(ts)))
    return out


def integrity(db):
    """Per device: seq range, unannounced gaps, announced drops, suspect rows by verdict,
    duplicates and chain breaks. The whole database, whatever days are reported."""
    announced = collections.defaultdict(list)
    for dev, _seq, _t, _ts, data in halldb.events(db, ["outbox.dropped"]):
        for r in (data.get("ranges") or []) if isinstance(data, dict) else ():
            if (isinstance(r, list) and len(r) == 2 and all(type(x) is int for x in r) and 1 <= r[0] <= r[1]):
                announced[dev].append((r[0], r[1]))
    devs = {}

    def entry(name):
        return devs.setdefault(name, {"device": name, "events": 0, "first_seq": None, "last_seq": None,
                                      "gaps": [], "missing": 0, "dropped": [], "suspect": {},
                                      "duplicates": 0, "chain_breaks": 0})
    prev = {}
    for dev, seq in db.execute("SELECT device, seq FROM events ORDER BY device, seq"):
        d = entry(dev)
        d["events"] += 1
        if d["first_seq"] is None:
            d["first_seq"] = seq
        last = prev.get(dev)
        if last is not None and seq - last > 1:
            for lo, hi, told in _split(last + 1, seq - 1, _merged(announced[dev])):
                (d["dropped"] if told else d["gaps"]).append([lo, hi])
        prev[dev] = d["last_seq"] = seq
    for (dev, verdict), n in sorted(halldb.suspect_counts(db).items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        entry(dev or "(unknown device)")["suspect"][verdict] = n
    for dev, dup, breaks in db.execute("SELECT device, duplicates, chain_breaks FROM device_stats"):
        if dev in devs or dup or breaks:
            d = entry(dev)
            d["duplicates"], d["chain_breaks"] = dup, breaks
    for d in devs.values():
        d["missing"] = sum(b - a + 1 for a, b in d["gaps"])
        d["suspect_rows"] = sum(d["suspect"].values())
        d["clean"] = not (d["gaps"] or d["suspect_rows"] or d["chain_breaks"])
    return [devs[k] for k in sorted(devs)]


# --- joining a rating to the service it rates ------------------------------------------

def kiosk_of(ev):
    """The device that issued the rated ticket: the counter's link.kiosk (same site), or the
    rating device itself (role `all` does everything)."""
    k = ev.data.get("kiosk")
    if not isinstance(k, str):
        return ev.device
    site = ev.device.rpartition("/")[0]
    return site + "/" + k if site else k


def record_id(ticket, day, device):
    """办件编号 = ticket + business day + the issuing device: unique, as no number is issued
    twice in one business day; no spaces or slashes, so it can be typed on a command line."""
    return "%s-%s-%s" % (ticket, str(day).replace("-", ""), device.replace("/", "."))


class Index:
    """The kiosk-side events a rating binds to."""

    def __init__(self, evs):
        self.finished = {}      # (device, seq) -> service.finished
        self.by_req = {}        # (device, counter, req) -> service.finished (hall protocol)
        self.by_ticket = collections.defaultdict(list)   # (device, day, ticket) -> [finished]
        self.issued = {}        # (device, day, ticket) -> ticket.issued / ticket.walkin
        for e in evs:
            if e.type == "service.finished":
                self.finished[(e.device, e.seq)] = e
                if e.data.get("req") is not None:
                    self.by_req[(e.device, str(e.data.get("counter")), e.data["req"])] = e
                self.by_ticket[(e.device, e.day, e.data.get("ticket"))].append(e)
            elif e.type in ("ticket.issued", "ticket.walkin"):
                self.issued.setdefault((e.device, e.day, e.data.get("ticket")), e)

    def finish_of(self, ev):
        """The service.finished a rating rates: by fin_seq, else by the finish request's
        number, else the last finish of that ticket that day (before the rating, on one device)."""
        d, kdev = ev.data, kiosk_of(ev)
        for f in (self.finished.get((kdev, d.get("fin_seq"))),
                  self.by_req.get((kdev, str(d.get("counter")), d.get("req")))):
            if f is not None and f.data.get("ticket") == d.get("ticket"):
                return f
        cands = self.by_ticket.get((kdev, ev.day, d.get("ticket")), ())
        if kdev == ev.device:
            cands = [f for f in cands if f.seq < ev.seq]
        return cands[-1] if cands else None


def rating_record(ev, idx, hall, gappy):
    """One rating (rating.submitted) as the report and the GB/T 39734 export see it."""
    d = ev.data
    kdev = kiosk_of(ev)
    fin = idx.finish_of(ev)
    issued = idx.issued.get((kdev, ev.day, d.get("ticket")))
    score = d["score"]
    service = d.get("service")
    reason = d.get("reason")
    staff = d.get("staff")
    return {
        "record_id": record_id(d.get("ticket"), ev.day, kdev),
        "rating_id": "%s#%d" % (ev.device, ev.seq),
        "service_code": service,
        "service_name": hall.service_name(service),
        "counter": str(d.get("counter")),
        "staff_id": staff if staff is not None else "未签到 none signed in",
        "apply_time": hall.iso(issued.ts) if issued else None,
        "done_time": hall.iso(fin.ts) if fin else None,
        "level": score,
        "level_name": "%s %s" % SCORES[score],
        "reason_code": (reason or "none") if score <= 2 else "n/a",
        "reason": hall.reason_text(reason) if score <= 2 else "不适用(满意不问原因) n/a: asked only for 2 and 1",
        "rating_time": hall.iso(ev.ts),
        "channel": CHANNEL,
        "rating_device": ev.device,
        # beyond the standard's record: what the hall needs to judge it
        "day": ev.day,
        "ticket": d.get("ticket"),
        "issuing_device": kdev,
        "followup_requested": d.get("followup") is True,
        "waited_s": fin.data.get("waited_s") if fin else None,
        "served_s": fin.data.get("served_s") if fin else None,
        "complete": bool(issued and fin),
        "device_gaps": ev.device in gappy or kdev in gappy,
    }


# --- figures ----------------------------------------------------------------------------

class Group:
    __slots__ = ("scores", "expired", "finished", "waited", "waited_n", "over", "served", "served_n",
                 "called", "skipped", "issued", "reasons")

    def __init__(self):
        self.scores = [0] * 6
        self.expired = self.finished = self.waited = self.waited_n = self.over = 0
        self.served = self.served_n = self.called = self.skipped = self.issued = 0
        self.reasons = collections.Counter()

    def row(self):
        ratings = sum(self.scores)
        sat = sum(self.scores[s] for s in SATISFIED)
        bad = self.scores[1] + self.scores[2]
        return {
            "ratings": ratings, "satisfied": sat, "satisfaction_rate": ratio(sat, ratings),
            "bad": bad, "bad_rate": ratio(bad, ratings),
            "s5": self.scores[5], "s4": self.scores[4], "s3": self.scores[3], "s2": self.scores[2],
            "s1": self.scores[1], "expired": self.expired, "finished": self.finished,
            "rated_share": ratio(ratings, self.finished),
            "avg_wait_s": ratio(self.waited, self.waited_n, 1), "over_target": self.over,
            "over_target_share": ratio(self.over, self.waited_n),
            "avg_service_s": ratio(self.served, self.served_n, 1),
            "called": self.called, "skipped": self.skipped,
            "no_show_rate": ratio(self.skipped, self.called), "issued": self.issued,
            "bad_reasons": dict(sorted(self.reasons.items())),
        }


def ratio(a, b, digits=4):
    return round(a / b, digits) if b else None


def _count(v):
    return type(v) is int and v >= 0


class Figures:
    """Groups per dimension, hourly arrivals and service times, invalid ratings."""

    def __init__(self, hall):
        self.hall = hall
        self.total = Group()
        self.by = {dim: collections.defaultdict(Group) for dim, _zh, _en in DIMENSIONS}
        self.arrivals = [0] * 24
        self.hour_served = [[0, 0] for _ in range(24)]     # [sum served_s, n] by hour of finish
        self.invalid = 0

    def groups(self, ev, dims):
        yield self.total
        for dim in dims:
            v = ev.day if dim == "day" else ev.data.get(dim)
            yield self.by[dim]["?" if v is None else str(v)]

    def add(self, ev):
        t, d = ev.type, ev.data
        if t in ("ticket.issued", "ticket.walkin"):
            self.arrivals[self.hall.hour(ev.ts)] += 1
            for g in self.groups(ev, ("service", "day")):
                g.issued += 1
            return
        dims = [dim for dim, _zh, _en in DIMENSIONS]
        if t == "rating.submitted":
            score = d.get("score")
            if type(score) is not int or not 1 <= score <= 5:
                self.invalid += 1
                return
            for g in self.groups(ev, dims):
                g.scores[score] += 1
                if score <= 2:
                    g.reasons[str(d.get("reason") or "none")] += 1
        elif t == "rating.expired":
            for g in self.groups(ev, dims):
                g.expired += 1
        elif t == "service.finished":
            self._finished(ev, dims)
        elif t == "ticket.called":
            for g in self.groups(ev, dims):
                g.called += 1
        elif t == "ticket.skipped":
            for g in self.groups(ev, dims):
                g.skipped += 1

    def _finished(self, ev, dims):
        d = ev.data
        waited, served = d.get("waited_s"), d.get("served_s")
        over = _count(waited) and waited > self.hall.target_s(d.get("service"))
        if _count(served):
            h = self.hour_served[self.hall.hour(ev.ts)]
            h[0] += served
            h[1] += 1
        for g in self.groups(ev, dims):
            g.finished += 1
            if _count(waited):
                g.waited += waited
                g.waited_n += 1
                g.over += over
            if _count(served):
                g.served += served
                g.served_n += 1

    def rows(self, dim):
        out = [(k, self.by[dim][k].row()) for k in sorted(self.by[dim])]
        if dim in ("counter", "staff"):     # a ticket is issued to a service, not to a counter
            for _k, r in out:
                r["issued"] = None
        return out


# --- 差评 follow-up --------------------------------------------------------------------

def add_working_days(day, n):
    """day (YYYY-MM-DD) + n working days, Saturdays and Sundays skipped (public holidays are
    not known here: a hall that needs them counts them by hand)."""
    d = datetime.date.fromisoformat(day)
    while n > 0:
        d += datetime.timedelta(days=1)
        if d.weekday() < 5:
            n -= 1
    return d.isoformat()


def followups(db):
    return {rid: {"done_on": done, "note": note}
            for rid, done, note in db.execute("SELECT record_id, done_on, note FROM followups")}


def followup_state(rec, fu, today):
    """done / done late / open / overdue, against the deadline."""
    if fu is not None:
        return "done late" if fu["done_on"] > rec["deadline"] else "done"
    return "overdue" if today > rec["deadline"] else "open"


STATE_TEXT = {"done": "已回访 done", "done late": "逾期回访 done late", "open": "待回访 open",
              "overdue": "逾期未回访 overdue"}


# --- the whole report -----------------------------------------------------------------

def build(db, hall, day_from=None, day_to=None, followup_days=3, today=None):
    """Everything the page and the files show, as data (one consistent read of the database)."""
    today = today or datetime.date.today().isoformat()
    db.execute("BEGIN")     # one snapshot while collectors keep writing
    try:
        unreadable = []
        evs = read_events(db, hall, unreadable)
        devices = integrity(db)
        fus = followups(db)
    finally:
        db.execute("COMMIT")
    gappy = {d["device"] for d in devices if d["gaps"] or d["chain_breaks"]}
    idx = Index(evs)
    figs = Figures(hall)
    ratings = []
    in_range = [e for e in evs if (day_from is None or e.day >= day_from) and (day_to is None or e.day <= day_to)]
    for e in in_range:
        figs.add(e)
        if e.type == "rating.submitted" and type(e.data.get("score")) is int and 1 <= e.data["score"] <= 5:
            ratings.append(rating_record(e, idx, hall, gappy))
    ratings.sort(key=lambda r: (r["rating_time"], r["rating_id"]))
    bad = []
    for r in ratings:
        if r["level"] <= 2:
            b = dict(r, deadline=add_working_days(r["day"], followup_days))
            fu = fus.get(r["record_id"])
            b["followup_state"] = followup_state(b, fu, today)
            b["followup_done_on"] = fu["done_on"] if fu else None
            b["followup_note"] = fu["note"] if fu else None
            bad.append(b)
    services = sorted(set(hall.services) | set(figs.by["service"]))
    return {
        "hall": hall, "from": day_from, "to": day_to, "today": today, "followup_days": followup_days,
        "events": len(in_range), "all_events": len(evs), "unreadable": unreadable, "figures": figs, "ratings": ratings, "bad": bad,
        "devices": devices, "targets": {s: {"target_s": hall.target_s(s), "from_config": hall.target_from_config(s)}
                                        for s in services},
    }


# --- files ----------------------------------------------------------------------------

def write_csv(path, header, rows):
    """UTF-8 with a BOM: Excel then reads the Chinese right."""
    import csv
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])


def _reasons_text(reasons):
    return "; ".join("%s %d" % kv for kv in reasons.items())


def write_figures(rep, out):
    figs = rep["figures"]
    keys = [k for k, _zh, _en in FIGURES]
    for dim, zh, en in DIMENSIONS:
        header = ["%s %s" % (zh, en)] + ["%s %s" % (z, e) for _k, z, e in FIGURES] + ["差评原因 bad reasons"]
        rows = [[k] + [r[c] for c in keys] + [_reasons_text(r["bad_reasons"])] for k, r in figs.rows(dim)]
        t = figs.total.row()
        rows.append(["合计 total"] + [t[c] for c in keys] + [_reasons_text(t["bad_reasons"])])
        write_csv(os.path.join(out, "figures_by_%s.csv" % dim), header, rows)


RATING_COLUMNS = (("record_id", "办件编号"), ("rating_id", "评价编号"), ("day", "业务日"), ("ticket", "票号"),
                  ("service_code", "事项"), ("counter", "窗口"), ("staff_id", "工作人员"),
                  ("level", "评价等级"), ("reason_code", "原因"), ("followup_requested", "要求回访"),
                  ("apply_time", "取号时间"), ("done_time", "办结时间"), ("rating_time", "评价时间"),
                  ("waited_s", "等候秒"), ("served_s", "办理秒"), ("rating_device", "评价设备"),
                  ("issuing_device", "取号设备"), ("complete", "已关联办结"), ("device_gaps", "设备有缺号"))
BAD_COLUMNS = RATING_COLUMNS[:9] + (("reason", "差评原因"), ("followup_requested", "要求回访"),
                                    ("deadline", "回访期限"), ("followup_state", "回访状态"),
                                    ("followup_done_on", "回访日期"), ("followup_note", "回访记录"),
                                    ("rating_time", "评价时间"), ("rating_device", "评价设备"),
                                    ("device_gaps", "设备有缺号"))


def write_records(rep, out):
    ratings, bad = rep["ratings"], rep["bad"]
    write_csv(os.path.join(out, "ratings.csv"), ["%s %s" % (zh, k) for k, zh in RATING_COLUMNS],
              [[r[k] for k, _ in RATING_COLUMNS] for r in ratings])
    write_csv(os.path.join(out, "bad_ratings.csv"), ["%s %s" % (zh, k) for k, zh in BAD_COLUMNS],
              [[r[k] for k, _ in BAD_COLUMNS] for r in bad])
    write_csv(os.path.join(out, "gbt39734_records.csv"), ["%s %s" % (zh, k) for k, zh in GBT_FIELDS],
              [[r[k] for k, _ in GBT_FIELDS] for r in ratings])
    head = {"standard": "GB/T 39734-2020", "fields": dict(GBT_FIELDS)}
    with open(os.path.join(out, "gbt39734_records.json"), "w", encoding="utf-8") as f:
        write_json_records(f, head, "records", [{k: r[k] for k, _ in GBT_FIELDS} for r in ratings])


def write_json_records(f, head, key, records):
    """{head..., key: [records]} with one record a line: readable and diffable, and written by
    json's C encoder (indent= would take the slow pure-Python one: seconds for 20 000 ratings)."""
    f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "%s": [\n' % key)
    f.write(",\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    f.write("\n]}\n")


def as_json(rep):
    figs = rep["figures"]
    return {
        "from": rep["from"], "to": rep["to"], "today": rep["today"], "events": rep["events"],
        "config": rep["hall"].source, "targets": rep["targets"], "definitions": dict(DEFINITIONS),
        "total": figs.total.row(),
        "by": {dim: dict(figs.rows(dim)) for dim, _zh, _en in DIMENSIONS},
        "arrivals_by_hour": figs.arrivals,
        "avg_service_s_by_hour": [ratio(s, n, 1) for s, n in figs.hour_served],
        "invalid_ratings": figs.invalid,
        "unreadable_events": ["%s#%d" % u for u in rep.get("unreadable", ())],
        "devices": rep["devices"],
        "bad_ratings": rep["bad"],
        "incomplete_ratings": sum(1 for r in rep["ratings"] if not r["complete"]),
    }


def write(rep, out):
    from tools import report_html
    os.makedirs(out, exist_ok=True)
    write_figures(rep, out)
    write_records(rep, out)
    doc = as_json(rep)
    with open(os.path.join(out, "figures.json"), "w", encoding="utf-8") as f:
        write_json_records(f, doc, "bad_ratings", doc.pop("bad_ratings"))
    with open(os.path.join(out, "index.html"), "w", encoding="utf-8") as f:
        f.write(report_html.page(rep))


# --- command line -----------------------------------------------------------------------

def day_arg(text):
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ToolError("%s: expected a day as YYYY-MM-DD" % text, 2)


def add_arguments(p):
    p.add_argument("--db", required=True, metavar="FILE", help="the hall database (qterm collect)")
    p.add_argument("--from", dest="day_from", metavar="DAY", help="first business day (YYYY-MM-DD)")
    p.add_argument("--to", dest="day_to", metavar="DAY", help="last business day (YYYY-MM-DD)")
    p.add_argument("--config", metavar="FILE",
                   help="the kiosk's (or `all` device's) config: service names, wait targets, reasons, time zone")
    p.add_argument("--followup-days", type=int, default=3, metavar="N",
                   help="a 差评 is to be followed up within N working days (default 3)")
    p.add_argument("--today", metavar="DAY", help="judge follow-up deadlines as of DAY (default today)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for index.html and the files")


def run(args):
    day_from = day_arg(args.day_from) if args.day_from else None
    day_to = day_arg(args.day_to) if args.day_to else None
    today = day_arg(args.today) if args.today else None
    if day_from and day_to and day_from > day_to:
        raise ToolError("--from %s is after --to %s" % (day_from, day_to), 2)
    if not 0 <= args.followup_days <= 60:
        raise ToolError("--followup-days %d: expected 0 to 60" % args.followup_days, 2)
    hall = HallInfo.load(args.config)
    db = open_db(args.db)
    try:
        rep = build(db, hall, day_from, day_to, args.followup_days, today)
    except sqlite3.Error as e:
        raise ToolError("cannot read the hall database %s: %s" % (args.db, e), 1)
    finally:
        db.close()
    if not rep["events"]:
        what = "" if not (day_from or day_to) else " from %s to %s" % (day_from or "the start", day_to or "the end")
        raise ToolError("no verified events in %s%s: nothing to report" % (args.db, what), 1)
    try:
        write(rep, args.out)
    except OSError as e:
        raise ToolError("cannot write the report into %s: %s" % (args.out, e.strerror or e), 1)
    t = rep["figures"].total.row()
    sat = "-" if t["satisfaction_rate"] is None else "%.1f%%" % (100 * t["satisfaction_rate"])
    flagged = [d["device"] for d in rep["devices"] if not d["clean"]]
    print("%s: %d events, %d ratings, 满意率 satisfaction %s, %d bad (%d follow-ups open or overdue)" % (
        os.path.join(args.out, "index.html"), rep["events"], t["ratings"], sat, t["bad"],
        sum(1 for b in rep["bad"] if b["followup_state"] in ("open", "overdue"))))
    if flagged:
        print("marked: suspect rows or gaps on %s" % ", ".join(flagged))
    if rep["unreadable"]:
        print("left out: %d verified event(s) whose data or clock cannot be read (%s)" % (
            len(rep["unreadable"]), ", ".join("%s#%d" % u for u in rep["unreadable"][:10])))
    return 0
