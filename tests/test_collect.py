"""The collector (tools/collect.py): every verified event kept once, committed before its PUBACK.

Unit tests feed Recorder events signed here with the firmware's Stamper; the end-to-end tests
run `python -m tools collect` against a real mosquitto, SIGKILL it, restart the broker, share
the load between two collectors, and look at the database with plain sqlite3 queries.
"""
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from firmware.envelope import Stamper, chain_hash
from tests.broker import Broker
from tools import collect, halldb
from tools.mqtt_session import MQTTError, Session

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = "hall01"
KEY = bytes(range(16))
KEY2 = bytes(range(16, 32))
OTHER = b"\x99" * 16


def topic(dev, etype, site=SITE):
    return "qterm/v1/%s/%s/evt/%s" % (site, dev, etype)


def rating(i, counter="1", score=4):
    return {"day": "2024-05-06", "ticket": "A%03d" % i, "counter": counter, "staff": "S1", "score": score}


def stream(dev="ctr1", n=5, key=KEY, start=0, prev=None):
    """n signed rating events of dev as (topic, payload), seq start+1 .. start+n."""
    s = Stamper(dev, 1, key, start, prev) if prev else Stamper(dev, 1, key)
    return [(topic(dev, "rating.submitted"), s.stamp("rating.submitted", rating(i), 1715000000 + i))
            for i in range(n)]


@pytest.fixture
def rec(tmp_path):
    db = halldb.connect(str(tmp_path / "hall.sqlite"))
    yield collect.Recorder(db, {SITE + "/ctr1": KEY, "kiosk": KEY2})
    db.close()


def rows(db, sql, *args):
    return db.execute(sql, args).fetchall()


def stats(db, device):
    return rows(db, "SELECT duplicates, chain_breaks FROM device_stats WHERE device = ?", device)[0]


# --- verification, insert, dedupe ----------------------------------------------------------

def test_verified_events_are_stored_once_and_a_resend_is_a_duplicate(rec):
    evs = stream(n=5)
    assert rec.batch(evs) == ["stored"] * 5
    assert rec.batch([evs[2], evs[4]]) == ["duplicate", "duplicate"]
    db = rec.db
    got = rows(db, "SELECT device, seq, type, ts, boot, hash, data, raw FROM events ORDER BY seq")
    assert [r[1] for r in got] == [1, 2, 3, 4, 5]
    dev, seq, etype, ts, boot, hash_, data, raw = got[2]
    assert (dev, etype, ts, boot) == ("hall01/ctr1", "rating.submitted", 1715000002, 1)
    assert raw == evs[2][1] and hash_ == chain_hash(evs[2][1])
    assert json.loads(data) == rating(2)
    assert stats(db, "hall01/ctr1") == (2, 0)
    assert rows(db, "SELECT COUNT(*) FROM suspect") == [(0,)]
    assert rec.counts["stored"] == 5 and rec.counts["duplicates"] == 2


def test_keys_are_looked_up_as_site_device_then_device(rec):
    s = Stamper("kiosk", 1, KEY2)
    assert rec.batch([(topic("kiosk", "ticket.issued"), s.stamp("ticket.issued", {"ticket": "A001"}, 1))]) == ["stored"]
    s = Stamper("ctr1", 1, KEY)     # ctr1 at another site: its key is only known as hall01/ctr1
    assert rec.batch([(topic("ctr1", "ticket.issued", "hall02"), s.stamp("ticket.issued", {}, 1))]) == ["unsigned"]
    assert rows(rec.db, "SELECT device, seq, verdict FROM suspect") == [("hall02/ctr1", 1, "unsigned")]
    assert rows(rec.db, "SELECT device FROM events") == [("hall01/kiosk",)]


def test_forged_altered_unsigned_and_malformed_are_kept_apart(rec):
    good = stream(n=3)
    forged = stream(n=1, key=OTHER)[0]                      # signed, with the wrong key
    t, p = good[1]
    altered = (t, p.replace(b'"score":4', b'"score":5'))   # a 4 turned into a 5 after signing
    not_json = (topic("ctr1", "rating.submitted"), b"\xff{not json")
    no_mac = (topic("ctr1", "rating.submitted"), json.dumps({"dev": "ctr1", "seq": 9}).encode())
    other_topic = (topic("ctr2", "rating.submitted"), good[0][1])                 # ctr1's event under ctr2
    other_type = (topic("ctr1", "rating.expired"), good[0][1])
    unknown = stream(dev="ctr7", n=1)[0]
    verdicts = rec.batch([altered, forged, not_json, no_mac, other_topic, other_type, unknown] + good + [forged])
    assert verdicts[:7] == ["forged", "forged", "malformed", "malformed", "forged", "forged", "unsigned"]
    assert verdicts[7:] == ["stored"] * 3 + ["forged"]
    db = rec.db
    assert rows(db, "SELECT seq FROM events ORDER BY seq") == [(1,), (2,), (3,)]
    assert rows(db, "SELECT raw FROM events WHERE seq = 2") == [(p,)]         # the genuine one
    sus = rows(db, "SELECT device, seq, verdict, reason FROM suspect ORDER BY id")
    assert len(sus) == 7, sus            # the forged one sent twice is kept once
    assert sus[0][:3] == ("hall01/ctr1", 2, "forged") and "mac mismatch" in sus[0][3]
    assert sus[2] == ("hall01/ctr1", None, "malformed", "not JSON")
    assert sus[3][:3] == ("hall01/ctr1", 9, "malformed")
    assert sus[4][:3] == ("hall01/ctr2", 1, "forged") and "topic device" in sus[4][3]
    assert "topic type" in sus[5][3]
    assert sus[6][:3] == ("hall01/ctr7", 1, "unsigned")
    assert rec.summary().startswith("stored 3, duplicates 0, suspect 8 (forged 5, unsigned 1, malformed 2)")


def test_a_second_signed_event_claiming_a_stored_seq_is_forged(rec):
    evs = stream(n=3)
    rec.batch(evs)
    rolled_back = Stamper("ctr1", 2, KEY, 2, chain_hash(evs[1][1]))     # device state from seq 2
    other3 = (topic("ctr1", "rating.submitted"), rolled_back.stamp("rating.submitted", rating(9, score=1), 1715000099))
    assert rec.batch([other3]) == ["forged"]
    assert rows(rec.db, "SELECT raw FROM events WHERE seq = 3") == [(evs[2][1],)]
    (verdict, reason), = rows(rec.db, "SELECT verdict, reason FROM suspect")
    assert verdict == "forged" and "already held" in reason


# --- the chain ----------------------------------------------------------------------------

def _broken_chain():
    """Seq 1..4 where seq 3 is signed by the device but links to nothing (bad prev)."""
    evs = stream(n=4)
    bad3 = stream(n=1, start=2, prev="ab" * 16)[0]
    return evs, bad3


@pytest.mark.parametrize("order", [(0, 1, "bad3", 3), (3, "bad3", 1, 0), (0, 3, 1, "bad3")])
def test_chain_breaks_are_counted_once_whatever_the_arrival_order(rec, order):
    evs, bad3 = _broken_chain()
    rec.batch([bad3 if i == "bad3" else evs[i] for i in order])
    # 2 -> bad3 (its prev is not seq 2's hash) and bad3 -> 4 (seq 4 links to the real seq 3)
    assert stats(rec.db, "hall01/ctr1")[1] == 2
    assert rec.counts["chain_breaks"] == 2


def test_an_intact_chain_has_no_breaks_in_any_order(rec):
    evs = stream(n=6)
    rec.batch([evs[i] for i in (5, 0, 3, 1, 4, 2)])
    assert stats(rec.db, "hall01/ctr1") == (0, 0)


def test_gaps_list_missing_and_announced_drops_apart(rec):
    s = Stamper("ctr1", 1, KEY)
    t = topic("ctr1", "x")
    evs = [s.stamp("x", {"i": i}, 1) for i in range(1, 6)]          # 1..5; 3 and 4 dropped by the device
    dropped = s.stamp("outbox.dropped", {"ranges": [[3, 4]]}, 2)    # 6
    seven = s.stamp("x", {}, 3)                                       # 7: lost on the way
    eight = s.stamp("x", {}, 4)
    nine = s.stamp("x", {}, 5)
    rec.batch([(t, evs[0]), (t, evs[1]), (t, evs[4]), (topic("ctr1", "outbox.dropped"), dropped), (t, eight)])
    g = collect.gaps(rec.db)
    assert g == {"hall01/ctr1": {"first": 1, "last": 8, "missing": [[7, 7]], "announced": [[3, 4]]}}
    rec.batch([(t, seven), (t, nine)])
    assert collect.gaps(rec.db)["hall01/ctr1"] == {"first": 1, "last": 9, "missing": [], "announced": [[3, 4]]}
    assert stats(rec.db, "hall01/ctr1")[1] == 0      # seq 5 links to the dropped 4: no break


def test_a_prev_right_after_an_announced_range_is_no_chain_break(rec):
    """The device announced seq 3 dropped, yet seq 3 reached the broker; seq 4 links to a
    re-stamped 3 that was never sent: not counted, as tools/verify does."""
    s = Stamper("ctr1", 1, KEY)
    t = topic("ctr1", "x")
    one, two, three = (s.stamp("x", {"i": i}, 1) for i in range(3))
    four = Stamper("ctr1", 1, KEY, 3, "cd" * 16).stamp("x", {}, 1)
    dropped = Stamper("ctr1", 1, KEY, 4, chain_hash(four)).stamp("outbox.dropped", {"ranges": [[3, 3]]}, 1)
    rec.batch([(t, one), (t, two), (t, three), (topic("ctr1", "outbox.dropped"), dropped), (t, four)])
    assert stats(rec.db, "hall01/ctr1")[1] == 0


def test_status_and_state_keep_the_latest_per_device(rec):
    st = "qterm/v1/hall01/kiosk/status"
    rec.batch([(st, b'{"state":"online"}'), ("qterm/v1/hall01/kiosk/state", b'{"waiting":{"A":3}}')], now=1.0)
    rec.batch([(st, b'{"state":"offline"}')], now=2.0)
    assert rows(rec.db, "SELECT device, kind, payload, received FROM status ORDER BY kind") == [
        ("hall01/kiosk", "state", '{"waiting":{"A":3}}', 1.0), ("hall01/kiosk", "status", '{"state":"offline"}', 2.0)]
    rec.batch([(st, b"")])              # retained message cleared
    assert rows(rec.db, "SELECT kind FROM status") == [("state",)]


def test_a_batch_is_committed_when_batch_returns(rec, tmp_path):
    rec.batch(stream(n=2))
    other = sqlite3.connect(str(tmp_path / "hall.sqlite"))
    assert other.execute("SELECT COUNT(*) FROM events").fetchone() == (2,)
    other.close()


def test_the_key_store_is_read_again_when_it_changes(tmp_path):
    ks = tmp_path / "keys.json"
    ks.write_text(json.dumps({"kiosk": KEY2.hex()}))
    rec = collect.Recorder(halldb.connect(str(tmp_path / "h.sqlite")), collect.Keys(str(ks), {"kiosk": KEY2}))
    assert rec.batch(stream(n=1)) == ["unsigned"]
    ks.write_text(json.dumps({"kiosk": KEY2.hex(), "ctr1": {"key": KEY.hex()}}))
    os.utime(str(ks), ns=(time.time_ns() + 10**9,) * 2)
    assert rec.batch(stream(n=2)[1:]) == ["stored"]


class FakeSession:
    """Hands the collector prepared messages; at each PUBACK, looks at the database from
    another connection, as the broker would see the disk after a crash."""

    def __init__(self, db_path, batches):
        self.db_path = db_path
        self.batches = list(batches)
        self.acks = []       # (packet ids, events committed at that moment)

    def receive(self, timeout):
        return self.batches.pop(0) if self.batches else []

    def ack(self, pids):
        db = sqlite3.connect(self.db_path)
        self.acks.append((pids, db.execute("SELECT COUNT(*) FROM events").fetchone()[0]))
        db.close()


def test_a_puback_goes_out_only_after_the_commit(rec, tmp_path):
    from tools.mqtt_session import Message
    evs = stream(n=4)
    msgs = [Message(t, p, 1, 10 + i, False) for i, (t, p) in enumerate(evs)]
    status = Message("qterm/v1/hall01/ctr1/status", b"{}", 0, 0, False)
    fake = FakeSession(str(tmp_path / "hall.sqlite"), [msgs[:3], [status], msgs[3:]])
    col = collect.Collector(fake, rec)
    for _ in range(3):
        col._pump(0)
    assert fake.acks == [([10, 11, 12], 3), ([13], 4)]       # QoS 0 needs none


def test_no_puback_when_the_commit_fails(rec, tmp_path):
    from tools.mqtt_session import Message
    fake = FakeSession(str(tmp_path / "hall.sqlite"), [[Message(t, p, 1, 1, False) for t, p in stream(n=2)]])
    blocker = sqlite3.connect(str(tmp_path / "hall.sqlite"), timeout=0)
    blocker.execute("BEGIN IMMEDIATE")            # another writer holds the lock for too long
    rec.db.execute("PRAGMA busy_timeout=100")
    with pytest.raises(sqlite3.OperationalError):
        collect.Collector(fake, rec)._pump(0)
    blocker.rollback()
    assert fake.acks == []


class RedeliveringSession(FakeSession):
    """A broker's view: what was received but not acknowledged comes again after a reconnect."""
    host, port, client_id = "127.0.0.1", 1, "test"

    def __init__(self, db_path, batches):
        super().__init__(db_path, batches)
        self.unacked = None
        self.opens = 0

    def open(self):
        self.opens += 1
        if self.unacked:
            self.batches.insert(0, self.unacked)
        return True

    def close(self, disconnect=True):
        pass

    def receive(self, timeout):
        got = super().receive(timeout)
        if got:
            self.unacked = got
        return got

    def ack(self, pids):
        super().ack(pids)
        self.unacked = None


def test_a_database_held_by_another_writer_is_waited_for_not_fatal(rec, tmp_path, monkeypatch):
    """A backup or an open sqlite3 shell holds the write lock past the busy timeout: nothing is
    acknowledged, the collector leaves the broker and comes back; the batch, sent again, is
    stored and acknowledged once the lock is gone."""
    from tools.mqtt_session import Message
    monkeypatch.setattr(collect, "BACKOFF_MAX_S", 0.4)
    fake = RedeliveringSession(str(tmp_path / "hall.sqlite"),
                               [[Message(t, p, 1, 1 + i, False) for i, (t, p) in enumerate(stream(n=2))]])
    blocker = sqlite3.connect(str(tmp_path / "hall.sqlite"), timeout=0, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    rec.db.execute("PRAGMA busy_timeout=100")
    log = io.StringIO()
    col = collect.Collector(fake, rec, log=log)
    threading.Timer(0.5, blocker.rollback).start()
    assert col.run(seconds=2.0) == 0
    assert "database busy" in log.getvalue(), log.getvalue()
    assert fake.opens >= 2 and fake.acks and fake.acks[0] == ([1, 2], 2), fake.acks


@pytest.mark.parametrize("value", [
    {"b": [1, True, None, False], "a": "é" + chr(10), "z": {"y": "", "x": -7}},
    {"quote": 'say "hi"', "back": "a\\b", "ctl": "\x00\x1f\x7f", "cjk": "非常满意", "emoji": "\U0001F600"},
    {"k": [[], {}, [{"n": 0}]], "long": 10 ** 30, "slash": "a/b"}])
def test_fast_canonical_is_the_firmware_canonical_form(value):
    from firmware import canonical
    assert collect.fast_canonical(json.loads(json.dumps(value))) == canonical.dumps(value)


def test_floats_are_refused_as_the_firmware_does(rec):
    with pytest.raises(ValueError):
        collect.fast_canonical({"a": [1, {"b": 1.5}]})
    s = Stamper("ctr1", 1, KEY)
    p = s.stamp("x", {"w": 1}, 1).replace(b'"w":1', b'"w":1.0')
    assert rec.batch([(topic("ctr1", "x"), p)]) == ["malformed"]


# --- command line ---------------------------------------------------------------------------

def qterm(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "tools", "collect"] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_gaps_command_needs_no_broker(rec, tmp_path):
    evs = stream(n=5)
    rec.batch([evs[0], evs[1], evs[4]])
    r = qterm("--db", str(tmp_path / "hall.sqlite"), "--gaps")
    assert r.returncode == 1 and r.stdout == "hall01/ctr1: seq 1..5, missing 3-4; dropped as announced none\n"
    r = qterm("--db", str(tmp_path / "hall.sqlite"), "--gaps", "--json")
    assert json.loads(r.stdout) == {"hall01/ctr1": {"first": 1, "last": 5, "missing": [[3, 4]], "announced": []}}
    rec.batch(evs[2:4])
    r = qterm("--db", str(tmp_path / "hall.sqlite"), "--gaps")
    assert r.returncode == 0 and r.stdout == "hall01/ctr1: seq 1..5, missing none; dropped as announced none\n"


def test_exit_status_usage_and_unreachable_broker(tmp_path):
    db = str(tmp_path / "h.sqlite")
    r = qterm("--db", db)
    assert r.returncode == 2 and "--broker" in r.stderr
    r = qterm("--db", db, "--broker", "localhost")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr
    r = qterm("--db", db, "--broker", "127.0.0.1:1", "--keystore", str(tmp_path / "none.json"))
    assert r.returncode == 2 and "none.json" in r.stderr
    r = qterm("--db", db, "--broker", "127.0.0.1:1", "--share", "G")
    assert r.returncode == 2 and "--client-id" in r.stderr
    r = qterm("--db", db, "--broker", "127.0.0.1:1", "--suspect-keep", "-1")
    assert r.returncode == 2 and "--suspect-keep" in r.stderr
    ks = tmp_path / "k.json"
    ks.write_text("{}")
    port = _free_port()
    r = qterm("--db", db, "--broker", "127.0.0.1:%d" % port, "--keystore", str(ks))
    assert r.returncode == 1 and "cannot reach the broker at 127.0.0.1:%d" % port in r.stderr
    r = qterm("--db", str(tmp_path / "no" / "dir" / "h.sqlite"), "--gaps")
    assert r.returncode == 1 and "cannot open the database" in r.stderr


def _free_port():
    from tests.broker import free_port
    return free_port()


# --- end to end: a real mosquitto -----------------------------------------------------------

class PersistentBroker(Broker):
    """mosquitto keeping sessions and queued messages across stop()/start(), queue unbounded."""

    def __init__(self):
        super().__init__()
        self.db = tempfile.mkdtemp(prefix="qterm-broker-db-")
        os.chmod(self.db, 0o777)     # mosquitto started as root writes as its own user
        self.extra_conf = "persistence true\npersistence_location %s/\nmax_queued_messages 0\n" % self.db

    def remove(self):
        self.stop()
        shutil.rmtree(self.db, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class CollectorProc:
    """`python -m tools collect` as its own process, its stderr in a file."""

    def __init__(self, port, db, keystore, *extra):
        self.args = [sys.executable, "-m", "tools", "collect", "--broker", "127.0.0.1:%d" % port, "--db", db,
                     "--keystore", keystore] + list(extra)
        fd, self.log = tempfile.mkstemp(prefix="qterm-collect-", suffix=".log")
        os.close(fd)
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        with open(self.log, "a") as f:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f)
        _wait(lambda: self.output().count("collect: collecting from") == self.starts or self.proc.poll() is not None,
              20, "the collector to subscribe")
        assert self.proc.poll() is None, self.output()
        return self

    def output(self):
        with open(self.log) as f:
            return f.read()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def term(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def stored(self):
        """'stored N' of the last summary line."""
        line = [ln for ln in self.output().splitlines() if ln.startswith("collect: stored ")][-1]
        return int(line.split()[2].rstrip(","))

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.remove(self.log)


def _wait(fn, timeout, what):
    from tests.e2e.test_hall import wait_until
    return wait_until(fn, timeout, what)


class Device(threading.Thread):
    """Publishes signed events QoS 1 at a steady rate, as a terminal's outbox does: an event
    is sent again until the broker acknowledges it, across broker restarts."""

    def __init__(self, port, dev, key, n, rate, scores=None):
        super().__init__(daemon=True)
        self.port, self.dev, self.n, self.rate = port, dev, n, rate
        self.stamper = Stamper(dev, 1, key)
        self.scores = scores      # ratings to send (one per event) or None for tickets
        self.sent = []            # payloads acknowledged by the broker
        self.resends = 0
        self.error = None

    def start_(self):
        self.start()
        return self

    def payload(self, i):
        if self.scores:
            return "rating.submitted", self.stamper.stamp("rating.submitted", rating(i, self.dev[3:], self.scores[i]),
                                                          1715000000 + i)
        return "ticket.issued", self.stamper.stamp("ticket.issued", {"ticket": "A%03d" % i, "service": "A"},
                                                   1715000000 + i)

    def run(self):
        s = Session("127.0.0.1", self.port, "dev-" + self.dev, timeout=2.0)
        up = False
        try:
            t0 = time.monotonic()
            for i in range(self.n):
                etype, p = self.payload(i)
                while True:
                    try:
                        if not up:
                            s.open()
                            up = True
                            s.publish("qterm/v1/%s/%s/status" % (SITE, self.dev), b'{"state":"online"}', 1, True)
                        pid = s.publish(topic(self.dev, etype), p, qos=1)
                        deadline = time.monotonic() + 2
                        while pid not in s.acked:
                            if time.monotonic() > deadline:
                                raise MQTTError("no PUBACK")
                            s.receive(0.2)
                        s.acked.clear()
                        break
                    except (OSError, MQTTError):
                        s.close(disconnect=False)
                        up = False
                        self.resends += 1
                        time.sleep(0.2)
                self.sent.append(p)
                time.sleep(max(0.0, t0 + (i + 1) / self.rate - time.monotonic()))
        except Exception as e:  # noqa: BLE001 - the test reports it
            self.error = e
        finally:
            s.close()


def _all_sent(devs):
    """Wait for the Devices to finish; each must have had all its events acknowledged."""
    for d in devs:
        d.join(60)
        assert d.error is None and len(d.sent) == d.n, (d.dev, d.error, len(d.sent))


def _keystore(path, devices):
    with open(path, "w") as f:
        json.dump({d: {"key": k.hex()} for d, k in devices.items()}, f)
    return path


def _count(db_path):
    db = sqlite3.connect(db_path)
    try:
        return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def _satisfaction(db):
    """满意率 per counter from the database: scores 5, 4, 3 / all ratings."""
    out = {}
    for counter, score in db.execute("SELECT json_extract(data, '$.counter'), json_extract(data, '$.score') "
                                     "FROM events WHERE type = 'rating.submitted'"):
        n, good = out.get(counter, (0, 0))
        out[counter] = (n + 1, good + (score >= 3))
    return {c: good / n for c, (n, good) in out.items()}


def _sent_satisfaction(scores_by_counter):
    return {c: sum(s >= 3 for s in sc) / len(sc) for c, sc in scores_by_counter.items()}


def test_sigkilled_twice_and_a_broker_restart_lose_and_double_nothing(tmp_path):
    """Three devices publish ~1100 signed events at a steady rate; meanwhile the collector is
    SIGKILLed twice and the broker restarted once: every event ends up stored exactly once."""
    broker = PersistentBroker().start()
    keys = {"kiosk": KEY2, "ctr1": KEY, "ctr2": OTHER}
    ks = _keystore(str(tmp_path / "keys.json"), keys)
    db_path = str(tmp_path / "hall.sqlite")
    col = CollectorProc(broker.port, db_path, ks)
    try:
        col.start()
        scores = {"1": [5, 4, 3, 2, 1, 5, 5, 4] * 50, "2": [1, 2, 5, 3] * 100}
        devs = [Device(broker.port, "kiosk", KEY2, 400, 70),
                Device(broker.port, "ctr1", KEY, 400, 70, scores["1"]),
                Device(broker.port, "ctr2", OTHER, 400, 70, scores["2"])]
        for d in devs:
            d.start()
        time.sleep(1.2)
        col.kill()                      # 1: events pile up at the broker meanwhile
        time.sleep(0.8)
        col.start()
        time.sleep(1.0)
        broker.stop()                   # the broker restarts: sessions and queues from its disk
        time.sleep(0.5)
        broker.start()
        _wait(lambda: "reconnected" in col.output(), 20, "the collector back on the broker")
        time.sleep(0.5)
        col.kill()                      # 2: right in the flow again
        time.sleep(0.5)
        col.start()
        _all_sent(devs)
        _wait(lambda: _count(db_path) >= 1200, 30, "1200 events in the database")
        time.sleep(0.5)                 # a late re-send would show as a duplicate, never a second row
        assert col.term() == 0
        db = sqlite3.connect(db_path)
        for d in devs:
            name = "hall01/" + d.dev
            got = db.execute("SELECT seq, raw FROM events WHERE device = ? ORDER BY seq", (name,)).fetchall()
            assert [s for s, _ in got] == list(range(1, 401)), name
            assert [r for _, r in got] == d.sent
        assert db.execute("SELECT COUNT(*) FROM suspect").fetchone() == (0,)
        assert db.execute("SELECT SUM(chain_breaks) FROM device_stats").fetchone() == (0,)
        g = collect.gaps(db)
        assert all(v["missing"] == [] and v["first"] == 1 and v["last"] == 400 for v in g.values()), g
        assert _satisfaction(db) == _sent_satisfaction(scores)
        assert {r[0] for r in db.execute("SELECT device FROM status")} == {"hall01/" + d for d in keys}
        out = col.output()
        print(out, "duplicates", db.execute("SELECT SUM(duplicates) FROM device_stats").fetchone(),
              "device re-sends", [d.resends for d in devs])
        assert out.count("collect: stored") == 1 and "broker connection lost" in out, out
        assert "reconnected (session resumed)" in out, out
        db.close()
    finally:
        col.cleanup()
        broker.remove()


def test_two_collectors_share_the_load_and_store_each_event_once(tmp_path):
    broker = Broker().start()
    keys = {"kiosk": KEY2, "ctr1": KEY, "ctr2": OTHER, "ctr3": KEY}
    ks = _keystore(str(tmp_path / "keys.json"), keys)
    db_path = str(tmp_path / "hall.sqlite")
    cols = [CollectorProc(broker.port, db_path, ks, "--share", "G", "--client-id", "collector-" + n) for n in "ab"]
    try:
        for c in cols:
            c.start()
        _all_sent([Device(broker.port, d, k, 500, 400).start_() for d, k in keys.items()])
        _wait(lambda: _count(db_path) >= 2000, 30, "2000 events in the database")
        assert [c.term() for c in cols] == [0, 0]
        stored = [c.stored() for c in cols]
        print("stored per collector", stored)
        assert sum(stored) == 2000 and min(stored) > 0, stored
        db = sqlite3.connect(db_path)
        once = db.execute("SELECT COUNT(*), COUNT(DISTINCT device || '/' || seq) FROM events").fetchone()
        assert once == (2000, 2000)
        assert db.execute("SELECT SUM(duplicates), SUM(chain_breaks) FROM device_stats").fetchone() == (0, 0)
        assert all(v["missing"] == [] and v["last"] == 500 for v in collect.gaps(db).values())
        db.close()
    finally:
        for c in cols:
            c.cleanup()
        broker.stop()


def test_http_serves_the_live_page_while_collecting(tmp_path):
    pytest.importorskip("tools.livepage")
    import urllib.request
    broker = Broker().start()
    port = _free_port()
    ks = _keystore(str(tmp_path / "keys.json"), {"ctr1": KEY})
    col = CollectorProc(broker.port, str(tmp_path / "hall.sqlite"), ks, "--http", "127.0.0.1:%d" % port)
    try:
        col.start()
        assert "live hall page at http://127.0.0.1:%d/" % port in col.output()
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read()
        assert col.term() == 0
    finally:
        col.cleanup()
        broker.stop()


def test_a_simulated_hall_through_kills_and_a_broker_restart(tmp_path, request):
    """A real hall (kiosk + 2 counters, sim/run) serves 200 citizens; the collector is
    SIGKILLed twice and the broker restarted once during the day: the database holds every
    event of every device once, seq 1..last, and 满意率 per counter equals the ratings given."""
    from tests.e2e.test_hall import _hall
    broker = PersistentBroker().start()
    request.addfinalizer(broker.remove)
    db_path = str(tmp_path / "hall.sqlite")
    ks = str(tmp_path / "keys.json")
    keys = {}
    col = CollectorProc(broker.port, db_path, ks)
    request.addfinalizer(col.cleanup)

    def subscribed_before_boot(cfg):
        """Hall calls this per device config before any device starts: the collector is
        subscribed before the first event, with each key in its key store (read again on change)."""
        keys[cfg["device"]] = bytes.fromhex(cfg["key"])
        _keystore(ks, keys)
        os.utime(ks, ns=(time.time_ns() + len(keys) * 10**9,) * 2)
        if col.proc is None:
            col.start()
    hall = _hall(broker, request, counters=2, screen=False, tweak=subscribed_before_boot)
    given = {"1": [], "2": []}

    def serve(n):
        """Each counter serves n citizens: next, finish, a rating (a 2 with its reason)."""
        errors = []

        def window(cid):
            sim = hall.counter(cid)
            try:
                for k in range(n):
                    r = sim.press("next")
                    assert r["ok"], r
                    assert sim.press("finish")["ok"]
                    score = (5, 4, 3, 5, 2)[k % 5]
                    assert sim.press("rate%d" % score)["ok"]
                    if score <= 2:
                        time.sleep(0.65)        # a reason is taken only after the pad's guard time
                        assert sim.press("rate5")["event"] == "rating.submitted"
                    given[cid].append(score)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append((cid, e))
        threads = [threading.Thread(target=window, args=(c,)) for c in "12"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors

    for i in range(100):
        assert hall.kiosk.press("ticket:" + "AB"[i % 2])["ok"]
    col.kill()                                  # 1: while tickets are issued
    for i in range(100, 200):
        assert hall.kiosk.press("ticket:" + "AB"[i % 2])["ok"]
    col.start()
    serve(50)
    broker.stop()                               # the broker restarts between two rushes
    broker.start()
    for s in hall.sims.values():
        s.wait_connected(40)
    kill = threading.Timer(3.0, col.kill)      # 2: in the middle of the second rush
    kill.start()
    serve(50)
    kill.join()
    col.start()
    last = {}
    for name, s in hall.sims.items():
        last["hall01/" + name] = s.wait_drained(timeout=30)["seq"]

    def complete():
        db = sqlite3.connect(db_path)
        try:
            got = dict(db.execute("SELECT device, MAX(seq) FROM events GROUP BY device").fetchall())
        finally:
            db.close()
        return all(got.get(d, 0) >= n for d, n in last.items())
    _wait(complete, 30, "every device's last event in the database")
    assert col.term() == 0
    db = sqlite3.connect(db_path)
    for device, n in last.items():
        seqs = [s for (s,) in db.execute("SELECT seq FROM events WHERE device = ? ORDER BY seq", (device,))]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= n, device
    assert db.execute("SELECT COUNT(*) FROM suspect").fetchone() == (0,)
    assert db.execute("SELECT SUM(chain_breaks) FROM device_stats").fetchone() == (0,)
    assert all(v["missing"] == [] for v in collect.gaps(db).values())
    assert db.execute("SELECT COUNT(*) FROM events WHERE type = 'ticket.issued'").fetchone() == (200,)
    assert len(given["1"]) == len(given["2"]) == 100
    assert _satisfaction(db) == _sent_satisfaction(given)
    health = dict(db.execute("SELECT device, json_extract(payload, '$.state') FROM status WHERE kind = 'status'"))
    assert set(health) == set(last), health
    db.close()
    # as the hall manager reads it: the report's 满意率 per counter is the ratings given
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "tools", "report", "--db", db_path, "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    figures = json.loads((out / "figures.json").read_text(encoding="utf-8"))
    by_counter = {c: row["satisfaction_rate"] for c, row in figures["by"]["counter"].items()}
    want = _sent_satisfaction(given)
    assert by_counter == {c: round(v, 4) for c, v in want.items()}, (by_counter, want)
    assert figures["incomplete_ratings"] == 0 and "index.html" in os.listdir(out)
