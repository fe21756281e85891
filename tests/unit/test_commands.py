"""Command checks: strict JSON, signature, time window, replay list, schema (both interpreters)."""
import binascii
import os

from _util import raises, rmtree, tmpdir
from firmware import canonical
from firmware.commands import Rejected, ReplayCache, parse, strict_json
from firmware.hmac256 import hmac_sha256

KEY = binascii.unhexlify("00112233445566778899aabbccddeeff")
NOW = 1795618068
WINDOW = 300


def signed(op, args=None, ts=NOW, cid="c1", key=KEY):
    body = {"args": args or {}, "id": cid, "op": op, "ts": ts}
    mac = binascii.hexlify(hmac_sha256(key, canonical.dumps(body))).decode()[:32]
    body["mac"] = mac
    return canonical.dumps(body)


def cache():
    d = tmpdir("cmd")
    return d, ReplayCache(d + "/seen.bin", NOW, WINDOW)


def reason(raw, seen=None):
    d = None
    if seen is None:
        d, seen = cache()
    try:
        return raises(Rejected, parse, raw, KEY, NOW, WINDOW, seen).reason
    finally:
        if d:
            rmtree(d)


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
    assert reason(signed("ping", cid="")) == "malformed"


def test_replay_list_survives_and_covers_the_window():
    d, seen = cache()
    seen.add("c1", NOW)
    for i in range(100):
        seen.add("other-%d" % i, NOW)
    again = ReplayCache(d + "/seen.bin", NOW + 10, WINDOW)
    assert reason(signed("ping", cid="c1"), again) == "replayed"
    assert not again.seen("new", NOW)
    later = ReplayCache(d + "/seen.bin", NOW + WINDOW + 1, WINDOW)
    assert len(later.buf) == 0  # ids outside the window are dropped: stale ts refuses them anyway
    rmtree(d)


def test_full_replay_list_refuses_rather_than_forgets():
    d, seen = cache()
    for i in range(ReplayCache.MAX):
        seen.buf += ReplayCache._key("id-%d" % i) + b"\x00\x00\x00\x7f"
    assert reason(signed("ping", cid="fresh"), seen) == "rate_limited"
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
