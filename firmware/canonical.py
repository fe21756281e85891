r"""Canonical JSON: the one byte form of a value that device and backend both sign and hash.

Canonical form (qterm v1), produced by dumps(obj) -> bytes:
- Output is UTF-8 bytes with no whitespace outside strings and no trailing newline.
- null, true, false are written as such.
- Integers are written in decimal: optional "-", no leading zeros, no "+", no
  fraction, no exponent ("0", "-7", "1700000000"). Booleans are not integers.
- Floats are rejected with ValueError (their text form differs between
  implementations); carry durations in whole seconds or milliseconds instead.
- Strings are written between double quotes. Only these characters are escaped:
  " as \"   \ as \\   and each control character U+0000..U+001F as \u00XX with
  two LOWERCASE hex digits (a newline is \u000a, never \n). Everything else,
  including "/", U+007F and all non-ASCII characters, is written as raw UTF-8.
  Strings holding lone surrogates (not valid Unicode) are rejected with ValueError.
- Objects: { "key":value members separated by "," }. Keys must be strings
  (TypeError otherwise), sorted by the bytes of their UTF-8 encoding, which is the
  same as Unicode code point order. The empty object is {}.
- Arrays (lists and tuples): [ values separated by "," ]. The empty array is [].
- Any other type raises TypeError.
Example: dumps({"b": [1, True, None], "a": "é" + chr(10)}) is the UTF-8 of
         {"a":"é\u000a","b":[1,true,null]}
"""

# Error messages are short on purpose: one of more than 10 characters costs a string object
# in RAM on the device, and the exception type says most of it. Likewise every bytes literal
# is an object in RAM: single punctuation bytes are appended as numbers instead.
try:
    from micropython import const
except ImportError:  # CPython; not a def: even unused, its code would take RAM on the device
    const = int      # the constants here are ints, and int(x) is x

_QUOTE = const(0x22)      # "
_COMMA = const(0x2C)      # ,
_COLON = const(0x3A)      # :
_LBRACKET = const(0x5B)   # [
_BACKSLASH = const(0x5C)  # \
_RBRACKET = const(0x5D)   # ]
_LBRACE = const(0x7B)     # {
_RBRACE = const(0x7D)     # }
_HEX = b"0123456789abcdef"


def dumps(obj):
    """Canonical JSON bytes of obj."""
    buf = bytearray()
    dump_into(buf, obj)
    return bytes(buf)


def dump_into(buf, obj):
    """Append the canonical form of obj to the bytearray buf."""
    # `is` tests first: True/False are ints in CPython.
    if obj is None:
        buf += b"null"
    elif obj is True:
        buf += b"true"
    elif obj is False:
        buf += b"false"
    elif isinstance(obj, str):
        _string(buf, obj)
    elif isinstance(obj, int):
        buf += b"%d" % obj
    elif isinstance(obj, float):
        raise ValueError("no floats")
    elif isinstance(obj, dict):
        buf.append(_LBRACE)
        first = True
        for k in sorted(obj):
            if not isinstance(k, str):
                raise TypeError("key type")
            if not first:
                buf.append(_COMMA)
            first = False
            _string(buf, k)
            buf.append(_COLON)
            dump_into(buf, obj[k])
        buf.append(_RBRACE)
    elif isinstance(obj, (list, tuple)):
        buf.append(_LBRACKET)
        first = True
        for v in obj:
            if not first:
                buf.append(_COMMA)
            first = False
            dump_into(buf, v)
        buf.append(_RBRACKET)
    else:
        raise TypeError(type(obj).__name__)


def _string(buf, s):
    # Scan the UTF-8 bytes, not the characters: every byte that needs escaping is
    # ASCII, and multi-byte sequences only hold bytes >= 0x80, so this is exact and
    # allocates nothing per character.
    b = s.encode()  # CPython raises UnicodeEncodeError (a ValueError) on surrogates
    n = len(b)
    buf.append(_QUOTE)
    start = 0
    for i in range(n):
        c = b[i]
        if c < 0x20 or c == _QUOTE or c == _BACKSLASH:
            if start < i:
                buf += b[start:i]
            if c >= 0x20:   # \" and \\
                buf.append(_BACKSLASH)
                buf.append(c)
            else:
                buf += b"\\u00"
                buf.append(_HEX[c >> 4])
                buf.append(_HEX[c & 15])
            start = i + 1
        elif c == 0xED and i + 1 < n and b[i + 1] >= 0xA0:
            # MicroPython stores surrogates as ED A0..BF xx; CPython refuses them above.
            raise ValueError("surrogate")
    if start == 0:
        buf += b
    elif start < n:
        buf += b[start:]
    buf.append(_QUOTE)
