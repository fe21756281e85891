"""The hall protocol (firmware/hallnet.py) and the kiosk's memory of applied requests.

Runs under CPython and MicroPython. The MACs are checked against values computed here with
the firmware's own HMAC; tests/e2e/test_hall.py signs requests with CPython's hmac instead.
"""
import binascii
import json

from _util import tmpdir
from firmware import config, hall_setup, hallnet
from firmware.hmac256 import HMAC256, hmac_sha256
from firmware.recovery import read_snapshot, save_hall

HALL_KEY = binascii.unhexlify("11" * 32)
T0 = 1795618068


def _req(cid="1", dev="ctr1", n=1, op="next", key=None):
    hm = HMAC256(key or hallnet.request_key(HALL_KEY, cid))
    return hallnet.sign(hm, {"a": {}, "c": cid, "dev": dev, "n": n, "op": op, "ts": T0})


def test_request_keys_are_per_counter_and_derived_from_the_hall_key():
    k1 = hallnet.request_key(HALL_KEY, "1")
    assert k1 == hmac_sha256(HALL_KEY, b"qterm-hall-request/1")
    assert len(k1) == 32 and k1 != hallnet.request_key(HALL_KEY, "2")
    assert k1 != hallnet.request_key(binascii.unhexlify("22" * 32), "1")


def test_a_request_opens_only_for_its_own_counter_and_device():
    hm1 = HMAC256(hallnet.request_key(HALL_KEY, "1"))
    m = hallnet.open_request(hm1, _req(), "1", "ctr1")
    assert m["n"] == 1 and m["op"] == "next" and "mac" not in m
    assert hallnet.open_request(hm1, _req(), "1", "ctr2") is None           # another device
    assert hallnet.open_request(hm1, _req(cid="2"), "1", "ctr1") is None    # another counter's key
    forged = _req(key=hallnet.request_key(HALL_KEY, "2"))                  # counter 2 signs as 1
    assert hallnet.open_request(hm1, forged, "1", "ctr1") is None


def test_an_altered_or_malformed_request_is_refused():
    hm1 = HMAC256(hallnet.request_key(HALL_KEY, "1"))
    good = json.loads(_req())
    for change in (("n", 2), ("op", "close"), ("a", {"x": 1}), ("ts", T0 + 1)):
        bad = dict(good)
        bad[change[0]] = change[1]
        assert hallnet.open_request(hm1, json.dumps(bad).encode(), "1", "ctr1") is None
    extra = dict(good)
    extra["z"] = 1
    for raw in (b"", b"[]", b"{", json.dumps(extra).encode(), b"x" * 2000, None):
        assert hallnet.open_request(hm1, raw, "1", "ctr1") is None
    neg = dict(good)
    neg["n"] = -1
    assert hallnet.open_request(hm1, json.dumps(neg).encode(), "1", "ctr1") is None


def test_answers_are_signed_with_the_counters_key():
    hm1 = HMAC256(hallnet.request_key(HALL_KEY, "1"))
    hm2 = HMAC256(hallnet.request_key(HALL_KEY, "2"))
    raw = hallnet.sign(hm1, {"c": "1", "n": 5, "ok": True, "r": {"serving": ["A001", "A"]}, "ts": T0})
    assert hallnet.open_answer(hm1, raw, "1")["r"]["serving"] == ["A001", "A"]
    assert hallnet.open_answer(hm2, raw, "1") is None
    assert hallnet.open_answer(hm1, raw, "2") is None


def _cfg():
    c = {"version": 1, "site": "s", "device": "k", "key": "00" * 16, "role": "kiosk", "hall_key": "11" * 32,
         "hall": {"zh": "大厅", "en": "Hall"},
         "services": [{"code": "A", "prefix": "A", "name": {"zh": "甲", "en": "A"}}],
         "counters": [{"id": "1", "services": ["A"], "staff": "S1", "device": "ctr1"},
                      {"id": "2", "services": ["A"], "staff": "S2", "device": "ctr2"}]}
    assert config.validate(c) == [], config.validate(c)
    return config.normalise(c)


def test_the_kiosk_remembers_each_counters_last_request_across_a_snapshot():
    from firmware import desk
    h = hall_setup.build(_cfg())
    for etype, data in desk.decide_day(h, T0):
        h.apply(etype, data, T0)
    etype, data = h.decide_issue("A", "normal", T0)
    h.apply(etype, data, T0)
    for etype, data in h.decide_next("2", T0):
        data["req"] = 41
        h.apply(etype, data, T0)
    assert h.counter("2").req == 41 and h.counter("1").req == 0
    etype, data = h.decide_finish("2", T0)
    data["req"] = 40                    # an older number never moves it back
    h.apply(etype, data, T0)
    assert h.counter("2").req == 41
    path = tmpdir("hallnet") + "/hall.bin"
    save_hall(h, path, 3, "00" * 16, T0)
    twin = hall_setup.build(_cfg())
    assert read_snapshot(twin, path)[0] == 3
    assert twin.counter("2").req == 41 and twin.counter("1").req == 0


def test_the_validator_knows_the_roles():
    good = _cfg()
    assert config.validate(dict(good, role="all", hall_key=None)) != []      # only a kiosk holds it
    c = dict(good)
    del c["hall_key"]
    assert any(p == "hall_key" for p, _ in config.validate(c))
    bad = json.loads(json.dumps(good))
    bad["counters"][1]["device"] = "ctr1"
    assert any(p == "counters[1].device" for p, _ in config.validate(bad))
    ctr = json.loads(json.dumps(good))
    del ctr["hall_key"]
    for k in ctr["counters"]:
        del k["device"]
    ctr["role"] = "counter"
    ctr["link"] = {"kiosk": "k0", "counter": "1", "request_key": "22" * 32}
    assert config.validate(ctr) == []
    ctr["link"]["counter"] = "9"
    assert any(p == "link.counter" for p, _ in config.validate(ctr))
    ctr["link"] = {"kiosk": "k0", "counter": "1"}
    assert any(p == "link.request_key" for p, _ in config.validate(ctr))
    ctr["hall_key"] = "11" * 32
    assert any(p == "hall_key" for p, _ in config.validate(ctr))
    scr = dict(ctr, role="screen", link={"kiosk": "k0", "calls": 4})
    del scr["hall_key"]
    assert config.validate(scr) == []
    scr["link"] = {"kiosk": "k0", "calls": 40, "counter": "1"}
    paths = [p for p, _ in config.validate(scr)]
    assert "link.calls" in paths and "link.counter" in paths
