"""HMAC-SHA256 (RFC 2104) on hashlib.sha256, because MicroPython ships no hmac module.

    hmac_sha256(key, msg) -> 32 bytes
    HMAC256(key).digest(msg)          # pads prepared once, for a key used per event
    compare_digest(a, b) -> bool      # time independent of where a and b differ
"""
import hashlib

_BLOCK = 64  # SHA-256 block size in bytes

# CPython's sha256 objects can be copied, so the padded-key block is hashed once per key;
# MicroPython's cannot, so there the block is hashed again on each call (same result).
_CAN_COPY = hasattr(hashlib.sha256(), "copy")


def _pads(key):
    if isinstance(key, str):
        raise TypeError("hmac key must be bytes")
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    ipad = bytearray(_BLOCK)
    opad = bytearray(_BLOCK)
    n = len(key)
    for i in range(_BLOCK):
        k = key[i] if i < n else 0
        ipad[i] = k ^ 0x36
        opad[i] = k ^ 0x5C
    return bytes(ipad), bytes(opad)


class HMAC256:
    """One key, many messages: the RFC 2104 inner/outer pads are built once."""

    def __init__(self, key):
        self._ipad, self._opad = _pads(key)
        if _CAN_COPY:
            self._inner = hashlib.sha256(self._ipad)
            self._outer = hashlib.sha256(self._opad)

    def _start(self, outer):
        if _CAN_COPY:
            return (self._outer if outer else self._inner).copy()
        return hashlib.sha256(self._opad if outer else self._ipad)

    def digest(self, msg, more=None):
        """HMAC of msg (+ more, if given, as if concatenated) as 32 bytes."""
        h = self._start(False)
        h.update(msg)
        if more is not None:
            h.update(more)
        inner = h.digest()
        h = self._start(True)
        h.update(inner)
        return h.digest()


def hmac_sha256(key, msg):
    """RFC 2104 HMAC-SHA256 of msg under key (both bytes-like); 32 bytes."""
    return HMAC256(key).digest(msg)


def compare_digest(a, b):
    """Equal-length byte/str comparison that does not stop at the first difference."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
