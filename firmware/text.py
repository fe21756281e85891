"""Text that may be copied into a signed event: the one place that decides.

Ids, staff numbers, reasons and appointment ids come from a keypad or the backend and end
up in events that are signed and kept for years; what a reader's screen shows must be
what was signed. So such text is valid UTF-8 (no overlong forms, surrogates or code points
above U+10FFFF) holding no C0/C1 control, DEL, bidi mark/embedding/override/isolate
(U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069), zero-width or invisible format
character (U+200B-U+200D, U+2060-U+206F, tags U+E0000-U+E007F), BOM U+FEFF, line or
paragraph separator (U+2028, U+2029) and no noncharacter.

The check runs over the BYTES: MicroPython's json.loads puts invalid UTF-8 (e.g. F4 90 80 80)
into a str unchanged, and ord() of such a character says nothing reliable.
Loaded with the modules that need it (commands, desk) and released with them.
"""


def _bytes(s):
    # CPython refuses to encode a lone surrogate unless asked; MicroPython ignores the
    # arguments and returns the bytes it holds. Either way a surrogate shows as ED A0..BF.
    return s.encode("utf-8", "surrogatepass")


def _next(b, i):
    """(end, code point) of the UTF-8 sequence at b[i]; code point -1 when it is malformed
    (then the sequence ends after its first byte)."""
    c = b[i]
    if c < 0x80:
        return i + 1, c
    if c < 0xC2 or c > 0xF4:  # continuation byte, overlong 2-byte lead, beyond U+10FFFF
        return i + 1, -1
    n = 1 if c < 0xE0 else 2 if c < 0xF0 else 3
    if i + n >= len(b):
        return i + 1, -1
    cp = c & (0x3F >> n)
    for k in range(i + 1, i + n + 1):
        if b[k] & 0xC0 != 0x80:
            return i + 1, -1
        cp = cp << 6 | b[k] & 0x3F
    if cp < (0x80, 0x800, 0x10000)[n - 1] or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
        return i + 1, -1  # overlong, too large, or a surrogate
    return i + n + 1, cp


def _allowed(cp):
    if cp < 0xA0:
        return 0x20 <= cp < 0x7F  # also refuses -1 (malformed)
    if cp & 0xFFFE == 0xFFFE or 0xFDD0 <= cp <= 0xFDEF:  # noncharacters
        return False
    return not (cp == 0x061C or 0x200B <= cp <= 0x200F or 0x2028 <= cp <= 0x202E
                or 0x2060 <= cp <= 0x206F or cp == 0xFEFF or 0xE0000 <= cp <= 0xE007F)


def ok(s, limit=64):
    """True when s is a str of 1..limit characters that may go into a signed event."""
    if not isinstance(s, str) or not s or len(s) > limit:
        return False
    b = _bytes(s)
    i = 0
    while i < len(b):
        i, cp = _next(b, i)
        if not _allowed(cp):
            return False
    return True


def clean(s, limit=64):
    """Sender text as it may appear in a signed event (None stays None): the allowed
    characters kept, "?" for every other character or malformed byte, at most limit
    characters."""
    if not isinstance(s, str):
        return None
    b = _bytes(s)
    out = bytearray()
    i = n = 0
    while i < len(b) and n < limit:
        j, cp = _next(b, i)
        if _allowed(cp):
            out += b[i:j]
        else:
            out.append(0x3F)
        i = j
        n += 1
    return str(out, "utf-8")
