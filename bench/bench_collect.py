"""Collector throughput: events/s verified and committed, one collector and two sharing the load.

    python3 bench/bench_collect.py [--events 20000] [--devices 10]

A throw-away mosquitto on loopback (its defaults, except an unbounded queue per session).
The events are signed beforehand (firmware Stamper, one key per device). Two runs per setup:
- backlog: the collector(s) are away while every event is published (the broker queues them
  in their persistent sessions), then start: the drain rate after an outage;
- live: the collector(s) run while a publisher pushes every event as fast as it can.
The rate is events / (last received - first received), from the `received` column the
collector writes itself at commit time; "wall" counts from the collector process start
(backlog) or the first publish (live) until the last row is in the database.
"""
import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from firmware.envelope import Stamper  # noqa: E402
from tests.broker import Broker  # noqa: E402
from tools.mqtt_session import Session  # noqa: E402

SITE = "bench"


def signed_events(n, devices):
    """n signed events round-robin over devices: [(topic, payload)], and the key store."""
    stampers = [Stamper("d%02d" % i, 1, bytes([i + 1]) * 16) for i in range(devices)]
    out = []
    for k in range(n):
        s = stampers[k % devices]
        data = {"day": "2024-05-06", "ticket": "A%03d" % (k % 1000), "counter": str(k % 8 + 1),
                "staff": "S1", "score": 5 - k % 5, "req": k}
        out.append(("qterm/v1/%s/%s/evt/rating.submitted" % (SITE, s.dev),
                    s.stamp("rating.submitted", data, 1715000000 + k)))
    keys = {"%s/%s" % (SITE, s.dev): {"key": (bytes([i + 1]) * 16).hex()} for i, s in enumerate(stampers)}
    return out, keys


def publish_all(port, events, window=500):
    """QoS 1, up to window unacknowledged at once; returns when the broker acknowledged all."""
    s = Session("127.0.0.1", port, "bench-publisher")
    s.open()
    sent = 0
    while len(s.acked) < len(events):
        while sent < len(events) and sent - len(s.acked) < window:
            s.publish(events[sent][0], events[sent][1], qos=1)
            sent += 1
        s.receive(0.5)
    s.close()


class Collectors:
    def __init__(self, port, db, keystore, n):
        self.cmds = []
        for i in range(n):
            cmd = [sys.executable, "-m", "tools", "collect", "--broker", "127.0.0.1:%d" % port, "--db", db,
                   "--keystore", keystore, "--site", SITE]
            if n > 1:
                cmd += ["--share", "bench", "--client-id", "bench-collector-%d" % i]
            self.cmds.append(cmd)
        self.procs = []
        self.logs = []

    def start(self):
        self.logs = [tempfile.TemporaryFile(mode="w+") for _ in self.cmds]
        self.procs = [subprocess.Popen(c, cwd=ROOT, stderr=log) for c, log in zip(self.cmds, self.logs)]

    def wait_subscribed(self):
        deadline = time.time() + 20
        while not all(self._said(i, "collecting from") for i in range(len(self.procs))):
            if time.time() > deadline:
                raise SystemExit("collector did not start: " + self._log(0))
            time.sleep(0.05)

    def _log(self, i):
        self.logs[i].seek(0)
        return self.logs[i].read()

    def _said(self, i, text):
        return text in self._log(i)

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(30)
        return [self._log(i).strip().splitlines()[-1] for i in range(len(self.procs))]


def wait_rows(db_path, n, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        db = sqlite3.connect(db_path)
        try:
            got = db.execute("SELECT COUNT(*), MIN(received), MAX(received) FROM events").fetchone()
        except sqlite3.OperationalError:
            got = (0, None, None)
        db.close()
        if got[0] >= n:
            return time.time(), got[1], got[2]
        time.sleep(0.02)
    raise SystemExit("only %d of %d events stored in %ds" % (got[0], n, timeout))


def one_run(events, keys, collectors, mode):
    tmp = tempfile.mkdtemp(prefix="qterm-bench-collect-")
    broker = Broker(extra_conf="max_queued_messages 0\n").start()
    try:
        ks = os.path.join(tmp, "keys.json")
        with open(ks, "w") as f:
            json.dump(keys, f)
        db_path = os.path.join(tmp, "hall.sqlite")
        cols = Collectors(broker.port, db_path, ks, collectors)
        cols.start()
        cols.wait_subscribed()           # their sessions and subscriptions now exist
        if mode == "backlog":
            cols.stop()
            publish_all(broker.port, events)
            t0 = time.time()
            cols.start()
        else:
            t0 = time.time()
            publish_all(broker.port, events)
        done, first, last = wait_rows(db_path, len(events))
        lines = cols.stop()
        db = sqlite3.connect(db_path)
        stored = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        db.close()
        n = len(events)
        assert stored == n, (stored, n)
        print("%-8s %d collector%s  %6.0f events/s  (wall %.2f s, %6.0f events/s)   %s" % (
            mode, collectors, "s" if collectors > 1 else " ", n / max(last - first, 1e-6), done - t0,
            n / (done - t0), " | ".join(ln.replace("collect: ", "") for ln in lines)))
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--devices", type=int, default=10)
    args = ap.parse_args()
    t = time.time()
    events, keys = signed_events(args.events, args.devices)
    print("%d events from %d devices signed in %.1f s; mosquitto %s" % (
        len(events), args.devices, time.time() - t,
        subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0].split()[-1]))
    for collectors in (1, 2):
        for mode in ("backlog", "live"):
            one_run(events, keys, collectors, mode)


if __name__ == "__main__":
    main()
