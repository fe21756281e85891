"""The screens' 16-pixel font, read glyph by glyph from font16.bin on flash.

The file (~265 KB; format and source: tools/gen_font.py) never sits in RAM: a glyph is
one seek() and readinto() into a 32-byte buffer this object owns, after a binary search
of the code point index (2-byte reads) that a small direct-mapped cache skips for the
characters a screen repeats (请 号 窗 口 on every call). Open one Font per render job
and close it after: an open file costs heap while it is open.

Widths: 8 px for a code point below 0x80 (control characters and DEL as a narrow box),
16 px for everything else; a character the font lacks is a 16x16 box.
"""
import array

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_HEADER = const(16)
_BOX = const(16)          # the missing-character box, 32 bytes
_ASCII = const(48)        # 128 glyphs of 16 bytes
_INDEX = const(2096)      # W code points of 2 bytes, then W glyphs of 32 bytes
_NONE = const(0xFFFF)     # cached "not in the font"


def default_path():
    try:
        here = __file__
    except NameError:  # frozen module: no file beside it
        return "firmware/font16.bin"
    cut = here.rfind("/")
    return (here[:cut + 1] if cut >= 0 else "") + "font16.bin"


class Font:
    """A glyph source bound to one open font file.

    glyph(cp) returns the width and leaves the bitmap in `buf` (MONO_HLSB rows: 1 byte a
    row for 8 px, 2 for 16), which the next call overwrites. Raises OSError/ValueError
    at construction only, when the file is missing, not a font or truncated.
    """

    def __init__(self, path=None, cache=32):
        self.path = path or default_path()
        self.buf = bytearray(32)
        self._half = memoryview(self.buf)[:16]
        self._key = bytearray(2)
        f = self._f = open(self.path, "rb")
        head = bytearray(_HEADER)
        ok = f.readinto(head) == _HEADER and head[0:4] == b"QF16" and head[4] == 1 and head[5] == 16
        self.count = head[6] << 8 | head[7]
        if ok:
            self._glyphs = _INDEX + 2 * self.count
            ok = f.seek(0, 2) == self._glyphs + 32 * self.count
        if not ok:
            f.close()
            raise ValueError("%s: not a complete version 1 font" % self.path)
        size = 1
        while size < cache:  # a power of two, so "cp & mask" picks the slot
            size <<= 1
        self._mask = size - 1
        self._keys = array.array("H", bytes(2 * size))  # 0 = empty: never a key (cp >= 0x80)
        self._slots = array.array("H", bytes(2 * size))

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def glyph(self, cp):
        """Width in pixels (8 or 16) of code point cp's glyph, whose bitmap is now in self.buf."""
        f = self._f
        try:
            if cp < 0x80:
                f.seek(_ASCII + 16 * cp)
                f.readinto(self._half)
                return 8
            slot = _NONE
            if cp <= 0xFFFF:
                i = cp & self._mask
                if self._keys[i] == cp:
                    slot = self._slots[i]
                else:
                    slot = self._find(cp)
                    self._keys[i] = cp
                    self._slots[i] = slot
            f.seek(_BOX if slot == _NONE else self._glyphs + 32 * slot)
            f.readinto(self.buf)
        except OSError:  # flash read failed: a blank cell now, read again next time
            buf = self.buf
            for i in range(32):
                buf[i] = 0
        return 8 if cp < 0x80 else 16

    def _find(self, cp):
        """Index of cp in the font's sorted code point list, or _NONE."""
        f = self._f
        key = self._key
        lo = 0
        hi = self.count - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            f.seek(_INDEX + 2 * mid)
            f.readinto(key)
            k = key[0] << 8 | key[1]
            if k == cp:
                return mid
            if k < cp:
                lo = mid + 1
            else:
                hi = mid - 1
        return _NONE
