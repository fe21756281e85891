"""A person's console for a running simulator (host CPython): type words, see the device answer.

  python -m sim.console --port 7700            interactive
  python -m sim.console --port 7700 't A, next, finish, r 5'   one-shot, ',' between commands
  python -m sim.console --hall DIR/hall.json   a hall started by sim/hall: 'kiosk: t A', '1: next'
"""
import argparse
import json
import signal
import socket
import sys
import time

HELP = """commands (add @N to act on counter N, e.g. 'next @2'):
  t CODE          take a ticket for service CODE        tp CODE   priority (绿色通道) ticket
  next | recall | skip | finish | pause                 the staff keys
  r 1..5          rating pad (5 = 非常满意 ... 1 = 非常不满意)
  transfer SVC    transfer the current ticket           requeue TICKET   put a skipped ticket back
  close | resume  counter functions                     signin STAFF | signout
  display | status                                      paper ok|near_end|out|offline
  net up|down     clock +SECONDS                        raw {json}       any control request
  help | quit"""

HALL_HELP = """
a hall (--hall): prefix a command with its device, e.g. 'kiosk: t A', '1: next', '2: finish',
  'screen: display' (a counter by its id or device name, or kiosk / screen)
  use 1|2|..|kiosk|screen   the current device (shown in the prompt)
  without a prefix: t / tp go to the kiosk, staff keys and r to the current counter,
  the rest to the current device          devices   list the hall's devices"""

_COUNTER_CMDS = ("next", "recall", "skip", "finish", "pause", "r", "transfer", "requeue",
                 "close", "resume", "signin", "signout")


class Link:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rwb")

    def ask(self, req):
        self.file.write(json.dumps(req).encode() + b"\n")
        self.file.flush()
        line = self.file.readline()
        if not line:
            raise ConnectionError("simulator closed the control connection")
        return json.loads(line)


def parse(words):
    """A control request from one console command, or None for help."""
    counter = None
    if words and words[-1].startswith("@"):
        counter = words.pop()[1:]
    cmd, args = words[0], words[1:]

    def press(button):
        req = {"op": "press", "button": button}
        if counter:
            req["counter"] = counter
        return req

    def staff(action, **kw):
        req = {"op": "staff", "action": action}
        req.update(kw)
        if counter:
            req["counter"] = counter
        return req

    if cmd == "t":
        return press("ticket:" + args[0])
    if cmd == "tp":
        return press("ticket:%s:priority" % args[0])
    if cmd in ("next", "recall", "skip", "finish", "pause"):
        return press(cmd)
    if cmd == "r":
        return press("rate" + args[0])
    if cmd == "transfer":
        return staff("transfer", to_service=args[0])
    if cmd == "requeue":
        return staff("requeue", ticket=args[0])
    if cmd in ("close", "resume", "signout"):
        return staff(cmd)
    if cmd == "signin":
        return staff("signin", staff=args[0])
    if cmd in ("display", "status"):
        return {"op": cmd}
    if cmd == "paper":
        return {"op": "paper", "state": args[0]}
    if cmd == "net":
        return {"op": "net", "up": args[0] == "up"}
    if cmd == "clock":
        return {"op": "clock", "advance_s": int(args[0])}
    if cmd == "raw":
        return json.loads(" ".join(args))
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description="Drive a running qterm simulator through its control port.")
    ap.add_argument("--port", type=int, default=7700, help="control port (default 7700)")
    ap.add_argument("--broker", default=None, help="shown in the banner only")
    ap.add_argument("--hall", metavar="HALL_JSON", default=None,
                    help="drive every device of a hall started by sim/hall (its DIR/hall.json) instead of one port")
    ap.add_argument("command", nargs="*", help="one-shot commands separated by \",\", e.g. \"t A, next, finish, r 5\"")
    a = ap.parse_args(argv)
    if a.hall:
        try:
            hall = Hall(a.hall)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print("cannot read the hall file %s (%s)" % (a.hall, e), file=sys.stderr)
            return 2
        if a.command:
            return hall.oneshot(a.command)
        _ctrl_c_ends()
        return hall.interactive()
    try:
        link = Link(a.port)
    except OSError as e:
        print("cannot reach the simulator's control port 127.0.0.1:%d (%s)" % (a.port, e), file=sys.stderr)
        return 2
    if a.command:
        return _oneshot(link, a.command)
    _ctrl_c_ends()
    return _interactive(link, a)


def _ctrl_c_ends():
    """Ctrl-C ends the console by the signal's default action, in the kernel. Python's own
    handler only sets a flag; one that lands between input() printing the prompt and blocking
    in read() is not seen until a line is typed, so the console (and `dev.sh run`) hung."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interactive(link, a):
    print("qterm simulator console - 'help' lists commands" + (" - broker %s" % a.broker if a.broker else ""))
    while True:
        try:
            line = input("qterm> ").strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        if line in ("quit", "exit"):
            return 0
        try:
            req = parse(line.split())
        except (IndexError, ValueError) as e:
            print("  ? %s - type 'help'" % e)
            continue
        if req is None:
            print(HELP)
            continue
        try:
            print("  " + json.dumps(link.ask(req), ensure_ascii=False))
        except (OSError, ValueError) as e:  # ConnectionError is an OSError
            # The device resets itself after some config changes: same port, back in seconds.
            link = _reconnect(a.port, 20)
            if link is None:
                print("the simulator stopped answering on 127.0.0.1:%d (%s)" % (a.port, e), file=sys.stderr)
                return 1
            print("  ! the simulator restarted; %r got no answer - check with 'status' before repeating it" % line)


def _reconnect(port, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return Link(port)
        except OSError:
            time.sleep(0.2)
    return None


def _oneshot(link, words):
    """Commands separated by ',' (e.g. 't A, next, finish, r 5'); exit 0 only if all succeed."""
    replies = []
    for part in " ".join(words).split(","):
        part = part.split()
        if not part:
            continue
        req = parse(part)
        if req is None:
            print(HELP)
            return 2
        replies.append(link.ask(req))
        print(json.dumps(replies[-1], ensure_ascii=False))
    return 0 if all(r.get("ok") for r in replies) else 1


class Hall:
    """The console for a hall (sim/hall's hall.json): one control link per device, opened when
    first used, so a device that is down (power cut in a test) does not stop the others."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            h = json.load(f)
        self.broker = h.get("broker")
        self.ports = {"kiosk": h["kiosk"]["control"], "screen": h["screen"]["control"]}
        self.alias = {h["kiosk"]["device"]: "kiosk", h["screen"]["device"]: "screen"}
        self.ids = []
        for c in h["counters"]:
            self.ports[c["id"]] = c["control"]
            self.alias[c["device"]] = c["id"]
            self.ids.append(c["id"])
        self.current = self.ids[0]      # the device 'use' chose
        self.counter = self.ids[0]      # the counter that staff keys and ratings go to
        self.links = {}

    def target(self, name):
        """'kiosk', 'screen' or a counter id for a name the person typed, else None."""
        name = self.alias.get(name, name)
        return name if name in self.ports else None

    def route(self, line):
        """(target, request) for one command line; (None, None) is help, (None, text) a local reply."""
        head, colon, rest = line.partition(":")
        words = line.split()
        where = None
        name = head.strip()
        if colon and name and len(name.split()) == 1:     # 'kiosk: t A' (raw JSON has a space first)
            where, words = self.target(name), rest.split()
            if where is None:
                raise ValueError("no device %r in this hall (%s)" % (name, ", ".join(self._names())))
        if not words:
            raise ValueError("a command after %r" % (head + ":"))
        if words[-1].startswith("@") and where is None:   # 'next @2': counter 2's own device
            where = self.target(words.pop()[1:])
            if where is None:
                raise ValueError("no such counter")
        cmd = words[0]
        if cmd == "use":
            t = self.target(words[1]) if len(words) == 2 else None
            if t is None:
                raise ValueError("use one of %s" % ", ".join(self._names()))
            self.current = t
            if t in self.ids:
                self.counter = t
            return None, "current device: %s" % t
        if cmd == "devices":
            return None, "  ".join("%s=127.0.0.1:%d" % (n, self.ports[n]) for n in self._names())
        if where is None:
            if cmd in ("t", "tp"):
                where = "kiosk"
            elif cmd in _COUNTER_CMDS:
                where = self.counter
            else:
                where = self.current
        req = parse(words)
        return (where, req) if req is not None else (None, None)

    def _names(self):
        return ["kiosk"] + self.ids + ["screen"]

    def ask(self, where, req, wait_s=20):
        """The device's reply; after a dropped connection (the device restarted) it reconnects for
        up to wait_s and raises ConnectionError: the request may or may not have been applied."""
        link = self.links.get(where)
        if link is None:
            try:
                link = self.links[where] = Link(self.ports[where])
            except OSError as e:    # down (a power cut in a test): the other devices still answer
                raise ConnectionError("%s does not answer on 127.0.0.1:%d (%s)" % (where, self.ports[where], e))
        try:
            return link.ask(req)
        except (OSError, ValueError) as e:
            self.links.pop(where, None)
            back = _reconnect(self.ports[where], wait_s)
            if back is not None:
                self.links[where] = back
                raise ConnectionError("%s restarted; the request got no answer - check with '%s: status' "
                                      "before repeating it" % (where, where))
            raise ConnectionError("%s stopped answering on 127.0.0.1:%d (%s)" % (where, self.ports[where], e))

    def do(self, line):
        """Run one command line; (printable text, ok)."""
        try:
            where, req = self.route(line)
        except (IndexError, ValueError) as e:
            return "? %s - type 'help'" % (e or "incomplete command"), False
        if where is None:
            return (req, True) if req else (HELP + HALL_HELP, None)
        try:
            reply = self.ask(where, req)
        except ConnectionError as e:
            return "! %s" % e, False
        return "%s: %s" % (where, json.dumps(reply, ensure_ascii=False)), bool(reply.get("ok"))

    def interactive(self):
        print("qterm hall console - devices %s - 'help' lists commands%s" % (
            ", ".join(self._names()), " - broker %s" % self.broker if self.broker else ""))
        while True:
            try:
                line = input("qterm %s> " % self.current).strip()
            except EOFError:
                print()
                return 0
            if not line:
                continue
            if line in ("quit", "exit"):
                return 0
            print("  " + self.do(line)[0])

    def oneshot(self, words):
        """Commands separated by ',' (e.g. 'kiosk: t A, 1: next'); exit 0 only if all succeed."""
        ok = True
        for part in " ".join(words).split(","):
            if not part.strip():
                continue
            text, good = self.do(part.strip())
            if good is None:
                print(text)
                return 2
            print(text)
            ok = ok and good
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
