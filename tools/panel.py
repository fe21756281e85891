"""The simulator's browser panel: every simulated device on one page, driven with the mouse.

    python -m tools.panel --hall STATE/hall/hall.json --port 7780
    python -m tools.panel --device 7700 --state STATE --broker 127.0.0.1:1883 --port 7780

`sh tools/dev.sh run` (and `run --hall N`) starts it with the simulator. The page shows, per
device, its display (`<state>/display.png` when the simulator writes one, else the text lines
of the `display` control op), its buttons (a click is a control-port `press`), the tickets it
printed (`<state>/printer.bin` decoded by tools/escpos_decode, the QR drawn by tools/qr), the
tail of `<state>/voice.log`, and the latest events from the broker (any device of the site).

The panel is a client of the control ports and files, nothing more: it holds no key and cannot
do anything a person at the console cannot. It listens on 127.0.0.1 only and answers only
requests whose Host is loopback; a press must come from the page itself (same-origin Origin and
a JSON body, so another web site open in the same browser cannot press buttons), and only the
buttons the page shows are accepted. Reading is per request (the page polls /api/panel every
second): with no page open the devices are not asked anything.
"""
import argparse
import collections
import json
import math
import os
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer

from tools import escpos_decode, qr
from tools.localweb import LocalHandler
from tools.ticket import blocks

TICKETS_SHOWN = 5
EVENTS_SHOWN = 50
VOICE_LINES = 8
MAX_BODY = 4096
VIEW_WAIT_S = 2.0       # a device's status and display: it answers in ms, or is not answering
STAFF_KEYS = ("next", "recall", "skip", "finish", "pause")
RATE_KEYS = ("rate5", "rate4", "rate3", "rate2", "rate1")


class Device:
    """One simulated terminal: its control port (one connection, reopened after a failure),
    its state directory and what its config names (services and counters, never the key)."""

    def __init__(self, name, control, state, config=None):
        self.name = name
        self.control = int(control)
        self.state = state
        self.names = _names(config)
        self._lock = threading.Lock()
        self._sock = self._file = None
        self._tickets = (None, [])      # ((size, mtime_ns), decoded) of printer.bin
        self.buttons = set()            # what the page was last offered

    def ask(self, req, timeout=10, wait=None):
        """The device's answer to req, or {"ok": False, "error"}. Sent again only when the
        connection kept from before turned out closed (the device restarted since) - never
        after a wait for the answer ran out: the device has the request and may still do it,
        and a press done twice is a second ticket or call. wait: seconds to wait for another
        request to this device to end (None: as long as it takes)."""
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            return {"ok": False, "error": "127.0.0.1:%d: busy with a request that has not been answered" % self.control}
        try:
            for attempt in (0, 1):
                kept = self._file is not None
                try:
                    if not kept:
                        self._sock = socket.create_connection(("127.0.0.1", self.control), 2)
                        self._file = self._sock.makefile("rwb")
                    self._sock.settimeout(timeout)
                    self._file.write(json.dumps(req).encode() + b"\n")
                    self._file.flush()
                    line = self._file.readline()
                    if not line:
                        raise ConnectionError("control connection closed")
                    return json.loads(line)
                except (OSError, ValueError) as e:
                    self._close()
                    if attempt or not kept or isinstance(e, (TimeoutError, ValueError)):
                        if isinstance(e, TimeoutError):
                            e = "no answer within %g s (the device may still do it)" % timeout
                        return {"ok": False, "error": "127.0.0.1:%d: %s" % (self.control, e)}
        finally:
            self._lock.release()

    def _close(self):
        for f in (self._file, self._sock):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self._sock = self._file = None

    def path(self, name):
        return os.path.join(self.state, name)

    def tickets(self):
        """The last tickets printed, newest first, as {state, lines, qr: [{text, size, path}]}."""
        try:
            st = os.stat(self.path("printer.bin"))
        except OSError:
            return []
        key = (st.st_size, st.st_mtime_ns)
        if self._tickets[0] != key:
            with open(self.path("printer.bin"), "rb") as f:
                data = f.read()
            try:
                decoded = blocks(data)[-TICKETS_SHOWN:]
            except Exception as e:     # a decoder gap must not take the page down: say it
                decoded = [(None, "bad", "printer bytes not decoded: %s: %s" % (type(e).__name__, e))]
            out = [_ticket(t, state, note) for t, state, note in decoded]
            self._tickets = (key, out[::-1])
        return self._tickets[1]

    def voice(self):
        try:
            with open(self.path("voice.log"), "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if ln.strip()][-VOICE_LINES:]

    def image(self):
        try:
            return os.stat(self.path("display.png")).st_mtime_ns
        except OSError:
            return None

    def view(self, index):
        """What the page shows of this device now. Quick to give up: one device that does not
        answer (stopped, stuck, busy with a press) must not hold up every device's view."""
        status = self.ask({"op": "status"}, timeout=VIEW_WAIT_S, wait=VIEW_WAIT_S)
        display = self.ask({"op": "display"}, timeout=VIEW_WAIT_S, wait=VIEW_WAIT_S) if status.get("ok") else {}
        buttons = panel_buttons(status, self.names)
        self.buttons = {(b["button"], b.get("counter")) for group in buttons for b in group["keys"]}
        mtime = self.image()
        return {
            "index": index, "name": self.name, "control": self.control, "role": status.get("role"),
            "error": status.get("error") if not status.get("ok") else None,
            "summary": _summary(status),
            "display": {"lines": display.get("lines") or [],
                        "image": "/display/%d.png?m=%d" % (index, mtime) if mtime else None},
            "buttons": buttons, "tickets": self.tickets(), "voice": self.voice(),
        }


def _names(config):
    """{"services": {code: "name"}, "counters": {id: "name"}, "own": counter id of a counter
    device (its link.counter) or None} from a config file, or empty."""
    out = {"services": {}, "counters": {}, "own": None}
    try:
        with open(config, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, TypeError, ValueError):
        return out
    if not isinstance(cfg, dict):
        return out
    link = cfg.get("link")
    if isinstance(link, dict) and isinstance(link.get("counter"), str):
        out["own"] = link["counter"]
    for key, field in (("services", "code"), ("counters", "id")):
        for item in cfg.get(key) or []:
            if isinstance(item, dict) and isinstance(item.get(field), str):
                name = item.get("name")
                name = " ".join(str(v) for v in name.values()) if isinstance(name, dict) else str(name or "")
                out[key][item[field]] = name
    return out


def _summary(status):
    if not status.get("ok"):
        return ""
    parts = []
    waiting = status.get("waiting") or {}
    if waiting:
        parts.append("等候 waiting " + " ".join("%s:%s" % kv for kv in sorted(waiting.items())))
    for cid, c in sorted((status.get("counters") or {}).items()):
        if isinstance(c, dict):
            parts.append("%s号 %s%s" % (cid, c.get("state"), " " + c["serving"] if c.get("serving") else ""))
    hall = status.get("hall")
    if status.get("role") == "counter" and isinstance(hall, dict):
        parts.append("%s%s" % (hall.get("state"), " " + str(hall["serving"]) if hall.get("serving") else ""))
    parts.append("outbox %s" % status.get("outbox"))
    parts.append("online" if status.get("connected") else "offline")
    return " · ".join(parts)


def panel_buttons(status, names=None):
    """Groups of buttons for a device, from its status: ticket keys for each service the queue
    authority (role all / kiosk) serves, staff and rating keys per counter (all / counter)."""
    names = names or {"services": {}, "counters": {}}
    if not status.get("ok"):
        return []
    role = status.get("role")
    groups = []
    if role in ("all", "kiosk"):
        codes = sorted(set(status.get("waiting") or {}) | set(status.get("issued") or {}))
        keys = []
        for code in codes:
            label = ("%s %s" % (code, names["services"].get(code, ""))).strip()
            keys.append({"button": "ticket:" + code, "label": "取号 " + label})
            keys.append({"button": "ticket:%s:priority" % code, "label": "优先 priority " + code})
        if keys:
            groups.append({"title": "取号 Take a ticket", "keys": keys})
    if role == "all":           # one device, several counters: each press names its counter
        for cid in sorted(status.get("counters") or {}):
            title = names["counters"].get(cid) or "%s号窗口 Counter %s" % (cid, cid)
            groups.append({"title": title, "keys": [{"button": k, "label": k, "counter": cid}
                                                    for k in STAFF_KEYS + RATE_KEYS]})
    elif role == "counter":     # a counter device presses its own keys (its status names no id)
        own = names.get("own")
        title = names["counters"].get(own) or ("%s号窗口 Counter %s" % (own, own) if own else "窗口 Counter")
        groups.append({"title": title, "keys": [{"button": k, "label": k} for k in STAFF_KEYS + RATE_KEYS]})
    return groups


def _ticket(t, state, note):
    if t is None:
        return {"state": state, "note": note, "lines": [], "big": [], "qr": []}
    codes = []
    for text in t.qr:
        try:
            m = qr.encode(text)
            codes.append({"text": text, "size": len(m) + 8, "path": qr.svg_path(m)})
        except ValueError:
            codes.append({"text": text, "size": None, "path": None})
    return {"state": state, "note": note, "lines": t.lines, "big": t.big,
            "align": t.align, "qr": codes}


class Events:
    """The latest events of the site, from the broker (clean session, QoS 0), in a thread that
    reconnects every 2 s while the broker is away."""

    def __init__(self, broker):
        self.broker = broker
        self.latest = collections.deque(maxlen=EVENTS_SHOWN)
        self.state = "off" if broker is None else "connecting"
        self._stop = threading.Event()
        self.thread = None

    def start(self):
        if self.broker:
            self.thread = threading.Thread(target=self._run, name="qterm-panel-mqtt", daemon=True)
            self.thread.start()
        return self

    def stop(self):
        self._stop.set()

    def _run(self):
        from tools.mqtt_session import MQTTError, Session
        host, _, port = self.broker.rpartition(":")
        s = Session(host or "127.0.0.1", int(port), "qterm-panel-%d" % os.getpid(),
                    subs=[("qterm/v1/+/+/evt/#", 0)], clean=True)
        while not self._stop.is_set():
            try:
                s.open()
                self.state = "live"
                while not self._stop.is_set():
                    for m in s.receive(0.5):
                        self.add(m.topic, m.payload)
            except (OSError, MQTTError) as e:
                self.state = "broker %s: %s" % (self.broker, e)
                s.close(disconnect=False)
                self._stop.wait(2)
        s.close()

    def add(self, topic, payload):
        if isinstance(topic, bytes):
            topic = topic.decode("utf-8", "replace")
        try:
            e = json.loads(payload)
        except ValueError:
            e = None
        if not isinstance(e, dict):
            e = {}
        data = e.get("data") if isinstance(e.get("data"), dict) else {}
        parts = topic.split("/")
        dev, etype = e.get("dev"), e.get("type")
        # anyone on the broker may publish: only plain values reach the page (a NaN would
        # make the whole /api/panel unreadable to the browser's JSON parser)
        self.latest.append({"device": (dev if isinstance(dev, str) and dev else (parts[3] if len(parts) > 3 else ""))[:64],
                            "seq": _number(e.get("seq")), "ts": _number(e.get("ts")),
                            "type": (etype if isinstance(etype, str) and etype else topic.rsplit("/", 1)[-1])[:64],
                            "data": json.dumps(data, ensure_ascii=False, sort_keys=True)[:300]})


def _number(v):
    """v if it is a finite number JSON can carry, else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v if math.isfinite(v) else None


def devices_from_hall(path):
    """The devices of a hall started by sim/hall, from its hall.json (state dir and config
    from each device's argv)."""
    with open(path, encoding="utf-8") as f:
        h = json.load(f)
    out = []
    for entry in [h["kiosk"]] + list(h.get("counters") or []) + [h["screen"]]:
        argv = entry.get("argv") or []
        opt = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
        out.append(Device(entry["device"], entry["control"], opt.get("--state", ""), opt.get("--config")))
    return out, h.get("broker")


# --- the server -----------------------------------------------------------------------------

class Handler(LocalHandler):
    server_version = "qterm-panel"

    def do_GET(self):
        if not self._host_ok():
            return self._send(421, "text/plain", b"loopback only\n")
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._send(200, "text/html; charset=utf-8", PAGE.encode())
        if path == "/panel.js":
            return self._send(200, "text/javascript; charset=utf-8", SCRIPT.encode())
        if path == "/api/panel":
            return self._json(200, self.server.snapshot())
        if path.startswith("/display/") and path.endswith(".png"):
            dev = self._device(path[len("/display/"):-4])
            if dev is not None:
                try:
                    with open(dev.path("display.png"), "rb") as f:
                        return self._send(200, "image/png", f.read())
                except OSError:
                    pass
        return self._send(404, "text/plain", b"not found\n")

    def do_POST(self):
        if not self._host_ok():
            return self._send(421, "text/plain", b"loopback only\n")
        # Same origin only: a browser always sends Origin on a cross-site POST, and a JSON body
        # cannot be sent cross-site without a preflight this server never answers.
        origin = self.headers.get("Origin")
        if origin != "http://" + (self.headers.get("Host") or ""):
            return self._json(403, {"ok": False, "error": "press from the panel page only"})
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return self._json(415, {"ok": False, "error": "JSON body expected"})
        if self.path != "/api/press":
            return self._json(404, {"ok": False, "error": "not found"})
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if not 0 <= n <= MAX_BODY:
            self.close_connection = True    # the rest of the body is not read: answered, then closed
            return self._json(413 if n > MAX_BODY else 400, {"ok": False, "error": "a press is a small JSON body"})
        try:
            req = json.loads(self.rfile.read(n))
            dev = self._device(str(req["device"]))
            button, counter = req["button"], req.get("counter")
            if not isinstance(button, str) or not (counter is None or isinstance(counter, str)):
                raise TypeError("button and counter are strings")
        except (ValueError, KeyError, TypeError):
            return self._json(400, {"ok": False, "error": "bad request"})
        if dev is None or (button, counter) not in dev.buttons:
            return self._json(400, {"ok": False, "error": "no such button on this device"})
        press = {"op": "press", "button": button}
        if counter:
            press["counter"] = counter
        return self._json(200, dev.ask(press, timeout=30))

    def _device(self, index):
        devices = self.server.devices
        ok = index.isascii() and index.isdigit()     # '²'.isdigit() too, and int() refuses it
        return devices[int(index)] if ok and int(index) < len(devices) else None

    def _host_ok(self):
        return self.loopback_host()

    def _json(self, code, obj):
        return self._send(code, "application/json", json.dumps(obj, ensure_ascii=False).encode())


class PanelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, devices, broker=None, port=7780):
        self.devices = devices
        self.events = Events(broker)
        super().__init__(("127.0.0.1", port), Handler)
        self.thread = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.server_address[1]

    def snapshot(self):
        return {"generated": time.time(), "events_state": self.events.state,
                "devices": [self._view(d, i) for i, d in enumerate(self.devices)],
                "events": list(self.events.latest)[::-1]}

    @staticmethod
    def _view(d, i):
        try:
            return d.view(i)
        except Exception as e:     # one device's oddity is shown on its box, not a dead page
            return {"index": i, "name": d.name, "control": d.control, "role": None,
                    "error": "panel: %s: %s" % (type(e).__name__, e), "summary": "",
                    "display": {"lines": [], "image": None}, "buttons": [], "tickets": [], "voice": []}

    def start(self):
        self.events.start()
        self.thread = threading.Thread(target=self.serve_forever, name="qterm-panel", daemon=True)
        self.thread.start()
        return self

    def shutdown(self):
        self.events.stop()
        super().shutdown()
        self.server_close()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.panel", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--hall", metavar="HALL_JSON", help="every device of a hall started by sim/hall")
    src.add_argument("--device", type=int, metavar="CONTROL_PORT", help="one device's control port")
    ap.add_argument("--state", metavar="DIR", help="the device's state dir (with --device)")
    ap.add_argument("--config", metavar="FILE", help="the device's config, for service names (with --device)")
    ap.add_argument("--broker", metavar="HOST:PORT", help="where the events are (default: the hall's)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("QTERM_PANEL_PORT") or 7780),
                    help="serve on 127.0.0.1:PORT (default $QTERM_PANEL_PORT or 7780)")
    a = ap.parse_args(argv)
    if a.hall:
        try:
            devices, broker = devices_from_hall(a.hall)
        except (OSError, ValueError, KeyError) as e:
            sys.stderr.write("panel: cannot read the hall %s: %s\n" % (a.hall, e))
            return 1
    else:
        if not a.state:
            ap.error("--device needs --state DIR")
        devices, broker = [Device("device", a.device, a.state, a.config)], None
    try:
        server = PanelServer(devices, a.broker or broker, a.port)
    except OSError as e:
        sys.stderr.write("panel: cannot listen on 127.0.0.1:%d: %s\n" % (a.port, e.strerror or e))
        return 1
    server.events.start()
    sys.stderr.write("panel: %s\n" % server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


PAGE = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>模拟大厅 Simulator panel</title>
<style>
body{font-family:"Noto Sans CJK SC","WenQuanYi Micro Hei","Unifont",sans-serif;margin:12px;background:#eef0f3;color:#222}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:0 0 4px}h3{font-size:13px;margin:8px 0 3px;color:#555}
#devices{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px}
section{background:#fff;border-radius:6px;padding:10px;box-shadow:0 1px 2px #0002}
.muted{color:#777;font-size:12px}.err{color:#c62828}
.display{background:#111;color:#ff5a2a;font-family:monospace;padding:8px;min-height:60px;white-space:pre;font-size:15px}
.display img{image-rendering:pixelated;max-width:100%}
button{margin:2px;padding:4px 8px;font-size:13px;cursor:pointer}
.tickets{display:flex;gap:8px;overflow-x:auto;align-items:flex-start}
.ticket{background:#fffdf5;border:1px dashed #bbb;padding:6px;font-family:monospace;font-size:12px;white-space:pre;min-width:220px}
.ticket .big{font-size:22px;font-weight:bold}.ticket .c{text-align:center}.ticket .r{text-align:right}
.ticket svg{display:block;margin:4px auto;width:116px;height:116px}
.voice{font-size:12px;white-space:pre-wrap}
table{border-collapse:collapse;width:100%;font-size:12px}td{padding:2px 4px;border-bottom:1px solid #eee;vertical-align:top}
</style></head><body>
<h1>模拟大厅 Simulator panel</h1>
<div class="muted"><span id="conn">连接中 connecting</span> · 事件 events: <span id="evstate">—</span></div>
<div id="devices"></div>
<section style="margin-top:12px"><h2>事件 Live events</h2>
<table><tbody id="events"></tbody></table></section>
<script src="/panel.js"></script>
</body></html>
"""

# Plain DOM, textContent only: every string here comes from a device or the broker.
SCRIPT = r"""
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";
function $(id) { return document.getElementById(id); }
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}
function qrSvg(q) {
  const s = document.createElementNS(SVGNS, "svg");
  s.setAttribute("viewBox", "0 0 " + q.size + " " + q.size);
  s.setAttribute("shape-rendering", "crispEdges");
  const bg = document.createElementNS(SVGNS, "rect");
  bg.setAttribute("width", q.size); bg.setAttribute("height", q.size); bg.setAttribute("fill", "#fff");
  const p = document.createElementNS(SVGNS, "path");
  p.setAttribute("d", q.path); p.setAttribute("fill", "#000");
  s.append(bg, p);
  return s;
}
async function press(dev, key, btn) {
  btn.disabled = true;
  try {
    const body = {device: dev, button: key.button};
    if (key.counter) body.counter = key.counter;
    const r = await fetch("/api/press", {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(body)});
    const d = await r.json();
    $("last-" + dev).textContent = key.button + (key.counter ? "@" + key.counter : "") + " → " + JSON.stringify(d);
  } catch (e) {
    $("last-" + dev).textContent = key.button + ": " + e.message;
  }
  btn.disabled = false;
  refresh(true);
}
const built = {};
function build(d) {
  const sec = el("section");
  sec.id = "dev-" + d.index;
  const h = el("h2", null, d.name + " (" + (d.role || "?") + ") 127.0.0.1:" + d.control);
  const sum = el("div", "muted"); sum.id = "sum-" + d.index;
  const disp = el("div", "display"); disp.id = "display-" + d.index;
  const keys = el("div"); keys.id = "keys-" + d.index;
  const last = el("div", "muted"); last.id = "last-" + d.index;
  const tk = el("div", "tickets"); tk.id = "tickets-" + d.index;
  const voice = el("div", "voice"); voice.id = "voice-" + d.index;
  sec.append(h, sum, el("h3", null, "显示 Display"), disp, el("h3", null, "按键 Buttons"), keys, last,
             el("h3", null, "打印的票 Printed tickets"), tk, el("h3", null, "语音 Voice"), voice);
  $("devices").appendChild(sec);
  built[d.index] = {keysSig: null, ticketsSig: null, displaySig: null};
}
function render(d) {
  if (!built[d.index]) build(d);
  const b = built[d.index];
  $("sum-" + d.index).textContent = d.error ? d.error : d.summary;
  $("sum-" + d.index).className = d.error ? "muted err" : "muted";
  const dsig = JSON.stringify(d.display);
  if (dsig !== b.displaySig) {
    b.displaySig = dsig;
    const box = $("display-" + d.index);
    if (d.display.image) {
      const img = el("img"); img.src = d.display.image; img.alt = d.display.lines.join(" / ");
      box.replaceChildren(img);
    } else {
      box.textContent = d.display.lines.join("\n");
    }
  }
  const ksig = JSON.stringify(d.buttons);
  if (ksig !== b.keysSig) {
    b.keysSig = ksig;
    $("keys-" + d.index).replaceChildren(...d.buttons.map(g => {
      const div = el("div");
      div.appendChild(el("span", "muted", g.title + ": "));
      for (const k of g.keys) {
        const btn = el("button", null, k.label);
        btn.dataset.button = k.button + (k.counter ? "@" + k.counter : "");
        btn.addEventListener("click", () => press(d.index, k, btn));
        div.appendChild(btn);
      }
      return div;
    }));
  }
  const tsig = JSON.stringify(d.tickets);
  if (tsig !== b.ticketsSig) {
    b.ticketsSig = tsig;
    $("tickets-" + d.index).replaceChildren(...d.tickets.map(t => {
      const box = el("div", "ticket");
      if (t.state !== "cut") box.appendChild(el("div", "err", t.state + (t.note ? ": " + t.note : "")));
      t.lines.forEach((ln, i) => {
        const cls = [t.big.includes(i) ? "big" : "", t.align && t.align[i] === 1 ? "c" : t.align && t.align[i] === 2 ? "r" : ""];
        box.appendChild(el("div", cls.join(" ").trim() || null, ln || " "));
      });
      for (const q of t.qr) {
        if (q.path) box.appendChild(qrSvg(q));
        box.appendChild(el("div", "c muted", q.text));
      }
      return box;
    }));
  }
  $("voice-" + d.index).textContent = d.voice.join("\n") || "—";
}
let timer = null;
async function refresh(now) {
  if (timer) clearTimeout(timer);
  try {
    const r = await fetch("/api/panel", {cache: "no-store"});
    const d = await r.json();
    d.devices.forEach(render);
    $("evstate").textContent = d.events_state;
    $("events").replaceChildren(...d.events.map(e => {
      const tr = el("tr");
      const t = e.ts ? new Date(e.ts * 1000).toLocaleTimeString("zh-CN", {hour12: false}) : "";
      for (const v of [t, e.device, e.seq, e.type, e.data]) tr.appendChild(el("td", null, v == null ? "" : String(v)));
      return tr;
    }));
    $("conn").textContent = "实时 live";
    $("conn").className = "";
  } catch (e) {
    $("conn").textContent = "连接中断 connection lost: " + e.message;
    $("conn").className = "err";
  }
  timer = setTimeout(refresh, 1000);
}
refresh();
"""

if __name__ == "__main__":
    sys.exit(main())
