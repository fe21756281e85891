"""HMAC-SHA256 (RFC 2104) on hashlib.sha256, because MicroPython ships no hmac module.

    hmac_sha256(key, msg) -> 32 bytes
    HMAC256(key).digest(msg)          # pads prepared once, for a key used per event
    compare_digest(a, b) -> bool      # time independent of where a and b differ
"""
import hashlib

_BLOCK = 64  # SHA-256 block size in bytes


class HMAC256:
    """One key, many messages: the RFC 2104 inner/outer pads are built once. (Each digest
    hashes a pad again: MicroPython's sha256 objects cannot be copied.)"""

    def __init__(self, key):
        if isinstance(key, str):
            raise TypeError("key: bytes")
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        ipad = bytearray(_BLOCK)
        opad = bytearray(_BLOCK)
        n = len(key)
        for i in range(_BLOCK):
            k = key[i] if i < n else 0
            ipad[i] = k ^ 0x36
            opad[i] = k ^ 0x5C
        self._ipad = bytes(ipad)
        self._opad = bytes(opad)

    def digest(self, msg, more=None):
        """HMAC of msg (+ more, if given, as if concatenated) as 32 bytes."""
        h = hashlib.sha256(self._ipad)
        h.update(msg)
        if more is not None:
            h.update(more)
        inner = h.digest()
        h = hashlib.sha256(self._opad)
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
