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
The device only stamps; checking an envelope is firmware/envelope_check.py (the backend's
side, kept apart so the device holds no RAM for it).
"""
import binascii
import hashlib

from firmware import canonical
from firmware.hmac256 import HMAC256

ZERO_PREV = "00000000000000000000000000000000"   # a literal: "0" * 32 would be built in RAM


def chain_hash(payload):
    """What the next event's prev must be: hex SHA-256 of payload, 32 digits."""
    return binascii.hexlify(hashlib.sha256(payload).digest()[:16]).decode()


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
        self.hm = HMAC256(key)   # the device key's HMAC (commands are checked with it too)
        # Keys sort as boot, data, dev, mac, prev, seq, ts, type, v: the parts before
        # "data" and from "dev" to "prev" are the same for every event. (Each part is one
        # bytes literal: on the device every literal is an object in RAM.)
        self._head = b'{"boot":%s,"data":' % canonical.dumps(boot)
        self._mid = b',"dev":%s,"mac":"00000000000000000000000000000000","prev":' % canonical.dumps(dev)
        self._buf = bytearray()  # reused: its capacity settles at the largest event

    def stamp(self, type, data, ts):
        """The exact payload bytes to store and publish; advances seq and prev.

        Raises ValueError/TypeError (and changes nothing) if data or ts cannot be
        encoded canonically, e.g. a float.
        """
        if not isinstance(type, str) or not type:
            raise ValueError("type")
        if not isinstance(data, dict):
            raise ValueError("data")
        if not isinstance(ts, int) or ts is True or ts is False:
            raise ValueError("ts")
        seq = self.seq + 1
        buf = self._buf
        buf[:] = self._head  # keeps the allocation
        canonical.dump_into(buf, data)
        buf += self._mid
        end = len(buf) - 7  # after the mac member: the placeholder ends at end - 2
        canonical.dump_into(buf, self.prev)
        buf += b',"seq":%d,"ts":%d,"type":' % (seq, ts)   # ints: canonical is plain %d
        canonical.dump_into(buf, type)
        buf += b',"v":1}'
        # The mac covers the envelope without the "mac":"..", member: both sides of it.
        mv = memoryview(buf)
        mac = self.hm.digest(mv[:end - 41], mv[end:])
        mv[end - 34:end - 2] = binascii.hexlify(mac[:16])
        mv = None  # CPython: no resize of buf while a view is alive
        payload = bytes(buf)
        prev = chain_hash(payload)   # allocates: before anything changes
        self.seq = seq
        self.prev = prev
        return payload
