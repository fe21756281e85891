"""sim/hallconf.py: a simulated hall's configs are valid and keyed as a real hall's must be."""
import binascii
import hashlib
import hmac
import json
import os

import pytest

from firmware import config
from sim import hallconf
from tools.verify import load_keystore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "sim", "config.example.json")


@pytest.mark.parametrize("n", [1, 2, 5])
def test_every_config_validates_and_names_are_unique(n):
    hall = hallconf.make_hall(TEMPLATE, n)
    assert sorted(hall) == sorted(["kiosk", "screen"] + ["ctr%d" % i for i in range(1, n + 1)])
    for name, cfg in hall.items():
        assert config.validate(cfg) == [], (name, config.describe(config.validate(cfg)))
        assert cfg["device"] == name
    assert len({c["device"] for c in hall.values()}) == len(hall)
    assert len({c["key"] for c in hall.values()}) == len(hall), "each device has its own event key"
    assert len({c["site"] for c in hall.values()}) == 1


def test_roles_links_and_shared_counters():
    hall = hallconf.make_hall(TEMPLATE, 3, site="hallX")
    kiosk, screen = hall["kiosk"], hall["screen"]
    assert kiosk["role"] == "kiosk" and screen["role"] == "screen"
    assert screen["link"] == {"kiosk": "kiosk", "calls": 4}
    assert screen["voice"] is True and kiosk["voice"] is False
    assert [c["device"] for c in kiosk["counters"]] == ["ctr1", "ctr2", "ctr3"]
    plain = [{k: v for k, v in c.items() if k != "device"} for c in kiosk["counters"]]
    assert plain[1] == {"id": "2", "name": {"zh": "2号窗口", "en": "Counter 2"},
                        "services": ["B", "A"], "staff": "S002"}
    assert plain[0]["services"] == ["A", "B"]
    for cfg in hall.values():
        assert cfg["site"] == "hallX"
        if cfg is not kiosk:
            assert cfg["counters"] == plain, "the counters list is the same on every device"
    for i in (1, 2, 3):
        ctr = hall["ctr%d" % i]
        assert ctr["role"] == "counter" and ctr["voice"] is False
        assert ctr["link"]["kiosk"] == "kiosk" and ctr["link"]["counter"] == str(i)


def test_request_keys_derive_from_the_kiosk_hall_key_which_only_the_kiosk_holds():
    hall = hallconf.make_hall(TEMPLATE, 3)
    hall_key = bytes.fromhex(hall["kiosk"]["hall_key"])
    assert len(hall_key) == 32
    for name, cfg in hall.items():
        if name != "kiosk":
            assert "hall_key" not in cfg
            assert hall["kiosk"]["hall_key"] not in json.dumps(cfg)
        if cfg["role"] == "counter":
            cid = cfg["link"]["counter"]
            want = hmac.new(hall_key, b"qterm-hall-request/" + cid.encode(), hashlib.sha256).hexdigest()
            assert cfg["link"]["request_key"] == want
    other = hallconf.make_hall(TEMPLATE, 3)
    assert other["kiosk"]["hall_key"] != hall["kiosk"]["hall_key"], "a fresh hall key per hall"


def test_keystore_is_what_verify_reads(tmp_path):
    hall = hallconf.make_hall(TEMPLATE, 2)
    path = tmp_path / "keystore.json"
    path.write_text(json.dumps(hallconf.keystore(hall)))
    keys = load_keystore(str(path))
    assert keys == {name: binascii.unhexlify(cfg["key"]) for name, cfg in hall.items()}


def test_a_template_from_a_hall_device_does_not_leak_its_keys(tmp_path):
    kiosk = hallconf.make_hall(TEMPLATE, 1)["kiosk"]
    t = tmp_path / "t.json"
    t.write_text(json.dumps(kiosk))
    hall = hallconf.make_hall(str(t), 2)
    assert hall["kiosk"]["hall_key"] != kiosk["hall_key"]
    for cfg in hall.values():
        assert config.validate(cfg) == []


def test_no_counters_is_refused():
    with pytest.raises(ValueError):
        hallconf.make_hall(TEMPLATE, 0)
