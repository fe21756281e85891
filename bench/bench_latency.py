"""Press -> broker latency of a simulated terminal, and how often it publishes its `state`.

A simulator (sim/run, its default heap) publishes to a throw-away mosquitto; mosquitto_sub,
a process of its own, stamps each arrival (-F %U: wall clock, nanoseconds), and every press
is stamped with time.time() just before it is written to the control port. The staff `pause` key toggles
pause/resume, so each press makes exactly one state-changing event (counter.paused /
counter.resumed, matched to its press by order) and marks the retained `state` dirty.

    python3 bench/bench_latency.py [--presses 300] [--gap-ms 0]

Figures are printed, never asserted: p50 / p99 / max latency, and `state` publishes per
second (the publisher sends it at most about once a second, coalesced).
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.broker import Broker  # noqa: E402
from tests.e2e.harness import Sim, fast_config  # noqa: E402


class TimedSubscriber:
    """A QoS 0 MQTT subscriber on a thread: arrivals as (monotonic time, topic, payload)."""

    def __init__(self, port, topic="qterm/#"):
        self.s = socket.create_connection(("127.0.0.1", port), 5)
        self.s.settimeout(None)  # quiet minutes (an outage) are no reason to stop listening
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = b"bench-timer-%d" % os.getpid()
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
        self.s.sendall(b"\x10" + bytes([len(body)]) + body)
        t = topic.encode()
        sub = b"\x00\x01" + len(t).to_bytes(2, "big") + t + b"\x00"
        self.s.sendall(b"\x82" + bytes([len(sub)]) + sub)
        self.got = []
        self.suback = threading.Event()
        self._buf = b""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.suback.wait(5):
            raise RuntimeError("subscriber got no SUBACK")

    def _run(self):
        buf = bytearray()
        try:
            while True:
                chunk = self.s.recv(1 << 20)
                now = time.monotonic()  # every packet in this chunk arrived by now
                if not chunk:
                    return
                buf += chunk
                off = 0
                while True:  # whole packets at buf[off:]
                    n, shift, i = 0, 0, off + 1
                    while i < len(buf) and i < off + 5:
                        c = buf[i]
                        n |= (c & 0x7F) << shift
                        shift += 7
                        i += 1
                        if not c & 0x80:
                            break
                    else:
                        break
                    if len(buf) < i + n:
                        break
                    first = buf[off]
                    if first & 0xF0 == 0x30:
                        t = (buf[i] << 8) | buf[i + 1]
                        p = i + 2 + t + (2 if first & 0x06 else 0)
                        self.got.append((now, bytes(buf[i + 2:i + 2 + t]).decode(), bytes(buf[p:i + n])))
                    elif first == 0x90:
                        self.suback.set()
                    off = i + n
                del buf[:off]
        except OSError:
            pass

    def wait_count(self, pred, n, timeout):
        """The first n arrivals whose topic satisfies pred (fewer after timeout seconds)."""
        deadline = time.monotonic() + timeout
        hits, seen = [], 0
        while len(hits) < n and time.monotonic() < deadline:
            got = len(self.got)  # scanned once each: the receiving thread keeps the GIL
            hits += [g for g in self.got[seen:got] if pred(g[1])]
            seen = got
            if len(hits) < n:
                time.sleep(0.01)
        return hits[:n]

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class StampingSubscriber:
    """mosquitto_sub -F '%U %t' into a file: (wall time, topic) of every arrival."""

    def __init__(self, port, topic="qterm/#"):
        fd, self.path = tempfile.mkstemp(prefix="qterm-stamps-")
        os.close(fd)
        self.proc = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic,
                                      "-t", "bench/probe", "-F", "%U %t"], stdout=open(self.path, "w"))
        deadline = time.time() + 10
        while not any(t == "bench/probe" for _, t in self.got()):  # subscribed once it sees this
            if time.time() > deadline:
                raise RuntimeError("mosquitto_sub never saw its probe")
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", "bench/probe",
                            "-m", "x"], check=True)
            time.sleep(0.1)

    def got(self):
        out = []
        with open(self.path) as f:
            for ln in f:
                parts = ln.split()
                if len(parts) == 2:
                    out.append((float(parts[0]), parts[1]))
        return out

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)
        os.remove(self.path)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=300, help="pause-key presses (default 300)")
    ap.add_argument("--gap-ms", type=float, default=0, help="pause between presses (default 0: back to back)")
    args = ap.parse_args()
    with Broker() as b:
        sub = StampingSubscriber(b.port)
        sim = Sim(b.port, fast_config())
        try:
            sim.start()
            sim.wait_connected()
            time.sleep(1.2)  # let the boot-time `state` go out
            sent = []
            t_start = time.time()
            for _ in range(args.presses):
                t = time.time()
                r = sim.press("pause")
                if not r.get("ok"):
                    sys.exit("press refused: %r" % (r,))
                sent.append(t)
                if args.gap_ms:
                    time.sleep(args.gap_ms / 1000.0)
            is_evt = lambda topic: topic.endswith("/evt/counter.paused") or topic.endswith("/evt/counter.resumed")
            deadline = time.time() + 30
            arrived = []
            while len(arrived) < len(sent) and time.time() < deadline:
                time.sleep(0.05)
                arrived = [g for g in sub.got() if is_evt(g[1]) and g[0] >= t_start]
            t_end = time.time()
            time.sleep(1.5)  # the last coalesced `state`
            states = [g for g in sub.got() if g[1].endswith("/state") and g[0] >= t_start]
            heap = sim.status()["heap"]
        finally:
            sim.cleanup()
            sub.close()
    if len(arrived) != len(sent):
        sys.exit("only %d of %d events arrived" % (len(arrived), len(sent)))
    lat = [(a[0] - t) * 1000.0 for a, t in zip(arrived, sent)]
    span = t_end - t_start
    print("press -> broker latency, %d %s presses (pause key), simulator heap %s, loopback mosquitto:"
          % (len(sent), "back-to-back" if not args.gap_ms else "%g ms apart" % args.gap_ms,
             os.environ.get("QTERM_HEAP", "default")))
    print("  p50 %.1f ms   p99 %.1f ms   max %.1f ms   (%.0f presses/s)"
          % (pct(lat, 50), pct(lat, 99), max(lat), len(sent) / span))
    gaps = [(b2[0] - b1[0]) * 1000 for b1, b2 in zip(states, states[1:])]
    print("  retained state: %d publishes in %.1f s (%.2f/s), shortest gap %.0f ms; heap alloc %d B"
          % (len(states), span + 1.5, len(states) / (span + 1.5), min(gaps) if gaps else 0, heap["alloc"]))


if __name__ == "__main__":
    main()
