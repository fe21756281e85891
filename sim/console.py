"""A person's console for a running simulator (host CPython): type words, see the device answer.

  python -m sim.console --port 7700            interactive
  python -m sim.console --port 7700 't A, next, finish, r 5'   one-shot, ',' between commands
"""
import argparse
import json
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
    ap.add_argument("command", nargs="*", help="one-shot commands separated by \",\", e.g. \"t A, next, finish, r 5\"")
    a = ap.parse_args(argv)
    try:
        link = Link(a.port)
    except OSError as e:
        print("cannot reach the simulator's control port 127.0.0.1:%d (%s)" % (a.port, e), file=sys.stderr)
        return 2
    if a.command:
        return _oneshot(link, a.command)
    try:
        return _interactive(link, a)
    except KeyboardInterrupt:  # Ctrl-C while a request is out: leave, as at the prompt
        print()
        return 0


def _interactive(link, a):
    print("qterm simulator console - 'help' lists commands" + (" - broker %s" % a.broker if a.broker else ""))
    while True:
        try:
            line = input("qterm> ").strip()
        except (EOFError, KeyboardInterrupt):
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


if __name__ == "__main__":
    sys.exit(main())
