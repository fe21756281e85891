"""Unicode -> GB2312 for the ticket printer, looked up in gb2312.bin on flash.

The table (format: tools/gen_gb2312.py) is searched with seek()/readinto() into a
4-byte buffer, so it never sits in RAM; a small direct-mapped cache keeps the
characters every ticket repeats (前面还有, 分钟, ...) off the flash.
Text is walked as UTF-8 bytes (a MicroPython str exposes them without a copy):
iterating a str would intern every distinct character as a qstr for good.
Printable ASCII passes through as one byte. Anything GB2312 lacks (emoji, rare
hanzi, control characters) becomes a visible replacement, never an exception:
`replacement` for non-ASCII (default GB2312 '□'), b'?' for control bytes.
"""
import array

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_HEADER = const(8)
_RECORD = const(4)
_CHUNK = const(32)
_MISS = const(0)  # cached "not in GB2312"; 0 is never a GB2312 code


def utf8(text):
    """UTF-8 bytes of text without a copy where possible (a MicroPython str is a buffer)."""
    if not isinstance(text, str):
        return text
    try:
        return memoryview(text)
    except TypeError:  # CPython
        return text.encode("utf-8", "replace")


def seq_len(lead):
    """Length of the UTF-8 sequence starting with byte lead (1 for stray bytes)."""
    if lead < 0xC0:
        return 1
    if lead < 0xE0:
        return 2
    if lead < 0xF0:
        return 3
    return 4


def code_point(buf, i):
    """Code point of the UTF-8 sequence at buf[i]; 0xFFFD for a broken one."""
    b = buf[i]
    if b < 0x80:
        return b
    k = seq_len(b)
    if b < 0xC0 or i + k > len(buf):
        return 0xFFFD
    cp = b & (0x1F if k == 2 else 0x0F if k == 3 else 0x07)
    for j in range(i + 1, i + k):
        cp = cp << 6 | (buf[j] & 0x3F)
    return cp


def default_path():
    try:
        here = __file__
    except NameError:  # frozen module: no file beside it
        return "firmware/gb2312.bin"
    cut = here.rfind("/")
    return (here[:cut + 1] if cut >= 0 else "") + "gb2312.bin"


class Gb2312:
    """Encoder bound to one table file. Raises OSError/ValueError only if the file is missing or bad."""

    def __init__(self, path=None, replacement=b"\xa1\xf5", cache=64):
        if not 1 <= len(replacement) <= 4:
            raise ValueError("replacement must be 1..4 bytes")
        self.path = path or default_path()
        self.replacement = replacement
        self._rec = bytearray(_RECORD)
        self._out = bytearray(_CHUNK)
        self._view = memoryview(self._out)
        self._f = open(self.path, "rb")
        head = bytearray(_HEADER)
        if self._f.readinto(head) != _HEADER or head[0:4] != b"GB23" or head[4] != 1 or head[5] != _RECORD:
            self._f.close()
            raise ValueError("%s: not a version 1 GB2312 table" % self.path)
        self.count = head[6] << 8 | head[7]
        # cache size must be a power of two so "cp & mask" picks the slot
        size = 1
        while size < cache:
            size <<= 1
        self._mask = size - 1
        self._keys = array.array("H", bytes(2 * size))
        self._vals = array.array("H", bytes(2 * size))

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def lookup(self, cp):
        """GB2312 code (0xA1A1..0xFEFE) for code point cp, or 0 when GB2312 has none."""
        if cp < 0x80 or cp > 0xFFFF:
            return _MISS
        slot = cp & self._mask
        if self._keys[slot] == cp:
            return self._vals[slot]
        try:
            code = self._search(cp)
        except OSError:
            return _MISS  # flash read failed: print the replacement now, look again next time
        self._keys[slot] = cp
        self._vals[slot] = code
        return code

    def _search(self, cp):
        f = self._f
        rec = self._rec
        lo = 0
        hi = self.count - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            f.seek(_HEADER + mid * _RECORD)
            if f.readinto(rec) != _RECORD:
                return _MISS  # truncated table: degrade to replacement, don't crash a ticket
            key = rec[0] << 8 | rec[1]
            if key == cp:
                return rec[2] << 8 | rec[3]
            if key < cp:
                lo = mid + 1
            else:
                hi = mid - 1
        return _MISS

    def encode_into(self, write, text, start=0, end=-1):
        """Encode text (str or UTF-8 bytes; optionally only bytes start..end) into write().

        write() gets chunks of up to 32 bytes from a reused buffer, so it must copy
        them before returning (UART.write, file.write and bytearray.extend all do).
        """
        buf = utf8(text)
        out = self._out
        rep = self.replacement
        n = 0
        i = start
        if end < 0:
            end = len(buf)
        while i < end:
            if n > _CHUNK - 4:
                write(self._view[:n])
                n = 0
            b = buf[i]
            if b < 0x80:
                i += 1
                # '?' for controls: such a byte must never reach the printer as a command
                out[n] = b if (0x20 <= b < 0x7F or b == 0x0A) else 0x3F
                n += 1
                continue
            code = self.lookup(code_point(buf, i))
            i += seq_len(b)
            if code:
                out[n] = code >> 8
                out[n + 1] = code & 0xFF
                n += 2
            else:
                for r in rep:
                    out[n] = r
                    n += 1
        if n:
            write(self._view[:n])

    def encode(self, text):
        """Encode a short string to bytes (allocates; prefer encode_into for printing)."""
        buf = bytearray()
        self.encode_into(buf.extend, text)
        return bytes(buf)
