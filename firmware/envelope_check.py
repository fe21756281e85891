"""Checking event envelopes (the backend's side of firmware/envelope.py): shape, then mac.

Pure logic shared by tools/verify.py and tools/monitor.py, runnable under MicroPython too; the
device itself never loads it.
"""
import binascii
import json

from firmware import canonical
from firmware.hmac256 import HMAC256, compare_digest

_FIELDS = ("boot", "data", "dev", "mac", "prev", "seq", "ts", "type", "v")


class BadMac(ValueError):
    """The envelope is well formed but its mac does not match the key."""


def _mac_hex(hm, body):
    return binascii.hexlify(hm.digest(body)[:16])


def _is_hex32(s):
    if not isinstance(s, str) or len(s) != 32:
        return False
    for c in s:
        if c not in "0123456789abcdef":
            return False
    return True


def parse(payload):
    """Parse payload and check the envelope's shape (not its mac); the dict or ValueError."""
    try:
        env = json.loads(payload)
    except (ValueError, TypeError, UnicodeError):
        raise ValueError("not JSON")
    if not isinstance(env, dict):
        raise ValueError("not a JSON object")
    if "mac" not in env:
        raise ValueError("no mac")
    for k in env:
        if k not in _FIELDS:
            raise ValueError("unexpected field %s" % k)
    for k in _FIELDS:
        if k not in env:
            raise ValueError("missing field %s" % k)
    v = env["v"]
    if not isinstance(v, int) or v is True or v != 1:
        raise ValueError("unknown envelope version")
    if not isinstance(env["dev"], str) or not env["dev"]:
        raise ValueError("bad dev")
    seq = env["seq"]
    if not isinstance(seq, int) or seq is True or seq < 1:
        raise ValueError("bad seq")
    ts = env["ts"]
    if not isinstance(ts, int) or ts is True or ts is False:
        raise ValueError("bad ts")
    if not isinstance(env["type"], str) or not env["type"]:
        raise ValueError("bad type")
    if not isinstance(env["data"], dict):
        raise ValueError("bad data")
    if not _is_hex32(env["prev"]):
        raise ValueError("bad prev")
    if not _is_hex32(env["mac"]):
        raise ValueError("bad mac format")
    return env


def verify(env, key):
    """Raise BadMac unless env (a parsed envelope) carries the right mac for key."""
    body = {}
    for k in env:
        if k != "mac":
            body[k] = env[k]
    want = _mac_hex(HMAC256(key), canonical.dumps(body))
    if not compare_digest(want, env["mac"]):
        raise BadMac("bad mac")


def check(payload, key):
    """Parse payload, check the envelope shape and its mac under key; the dict or ValueError."""
    env = parse(payload)
    verify(env, key)
    return env
