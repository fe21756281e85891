"""Command checks: strict JSON, signature, replay floor, time window and time.set, schema,
the quiet journal of unauthenticated refusals (both interpreters)."""
import binascii
import json
import os

import asyncio

from _util import raises, rmtree, tmpdir
from firmware import canonical, commands
from firmware.commands import QUIET_MS, Rejected, ReplayCache, handle, parse, quiet_over, strict_json
from firmware.hmac256 import HMAC256, hmac_sha256

KEY = binascii.unhexlify("00112233445566778899aabbccddeeff")
NOW = 1795618068
WINDOW = 300
Y2000 = 946684800


def signed(op, args=None, ts=NOW, cid="c1", key=KEY):
    body = {"args": args or {}, "id": cid, "op": op, "ts": ts}
    mac = binascii.hexlify(hmac_sha256(key, canonical.dumps(body))).decode()[:32]
    body["mac"] = mac
    return canonical.dumps(body)


def cache():
    d = tmpdir("cmd")
    return d, ReplayCache(d + "/seen.bin", NOW, WINDOW)


def reason(raw, seen=None, now=NOW):
    d = None
    if seen is None:
        d, seen = cache()
    try:
        return raises(Rejected, parse, raw, KEY, now, WINDOW, seen).reason
    finally:
        if d:
            rmtree(d)


class _Clock:
    def __init__(self):
        self.ms = 5000

    def ticks_ms(self):
        return self.ms


class _Hal:
    def __init__(self):
        self.clock = _Clock()


class _Stamper:
    def __init__(self):
        self.hm = HMAC256(KEY)


class FakeApp:
    """What commands.handle uses of the App: config, clock, emit and a few ops."""

    def __init__(self, root, now=NOW):
        self.cfg = {"commands": {"window_s": WINDOW}}
        self.stamper = _Stamper()
        self.root = root
        self.t = now
        self.hal = _Hal()
        self.events = []
        self.cmd_quiet = None
        self.stats = {"cmd_dropped": 0}
        self.low_memory = False

    def now(self):
        return self.t

    def emit(self, etype, data):
        canonical.dumps(data)  # what the stamper does: must encode
        self.events.append((etype, data))
        return True

    def clock_step(self, epoch, source):
        self.t = epoch
        self.emit("clock.set", {"to": epoch, "source": source})

    async def staff(self, cid, action, args):   # a counter's: asks its kiosk
        return self.staff_key(cid, action, args)

    def staff_key(self, cid, action, args):
        if self.low_memory:
            raise MemoryError("memory allocation failed")
        return {"ok": True, "events": ["staff.signed_in"]}


def run(app, raw):
    return asyncio.run(handle(app, raw))


def rejected(app):
    return [d for t, d in app.events if t == "command.rejected"]


def test_strict_json_accepts_json_and_refuses_near_misses():
    for good in (b'{}', b'{"a":[1,-2.5e3,true,null,"x\\u00e9"]}', b' [ ] ', b'"s"', b'-0'):
        assert strict_json(good), good
    for bad in (b'{"a":1 "b":2}', b'{"a" 1}', b'[1,,2]', b'[1,]', b'{"a":01}', b'', b'{',
                b'"\x01"', b'tru', b'1.', b'{"a":1}x', b"{'a':1}", b'[' * 20 + b']' * 20):
        assert not strict_json(bad), bad


def test_a_good_command_passes():
    d, seen = cache()
    cmd = parse(signed("ping"), KEY, NOW, WINDOW, seen)
    assert cmd["op"] == "ping" and cmd["id"] == "c1"
    rmtree(d)


def test_refusal_reasons():
    assert reason(b"x" * 3000) == "too_large"
    assert reason(None) == "too_large"
    assert reason(b'{"id":"a" "op":"ping"}') == "malformed"
    assert reason(b'[1]') == "malformed"
    assert reason(b'{"id":"a","op":"ping","args":{},"ts":1}') == "malformed"
    assert reason(signed("ping", key=b"other key")) == "bad_mac"
    assert reason(signed("ping", ts=NOW - 301)) == "stale"
    assert reason(signed("ping", ts=NOW + 301)) == "future"
    assert reason(signed("rating.submit", {"score": 5})) == "unknown_op"
    assert reason(signed("counter.pause", {})) == "bad_args"
    assert reason(signed("counter.pause", {"counter": 1})) == "bad_args"
    assert reason(signed("counter.pause", {"counter": "1", "extra": "x"})) == "bad_args"
    assert reason(signed("staff.signin", {"counter": "1", "staff": "a\u0001b"})) == "bad_args"
    assert reason(signed("staff.signin", {"counter": "1", "staff": "a\u202eb"})) == "bad_args"
    assert reason(signed("ticket.appointment", {"service": "A", "appt": "Y\u200b1"})) == "bad_args"
    assert reason(signed("ping", cid="")) == "malformed"
    assert reason(signed("ping", cid="x\ufeff")) == "malformed"


def test_an_id_above_u10ffff_is_malformed_and_journalled_as_valid_utf8():
    d = tmpdir("cmd")
    app = FakeApp(d)
    raw = signed("ping", cid="@@").replace(b"@@", b"\xf4\x90\x80\x80-1")
    reply = run(app, raw)
    assert reply["ok"] is False and reply["error"] in ("malformed", "bad_mac"), reply
    (ev,) = rejected(app)
    payload = canonical.dumps(ev)
    try:
        payload.decode("utf-8")   # CPython: strict
    except AttributeError:
        str(payload, "utf-8")     # MicroPython
    assert b"\xf4" not in payload and "\xf4" not in json.dumps(reply)
    assert reply["id"] == ev["id"]
    import sys
    if sys.implementation.name == "micropython":   # its json.loads lets the bytes into a str
        assert ev["id"] == "????-1" and reply["error"] == "malformed", (ev, reply)
    rmtree(d)


def test_replay_list_survives_and_covers_the_window():
    d, seen = cache()
    seen.add("c1", NOW)
    for i in range(100):
        seen.add("other-%d" % i, NOW)
    again = ReplayCache(d + "/seen.bin", NOW + 10, WINDOW)
    assert again.newest == NOW
    assert reason(signed("ping", cid="c1"), again) == "replayed"
    assert not again.seen("new", NOW)
    # ids are kept by the newest accepted ts, not by the device clock
    later = ReplayCache(d + "/seen.bin", NOW + WINDOW + 1, WINDOW)
    assert later.n == 101 * 12
    later.add("next", NOW + WINDOW + 1)   # moves the floor: the old ids can only be stale now
    assert later.n == 12 and later.newest == NOW + WINDOW + 1
    assert ReplayCache(d + "/seen.bin", NOW, WINDOW).n == 12
    assert reason(signed("ping", cid="c1"), later, now=NOW) == "stale"
    rmtree(d)


def test_replay_after_the_clock_moved_back_is_refused():
    d, seen = cache()
    raw = signed("day.reset", cid="reset-1")
    parse(raw, KEY, NOW, WINDOW, seen)
    for back in (600, 3600, 86400 * 30, NOW - Y2000):
        again = ReplayCache(d + "/seen.bin", NOW - back, WINDOW)
        assert reason(raw, again, now=NOW - back) == "replayed", back
        # a command older than the newest accepted one minus the window: stale, whatever the clock
        old = signed("ping", ts=NOW - WINDOW - 1, cid="old-%d" % back)
        assert reason(old, again, now=NOW - WINDOW - 1) == "stale", back
    rmtree(d)


def test_a_refused_command_cannot_be_replayed_either():
    d, seen = cache()
    raw = signed("counter.pause", {"counter": 7}, cid="bad-1")
    assert reason(raw, seen) == "bad_args"
    assert reason(raw, seen) == "replayed"   # replays of it cost no journal entry (QUIET)
    rmtree(d)


def test_time_set_corrects_a_wrong_clock_within_range():
    d, seen = cache()
    # the device clock says 2000 (RTC lost with the power): ordinary ops are refused ...
    assert reason(signed("ping", cid="p1"), seen, now=Y2000) == "future"
    # ... a time.set signed now, setting now, is not
    cmd = parse(signed("time.set", {"epoch": NOW}, cid="t1"), KEY, Y2000, WINDOW, seen)
    assert cmd["args"]["epoch"] == NOW
    # its ts must be within the window of the epoch it sets
    assert reason(signed("time.set", {"epoch": NOW}, ts=NOW - 400, cid="t2"), seen, now=Y2000) == "stale"
    assert reason(signed("time.set", {"epoch": NOW + 400}, cid="t3"), seen, now=Y2000) == "stale"
    assert reason(signed("time.set", {"epoch": NOW - 400}, cid="t4"), seen, now=Y2000) == "future"
    # and it is range-checked
    for epoch in (-1000, 0, Y2000, 1704067199, 4102444801, 10 ** 20):
        assert reason(signed("time.set", {"epoch": epoch}, cid="r%d" % epoch), seen) == "bad_args", epoch
    rmtree(d)
    for epoch in (1704067200, 4102444800):   # the bounds themselves are accepted
        d, seen = cache()
        cmd = parse(signed("time.set", {"epoch": epoch}, ts=epoch, cid="e%d" % epoch), KEY, Y2000, WINDOW, seen)
        assert cmd["args"]["epoch"] == epoch
        rmtree(d)


def test_full_replay_list_refuses_rather_than_forgets():
    d, seen = cache()
    for i in range(ReplayCache.MAX):
        seen.add("id-%d" % i, NOW - i)
    full = ReplayCache(d + "/seen.bin", NOW, WINDOW)
    assert full.full() and full.n == ReplayCache.MAX * 12
    assert reason(signed("ping", cid="fresh"), full) == "rate_limited"
    assert reason(signed("ping", cid="id-7", ts=NOW - 7), full) == "replayed"
    rmtree(d)


def test_damaged_replay_list_refuses_everything_signed_before():
    d, seen = cache()
    seen.add("c1", NOW - 5)
    with open(d + "/seen.bin", "r+b") as f:
        f.seek(5)
        f.write(b"\xff")
    hurt = ReplayCache(d + "/seen.bin", NOW, WINDOW)
    assert hurt.damaged and hurt.floor == NOW
    assert reason(signed("ping", cid="c1", ts=NOW - 5), hurt) == "replayed"
    assert parse(signed("ping", cid="c2", ts=NOW + 1), KEY, NOW, WINDOW, hurt)["id"] == "c2"
    os.remove(d + "/seen.bin")
    rmtree(d)


def test_a_flood_of_junk_is_journalled_once_per_quiet_period():
    d = tmpdir("cmd")
    app = FakeApp(d)
    junk = [b"not json", signed("ping", key=b"x", cid="m1"), signed("ping", ts=NOW - 999, cid="s1"),
            b"\xff\xfe", None, b"[1]"]
    want = ["malformed", "bad_mac", "stale", "malformed", "too_large", "malformed"]
    replies = [run(app, junk[i % len(junk)]) for i in range(60)]
    assert [r["error"] for r in replies] == [want[i % len(want)] for i in range(60)]
    assert [e["reason"] for e in rejected(app)] == ["malformed"]   # only the first one
    # authenticated refusals are journalled each time, quiet period or not
    assert run(app, signed("no.such.op", cid="u1"))["error"] == "unknown_op"
    assert [e["reason"] for e in rejected(app)] == ["malformed", "unknown_op"]
    # the period ends: one summary with what was suppressed, and the next period starts
    app.hal.clock.ms += QUIET_MS
    quiet_over(app)
    summary = rejected(app)[-1]
    assert summary["reason"] == "suppressed" and summary["count"] == 59, summary
    assert summary["reasons"] == {"malformed": 29, "bad_mac": 10, "stale": 10, "too_large": 10}, summary
    assert app.cmd_quiet[0] == 1
    run(app, b"junk")
    assert len(rejected(app)) == 3           # still quiet
    app.hal.clock.ms += QUIET_MS
    quiet_over(app)
    assert rejected(app)[-1]["count"] == 1
    app.hal.clock.ms += QUIET_MS
    quiet_over(app)                          # nothing suppressed: the quiet ends
    assert app.cmd_quiet[0] == 0 and len(rejected(app)) == 4
    run(app, b"junk again")
    assert len(rejected(app)) == 5 and rejected(app)[-1]["reason"] == "malformed"
    rmtree(d)


def test_in_a_flood_junk_goes_unanswered_but_commands_with_the_key_do_not():
    d = tmpdir("cmd")
    app = FakeApp(d)
    assert run(app, b"first")["error"] == "malformed"          # opens a quiet period
    assert run(app, b"second")["error"] == "malformed"         # answered: no flood yet
    app.stats["cmd_dropped"] += 3                              # the queue overflowed: a flood
    assert run(app, b"third") is None and run(app, signed("ping", key=b"k", cid="f1")) is None
    assert run(app, signed("nope", cid="f2"))["error"] == "unknown_op"
    app.low_memory = True
    assert run(app, signed("staff.signin", {"counter": "1", "staff": "S1"}, cid="f3"))["error"] == "low_memory"
    app.low_memory = False
    assert run(app, signed("ping", cid="f4"))["ok"]
    app.hal.clock.ms += QUIET_MS
    quiet_over(app)                                            # a new period: no drops in it yet
    s = rejected(app)[-1]
    assert s["reason"] == "suppressed" and s["reasons"] == {"malformed": 2, "bad_mac": 1, "low_memory": 1}, s
    assert run(app, b"fourth")["error"] == "malformed"
    rmtree(d)


def test_a_good_command_runs_and_is_recorded():
    d = tmpdir("cmd")
    app = FakeApp(d)
    r = run(app, signed("ping", cid="g1"))
    assert r == {"id": "g1", "ok": True, "result": {"pong": NOW}}
    assert run(app, signed("ping", cid="g1"))["error"] == "replayed"
    app.t = Y2000   # clock lost: time.set still gets through and steps the clock
    r = run(app, signed("time.set", {"epoch": NOW + 5}, ts=NOW + 5, cid="g2"))
    assert r["ok"] and app.t == NOW + 5 and app.events[-1][0] == "clock.set"
    rmtree(d)


def test_low_memory_refuses_that_command_only():
    d = tmpdir("cmd")
    app = FakeApp(d)
    app.low_memory = True
    r = run(app, signed("staff.signin", {"counter": "1", "staff": "S1"}, cid="lm-1"))
    assert r["ok"] is False and r["error"] == "low_memory" and r["id"] == "lm-1"
    app.low_memory = False
    assert run(app, signed("staff.signin", {"counter": "1", "staff": "S1"}, cid="lm-2"))["ok"]
    rmtree(d)


class _ShortHmac:
    """The device key's HMAC, short of memory the first `fail` times it is asked."""

    def __init__(self, fail):
        self.fail = fail

    def digest(self, data):
        if self.fail:
            self.fail -= 1
            raise MemoryError("memory allocation failed")
        return HMAC256(KEY).digest(data)


def test_short_of_memory_before_any_effect_asks_to_be_tried_again():
    """Before the id is in the replay list, a MemoryError is answered "again" (returned, not
    raised: the app's command task retries), unless it is the last try; nothing journalled."""
    d = tmpdir("cmd")
    app = FakeApp(d)
    app.stamper.hm = _ShortHmac(1)
    cmd = signed("staff.signin", {"counter": "1", "staff": "S1"}, cid="ag-1")
    assert asyncio.run(handle(app, cmd, False)) == "again"
    assert app.events == []
    assert run(app, cmd)["ok"]          # tried again: not refused as replayed
    app.stamper.hm = _ShortHmac(1)
    r = asyncio.run(handle(app, signed("ping", cid="ag-2"), True))
    assert r["ok"] is False and r["error"] == "low_memory" and r["id"] == "ag-2"
    rmtree(d)


def test_a_staff_command_short_of_memory_loading_its_code_is_tried_again():
    """The staff actions' code (desk) is loaded before the command is admitted: short of
    memory there, it is tried again after shedding, not refused (it was, under load: a
    counter.resume after a pause, CI)."""
    d = tmpdir("cmd")
    app = FakeApp(d)
    loaded = []

    def short_once(name):
        loaded.append(name)
        if len(loaded) == 1:
            raise MemoryError("memory allocation failed, allocating 464 bytes")
        return __import__(name)

    commands._load = short_once
    try:
        cmd = signed("counter.resume", {"counter": "1"}, cid="ld-1")
        assert asyncio.run(handle(app, cmd, False)) == "again"
        assert run(app, cmd)["ok"]          # tried again: not refused as replayed
        assert loaded == ["firmware.desk", "firmware.desk"]
        app.cfg["role"] = "counter"         # its kiosk decides: nothing to load here
        assert run(app, signed("counter.resume", {"counter": "1"}, cid="ld-2"))["ok"]
        assert run(app, signed("ping", cid="ld-3"))["ok"]
        assert loaded == ["firmware.desk", "firmware.desk"]
        # a printed appointment ticket: admitted, then left to the app to lay out and print
        # once the command code is given back (App._appointment)
        cmd = signed("ticket.appointment", {"service": "A", "appt": "X", "print": True}, cid="ld-4")
        r = run(app, cmd)
        assert r == {"id": "ld-4", "ok": True, "result": {"issue": {"service": "A", "appt": "X", "print": True}}}
        assert run(app, cmd)["error"] == "replayed"     # applied once, whatever the app does
        assert loaded == ["firmware.desk", "firmware.desk"]
    finally:
        commands._load = __import__
    rmtree(d)


def test_a_command_the_heap_could_not_hold_is_answered_low_memory_not_too_large():
    """The MQTT client hands on False for a message within the size limit that found no heap
    (None: too large): the sender is told to try again, not that its command is too big."""
    d = tmpdir("cmd")
    app = FakeApp(d)
    r = run(app, False)
    assert r["ok"] is False and r["error"] == "low_memory" and r["id"] is None
    assert run(app, None)["error"] == "too_large"
    rmtree(d)


def test_config_set_refuses_patch_keys_that_cannot_be_journalled():
    d = tmpdir("cmd")
    app = FakeApp(d)
    with open(d + "/config.json", "w") as f:
        f.write('{"version": 1}')
    r = run(app, signed("config.set", {"patch": {"_note\u202e": 1}}, cid="cf-1"))
    assert r["error"] == "bad_args", r
    rmtree(d)
