"""Damaged flash at power-on: the terminal boots, says what it found, keeps what was intact.

Each test runs a short day, stops the simulator, damages one thing in its state dir
(outbox segments, the hall snapshot, the stored config, the replay cache, stray files)
and powers it on again. Then: it boots; the problem is reported (device.boot "problems"
or the simulator's stderr); ticket numbering carries on without repeats; the events
published before and after still verify as one chain; and the hall keeps serving.
"""
import os
import re
import subprocess
import sys
import time

import pytest

from tests.e2e.harness import ok, ROOT, Sim, command, events, example_config, send_raw_command, sign_command

KEY = example_config()["key"]
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")


def hall_config():
    cfg = example_config()
    cfg["printer"]["settle_ms"] = 20
    cfg["queue"]["next_guard_s"] = 0
    return cfg


class Day:
    """A short day at the hall; remembers the last number each service issued."""

    def __init__(self, sim):
        self.sim = sim
        self.last = {"A": 0, "B": 0}

    def ticket(self, code):
        r = self.sim.press("ticket:" + code)
        assert r["ok"], r
        self.last[code] = int(r["ticket"][1:])
        return r["ticket"]

    def rounds(self, n):
        for _ in range(n):
            self.ticket("A")
            self.ticket("B")
            for cid in ("1", "2"):
                r = self.sim.press("next", cid)
                assert r["ok"], r
            assert self.sim.press("finish", "1")["ok"]
            assert self.sim.press("rate4", "1")["ok"]

    def carries_on(self):
        """Numbers continue after the last ones issued; a citizen is served and rated."""
        for code in ("A", "B"):
            before = self.last[code]
            got = self.ticket(code)
            assert got == "%s%03d" % (code, before + 1), "service %s issued %s after %s%03d" % (code, got, code, before)
        r = self.sim.press("next", "1")
        while r.get("ok") and "ticket.called" not in r["events"]:
            r = self.sim.press("next", "1")
        assert r["ok"], r
        assert self.sim.press("finish", "1")["ok"]
        assert self.sim.press("rate5", "1")["event"] == "rating.submitted"
        assert self.sim.status()["ok"]


def segments(sim):
    box = os.path.join(sim.state, "flash", "outbox")
    return [os.path.join(box, n) for n in sorted(os.listdir(box)) if n.endswith(".seg")]


def boot_report(sim, sub, boot_no):
    """The device.boot event of boot number boot_no, once published."""
    deadline = time.time() + 10
    while time.time() < deadline:
        for e in events(sub, "device.boot"):
            if e["data"]["boot"] == boot_no:
                return e["data"]
        time.sleep(0.05)
    raise AssertionError("no device.boot for boot %d:\n%s" % (boot_no, sim.output()))


def assert_reported(sim, report, *words):
    text = " ".join(report["problems"]) + " " + sim.output()
    for w in words:
        assert w in text, "boot did not report %r: problems %r, stderr %r" % (w, report["problems"], sim.output()[-600:])


def assert_verifies(sim, sub):
    last = sim.wait_drained(timeout=20)["seq"]
    deadline = time.time() + 10
    while time.time() < deadline and len(set(e["seq"] for e in events(sub))) < last:
        time.sleep(0.05)
    r = subprocess.run([sys.executable, "-m", "tools.verify", "--key", "term01=" + KEY, sub.path],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    seqs = sorted(e["seq"] for e in events(sub))
    dropped = set()     # seqs the device announced it will never send (outbox.dropped)
    for e in events(sub, "outbox.dropped"):
        for a, b in e["data"]["ranges"]:
            dropped.update(range(a, b + 1))
    assert seqs == [s for s in range(1, last + 1) if s not in dropped or s in seqs]


@pytest.fixture
def hall(broker, sub):
    sim = Sim(broker.port, hall_config()).start()
    sim.wait_drained()
    yield sim, sub, Day(sim)
    sim.cleanup()


# ---- the outbox ------------------------------------------------------------------

def test_garbage_after_the_newest_record(hall):
    sim, sub, day = hall
    day.rounds(5)
    sim.wait_drained()
    sim.kill()
    newest = segments(sim)[-1]
    with open(newest, "ab") as f:
        f.write(bytes(range(256))[7::3] * 2)
    sim.start()
    report = boot_report(sim, sub, 2)
    assert_reported(sim, report, os.path.basename(newest))
    day.carries_on()
    assert_verifies(sim, sub)


def test_torn_record_at_the_end_of_a_segment(hall):
    """A record cut short, as a power cut during its append leaves it: header and part of the payload."""
    sim, sub, day = hall
    day.rounds(5)
    sim.wait_drained()
    sim.kill()
    newest = segments(sim)[-1]
    with open(newest, "rb") as f:
        data = f.read()
    # the first record, copied to the end and cut in its payload: a plausible half-written append
    with open(newest, "ab") as f:
        f.write(data[:40])
    sim.start()
    report = boot_report(sim, sub, 2)
    assert_reported(sim, report, os.path.basename(newest))
    day.carries_on()
    assert_verifies(sim, sub)


def test_truncated_newest_segment_loses_only_the_unfinished_record(hall):
    """The newest segment cut inside its last record (not yet sent: the network was down):
    that record is gone, every earlier one is kept and the numbering carries on."""
    sim, sub, day = hall
    day.rounds(4)
    sim.wait_drained()
    assert sim.ask({"op": "net", "up": False})["ok"]
    assert sim.staff("pause", counter="1", reason="lunch")["ok"]   # the record to be torn
    sim.kill()
    newest = segments(sim)[-1]
    os.truncate(newest, os.path.getsize(newest) - 25)
    sim.start()
    report = boot_report(sim, sub, 2)
    assert_reported(sim, report, os.path.basename(newest))
    assert sim.status()["counters"]["1"]["state"] == "open"   # the pause never made it to flash
    day.carries_on()
    assert_verifies(sim, sub)


def test_truncated_older_segment_is_reported_to_the_backend(hall):
    """Events lost from the middle of the outbox (an older, unsent segment cut short) must be
    named: problems at boot and an outbox.dropped event covering exactly the missing seqs."""
    sim, sub, day = hall
    sim.ask({"op": "net", "up": False})
    day.rounds(25)   # ~150 events, ~4 segments, none sent
    sim.kill()
    segs = segments(sim)
    assert len(segs) >= 3, segs
    victim = segs[1]
    os.truncate(victim, os.path.getsize(victim) // 2)
    sim.start()
    report = boot_report(sim, sub, 2)
    assert_reported(sim, report, os.path.basename(victim))
    last = sim.wait_drained(timeout=20)["seq"]
    time.sleep(0.5)
    seen = set(e["seq"] for e in events(sub))
    missing = sorted(set(range(1, last + 1)) - seen)
    assert missing, "nothing lost? the truncation should have cost events"
    dropped = set()
    for e in events(sub, "outbox.dropped"):
        for a, b in e["data"]["ranges"]:
            dropped.update(range(a, b + 1))
    assert set(missing) <= dropped, "seqs %s..%s lost without an outbox.dropped event (got %s)" % (
        missing[0], missing[-1], sorted(dropped)[:5])
    assert sim.press("ticket:A")["ok"]


def test_garbage_after_the_newest_record_on_littlefs(broker, sub):
    sim = Sim(broker.port, hall_config(), flash="lfs").start()
    try:
        sim.wait_drained()
        day = Day(sim)
        day.rounds(5)
        sim.wait_drained()
        sim.kill()
        script = (
            "import sys, os\n"
            "sys.path.insert(0, %r)\n"
            "from sim.flash import mount_image, umount\n"
            "dev = mount_image(%r, '/flash')\n"
            "segs = sorted(n for n in os.listdir('/flash/outbox') if n.endswith('.seg'))\n"
            "f = open('/flash/outbox/' + segs[-1], 'ab'); f.write(b'\\x51\\x02\\xff\\x00garbage' * 9); f.close()\n"
            "print(segs[-1])\n"
            "umount('/flash', dev)\n") % (ROOT, os.path.join(sim.state, "flash.img"))
        r = subprocess.run([MICROPYTHON, "-c", script], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        sim.start()
        report = boot_report(sim, sub, 2)
        assert_reported(sim, report, r.stdout.strip())
        day.carries_on()
        assert_verifies(sim, sub)
    finally:
        sim.cleanup()


# ---- the hall snapshot -------------------------------------------------------------

def _damage(path, how):
    with open(path, "rb") as f:
        good = f.read()
    bad = {"truncated": good[:len(good) // 2], "zeros": b"\x00" * 64, "empty": b"",
           "flipped": good[:20] + bytes([good[20] ^ 0x10]) + good[21:],
           "json": b'{"seq": 12, "hall": {}}'}[how]
    with open(path, "wb") as f:
        f.write(bad)


@pytest.mark.parametrize("how", ["truncated", "zeros", "empty", "flipped", "json"])
def test_damaged_hall_snapshot_early_in_the_day(hall, how):
    """Few events yet: everything is still in the outbox, state is rebuilt from it."""
    sim, sub, day = hall
    day.rounds(5)
    sim.wait_drained()
    sim.kill()
    snap = os.path.join(sim.state, "flash", "hall.bin")
    if not os.path.exists(snap):      # before the first periodic snapshot: plant one to damage
        with open(snap, "wb") as f:
            f.write(b"QTH2" + os.urandom(200))
    _damage(snap, how)
    sim.start()
    report = boot_report(sim, sub, 2)
    assert_reported(sim, report, "hall.bin")
    day.carries_on()
    assert_verifies(sim, sub)


def test_damaged_hall_snapshot_late_in_the_day(hall):
    """Hundreds of events, the early ones delivered and released from the outbox: a damaged
    snapshot must still not make the kiosk hand out numbers it already gave away today."""
    sim, sub, day = hall
    day.rounds(45)
    sim.wait_drained()
    sim.kill()
    _damage(os.path.join(sim.state, "flash", "hall.bin"), "flipped")
    sim.start()
    report = boot_report(sim, sub, 2)
    assert_reported(sim, report, "hall.bin")
    day.carries_on()
    assert_verifies(sim, sub)


def test_both_snapshots_damaged_late_in_the_day_keep_the_numbers(hall):
    """Both snapshots gone and the day's early events released from the outbox: the small
    numbers record still keeps the business day and each service's last number."""
    sim, sub, day = hall
    day.rounds(45)
    sim.wait_drained()
    sim.kill()
    for name, how in (("hall.bin", "truncated"), ("hall.prev.bin", "zeros")):
        _damage(os.path.join(sim.state, "flash", name), how)
    sim.start()
    report = boot_report(sim, sub, 2)
    assert_reported(sim, report, "hall.bin")
    assert_reported(sim, report, "numbers.bin")
    day.carries_on()
    assert_verifies(sim, sub)
    issued = [(e["data"]["day"], e["data"]["ticket"]) for e in events(sub, "ticket.issued")]
    assert len(issued) == len(set(issued)), "ticket numbers issued twice in a day"


def test_damaged_newest_segment_never_reuses_a_published_seq(hall):
    """Records in the middle of the newest segment damaged after they were published: the
    device continues after them, and announces the gap, instead of sending those seqs again."""
    sim, sub, day = hall
    day.rounds(3)
    sim.wait_drained()
    sim.kill()
    outbox = os.path.join(sim.state, "flash", "outbox")
    newest = os.path.join(outbox, sorted(n for n in os.listdir(outbox) if n.endswith(".seg"))[-1])
    with open(newest, "rb") as f:
        data = bytearray(f.read())
    starts = [m.start() for m in re.finditer(rb'\x51[\x00-\x02].{10}\{"boot"', bytes(data), re.DOTALL)]
    assert len(starts) >= 4, starts
    data[starts[-3] + 12 + 5] ^= 0xFF     # a published record, three from the end
    with open(newest, "wb") as f:
        f.write(data)
    seqs_before = sorted(e["seq"] for e in events(sub))
    sim.start()
    boot_report(sim, sub, 2)
    boot = [e for e in events(sub, "device.boot") if e["data"]["boot"] == 2][0]
    assert boot["seq"] > seqs_before[-1], (boot["seq"], seqs_before[-1])
    assert any("lost" in p for p in boot["data"]["problems"]), boot["data"]["problems"]
    day.carries_on()
    assert_verifies(sim, sub)
    seqs = [e["seq"] for e in events(sub)]
    assert len(seqs) == len(set(seqs)), "a seq was published twice"


# ---- configuration and the replay cache -------------------------------------------

def test_damaged_stored_config_with_a_good_config_file(hall):
    """The technician's --config file is intact: boot with it and say the stored copy was damaged."""
    sim, sub, day = hall
    day.rounds(2)
    sim.wait_drained()
    sim.kill()
    with open(os.path.join(sim.state, "flash", "config.json"), "wb") as f:
        f.write(b'{"version": 1, "site": "hall01", "dev')
    sim.start()
    report = boot_report(sim, sub, 2)
    assert_reported(sim, report, "config.json")
    day.carries_on()
    assert_verifies(sim, sub)


def test_damaged_replay_cache(hall):
    """A damaged replay list (cmd_seen.bin) must not reopen replays of commands still inside the time window."""
    sim, sub, day = hall
    day.rounds(2)
    sim.press("finish", "2")  # pausing is refused while a citizen is served there
    pause = sign_command(KEY, "counter.pause", {"counter": "2", "reason": "meeting"})
    r0 = send_raw_command(sim, sub, pause, pause["id"])
    assert r0["ok"], r0
    ok(command(sim, sub, KEY, "counter.resume", {"counter": "2"}))
    sim.wait_drained()
    sim.kill()
    with open(os.path.join(sim.state, "flash", "cmd_seen.bin"), "r+b") as f:
        f.seek(6)
        f.write(b"\xff\x00junk")
    sim.start()
    boot_report(sim, sub, 2)
    r = send_raw_command(sim, sub, pause, pause["id"])
    assert r["ok"] is False, "a recorded command was accepted again after the replay cache was damaged: %r" % r
    assert sim.status()["counters"]["2"]["state"] == "open"
    assert command(sim, sub, KEY, "ping", ts=int(time.time()) + 1)["ok"]   # new commands still work
    day.carries_on()
    assert_verifies(sim, sub)


# ---- stray files ---------------------------------------------------------------------

def test_unknown_files_are_left_alone(hall):
    sim, sub, day = hall
    day.rounds(5)
    sim.wait_drained()
    sim.kill()
    flash = os.path.join(sim.state, "flash")
    for path, data in (("junk.bin", os.urandom(300)), ("hall.json.tmp", b'{"seq": 99'), ("config.json.tmp", b"{"),
                       ("outbox/notes.txt", b"left by a technician"), ("outbox/ack.tmp", b"\x01\x02"),
                       ("outbox/00000001.seg.bak", os.urandom(100))):
        with open(os.path.join(flash, path), "wb") as f:
            f.write(data)
    os.mkdir(os.path.join(flash, "outbox", "lost+found"))
    sim.start()
    report = boot_report(sim, sub, 2)
    assert_reported(sim, report, "notes.txt")
    day.carries_on()
    assert_verifies(sim, sub)


def test_stray_file_with_a_segment_name(hall):
    """A file that looks like the last possible segment (99999999.seg) must not push the next
    segment's name past eight digits, where the following boot no longer finds it."""
    sim, sub, day = hall
    day.rounds(2)
    sim.wait_drained()
    sim.kill()
    with open(os.path.join(sim.state, "flash", "outbox", "99999999.seg"), "wb") as f:
        f.write(b"not a segment" * 3)
    sim.start()
    report = boot_report(sim, sub, 2)
    assert_reported(sim, report, "99999999.seg")
    sim.ask({"op": "net", "up": False})
    day.rounds(12)       # fills the newest segment: the outbox opens a new one
    sim.kill()
    sim.start()
    sim.ask({"op": "net", "up": True})
    day.carries_on()
    assert_verifies(sim, sub)
    issued = [e["data"]["ticket"] for e in events(sub, "ticket.issued")]
    assert len(issued) == len(set(issued)), "ticket numbers issued twice"
