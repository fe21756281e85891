"""Watch a hall's events live, each checked against its device's key.

One line per event on qterm/v1/<site>/+/evt/#, e.g.
  15:02:11  term01  #12     ticket.issued      ✓  A001 service A normal, ahead 0, wait 0 min
  ✓ signature verified with the device key    ✗ altered or forged (the reason follows)
  · no key for this device in the key store    = duplicate re-send (QoS 1), harmless
Device status changes (online/offline) are shown too. The key store is the one
provision writes (default $QTERM_KEYSTORE or ~/.qterm/keystore.json, when it exists).
Runs until Ctrl-C, --count events or --seconds; then prints a summary per device (events,
seq range, missing seq numbers). Exit 0 when nothing failed verification and no seq was
missing; 1 otherwise or when the broker cannot be reached. mosquitto_sub (package
mosquitto-clients) is the MQTT client.
"""
import json
import os
import select
import shutil
import subprocess
import sys
import time

from tools.device import ToolError
from tools.verify import UsageError, Verifier, default_keys

MARK = {"ok": "✓", "bad": "✗", "unverified": "·", "duplicate": "="}
SCORES = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}


def add_arguments(p):
    p.add_argument("--broker", required=True, metavar="HOST:PORT", help="MQTT broker, e.g. 192.168.1.10:1883")
    p.add_argument("--site", required=True, help="site whose devices to watch (+ for every site)")
    p.add_argument("--keystore", metavar="FILE", help="device keys (default: the provision key store if it exists)")
    p.add_argument("--user", help="broker user name")
    p.add_argument("--password", help="broker password")
    p.add_argument("--cafile", metavar="FILE", help="CA certificate: connect with TLS")
    p.add_argument("--count", type=int, metavar="N", help="stop after N events")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")


def parse_broker(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ToolError("--broker %s: expected HOST:PORT, e.g. 127.0.0.1:1883" % text, 2)
    return host, int(port)


def describe(etype, d):
    """The key data of an event as a short phrase."""
    if not isinstance(d, dict):
        return ""
    g = d.get
    if etype == "ticket.issued":
        return "%s service %s %s, ahead %s, wait %s min" % (g("ticket"), g("service"), g("kind"), g("ahead"), g("wait_min"))
    if etype == "ticket.refused":
        return "service %s refused: %s" % (g("service"), g("reason"))
    if etype in ("ticket.called", "ticket.recalled", "ticket.skipped", "ticket.transferred"):
        return "%s counter %s staff %s" % (g("ticket"), g("counter"), g("staff"))
    if etype == "service.finished":
        return "%s counter %s staff %s, waited %ss, served %ss" % (g("ticket"), g("counter"), g("staff"),
                                                                  g("waited_s"), g("served_s"))
    if etype == "rating.submitted":
        reason = g("reason")
        return "%s counter %s staff %s: %s %s%s%s" % (g("ticket"), g("counter"), g("staff"), g("score"),
                                                     SCORES.get(g("score"), "?"), " reason " + reason if reason else "",
                                                     " FOLLOW UP" if g("followup") else "")
    if etype == "rating.expired":
        return "%s counter %s staff %s: no rating" % (g("ticket"), g("counter"), g("staff"))
    parts = ["%s %s" % (k, json.dumps(v, ensure_ascii=False)) for k, v in sorted(d.items())[:4]]
    return ", ".join(parts)


def format_event(verdict, env, topic):
    dev = env.get("dev") if env else topic.split("/")[3]
    ts = env.get("ts") if env else None
    when = time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, int) else "--:--:--"
    seq = "#%s" % env.get("seq") if env else "#?"
    etype = env.get("type") if env else topic.split("/", 5)[-1]
    return "%s  %-8s %-7s %-18s %s  %s" % (when, dev, seq, etype, MARK.get(verdict, "?"),
                                          describe(etype, env.get("data")) if env else "(unreadable payload)")


class Monitor:
    def __init__(self, keys, out=sys.stdout):
        self.v = Verifier(keys)
        self.out = out
        self.events = 0
        self.bad = 0

    def line(self, raw):
        """One `mosquitto_sub -v` line."""
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        topic, _, payload = text.partition(" ")
        parts = topic.split("/")
        if len(parts) == 5 and parts[4] == "status":
            try:
                state = json.loads(payload).get("state", payload)
            except (ValueError, AttributeError):
                state = payload
            print("%s  %-8s is %s" % (time.strftime("%H:%M:%S"), parts[3], state), file=self.out, flush=True)
            return
        verdict, env = self.v.feed(topic, payload.encode("utf-8"))
        if verdict == "skipped":
            return
        self.events += 1
        if verdict == "bad":
            self.bad += 1
        line = format_event(verdict, env, topic)
        if verdict == "bad":
            line += "   <- FAILED VERIFICATION"
        print(line, file=self.out, flush=True)

    def summary(self):
        rep = self.v.report()
        lines = []
        for d in rep["devices"]:
            seq = "-" if d["first_seq"] is None else "%d..%d" % (d["first_seq"], d["last_seq"])
            bad = len(d["altered"]) + len(d["forged"]) + len(d["chain_breaks"])
            lines.append("%s: %d events, seq %s, %d missing, %d failed verification%s" % (
                d["device"], d["events"], seq, d["missing"], bad, "" if d["key"] == "known" else " (no key: not verified)"))
        missing = sum(d["missing"] for d in rep["devices"])
        return lines, missing


def monitor(broker, site, keystore=None, user=None, password=None, cafile=None, count=None, seconds=None,
            out=sys.stdout):
    host, port = parse_broker(broker)
    try:
        keystore, keys = default_keys(keystore)
    except UsageError as e:
        raise ToolError(str(e), 2)
    sub = shutil.which("mosquitto_sub")
    if not sub:
        raise ToolError("mosquitto_sub not found: install the mosquitto-clients package", 2)
    cmd = [sub, "-h", host, "-p", str(port), "-v", "-q", "1",
           "-t", "qterm/v1/%s/+/evt/#" % site, "-t", "qterm/v1/%s/+/status" % site]
    if user:
        cmd += ["-u", user]
    if password:
        cmd += ["-P", password]
    if cafile:
        cmd += ["--cafile", cafile]
    mon = Monitor(keys, out)
    print("watching %s on %s:%d (%s)" % ("every site" if site == "+" else "site " + site, host, port,
                                       "keys from " + keystore if keys else "no keys: events not verified"),
          file=out, flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + seconds if seconds else None
    buf = b""
    try:
        while count is None or mon.events < count:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            ready, _, _ = select.select([proc.stdout], [], [], wait)
            if ready:
                data = os.read(proc.stdout.fileno(), 65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf and (count is None or mon.events < count):
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        mon.line(line)
            elif proc.poll() is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode("utf-8", "replace").strip()
    proc.stderr.close()
    proc.stdout.close()
    if proc.returncode not in (0, -15) and mon.events == 0:
        raise ToolError("cannot reach the broker at %s:%d: %s" % (host, port, err or "mosquitto_sub exited %d" % proc.returncode))
    lines, missing = mon.summary()
    for ln in lines:
        print(ln, file=out)
    if count is not None and mon.events < count:
        raise ToolError("only %d of %d events arrived" % (mon.events, count))
    return mon.bad == 0 and missing == 0


def run(args):
    ok = monitor(args.broker, args.site, args.keystore, args.user, args.password, args.cafile, args.count, args.seconds)
    return 0 if ok else 1
