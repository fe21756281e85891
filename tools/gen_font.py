"""Generate firmware/font16.bin, the 16-pixel display font the screens read glyph by glyph from flash.

Source: GNU Unifont as Debian packages it (`apt-get install unifont`, the file
/usr/share/unifont/unifont.hex; licence: GPL-2+ with the GNU font embedding exception,
see /usr/share/doc/xfonts-unifont/README.gz). Nothing is downloaded.

Content:
- ASCII 0x00..0x7F, 8x16: Unifont's glyphs for 0x20..0x7E, a narrow box for the
  control characters and DEL (they should never reach a screen; when they do, they show).
- 16x16 glyphs for every code point firmware/gb2312.py encodes (tools/gen_gb2312.py
  decides: the 6763 hanzi, 682 symbols and two aliases), so whatever a ticket can
  print a screen can show, plus extras a screen may want that GB2312 lacks: circled
  numbers 11-20 and letters, the rest of box drawing and geometric shapes (arrows such
  as a right-pointing triangle), CJK punctuation, full-width forms, typographic dashes
  and quotes.
- Every non-ASCII character is 16 pixels wide, as GB2312 characters are on Chinese LED
  screens, so a line's width follows from its UTF-8 bytes alone (8 px for a byte below
  0x80, 16 px for a multi-byte character) and a screen lays out text without reading the
  font. Unifont draws ~300 of these symbols 8 wide (Greek, Cyrillic, pinyin, most box
  drawing, some shapes); they are centred in the 16-pixel cell, except box drawing and
  the long dashes (U+2014, U+2015), which are stretched to 16 so that lines still join.
- A 16x16 box for anything else (a rare name character such as 堃, emoji, U+FFFD).

File format (version 1, integers big-endian). Bitmaps are rows top to bottom, each row
1 byte (8 wide) or 2 bytes (16 wide), most significant bit = leftmost pixel: the
MONO_HLSB layout of MicroPython's framebuf, and Unifont's own.

    offset       size    field
    0            4       magic b"QF16"
    4            1       version = 1
    5            1       glyph height = 16
    6            2       wide glyph count W
    8            8       reserved, zero
    16           32      the box shown for a missing character (16x16)
    48           2048    ASCII 0x00..0x7F, 16 bytes each (8x16)
    2096         2*W     index: the code points (u16) of the wide glyphs, sorted, unique
    2096+2*W     32*W    wide glyphs in index order (16x16)

A device finds a character by binary search over the index with seek() and a 2-byte
readinto(), then reads its 32 bytes with one seek and readinto(); ASCII is one seek.
The file is ~265 KB, so it stays on flash. Output depends only on the .hex file and
CPython's gb2312 codec: no dates, fixed order, so regenerating gives the same bytes.

Usage: python3 tools/gen_font.py [--hex PATH] [--out PATH] [--check]
"""
import argparse
import os
import struct
import sys

try:  # one definition of "what GB2312 covers", shared with the printer's table
    from tools.gen_gb2312 import build_records
except ImportError:  # run as a script: tools/ is sys.path[0]
    from gen_gb2312 import build_records

_HERE = os.path.dirname(os.path.abspath(__file__))

MAGIC = b"QF16"
VERSION = 1
HEIGHT = 16
HEADER = 16
BOX_AT = HEADER
ASCII_AT = BOX_AT + 32
INDEX_AT = ASCII_AT + 128 * 16

DEFAULT_HEX = "/usr/share/unifont/unifont.hex"
DEFAULT_OUT = os.path.join(os.path.dirname(_HERE), "firmware", "font16.bin")

# Characters beyond GB2312 worth having on a hall screen, taken when Unifont has them.
EXTRA_RANGES = (
    (0x2010, 0x2027),   # dashes, quotes, bullet, ellipsis
    (0x2030, 0x203B),   # per mille, primes, angle quotes, reference mark
    (0x2190, 0x2199),   # arrows incl. diagonals
    (0x2460, 0x24FF),   # circled / parenthesised numbers and letters (11-20 are not in GB2312)
    (0x2500, 0x257F),   # box drawing
    (0x25A0, 0x25FF),   # geometric shapes (triangles as "play"/"next" marks)
    (0x3000, 0x303F),   # CJK punctuation
    (0xFF01, 0xFF5E),   # full-width ASCII forms
    (0xFFE0, 0xFFE6),   # full-width signs
)
# Narrow Unifont glyphs that are lines: stretched, not centred, so neighbours join (——, ───).
STRETCH = ((0x2014, 0x2015), (0x2500, 0x257F))

_WIDE_BOX = bytes(b for r in
                  ([0x0000, 0x7FFE] + [0x4002] * 12 + [0x7FFE, 0x0000])
                  for b in (r >> 8, r & 0xFF))
_NARROW_BOX = bytes([0x00, 0x7E] + [0x42] * 12 + [0x7E, 0x00])


class FontError(Exception):
    pass


def read_hex(path):
    """{code point: bitmap bytes (16 or 32)} from a Unifont .hex file (plane 0 only)."""
    glyphs = {}
    try:
        f = open(path, encoding="ascii")
    except OSError as e:
        raise FontError("cannot read %s: %s (install the Debian package: apt-get install unifont)" % (path, e))
    with f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                cp_hex, bits = line.split(":")
                cp = int(cp_hex, 16)
                data = bytes.fromhex(bits)
            except ValueError:
                raise FontError("%s:%d: not a Unifont .hex line" % (path, n))
            if len(data) not in (16, 32):
                raise FontError("%s:%d: U+%04X is %d bytes, expected 16 or 32" % (path, n, cp, len(data)))
            if cp <= 0xFFFF:
                glyphs[cp] = data
    return glyphs


def _in(cp, ranges):
    return any(lo <= cp <= hi for lo, hi in ranges)


def _widen(cp, narrow):
    """A 16x16 bitmap from an 8x16 one: stretched for lines, centred for everything else."""
    out = bytearray()
    for b in narrow:
        if _in(cp, STRETCH):
            row = 0
            for bit in range(8):
                if b & (0x80 >> bit):
                    row |= 0xC000 >> (2 * bit)
        else:
            row = b << 4
        out += bytes((row >> 8, row & 0xFF))
    return bytes(out)


def wide_set(glyphs):
    """Sorted code points of the 16x16 section; every GB2312 one must be in the font."""
    gb = [cp for cp, _ in build_records()]
    missing = [cp for cp in gb if cp not in glyphs]
    if missing:
        raise FontError("the font lacks %d GB2312 characters, e.g. %s"
                        % (len(missing), " ".join("U+%04X" % cp for cp in missing[:8])))
    cps = set(gb)
    for lo, hi in EXTRA_RANGES:
        cps.update(cp for cp in range(lo, hi + 1) if cp in glyphs)
    return sorted(cp for cp in cps if cp >= 0x80)


def font_bytes(glyphs):
    """The whole font16.bin for the glyphs read from a .hex file."""
    wide = wide_set(glyphs)
    out = bytearray(MAGIC)
    out += struct.pack(">BBH", VERSION, HEIGHT, len(wide))
    out += bytes(8)
    out += _WIDE_BOX
    for cp in range(128):
        g = glyphs.get(cp) if 0x20 <= cp < 0x7F else None
        if g is None or len(g) != 16:
            if 0x20 <= cp < 0x7F:
                raise FontError("the font has no 8x16 glyph for ASCII %r" % chr(cp))
            g = _NARROW_BOX
        out += g
    assert len(out) == INDEX_AT
    for cp in wide:
        out += struct.pack(">H", cp)
    for cp in wide:
        g = glyphs[cp]
        out += g if len(g) == 32 else _widen(cp, g)
    return bytes(out)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Generate the 16-pixel display font (font16.bin) for the qterm screens from GNU Unifont.")
    ap.add_argument("--hex", default=DEFAULT_HEX,
                    help="Unifont .hex source (default: %(default)s, Debian package unifont)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="where to write the font (default: %(default)s)")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if --out differs from what the source gives")
    args = ap.parse_args(argv)
    try:
        data = font_bytes(read_hex(args.hex))
    except FontError as e:
        print("gen_font: %s" % e, file=sys.stderr)
        return 1
    count = struct.unpack(">H", data[6:8])[0]
    if args.check:
        try:
            with open(args.out, "rb") as f:
                same = f.read() == data
        except OSError as e:
            print("gen_font: cannot read %s: %s" % (args.out, e), file=sys.stderr)
            return 1
        print("%s %s %s" % (args.out, "matches" if same else "DIFFERS from", args.hex))
        return 0 if same else 1
    try:
        with open(args.out, "wb") as f:
            f.write(data)
    except OSError as e:
        print("gen_font: cannot write %s: %s" % (args.out, e), file=sys.stderr)
        return 1
    print("wrote %s: 128 ASCII + %d wide glyphs, %d bytes" % (args.out, count, len(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
