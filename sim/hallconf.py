"""The configs of a simulated hall: one kiosk, counters ctr1..ctrN, one screen (host CPython).

Every device is the example config with its own name and event key; only the kiosk holds the
hall key, each counter holds the request key derived from it for its own id
(firmware/hallnet.py), so the hall is built the way a technician provisions a real one.
"""
import binascii
import copy
import json
import os

from firmware import hallnet

KIOSK = "kiosk"
SCREEN = "screen"
CALLS = 4       # lines on the hall call screen


def counter_device(cid):
    return "ctr" + cid


def _hex_key():
    return binascii.hexlify(os.urandom(32)).decode()


def _counters(n):
    """The counters list every device shares (the kiosk's gets each counter's device)."""
    out = []
    for i in range(1, n + 1):
        cid = str(i)
        out.append({"id": cid, "name": {"zh": cid + "号窗口", "en": "Counter " + cid},
                    "services": ["A", "B"] if i % 2 else ["B", "A"], "staff": "S%03d" % i})
    return out


def make_hall(template_path, n_counters, site=None):
    """{device name: config} for a hall of n_counters counters built from the template."""
    if n_counters < 1:
        raise ValueError("a hall needs at least one counter")
    with open(template_path, encoding="utf-8") as f:
        template = json.load(f)
    for k in ("hall_key", "link"):   # a template from a hall device must not leak its keys
        template.pop(k, None)
    if site is not None:
        template["site"] = site
    hall_key = _hex_key()
    counters = _counters(n_counters)

    def device(name, role, voice):
        cfg = copy.deepcopy(template)
        cfg.update(device=name, role=role, key=_hex_key(), voice=voice, counters=copy.deepcopy(counters))
        return cfg

    kiosk = device(KIOSK, "kiosk", False)
    kiosk["hall_key"] = hall_key
    for c in kiosk["counters"]:
        c["device"] = counter_device(c["id"])
    out = {KIOSK: kiosk}
    for c in counters:
        cfg = device(counter_device(c["id"]), "counter", False)
        rk = hallnet.request_key(binascii.unhexlify(hall_key), c["id"])
        cfg["link"] = {"kiosk": KIOSK, "counter": c["id"], "request_key": binascii.hexlify(rk).decode()}
        out[cfg["device"]] = cfg
    screen = device(SCREEN, "screen", True)
    screen["link"] = {"kiosk": KIOSK, "calls": CALLS}
    out[SCREEN] = screen
    return out


def keystore(configs):
    """{device: {"key": hex}}: what tools/verify.py load_keystore reads to check events."""
    return {name: {"key": cfg["key"]} for name, cfg in configs.items()}
