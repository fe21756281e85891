"""The hall protocol (contract v1 addition): counters ask the kiosk, the kiosk answers.

Topics, under the kiosk's root `qterm/v1/<site>/<kiosk>/`:
    hall/req/<counter id>   counter -> kiosk, QoS 0
    hall/ans/<counter id>   kiosk -> counter, QoS 0
QoS 0 on purpose: a request the broker could not hand over at once is never delivered minutes
later (a late `next` would call a citizen nobody is waiting for); the counter re-sends the same
request itself while it still wants it, and the kiosk applies a request number once.

Request  {"a": {args}, "c": counter id, "dev": counter device, "n": request number, "op": op,
          "ts": counter clock, "mac": 32 hex}
Answer   {"c": counter id, "n": request number, "ok": bool, "r": {result}, "ts": kiosk clock,
          "mac": 32 hex}
mac = the first 16 bytes (hex) of HMAC-SHA256(request key, canonical JSON of the rest).

Keys: the kiosk holds the hall key; counter <id>'s request key is
HMAC-SHA256(hall key, "qterm-hall-request/" + id), provisioned into that counter only. A
counter can therefore sign (and check answers) for itself alone: a compromised counter cannot
act for another, and no device holds another's event-signing key (request keys sign nothing
that is kept). Pure logic: CPython and MicroPython.
"""
import binascii
import json

from firmware import canonical
from firmware.hmac256 import HMAC256, hmac_sha256, compare_digest

VERSION = 1
MAX_BYTES = 1024        # a request or answer is ~200 bytes; anything larger is refused unread
_REQ = ("a", "c", "dev", "mac", "n", "op", "ts")
_ANS = ("c", "mac", "n", "ok", "r", "ts")


def request_key(hall_key, cid):
    """Counter cid's request key (bytes) from the hall key (bytes)."""
    return hmac_sha256(hall_key, b"qterm-hall-request/" + cid.encode())


def topic(base, kind, cid):
    """base = the kiosk's `qterm/v1/<site>/<kiosk>/`; kind 'req' or 'ans'."""
    return base + "hall/" + kind + "/" + cid


def _mac(hm, body):
    return binascii.hexlify(hm.digest(canonical.dumps(body))).decode()[:32]


def sign(hm, body):
    """The message bytes: body (a dict without mac) with its mac added."""
    body["mac"] = _mac(hm, body)
    return json.dumps(body).encode()


def _open(hm, raw, fields):
    """The dict in raw if it is well-formed and signed with hm's key, else None."""
    if not raw or len(raw) > MAX_BYTES:    # (None: too large, False: no memory for it)
        return None
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeError):
        return None
    if not isinstance(msg, dict) or sorted(msg.keys()) != list(fields):
        return None
    mac = msg.pop("mac")
    if not isinstance(mac, str):
        return None
    try:
        want = _mac(hm, msg)
    except (ValueError, TypeError):
        return None
    return msg if compare_digest(want.encode(), mac.encode()) else None


def open_request(hm, raw, cid, device):
    """A request from counter cid (device `device`) or None: forged, altered, malformed, for
    another counter or from another device."""
    m = _open(hm, raw, _REQ)
    if m is None or m["c"] != cid or m["dev"] != device or not isinstance(m["op"], str) \
            or not isinstance(m["a"], dict) or not _count(m["n"]) or not _count(m["ts"]):
        return None
    return m


def open_answer(hm, raw, cid):
    m = _open(hm, raw, _ANS)
    if m is None or m["c"] != cid or not _count(m["n"]) or not _count(m["ts"]) or not isinstance(m["r"], dict):
        return None
    return m


def _count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def keyed(key_hex):
    return HMAC256(binascii.unhexlify(key_hex))
