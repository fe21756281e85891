"""Generate firmware/gb2312.bin, the Unicode -> GB2312 table the printer code reads from flash.

The table comes from CPython's own 'gb2312' codec: every code point in the Basic
Multilingual Plane that the codec encodes to one two-byte GB2312 code (all 7445
characters: the 682 symbols of rows 1-9 and the 6763 hanzi of rows 16-87).
Two aliases are added because text typed on current systems uses the GB18030 /
Unicode forms of two GB2312 cells that CPython's codec maps elsewhere:
U+00B7 MIDDLE DOT -> A1A4 (used in names such as 阿依古丽·买买提) and
U+2014 EM DASH -> A1AA.

File format (version 1, all integers big-endian):

    offset  size  field
    0       4     magic b"GB23"
    4       1     version = 1
    5       1     record size = 4
    6       2     record count N
    8       4*N   records: Unicode code point (u16), GB2312 code (u16, both bytes
                  0xA1..0xFE, first byte = row + 0xA0), sorted by code point, unique

The device finds a character by binary search over the records with seek() and
readinto() into a 4-byte buffer, so the ~30 KB table never sits in RAM.

Usage: python3 tools/gen_gb2312.py [--out PATH]
"""
import argparse
import os
import struct
import sys

MAGIC = b"GB23"
VERSION = 1
RECORD = 4
ALIASES = {0x00B7: b"\xa1\xa4", 0x2014: b"\xa1\xaa"}

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(_ROOT, "firmware", "gb2312.bin")


def build_records():
    """Sorted list of (code point, gb code) pairs from CPython's codec plus the aliases."""
    table = {}
    for cp in range(0x80, 0x10000):
        if 0xD800 <= cp < 0xE000:
            continue
        try:
            b = chr(cp).encode("gb2312")
        except UnicodeEncodeError:
            continue
        if len(b) == 2:
            table[cp] = b[0] << 8 | b[1]
    for cp, b in ALIASES.items():
        table.setdefault(cp, b[0] << 8 | b[1])
    return sorted(table.items())


def table_bytes(records):
    out = bytearray(MAGIC)
    out += struct.pack(">BBH", VERSION, RECORD, len(records))
    for cp, gb in records:
        out += struct.pack(">HH", cp, gb)
    return bytes(out)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Generate the Unicode->GB2312 lookup table (gb2312.bin) for the qterm printer.")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="where to write the table (default: %(default)s)")
    args = ap.parse_args(argv)
    records = build_records()
    data = table_bytes(records)
    try:
        with open(args.out, "wb") as f:
            f.write(data)
    except OSError as e:
        print("gen_gb2312: cannot write %s: %s" % (args.out, e), file=sys.stderr)
        return 1
    print("wrote %s: %d characters, %d bytes" % (args.out, len(records), len(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
