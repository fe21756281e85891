"""Tamper-evident event envelope (MQTT contract v1).

An event is published as canonical JSON (firmware/canonical.py) of
    {"v":1,"dev":dev,"boot":boot,"seq":seq,"ts":ts,"type":type,"data":data,"prev":prev,"mac":mac}
- seq: 1 for the device's first event ever, then +1 per event, across reboots.
- prev: chain_hash() of the previous event's payload; ZERO_PREV for seq 1.
- mac: first 32 hex digits (128 bits) of HMAC-SHA256(device key, canonical form of the
  envelope without "mac").
- chain_hash(payload) = first 32 hex digits of SHA-256(payload bytes).
Deleting, altering, inserting or reordering events thus shows as a seq gap, a mac
mismatch or a broken prev link; only the key holder can make a new valid event.
"""
import binascii
import hashlib
import json

from firmware import canonical
from firmware.hmac256 import HMAC256, compare_digest

ZERO_PREV = "0" * 32
_FIELDS = ("boot", "data", "dev", "mac", "prev", "seq", "ts", "type", "v")


class BadMac(ValueError):
    """The envelope is well formed but its mac does not match the key."""


def chain_hash(payload):
    """What the next event's prev must be: hex SHA-256 of payload, 32 digits."""
    return binascii.hexlify(hashlib.sha256(payload).digest()[:16]).decode()


def _mac_hex(hm, body):
    return binascii.hexlify(hm.digest(body)[:16])


class Stamper:
    """Turns (type, data, ts) into signed, chained payloads for one device.

    seq is the last seq used (the next event gets seq + 1) and prev the chain hash
    of that event: persist both with the outbox so they survive a reboot.
    """

    def __init__(self, dev, boot, key, seq=0, prev=ZERO_PREV):
        self.dev = dev
        self.boot = boot
        self.seq = seq
        self.prev = prev
        self._hm = HMAC256(key)
        # Keys sort as boot, data, dev, mac, prev, seq, ts, type, v: the parts before
        # "data" and from "dev" to the mac value are the same for every event.
        self._head = b'{"boot":' + canonical.dumps(boot) + b',"data":'
        self._mid = b',"dev":' + canonical.dumps(dev) + b',"mac":"' + b"0" * 32 + b'",'
        self._buf = bytearray()  # reused: its capacity settles at the largest event

    def stamp(self, type, data, ts):
        """The exact payload bytes to store and publish; advances seq and prev.

        Raises ValueError/TypeError (and changes nothing) if data or ts cannot be
        encoded canonically, e.g. a float.
        """
        if not isinstance(type, str) or not type:
            raise ValueError("event type must be a non-empty str")
        if not isinstance(data, dict):
            raise ValueError("event data must be a dict")
        if not isinstance(ts, int) or ts is True or ts is False:
            raise ValueError("event ts must be int seconds")
        seq = self.seq + 1
        buf = self._buf
        buf[:] = b""  # keeps the allocation
        buf += self._head
        canonical.dump_into(buf, data)
        buf += self._mid
        end = len(buf)  # the mac placeholder ends at end - 2
        buf += b'"prev":'
        canonical.dump_into(buf, self.prev)
        buf += b',"seq":'
        canonical.dump_into(buf, seq)
        buf += b',"ts":'
        canonical.dump_into(buf, ts)
        buf += b',"type":'
        canonical.dump_into(buf, type)
        buf += b',"v":1}'
        # The mac covers the envelope without the "mac":"..", member: both sides of it.
        mv = memoryview(buf)
        mac = self._hm.digest(mv[:end - 41], mv[end:])
        mv[end - 34:end - 2] = binascii.hexlify(mac[:16])
        mv = None  # CPython: no resize of buf while a view is alive
        payload = bytes(buf)
        prev = chain_hash(payload)   # allocates: before anything changes
        self.seq = seq
        self.prev = prev
        return payload


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
