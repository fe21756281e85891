"""Power cuts (停电) at random instants of a busy day: nothing the citizen was told is lost.

A scripted day (tickets on both services, priority tickets, calls, recalls, skips,
finishes, ratings with reasons, pauses) runs against the simulator while a timer
SIGKILLs it at a random instant - during boot, mid-press, mid-print, mid-append - and
the same state dir is powered on again. One subscriber stays connected to the broker
the whole time, so the capture is everything the device ever published. Afterwards,
deduplicated by (dev, seq): seq runs 1..N without a gap, the prev/mac chain verifies
(tools.verify), no ticket number was issued twice in a day, every ticket and rating
whose press was answered "ok" is there (a rating exactly once), and every ticket that
came out of the printer was issued.
"""
import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.broker import Broker, Subscriber
from tests.e2e.harness import ROOT, Sim, example_config

KEY = example_config()["key"]
DEV = "term01"

# (button, counter, weight): a hall with two services and two counters, busier at the kiosk
_ACTIONS = (
    ("ticket:A", None, 16), ("ticket:B", None, 14),
    ("ticket:A:priority", None, 3), ("ticket:B:priority", None, 2),
    ("next", "1", 19), ("next", "2", 19), ("finish", "1", 6), ("finish", "2", 6),
    ("recall", "1", 3), ("skip", "2", 2), ("pause", "1", 1), ("pause", "2", 1),
    ("rate5", "1", 2), ("rate3", "2", 2),
)
# the kiosk busier than the counters: queues grow to max_waiting (200) and stay long
_LONG_QUEUE = (
    ("ticket:A", None, 30), ("ticket:B", None, 26), ("ticket:A:priority", None, 2),
    ("next", "1", 8), ("next", "2", 8), ("finish", "1", 3), ("finish", "2", 3),
    ("recall", "1", 1), ("skip", "2", 1), ("rate4", "1", 1),
)
_QR = re.compile(rb"https://hall\.example/t/" + DEV.encode() + rb"/(\d{4}-\d\d-\d\d)/([A-Z]{1,2}\d{3,4})")


def day_config():
    cfg = example_config()
    cfg["printer"]["settle_ms"] = 30   # a faster printer: more of the day between cuts
    cfg["heartbeat_s"] = 10            # heartbeats (prio 0) mixed into the journal too
    cfg["queue"]["next_guard_s"] = 0   # staff keys as fast as the test can press them
    for s in cfg["services"]:
        s["daily_limit"] = 9999          # the long run issues more than a real day
    return cfg


class BusyDay:
    """Random but reproducible hall activity; remembers what each press was told."""

    def __init__(self, rng, actions=_ACTIONS):
        self.rng = rng
        self.buttons = [(b, c) for b, c, w in actions for _ in range(w)]
        self.tickets = []       # tickets the kiosk handed out ("ok" reply)
        self.ratings = []       # (ticket, score, reason) the pad accepted ("ok" reply)
        self.finished = []      # tickets whose finish was confirmed
        self.presses = 0

    def step(self, sim):
        button, counter = self.rng.choice(self.buttons)
        r = self.press(sim, button, counter)
        if "service.finished" in r.get("events", ()) and self.rng.random() < 0.85:
            self.rate(sim, counter or "1")

    def rate(self, sim, counter):
        score = self.rng.choice((1, 2, 3, 4, 5, 5, 4, 2))
        r = self.press(sim, "rate%d" % score, counter)
        if r.get("stage") == "reason":
            # the pad takes a reason only 600 ms after the score: move the clock, not the test
            sim.ask({"op": "clock", "advance_s": 1})
            self.press(sim, "rate%d" % self.rng.randint(1, 5), counter)

    def press(self, sim, button, counter=None):
        r = sim.press(button, counter)
        self.presses += 1
        if r.get("ok"):
            if r.get("event") == "ticket.issued":
                self.tickets.append(r["ticket"])
            elif r.get("event") == "rating.submitted":
                self.ratings.append((r["ticket"], r["score"], r["reason"]))
            elif "service.finished" in r.get("events", ()):
                self.finished.append(r["ticket"] if r["events"] == ["service.finished"] else None)
        return r


class PowerCut:
    """SIGKILL one sim process after `delay` seconds unless disarmed."""

    def __init__(self, proc, delay):
        self.proc = proc
        self.fired = False
        self.timer = threading.Timer(delay, self._cut)
        self.timer.daemon = True
        self.timer.start()

    def _cut(self):
        if self.proc.poll() is None:
            self.fired = True
            os.kill(self.proc.pid, signal.SIGKILL)

    def wait(self):
        self.timer.join()


def run_with_power_cuts(sim, day, kills, rng):
    """Run the day, cutting power `kills` times; leaves the sim running and connected."""
    boots_killed = 0
    for _ in range(kills):
        # one cut in five lands in the first 150 ms: during boot and recovery
        delay = rng.uniform(0.0, 0.15) if rng.random() < 0.2 else rng.uniform(0.1, 0.8)
        sim.start(wait=False)
        cut = PowerCut(sim.proc, delay)
        try:
            sim.connect()
            while True:
                day.step(sim)
        except (RuntimeError, OSError, ValueError):
            pass
        cut.wait()
        sim.proc.wait(10)
        assert cut.fired and sim.proc.returncode == -signal.SIGKILL, \
            "the simulator died by itself (rc %s), not by the power cut:\n%s" % (sim.proc.returncode, sim.output())
        if sim.sock is None:
            boots_killed += 1
        sim.kill()   # closes the control socket; the process is already gone
        sim.log.close()
    sim.start()
    return boots_killed


def captured(path, dev=DEV):
    """Events in the capture file, deduplicated on seq, in first-arrival order."""
    out, seen = [], set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            topic, _, payload = line.rstrip("\n").partition(" ")
            if "/evt/" not in topic:
                continue
            env = json.loads(payload)
            if env.get("dev") == dev and env["seq"] not in seen:
                seen.add(env["seq"])
                out.append(env)
    return out


def wait_captured(path, last_seq, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        seqs = set(e["seq"] for e in captured(path))
        if seqs.issuperset(range(1, last_seq + 1)):
            return
        time.sleep(0.1)


def verify(path):
    """tools.verify on the capture: exit status and its report."""
    r = subprocess.run([sys.executable, "-m", "tools.verify", "--key", "%s=%s" % (DEV, KEY), path],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def check_nothing_lost(sim, sub, day):
    """The invariants of a day with power cuts; returns figures for the report."""
    status = sim.wait_drained(timeout=60)
    last = status["seq"]
    wait_captured(sub.path, last)
    envs = captured(sub.path)
    seqs = sorted(e["seq"] for e in envs)
    assert seqs == list(range(1, last + 1)), "seq not contiguous 1..%d: missing %s" % (
        last, sorted(set(range(1, last + 1)) - set(seqs))[:20])

    rc, report = verify(sub.path)
    assert rc == 0, report

    by_type = collections.defaultdict(list)
    for e in sorted(envs, key=lambda e: e["seq"]):
        by_type[e["type"]].append(e["data"])
    issued = [(d["day"], d["ticket"]) for d in by_type["ticket.issued"]]
    twice = [k for k, n in collections.Counter(issued).items() if n > 1]
    assert not twice, "ticket numbers issued twice in a day: %s" % twice
    last_n = {}
    for d in by_type["ticket.issued"]:       # numbering only moves forward within a day
        key = (d["day"], d["service"])
        assert d["n"] > last_n.get(key, 0), "ticket %s issued after number %d" % (d["ticket"], last_n[key])
        last_n[key] = d["n"]

    issued_tickets = set(t for _, t in issued)
    lost = [t for t in day.tickets if t not in issued_tickets]
    assert not lost, "tickets handed out but never issued in the journal: %s" % lost

    rated = [(d["day"], d["ticket"]) for d in by_type["rating.submitted"]]
    twice = [k for k, n in collections.Counter(rated).items() if n > 1]
    assert not twice, "services rated twice (一事一评 broken or a rating replayed): %s" % twice
    stored = collections.defaultdict(list)
    for d in by_type["rating.submitted"]:
        stored[d["ticket"]].append((d["score"], d["reason"]))
    missing = [r for r in day.ratings if (r[1], r[2]) not in stored.get(r[0], [])]
    assert not missing, "ratings accepted on the pad but not delivered: %s" % missing

    finished = set(d["ticket"] for d in by_type["service.finished"])
    assert not [t for t in day.finished if t and t not in finished]

    printed = collections.Counter((m.group(1).decode(), m.group(2).decode()) for m in _QR.finditer(sim.printer_bytes()))
    assert not [k for k in printed if k not in set(issued)], "a ticket was printed that the journal never issued"
    assert not [k for k, n in printed.items() if n > 1], "a ticket number was printed twice"

    problems = [p for d in by_type["device.boot"] for p in d["problems"]]
    return {"events": last, "boots": len(by_type["device.boot"]), "tickets": len(issued),
            "ratings": len(rated), "reasons": sum(1 for d in by_type["rating.submitted"] if d["reason"]),
            "confirmed_ratings": len(day.ratings), "presses": day.presses, "printed": sum(printed.values()),
            "boot_problems": problems[:5]}


def power_cut_day(flash, kills, seed, actions=_ACTIONS, prefill=0):
    rng = random.Random(seed)
    broker = Broker().start()
    sub = Subscriber(broker.port, "qterm/#")
    sim = Sim(broker.port, day_config(), flash=flash)
    try:
        day = BusyDay(rng, actions)
        if prefill:     # a long queue before the first cut
            sim.start()
            for i in range(prefill):
                assert day.press(sim, "ticket:A" if i % 2 else "ticket:B")["ok"]
            sim.kill()
        killed_in_boot = run_with_power_cuts(sim, day, kills, rng)
        # the hall keeps working after the last cut: one citizen end to end
        r = day.press(sim, "ticket:A")
        if r.get("refused") == "queue_full":     # the long-queue day filled it: call one first
            assert day.press(sim, "next", "1")["ok"]
            r = day.press(sim, "ticket:A")
        assert r["ok"], r
        r = day.press(sim, "next", "1")
        if r.get("refused") == "counter_paused":
            assert day.press(sim, "pause", "1")["ok"]   # the key toggles: resume
            r = day.press(sim, "next", "1")
        assert r["ok"] and "ticket.called" in r["events"], r
        r = day.press(sim, "finish", "1")
        assert r["ok"], r
        r = day.press(sim, "rate4", "1")
        assert r.get("event") == "rating.submitted", r
        figures = check_nothing_lost(sim, sub, day)
        figures["killed_during_boot"] = killed_in_boot
        # a cut before the control port opened may also come before device.boot was stored
        assert kills + 1 - killed_in_boot <= figures["boots"] <= kills + 1
        assert figures["tickets"] > 0 and figures["ratings"] > 0 and figures["reasons"] > 0
        print("power cuts on %s: %r" % (flash, figures))
        return figures
    finally:
        sim.cleanup()
        sub.stop()
        broker.stop()


def test_short_power_cycles_still_release_delivered_events():
    """Power that never stays on for SNAPSHOT_EVERY events must not stop the snapshots that
    let delivered records go: otherwise the outbox fills with acknowledged events, boot
    replays ever more of them, and at last every ticket is refused for a full outbox."""
    cfg = day_config()
    cfg["outbox"] = {"max_kb": 32}     # about a hundred events
    with Broker() as broker:
        sim = Sim(broker.port, cfg)
        try:
            for cycle in range(40):     # ~250 events in all, every one delivered before the cut
                sim.start()
                for button, counter in (("ticket:A", None), ("ticket:B", None), ("next", "1"), ("next", "2")):
                    r = sim.press(button, counter)
                    assert r["ok"] or r.get("refused") == "nobody_waiting", (cycle, r, sim.status())
                sim.wait_drained()
                sim.kill()
                sim.log.close()
        finally:
            sim.cleanup()


def test_power_cuts_on_plain_files():
    power_cut_day("files", 16, seed=6001)


def test_power_cuts_on_littlefs_image():
    power_cut_day("lfs", 16, seed=6002)


@pytest.mark.long
@pytest.mark.parametrize("flash", ["files", "lfs"])
def test_power_cuts_long(flash):
    power_cut_day(flash, 200, seed=6100 if flash == "files" else 6200)


@pytest.mark.long
@pytest.mark.parametrize("flash", ["files", "lfs"])
def test_power_cuts_with_long_queues(flash):
    """150 cuts while the queues grow to 200 waiting: every boot succeeds, nothing issued or
    called twice, every acknowledged rating delivered once, the journal verifies."""
    figures = power_cut_day(flash, 150, seed=6300 if flash == "files" else 6400, actions=_LONG_QUEUE,
                            prefill=360)
    assert figures["tickets"] >= 500, figures
