"""HMAC-SHA256 against the RFC 4231 test vectors (runs under CPython and MicroPython)."""
import binascii

from firmware.hmac256 import HMAC256, compare_digest, hmac_sha256


def _h(s):
    return binascii.unhexlify(s)


# (key, data, expected HMAC-SHA-256) from RFC 4231 section 4, test cases 1-4, 6, 7.
_RFC4231 = (
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (_h("0102030405060708090a0b0c0d0e0f10111213141516171819"), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data."
     b" The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def test_rfc4231_vectors():
    for key, data, want in _RFC4231:
        got = hmac_sha256(key, data)
        assert len(got) == 32
        assert binascii.hexlify(got).decode() == want, want


def test_rfc4231_case5_truncated_to_128_bits():
    got = hmac_sha256(b"\x0c" * 20, b"Test With Truncation")
    assert binascii.hexlify(got[:16]).decode() == "a3b6167473100ee06e0c796c2955552b"


def test_class_reuses_key_for_many_messages():
    hm = HMAC256(b"Jefe")
    for _ in range(3):
        got = hm.digest(b"what do ya want for nothing?")
        assert binascii.hexlify(got).decode() == _RFC4231[1][2]
    key, data, want = _RFC4231[5]
    assert binascii.hexlify(HMAC256(key).digest(data)).decode() == want


def test_two_part_message_equals_concatenation():
    hm = HMAC256(b"\xaa" * 131)
    msg = _RFC4231[5][1]
    assert hm.digest(msg[:40], msg[40:]) == hm.digest(msg)
    assert hm.digest(bytearray(msg)) == hm.digest(msg)
    assert hm.digest(memoryview(msg)[:10], memoryview(msg)[10:]) == hm.digest(msg)


def test_key_edge_lengths():
    # 64 bytes is used as is, 65 is hashed first: both differ from each other and from empty.
    a = hmac_sha256(b"k" * 64, b"m")
    b = hmac_sha256(b"k" * 65, b"m")
    c = hmac_sha256(b"", b"m")
    assert a != b and b != c and a != c
    # A key longer than a block is equivalent to its SHA-256 digest (RFC 2104).
    import hashlib
    long_key = b"x" * 200
    assert hmac_sha256(long_key, b"m") == hmac_sha256(hashlib.sha256(long_key).digest(), b"m")


def test_str_key_refused():
    try:
        hmac_sha256("secret", b"m")
    except TypeError:
        return
    raise AssertionError("str key accepted")


def test_compare_digest():
    assert compare_digest(b"abc", b"abc")
    assert not compare_digest(b"abc", b"abd")
    assert not compare_digest(b"abc", b"ab")
    assert compare_digest("0f0f", b"0f0f")
    assert not compare_digest("0f0f", "0f0e")
    assert compare_digest(b"", b"")
