"""The broker goes away and comes back: every event still arrives, once, in order.

The backend's view is a persistent subscriber (mosquitto_sub -c -i ID -q 1) on a broker
with persistence on, so messages that reach the broker while the subscriber is between
connections are kept for it; anything missing is then the device's loss, not the test's.
"""
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.broker import Broker
from tests.e2e.harness import ROOT, Sim, example_config

KEY = example_config()["key"]
DEV = "term01"


class PersistentBroker(Broker):
    """mosquitto with persistence: sessions and queued messages survive stop()/start()."""

    def __init__(self):
        super().__init__()
        # mosquitto running as root drops to its own user: the db directory must be open to it
        self.db = tempfile.mkdtemp(prefix="qterm-broker-db-")
        os.chmod(self.db, 0o777)
        self.extra_conf = "persistence true\npersistence_location %s/\nmax_queued_messages 0\n" % self.db

    def remove(self):
        self.stop()
        shutil.rmtree(self.db, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class BackendSubscriber:
    """mosquitto_sub with a persistent session; it reconnects by itself after a broker restart."""

    def __init__(self, port):
        fd, self.path = tempfile.mkstemp(prefix="qterm-backend-", suffix=".log")
        os.close(fd)
        self.out = open(self.path, "w")
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c",
             "-i", "qterm-test-backend-%d" % os.getpid(), "-v", "-t", "qterm/#"],
            stdout=self.out, stderr=subprocess.STDOUT)
        time.sleep(0.3)

    def events(self):
        """Event envelopes deduplicated on (dev, seq), in order of first arrival."""
        out, seen = [], set()
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                topic, _, payload = line.rstrip("\n").partition(" ")
                if "/evt/" not in topic:
                    continue
                env = json.loads(payload)
                key = (env.get("dev"), env["seq"])
                if key not in seen:
                    seen.add(key)
                    out.append(env)
        return out

    def wait_for_seq(self, last, timeout=30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if set(e["seq"] for e in self.events()).issuperset(range(1, last + 1)):
                return
            time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)
        self.out.close()
        os.remove(self.path)


@pytest.fixture
def hall():
    broker = PersistentBroker().start()
    backend = BackendSubscriber(broker.port)
    cfg = example_config(outbox={"max_kb": 512})
    cfg["printer"]["settle_ms"] = 20
    sim = Sim(broker.port, cfg).start()
    try:
        yield broker, backend, sim
    finally:
        sim.cleanup()
        backend.stop()
        broker.remove()


class Counterwork:
    """Citizens and staff: tickets, calls, finishes and ratings, remembering what was confirmed."""

    def __init__(self, sim, rng):
        self.sim = sim
        self.rng = rng
        self.tickets = []
        self.ratings = []

    def press(self, button, counter=None):
        r = self.sim.press(button, counter)
        if r.get("ok") and r.get("event") == "ticket.issued":
            self.tickets.append(r["ticket"])
        if r.get("ok") and r.get("event") == "rating.submitted":
            self.ratings.append((r["ticket"], r["score"], r["reason"]))
        return r

    def round(self):
        """One round of the hall: two tickets, both counters call, counter 1 is rated."""
        self.press("ticket:A")
        self.press("ticket:%s" % self.rng.choice("AB") + (":priority" if self.rng.random() < 0.1 else ""))
        self.press("next", "2")
        self.press("next", "1")
        if self.press("finish", "1").get("ok"):
            score = self.rng.randint(1, 5)
            if self.press("rate%d" % score, "1").get("stage") == "reason":
                self.sim.ask({"op": "clock", "advance_s": 1})   # past the reason guard
                self.press("rate%d" % self.rng.randint(1, 5), "1")


def check_delivery(sim, backend, work, first_seq=1):
    """All events 1..seq arrived, first arrivals in seq order, chain verifies, nothing confirmed lost."""
    last = sim.wait_drained(timeout=90)["seq"]
    backend.wait_for_seq(last)
    envs = [e for e in backend.events() if e["dev"] == DEV]
    seqs = [e["seq"] for e in envs]
    missing = sorted(set(range(1, last + 1)) - set(seqs))
    assert not missing, "%d events never arrived, e.g. %s" % (len(missing), missing[:20])
    assert seqs == sorted(seqs), "events arrived out of seq order: %s" % (
        [(a, b) for a, b in zip(seqs, seqs[1:]) if b < a][:10])
    r = subprocess.run([sys.executable, "-m", "tools.verify", "--key", "%s=%s" % (DEV, KEY), backend.path],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    issued = set(e["data"]["ticket"] for e in envs if e["type"] == "ticket.issued")
    assert not [t for t in work.tickets if t not in issued]
    days = collections.Counter((e["data"]["day"], e["data"]["ticket"]) for e in envs if e["type"] == "ticket.issued")
    assert not [k for k, n in days.items() if n > 1], "a ticket number issued twice"
    rated = collections.defaultdict(list)
    for e in envs:
        if e["type"] == "rating.submitted":
            rated[e["data"]["ticket"]].append((e["data"]["score"], e["data"]["reason"]))
    assert not [r for r in work.ratings if (r[1], r[2]) not in rated.get(r[0], [])]
    return last


def test_broker_down_for_a_simulated_hour_with_500_events(hall):
    broker, backend, sim = hall
    work = Counterwork(sim, random.Random(61))
    start = sim.wait_drained()["seq"]
    broker.stop()
    deadline = time.time() + 10
    while sim.status()["connected"] and time.time() < deadline:
        time.sleep(0.05)
    assert not sim.status()["connected"]

    advanced = 0
    rounds = 0
    while sim.status()["seq"] - start < 500:
        work.round()
        rounds += 1
        if rounds % 6 == 0 and advanced < 3300:
            sim.ask({"op": "clock", "advance_s": 300})   # an hour of the hall, in steps
            advanced += 300
    st = sim.status()
    assert st["outbox"] >= 500 and not st["connected"], st
    assert st["fault"] is None and st["stats"]["storage_errors"] == 0

    broker.start()   # same port, same persistent sessions
    # the last stretch of the hour: the reconnect back-off, counted on the device clock, runs out
    sim.ask({"op": "clock", "advance_s": 3600 - advanced})
    last = check_delivery(sim, backend, work)
    assert last - start >= 500
    kinds = collections.Counter(e["type"] for e in backend.events() if e["seq"] > start)
    for t in ("ticket.issued", "ticket.called", "service.finished", "rating.submitted"):
        assert kinds[t] > 0, kinds


def test_broker_restarted_while_the_device_is_publishing(hall):
    broker, backend, sim = hall
    work = Counterwork(sim, random.Random(62))
    sim.wait_drained()
    stop = threading.Event()
    failures = []

    def hall_at_work():
        try:
            while not stop.is_set():
                work.round()
        except Exception as e:   # reported below: the sim must keep answering throughout
            failures.append(repr(e))

    worker = threading.Thread(target=hall_at_work, daemon=True)
    worker.start()
    rng = random.Random(63)
    for _ in range(3):
        time.sleep(rng.uniform(0.5, 1.5))
        broker.stop()
        time.sleep(rng.uniform(0.2, 1.0))
        broker.start()
    time.sleep(1.0)
    stop.set()
    worker.join(30)
    assert not failures, failures
    assert len(work.tickets) > 20
    check_delivery(sim, backend, work)


def test_broker_restarted_while_a_backlog_drains(hall):
    broker, backend, sim = hall
    work = Counterwork(sim, random.Random(64))
    start = sim.wait_drained()["seq"]
    assert sim.ask({"op": "net", "up": False})["ok"]
    while sim.status()["seq"] - start < 400:
        work.round()
    seen_before = len(backend.events())
    assert sim.ask({"op": "net", "up": True})["ok"]
    deadline = time.time() + 30
    while len(backend.events()) == seen_before and time.time() < deadline:
        time.sleep(0.005)
    broker.stop()           # the first of the backlog has arrived: cut the broker mid-drain
    arrived = len(backend.events()) - seen_before
    time.sleep(0.5)
    broker.start()
    last = check_delivery(sim, backend, work)
    assert last - start >= 400
    print("backlog of %d events, %d had arrived when the broker stopped" % (last - start, arrived))


# ---- a full outbox ---------------------------------------------------------------

def fill_outbox(broker, backend, sim, work):
    """Broker down, the hall busy until the outbox refuses a ticket; returns that refusal."""
    sim.wait_drained()
    broker.stop()
    for _ in range(400):
        r = work.press("ticket:A")
        if not r.get("ok"):
            return r
        work.press("next", "1")
        if work.press("finish", "1").get("ok"):
            score = work.rng.randint(1, 5)
            if work.press("rate%d" % score, "1").get("stage") == "reason":
                sim.ask({"op": "clock", "advance_s": 1})
                work.press("rate%d" % work.rng.randint(1, 5), "1")
    raise AssertionError("the outbox never filled: %r" % sim.status())


def small_outbox_hall(max_kb):
    broker = PersistentBroker().start()
    backend = BackendSubscriber(broker.port)
    cfg = example_config(outbox={"max_kb": max_kb})
    cfg["printer"]["settle_ms"] = 20
    return broker, backend, Sim(broker.port, cfg).start()


def test_full_outbox_refuses_tickets_keeps_ratings_and_recovers():
    broker, backend, sim = small_outbox_hall(32)
    try:
        work = Counterwork(sim, random.Random(65))
        r = fill_outbox(broker, backend, sim, work)
        assert r.get("refused") in ("outbox_full", "storage_error", "storage_full"), r
        shown = " ".join(sim.ask({"op": "display"})["lines"])
        assert "存储已满" in shown and "Storage full" in shown, shown
        st = sim.status()
        assert st["fault"] == "storage.full" and st["outbox"] > 0
        assert len(work.ratings) >= 10
        # staff keys fail cleanly too, and the terminal keeps answering
        assert sim.press("ticket:B")["ok"] is False
        assert sim.status()["ok"]

        broker.start()
        check_delivery(sim, backend, work)   # every rating accepted before the outbox filled
        r = sim.press("ticket:B")
        assert r["ok"], "tickets still refused after the outbox drained: %r" % (r,)
        assert sim.status()["fault"] is None
        assert "存储已满" not in " ".join(sim.ask({"op": "display"})["lines"])
    finally:
        sim.cleanup()
        backend.stop()
        broker.remove()


def test_full_outbox_is_reported_once_there_is_room():
    """The refusals while the outbox was full reach the backend as an event once it can be stored."""
    broker, backend, sim = small_outbox_hall(32)
    try:
        work = Counterwork(sim, random.Random(66))
        fill_outbox(broker, backend, sim, work)
        full_at = sim.status()["seq"]
        broker.start()
        sim.wait_drained(timeout=60)
        assert sim.press("ticket:B")["ok"]
        sim.ask({"op": "clock", "advance_s": 70})    # past a heartbeat, should the report ride on it
        time.sleep(1.5)
        last = sim.wait_drained(timeout=30)["seq"]
        backend.wait_for_seq(last)
        later = [e for e in backend.events() if e["seq"] > full_at]

        def tells(e):
            d = e["data"]
            return (e["type"].startswith(("storage.", "outbox.full", "device.fault"))
                    or (e["type"] == "ticket.refused" and d.get("reason") in ("outbox_full", "storage_error", "storage_full"))
                    or d.get("storage_errors", 0) > 0)
        assert [e for e in later if tells(e)], "no event tells the backend that tickets were refused " \
            "for a full outbox; events since: %s" % [e["type"] for e in later]
    finally:
        sim.cleanup()
        backend.stop()
        broker.remove()


def test_smallest_outbox_recovers_after_the_broker_returns():
    """outbox.max_kb = 16 is a valid setting: once everything is delivered, tickets work again."""
    broker, backend, sim = small_outbox_hall(16)
    try:
        work = Counterwork(sim, random.Random(67))
        fill_outbox(broker, backend, sim, work)
        broker.start()
        check_delivery(sim, backend, work)
        r = sim.press("ticket:B")
        assert r["ok"], "outbox of 16 KB still full after everything was delivered: %r %r" % (r, sim.status())
    finally:
        sim.cleanup()
        backend.stop()
        broker.remove()


def test_the_terminal_says_it_is_offline_and_keeps_serving(hall):
    """Broker gone: the home screen adds "网络断开 数据已保存 / Offline - data kept", the net lamp goes
    off, status and the heartbeat say why; citizens are served; back, the line and the lamp clear."""
    broker, backend, sim = hall
    sim.wait_drained()

    def screen():
        return sim.ask({"op": "display"})

    deadline = time.time() + 5
    while screen()["indicator"].get("net") is not True and time.time() < deadline:
        time.sleep(0.05)     # the lamp follows the connection within a timer tick
    d = screen()
    assert d["indicator"].get("net") is True and "Offline - data kept" not in d["lines"], d
    broker.stop()
    deadline = time.time() + 15
    while "Offline - data kept" not in screen()["lines"] and time.time() < deadline:
        time.sleep(0.1)
    d = screen()
    assert "网络断开 数据已保存" in d["lines"] and "Offline - data kept" in d["lines"], d
    assert d["indicator"]["net"] is False, d
    s = sim.status()
    assert s["connected"] is False and s["mqtt_error"], s
    assert sim.press("ticket:A")["ok"]
    sim.ask({"op": "clock", "advance_s": 61})            # a heartbeat falls due while offline
    broker.start()
    sim.ask({"op": "clock", "advance_s": 60})            # the reconnect back-off runs out
    sim.wait_connected(timeout=30)
    deadline = time.time() + 10
    while "Offline - data kept" in screen()["lines"] and time.time() < deadline:
        time.sleep(0.1)
    d = screen()
    assert "Offline - data kept" not in d["lines"] and d["indicator"]["net"] is True, d
    hb = [e for e in backend.events() if e["type"] == "device.heartbeat" and e["data"].get("mqtt_error")]
    assert hb and hb[-1]["data"]["net"] is True, [e["data"] for e in backend.events() if e["type"] == "device.heartbeat"]
