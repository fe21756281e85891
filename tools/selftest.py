"""Run the board's self-test (firmware/selftest.py on the device) and print a table.

Checks, in order: config, printer (paper status and a test slip), display (all segments
lit: look at it), each button in turn (press it when asked; --press-timeout seconds
each), network, broker (an MQTT CONNECT with the configured host, port and user),
clock (NTP), free heap and free flash. The running firmware is stopped for the test
(Ctrl-C); reset the board afterwards. Exit 0 only when every check passed.

A virtual device (tools/vdev) has no hardware: started with --host-sim it tests the
simulator's doubles, so the table shows what the checks do.
"""
import json
import sys

from tools.device import Device, DeviceError, ToolError

_PROGRAM = r'''
import sys, json, gc
# Fresh imports from the active slot: the interpreter may still hold modules of the
# firmware that ran before (or of a slot deployed since) - and they cost heap.
for _m in list(sys.modules):
    if _m.split(".")[0] in ("firmware", "hal", "sim"):
        del sys.modules[_m]
for _p in ("/app_a", "/app_b", "/rom"):
    while _p in sys.path:
        sys.path.remove(_p)
sys.path.insert(0, %(slot)r)
gc.collect()
from firmware import config as _c
try:
    with open("/data/config.json") as f:
        _cfg = json.load(f)
    _e = _c.validate(_cfg)
except (OSError, ValueError) as e:
    _cfg, _e = None, [("/data/config.json", "cannot read: %%r (provision the device)" %% (e,))]
print(json.dumps({"check": "config", "ok": not _e, "detail": "; ".join("%%s: %%s" %% x for x in _e[:3]) or
                  "%%s/%%s valid" %% (_cfg["site"], _cfg["device"])}))
_cfg = _c.normalise(_cfg) if _cfg and not _e else None
del _c, _e
if sys.platform == "linux":
    if "/host" not in sys.path:
        sys.path.append("/host")
    from sim.devices import SimHal
    _qmkdirs("/selftest/flash/.")
    _hal = SimHal("/selftest", "/selftest/flash")
    _names = [("ticket:" + s["code"]) for s in _cfg["services"]] if _cfg else []
    _names += ["rate5", "rate4", "rate3", "rate2", "rate1", "next", "recall", "skip", "finish", "pause"]
else:
    from hal.esp32.board import DEFAULT_BOARD, make_hal
    _board = (_cfg or {}).get("board") or DEFAULT_BOARD
    _hal = make_hal(_cfg or {"board": _board})
    _names = list(_board.get("buttons") or {})
if %(names)r is not None:
    _names = %(names)r
from firmware import selftest
_w = globals().get("qterm_wdt")
selftest.run(_hal, _cfg, _names, %(press_ms)d, _w.feed if _w else None)
'''


def add_arguments(p):
    p.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0")
    p.add_argument("--press-timeout", type=float, default=10, metavar="S",
                   help="seconds to wait for each button press (default 10)")
    p.add_argument("--buttons", metavar="LIST", help="comma-separated buttons to test (default: all the board has)")
    p.add_argument("--skip-buttons", action="store_true", help="do not ask for button presses")
    p.add_argument("--timeout", type=float, default=10, metavar="S", help="seconds to wait for the REPL (default 10)")


class _Lines:
    """Collects the device's output into lines; prompts are shown at once."""

    def __init__(self, out):
        self.buf = b""
        self.rows = []
        self.other = []
        self.done = None
        self.out = out

    def __call__(self, data):
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.line(line.decode("utf-8", "replace").strip())

    def line(self, text):
        if not text:
            return
        try:
            obj = json.loads(text)
        except ValueError:
            self.other.append(text)
            return
        if not isinstance(obj, dict):
            self.other.append(text)
        elif "prompt" in obj:
            print(">>> %s" % obj["prompt"], file=self.out, flush=True)
        elif "check" in obj:
            self.rows.append(obj)
        elif obj.get("done"):
            self.done = obj


def table(rows):
    head = ("check", "result", "detail")
    body = [(r["check"], "OK" if r["ok"] else "FAIL", r.get("detail", "")) for r in rows]
    w0 = max(len(head[0]), *(len(b[0]) for b in body)) if body else len(head[0])
    lines = ["%-*s  %-6s  %s" % (w0, *head)]
    lines += ["%-*s  %-6s  %s" % (w0, *b) for b in body]
    return lines


def selftest(port, press_s=10, names=None, timeout=10, out=sys.stdout):
    """Run the device's self-test; returns the list of check rows."""
    with Device(port, timeout).open() as dev:
        slot = dev.active_slot()
        if slot is None:
            raise ToolError("no firmware on %s (/active missing): deploy first" % port)
        lines = _Lines(out)
        code = _PROGRAM % {"slot": slot, "names": names, "press_ms": int(press_s * 1000)}
        try:
            dev.run(code, timeout=max(30, press_s + 20), consumer=lines, what="the self-test")
        except DeviceError as e:
            lines(b"\n")
            hint = ""
            if "sim.devices" in e.device_error or "'sim'" in e.device_error:
                hint = " (a virtual device needs --host-sim for a hal)"
            elif "firmware.selftest" in e.device_error or "selftest" in e.device_error:
                hint = " (firmware too old for a self-test: deploy this build)"
            for row in table(lines.rows):
                print(row, file=out)
            raise ToolError("%s%s" % (e, hint))
    if lines.done is None:
        raise ToolError("the self-test on %s stopped before its end; output:\n  %s"
                        % (port, "\n  ".join(lines.other[-10:]) or "(none)"))
    return lines.rows


def run(args):
    names = None
    if args.skip_buttons:
        names = []
    elif args.buttons:
        names = [b.strip() for b in args.buttons.split(",") if b.strip()]
    rows = selftest(args.port, args.press_timeout, names, args.timeout)
    for line in table(rows):
        print(line)
    failed = [r["check"] for r in rows if not r["ok"]]
    if failed:
        print("%d of %d checks failed: %s" % (len(failed), len(rows), ", ".join(failed)))
        return 1
    print("all %d checks passed" % len(rows))
    return 0
