"""Event envelope: stamping, chaining and checking (runs under CPython and MicroPython)."""
import binascii
import hashlib
import json

from _util import raises
from firmware import canonical
from firmware.envelope import ZERO_PREV, Stamper, chain_hash
from firmware.envelope_check import BadMac, check, parse, verify
from firmware.hmac256 import hmac_sha256

KEY = b"0123456789abcdef0123456789abcdef"
RATING = {"ticket": "A001", "service": "A", "counter": "3", "staff": "S01", "score": 2,
          "reason": "slow", "followup": True, "ms": 2345, "day": "2024-05-01"}

# Known answer: the same bytes must come out of every interpreter and every backend.
GOLDEN = (b'{"boot":7,"data":{"counter":"3","day":"2024-05-01","followup":true,"ms":2345,'
          b'"reason":"slow","score":2,"service":"A","staff":"S01","ticket":"A001"},'
          b'"dev":"hall1-k1","mac":"b903f5c2295b51f06c0fb42df9d83c66",'
          b'"prev":"abababababababababababababababab","seq":42,"ts":1714550000,'
          b'"type":"rating.submitted","v":1}')
GOLDEN_NEXT = (b'{"boot":7,"data":{},"dev":"hall1-k1","mac":"33dfb364e4755af8de42203be43fb644",'
               b'"prev":"0d91dfcdc12b4b240d3faa479eeb34d9","seq":43,"ts":1714550060,'
               b'"type":"device.heartbeat","v":1}')


def _hex(b):
    return binascii.hexlify(b).decode()


def test_golden_payloads():
    s = Stamper("hall1-k1", 7, KEY, 41, "ab" * 16)
    assert s.stamp("rating.submitted", RATING, 1714550000) == GOLDEN
    assert s.seq == 42 and s.prev == "0d91dfcdc12b4b240d3faa479eeb34d9"
    assert s.stamp("device.heartbeat", {}, 1714550060) == GOLDEN_NEXT
    assert s.seq == 43 and s.prev == chain_hash(GOLDEN_NEXT)


def test_payload_is_canonical_envelope_with_definition_mac():
    s = Stamper("k1", 1, KEY)
    p = s.stamp("ticket.issued", {"ticket": "A001", "service": "A", "kind": "normal",
                                  "ahead": 3, "wait_min": 12, "day": "2024-05-01"}, 1714550000)
    env = json.loads(p)
    assert canonical.dumps(env) == p
    assert sorted(env) == ["boot", "data", "dev", "mac", "prev", "seq", "ts", "type", "v"]
    assert env["v"] == 1 and env["dev"] == "k1" and env["boot"] == 1
    assert env["seq"] == 1 and env["prev"] == ZERO_PREV and env["ts"] == 1714550000
    body = dict(env)
    del body["mac"]
    assert env["mac"] == _hex(hmac_sha256(KEY, canonical.dumps(body)))[:32]


def test_chain_hash_definition():
    assert chain_hash(GOLDEN) == _hex(hashlib.sha256(GOLDEN).digest())[:32]
    assert len(chain_hash(b"")) == 32


def test_seq_and_prev_advance_and_chain():
    s = Stamper("k1", 1, KEY)
    prev = ZERO_PREV
    for i in range(1, 6):
        p = s.stamp("device.heartbeat", {"n": i}, 1000 + i)
        env = check(p, KEY)
        assert env["seq"] == i
        assert env["prev"] == prev
        prev = chain_hash(p)
        assert s.seq == i and s.prev == prev


def test_resume_after_reboot_continues_chain():
    a = Stamper("k1", 1, KEY)
    for i in range(3):
        a.stamp("device.heartbeat", {}, i)
    b = Stamper("k1", 2, KEY, a.seq, a.prev)  # what the outbox persisted
    p = b.stamp("device.boot", {}, 10)
    env = check(p, KEY)
    assert env["seq"] == 4 and env["boot"] == 2 and env["prev"] == a.prev


def test_unencodable_event_changes_nothing():
    s = Stamper("k1", 1, KEY)
    s.stamp("device.heartbeat", {}, 1)
    seq, prev = s.seq, s.prev
    raises(ValueError, s.stamp, "service.finished", {"served_s": 1.5}, 2)
    raises(ValueError, s.stamp, "device.heartbeat", {}, 2.0)
    raises(ValueError, s.stamp, "device.heartbeat", [], 2)
    raises(ValueError, s.stamp, "", {}, 2)
    raises(TypeError, s.stamp, "x", {"b": b"raw"}, 2)
    assert s.seq == seq and s.prev == prev
    env = check(s.stamp("device.heartbeat", {}, 3), KEY)
    assert env["seq"] == seq + 1 and env["prev"] == prev


def test_strings_needing_escapes_and_non_ascii():
    s = Stamper("柜台-3", "b\"1", KEY)
    p = s.stamp("rating.submitted", {"reason": "态度\n差", "staff": "张三"}, 5)
    env = check(p, KEY)
    assert env["dev"] == "柜台-3" and env["boot"] == "b\"1"
    assert env["data"]["reason"] == "态度\n差"
    assert canonical.dumps(env) == p


def test_check_rejects_wrong_key_and_altered_fields():
    p = Stamper("k1", 1, KEY).stamp("rating.submitted", {"score": 1}, 100)
    check(p, KEY)
    raises(BadMac, check, p, b"another key")
    e = raises(ValueError, check, p, b"another key")
    assert "mac" in str(e)
    for old, new in ((b'"score":1', b'"score":5'), (b'"seq":1', b'"seq":2'),
                     (b'"ts":100', b'"ts":101'), (b'"dev":"k1"', b'"dev":"k2"'),
                     (b'"boot":1', b'"boot":2'), (b'"type":"rating.submitted"', b'"type":"rating.expired"')):
        assert old in p
        raises(BadMac, check, p.replace(old, new), KEY)


def test_check_accepts_reformatted_json():
    # The mac covers the content, not the spacing a relay might add.
    p = Stamper("k1", 1, KEY).stamp("rating.submitted", {"score": 4, "staff": "张三"}, 100)
    env = json.loads(p)
    assert check(json.dumps(env).encode(), KEY) == env


def test_check_rejects_bad_shapes():
    p = Stamper("k1", 1, KEY).stamp("device.heartbeat", {}, 100)
    env = json.loads(p)

    def variant(**changes):
        d = dict(env)
        for k in changes:
            if changes[k] is _DROP:
                del d[k]
            else:
                d[k] = changes[k]
        return json.dumps(d)

    assert "no mac" in str(raises(ValueError, check, variant(mac=_DROP), KEY))
    assert "not JSON" in str(raises(ValueError, check, b"{nope", KEY))
    raises(ValueError, check, b"[1,2]", KEY)
    raises(ValueError, check, variant(seq=_DROP), KEY)
    raises(ValueError, check, variant(extra=1), KEY)
    raises(ValueError, check, variant(v=2), KEY)
    raises(ValueError, check, variant(v=True), KEY)
    raises(ValueError, check, variant(seq=0), KEY)
    raises(ValueError, check, variant(seq="1"), KEY)
    raises(ValueError, check, variant(ts=1.5), KEY)
    raises(ValueError, check, variant(data=[]), KEY)
    raises(ValueError, check, variant(prev="00"), KEY)
    raises(ValueError, check, variant(prev="G" * 32), KEY)
    raises(ValueError, check, variant(mac="0" * 31), KEY)
    raises(ValueError, check, variant(mac="A" * 32), KEY)
    raises(ValueError, check, variant(data={"x": 0.5}), KEY)
    assert parse(p) == env
    verify(env, KEY)


class _Drop:
    pass


_DROP = _Drop()


def test_per_event_allocation_is_small():
    try:
        import gc
        gc.mem_alloc
    except AttributeError:
        return  # CPython: nothing to measure
    s = Stamper("hall1-k1", 7, KEY)
    s.stamp("rating.submitted", RATING, 1)  # buffer settles at the event size
    gc.collect()
    before = gc.mem_alloc()
    for i in range(20):
        s.stamp("rating.submitted", RATING, i)
    per_event = (gc.mem_alloc() - before) // 20
    # ~2.5 KiB on the 64-bit unix port (payload, hashes, key strings); bound it loosely.
    assert per_event < 4096, per_event
