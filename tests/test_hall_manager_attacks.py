"""The hall manager's tools under attack: what a hostile network, a careless operator or bad
luck sends to the collector (tools/collect.py), the live page (tools/livepage.py) and the
report (tools/report.py). Each test is a finding: it failed before its fix."""
import http.client
import json
import os
import socket
import sqlite3
import time

import pytest

from firmware.envelope import Stamper
from tests.broker import Broker
from tests.test_collect import KEY, SITE, CollectorProc, _keystore, _wait, rows, stream, topic
from tools import collect, halldb, livepage
from tools.mqtt_session import Session


def envelope(**kw):
    e = {"v": 1, "dev": "ctr1", "boot": 1, "seq": 1, "ts": 1715000000, "type": "rating.submitted",
         "data": {}, "prev": "0" * 32, "mac": "0" * 32}
    e.update(kw)
    return json.dumps(e).encode()


DEEP = b"[" * 100000 + b"]" * 100000
DEEP_DATA = envelope().replace(b'"data": {}', b'"data": ' + b'{"a":' * 3000 + b"1" + b"}" * 3000)


@pytest.fixture
def rec(tmp_path):
    db = halldb.connect(str(tmp_path / "hall.sqlite"))
    yield collect.Recorder(db, {SITE + "/ctr1": KEY})
    db.close()


# --- the collector: poison messages ---------------------------------------------------------

@pytest.mark.parametrize("name,dev,payload", [
    ("deeply nested array", "ctr1", DEEP),            # json.loads: RecursionError
    ("deeply nested data", "ctr1", DEEP_DATA),
    ("seq beyond int64, unknown device", "ctr9", envelope(dev="ctr9", seq=10 ** 30)),   # OverflowError
    ("seq beyond int64, bad mac", "ctr1", envelope(seq=10 ** 30)),
    ("ts beyond int64", "ctr1", envelope(ts=-10 ** 30)),
])
def test_a_hostile_payload_is_kept_apart_not_a_crash(rec, name, dev, payload):
    """Before: RecursionError / OverflowError out of batch() - the collector died with the
    message unacknowledged, and the broker sent it first again after every restart."""
    good = stream(n=2)
    verdicts = rec.batch([good[0], (topic(dev, "rating.submitted"), payload), good[1]])
    assert verdicts == ["stored", "malformed", "stored"], name
    assert rows(rec.db, "SELECT verdict, raw FROM suspect") == [("malformed", halldb.cut(payload, halldb.RAW_KEEP))]
    assert rows(rec.db, "SELECT seq FROM events ORDER BY seq") == [(1,), (2,)]


def test_a_device_signing_a_seq_beyond_int64_is_malformed(rec):
    s = Stamper("ctr1", 1, KEY, 10 ** 20, "0" * 32)
    assert rec.batch([(topic("ctr1", "rating.submitted"), s.stamp("rating.submitted", {}, 1))]) == ["malformed"]


def test_an_unforeseen_error_on_one_message_keeps_it_apart_and_the_rest_stored(rec, monkeypatch):
    """Any exception a message provokes (a bug the checks did not foresee) must not turn it into
    a poison message: the batch is redone message by message, the culprit kept as malformed."""
    good = stream(n=3)
    real = collect.Recorder._insert

    def boom(self, device, env, *a):
        if env["seq"] == 2:
            raise KeyError("unforeseen")
        return real(self, device, env, *a)
    monkeypatch.setattr(collect.Recorder, "_insert", boom)
    assert rec.batch(good) == ["stored", "malformed", "stored"]
    assert rows(rec.db, "SELECT seq FROM events ORDER BY seq") == [(1,), (3,)]
    (verdict, reason, raw), = rows(rec.db, "SELECT verdict, reason, raw FROM suspect")
    assert verdict == "malformed" and "KeyError" in reason and raw == good[1][1]
    assert rec.counts["stored"] == 2 and rec.counts["malformed"] == 1   # the failed try not counted


def test_the_collector_survives_poison_messages_end_to_end(tmp_path):
    """A real collector and mosquitto: poison payloads between good events; the collector stays
    up, acknowledges them (the broker forgets them) and stores the good ones."""
    broker = Broker().start()
    ks = _keystore(str(tmp_path / "keys.json"), {"ctr1": KEY})
    db_path = str(tmp_path / "hall.sqlite")
    col = CollectorProc(broker.port, db_path, ks)
    try:
        col.start()
        pub = Session("127.0.0.1", broker.port, "attacker", timeout=5.0)
        pub.open()
        good = stream(n=3)
        for t, p in [good[0], (topic("ctr1", "rating.submitted"), DEEP), good[1],
                     (topic("ctr9", "x"), envelope(dev="ctr9", type="x", seq=10 ** 30)), good[2]]:
            pub.publish(t, p, qos=1)
        _wait(lambda: pub.receive(0.2) or len(pub.acked) == 5, 5, "the broker to take the 5 messages")
        pub.close()

        def done():
            db = sqlite3.connect(db_path)
            try:
                return db.execute("SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM suspect)").fetchone()
            finally:
                db.close()
        _wait(lambda: done() == (3, 2) or col.proc.poll() is not None, 10, "3 events and 2 suspect rows")
        assert col.proc.poll() is None, col.output()
        assert done() == (3, 2)
        assert col.term() == 0
        assert "stored 3, duplicates 0, suspect 2 (forged 0, unsigned 0, malformed 2)" in col.output()
    finally:
        col.cleanup()
        broker.stop()


# --- the live page: retained payloads are anybody's word -------------------------------------

from tests.test_livepage import DAY as LDAY, KIOSK, T as LT, Hall as LiveHall, kiosk_state  # noqa: E402


@pytest.fixture
def live_hall(tmp_path):
    h = LiveHall(str(tmp_path / "live.sqlite"))
    h.event(KIOSK, "device.boot", LT - 3600, role="kiosk")
    h.rating("hall1/c1", LT + 60, "A001", "1", "S001", 2, "slow")
    h.retained(KIOSK, "state", kiosk_state())
    return h


@pytest.mark.parametrize("device,payload", [
    ("hall1/x", {"day": "9999-99-99"}),                        # ValueError in strptime
    ("hall1/x", {"day": "zzzzzzzzzz"}),                        # sorted above every real day
    (KIOSK, dict(kiosk_state(), issued=[1])),                  # AttributeError
    (KIOSK, dict(kiosk_state(), counters=[1])),
    (KIOSK, dict(kiosk_state(), counters={"²": {}, "1": {}})),  # "²".isdigit(), int("²") fails
])
def test_a_hostile_retained_state_does_not_take_the_page_down(live_hall, device, payload):
    """Before: /api/live raised for every request while such a retained payload stood: the
    connection was dropped, the page said 'connection lost' until somebody cleared the topic."""
    live_hall.retained(device, "state", payload)
    d = live_hall.live()
    assert d["day"] == LDAY and d["satisfaction"]["ratings"] == 1


def test_an_event_with_an_impossible_day_does_not_take_the_page_down(live_hall):
    live_hall.rating("hall1/c1", LT + 99, "A002", "1", "S001", 1, day="2026-13-45")
    assert live_hall.live()["day"] == LDAY


def _http(server, path):
    c = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def test_data_nobody_foresaw_is_an_error_answer_not_a_dropped_connection(live_hall, monkeypatch):
    def broken(db):
        raise TypeError("unforeseen")
    monkeypatch.setattr(livepage, "live", broken)
    s = livepage.start(live_hall.path, port=0)
    try:
        status, body = _http(s, "/api/live")
    finally:
        s.shutdown()
    assert status == 500 and "unforeseen" in json.loads(body)["error"]


def test_idle_connections_are_closed(live_hall, monkeypatch):
    """One thread per connection: sockets that never send a request must not hold theirs for ever."""
    assert livepage._Handler.timeout and livepage._Handler.timeout <= 60
    monkeypatch.setattr(livepage._Handler, "timeout", 0.5)
    s = livepage.start(live_hall.path, port=0)
    try:
        c = socket.create_connection(s.server_address[:2], 5)
        c.settimeout(5)
        t0 = time.monotonic()
        assert c.recv(100) == b""          # closed by the server
        assert time.monotonic() - t0 < 4
        c.close()
        assert _http(s, "/../../etc/passwd")[0] == 404 and _http(s, "//etc/passwd")[0] == 404
        assert _http(s, "/api/live?" + "a" * 70000)[0] == 414
    finally:
        s.shutdown()


# --- the report: a device's bad luck must not cost the hall its report -------------------------

from tests.test_report import T0, small_hall, report as run_report, load  # noqa: E402

X = '<script>alert(1)</script><img src=x onerror=alert(2)>"&'


@pytest.mark.parametrize("name,dev,ts,data", [
    ("impossible day", "ctr1", 0, {"day": "2026-13-45"}),    # add_working_days: ValueError
    ("day as words", "ctr1", 0, {"day": X}),
    ("ticket as a list", "ctr1", 0, {"ticket": ["A1"], "fin_seq": [1], "req": {"a": 1}, "kiosk": "kiosk"}),
    ("clock in milliseconds", "ctr1", None, {}),              # year 58894: ValueError in iso()
])
def test_odd_signed_data_does_not_crash_the_report(tmp_path, name, dev, ts, data):
    path = str(tmp_path / "hall.sqlite")
    h, _times = small_hall(path)
    ts = (T0 + 5000) * 1000 if ts is None else T0 + 5000
    h.h.emit(dev, "rating.submitted", ts, dict({"ticket": "A001", "counter": "1", "staff": "S001", "score": 1,
                                                "reason": "wait", "day": "2026-12-04"}, **data))
    h.h.db.close()
    code, out = run_report(tmp_path, path)
    assert code == 0, name
    fig = load(out, "figures.json")
    if name == "clock in milliseconds":
        assert fig["unreadable_events"] == ["hall01/ctr1#6"] and fig["total"]["ratings"] == 10
        assert "1 verified event(s) left out" in open(os.path.join(out, "index.html"), encoding="utf-8").read()
    else:
        assert fig["total"]["ratings"] == 11 and fig["unreadable_events"] == []
    html = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    assert "<script" not in html and "<img" not in html


def test_hostile_text_everywhere_is_escaped_in_the_report(tmp_path):
    path = str(tmp_path / "hall.sqlite")
    h, _times = small_hall(path)
    h.h.emit("ctr1", "rating.submitted", T0 + 5500, {"ticket": X, "service": X, "counter": X, "staff": X,
                                                      "score": 2, "reason": X, "day": "2026-12-04", "kiosk": X})
    h.h.db.execute("INSERT INTO suspect (device, seq, type, verdict, reason, topic, raw, received) "
                   "VALUES (?,?,?,?,?,?,?,?)", (X, 1, X, X, X, X, b"", 0))
    h.h.db.close()
    code, out = run_report(tmp_path, path)
    assert code == 0
    html = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html


def test_a_report_never_writes_nor_makes_another_database_a_hall_database(tmp_path):
    """report and followup --list open read-only: a file that is not a hall database is
    refused (exit 1) and left as it was - no hall tables added, not switched to WAL."""
    import sqlite3
    import subprocess
    import sys
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(str(other))
    db.execute("CREATE TABLE notes (t TEXT)")
    db.commit()
    db.close()
    before = other.read_bytes()
    root = __file__.rsplit("/tests/", 1)[0]
    for args in (["report", "--db", str(other), "--out", str(tmp_path / "out")],
                 ["followup", "--db", str(other), "--list"]):
        r = subprocess.run([sys.executable, "-m", "tools"] + args, cwd=root, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1 and "hall database" in r.stderr, (args, r.stderr)
    assert other.read_bytes() == before
    assert not (tmp_path / "other.sqlite-wal").exists()


# --- the collector: a junk flood cannot fill the disk ---------------------------------------

def test_a_junk_flood_past_the_cap_is_counted_not_kept(tmp_path):
    """Before: every junk message became a row with its bytes (a 5 s flood: 207 000 rows,
    28 MB, and on). Now rows up to --suspect-keep, the rest counted per device and verdict;
    the report and the live page count both, so the marks stay."""
    db = halldb.connect(str(tmp_path / "hall.sqlite"))
    rec = collect.Recorder(db, {SITE + "/ctr1": KEY}, suspect_keep=5)
    junk = [(topic("ctr%d" % (i % 3), "rating.submitted"), b"junk %d" % i) for i in range(40)]
    good = stream(n=3)
    assert rec.batch(junk[:20] + [good[0]]) == ["malformed"] * 20 + ["stored"]
    assert rec.batch(junk[20:] + good[1:]) == ["malformed"] * 20 + ["stored"] * 2
    assert rows(db, "SELECT COUNT(*) FROM suspect") == [(5,)]
    over = dict(((d, v), n) for d, v, n in rows(db, "SELECT device, verdict, n FROM suspect_over"))
    assert sum(over.values()) == 35 and set(v for _d, v in over) == {"malformed"}
    counts = halldb.suspect_counts(db)
    assert sum(counts.values()) == 40
    assert counts[(SITE + "/ctr1", "malformed")] == 13          # every third of the 40
    assert rows(db, "SELECT COUNT(*) FROM events") == [(3,)]    # verified events are never capped
    assert rec.summary().startswith("stored 3, duplicates 0, suspect 40 (forged 0, unsigned 0, malformed 40)")
    live = livepage.live(db)
    assert live["suspect_total"] == 40
    from tools import report
    devs = {d["device"]: d for d in report.integrity(db)}
    assert devs[SITE + "/ctr1"]["suspect"] == {"malformed": 13} and not devs[SITE + "/ctr1"]["clean"]
    db.close()


def test_a_huge_suspect_payload_keeps_its_first_bytes_and_says_so(rec):
    payload = b"x" * (halldb.RAW_KEEP * 10)
    assert rec.batch([(topic("ctr1", "rating.submitted"), payload)]) == ["malformed"]
    (raw, reason), = rows(rec.db, "SELECT raw, reason FROM suspect")
    assert raw.startswith(payload[:halldb.RAW_KEEP]) and b"[%d in all, sha256 " % len(payload) in raw
    assert len(raw) < halldb.RAW_KEEP + 64
    assert "(first %d of %d bytes kept)" % (halldb.RAW_KEEP, len(payload)) in reason


def _db_size(db, path):
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(path)


def test_junk_past_the_cap_under_random_device_names_does_not_grow_the_database(tmp_path):
    """Found by attacking the cap: past it, suspect_over had a row per (device, verdict) with
    the device whatever the topic said - 3000 random 1000-char names grew the file by 18 MB.
    Now a device the key store does not know is counted under '' (unknown)."""
    path = str(tmp_path / "hall.sqlite")
    db = halldb.connect(path)
    rec = collect.Recorder(db, {SITE + "/ctr1": KEY}, suspect_keep=10)
    rec.batch([(topic("ctr1", "rating.submitted"), b"junk %d" % i) for i in range(10)])
    at_cap = _db_size(db, path)
    for _ in range(6):
        rec.batch([("qterm/v1/hall01/%s/evt/x" % os.urandom(500).hex(), b"j") for _ in range(500)])
    rec.batch([(topic("ctr1", "rating.submitted"), b"more junk")])
    grown = _db_size(db, path) - at_cap
    assert grown < 1 << 20, "3000 junk messages past the cap grew the database by %d bytes" % grown
    counts = halldb.suspect_counts(db)
    assert sum(counts.values()) == 3011
    assert counts[(None, "malformed")] == 3000 and counts[(SITE + "/ctr1", "malformed")] == 11
    db.close()


def test_a_suspect_row_keeps_a_bounded_size_whatever_the_payload_says(rec):
    """Found by attacking the cap: raw was cut, but the type column and the reason kept strings
    taken from the payload whole (its dev and type, an unexpected field's name): 400 KB rows."""
    big = "A" * 200000
    env = {"v": 1, "dev": big, "seq": 1, "ts": 1, "boot": 1, "type": big, "data": {},
           "prev": "0" * 32, "mac": "0" * 32}
    odd = dict(env, dev="ctr1", type="rating.submitted")
    odd[big] = 1
    long_topic = "qterm/v1/hall01/%s/evt/x" % ("d" * 60000)
    assert rec.batch([(topic("ctr1", "rating.submitted"), json.dumps(env).encode()),
                      (topic("ctr1", "rating.submitted"), json.dumps(odd).encode()),
                      (long_topic, b"junk")]) == ["forged", "malformed", "malformed"]
    sizes = rows(rec.db, "SELECT length(device), length(type), length(reason), length(topic), length(raw) FROM suspect")
    assert len(sizes) == 3
    for row in sizes:
        assert sum(n or 0 for n in row) <= halldb.RAW_KEEP + 6 * halldb.TEXT_KEEP, row


def test_two_different_big_junk_payloads_are_two_rows(rec):
    """Found by attacking the cap: cut to the same first RAW_KEEP bytes, the second of two
    different payloads met the (topic, raw) unique index and was counted nowhere."""
    head = b"x" * (halldb.RAW_KEEP + 10)
    t = topic("ctr1", "rating.submitted")
    assert rec.batch([(t, head + b"A"), (t, head + b"B"), (t, head + b"B")]) == ["malformed"] * 3
    assert sum(halldb.suspect_counts(rec.db).values()) == 2     # the identical re-send is kept once


def test_status_junk_is_bounded_and_only_known_devices_have_health(tmp_path):
    """Found by attacking: retained status/state (unsigned by contract) were stored for any
    device name with the whole payload - 200 x 100 KB status grew the file by 20 MB, and every
    made-up device appeared on the live page."""
    path = str(tmp_path / "hall.sqlite")
    db = halldb.connect(path)
    rec = collect.Recorder(db, {SITE + "/ctr1": KEY}, suspect_keep=10)
    before = _db_size(db, path)
    for _ in range(4):
        assert set(rec.batch([("qterm/v1/hall01/%s/status" % os.urandom(8).hex(), b"S" * 100000)
                              for _ in range(50)])) == {"unsigned"}
    big = b'{"state":"online","x":"%s"}' % (b"y" * halldb.STATUS_KEEP)
    assert rec.batch([("qterm/v1/hall01/ctr1/status", big),
                      ("qterm/v1/hall01/ctr1/state", b'{"waiting":{"A":1}}')]) == ["malformed", "status"]
    grown = _db_size(db, path) - before
    assert grown < 1 << 20, "200 junk status messages grew the database by %d bytes" % grown
    assert rows(db, "SELECT device, kind FROM status") == [(SITE + "/ctr1", "state")]
    assert [d["device"] for d in livepage.live(db)["devices"]] == [SITE + "/ctr1"]
    db.close()


def test_suspect_counts_read_a_database_from_before_the_cap(tmp_path):
    path = str(tmp_path / "old.sqlite")
    db = halldb.connect(path)
    db.execute("DROP TABLE suspect_over")
    db.execute("INSERT INTO suspect (device, verdict, raw, received) VALUES ('hall01/ctr1', 'forged', x'00', 0)")
    db.close()
    ro = halldb.connect_ro(path)
    assert halldb.suspect_counts(ro) == {("hall01/ctr1", "forged"): 1}
    ro.close()
