"""ESC/POS command builder that streams into write(bytes).

A ticket is never assembled in RAM: commands and text pass through one reused
64-byte buffer on their way to write(). write() must therefore copy what it is
given before it returns (UART.write, file.write and bytearray.extend all do), and
a job ends with cut() or flush().

Widths: a 58 mm roll prints 32 half-width columns, an 80 mm roll 48. In Chinese
mode a GB2312 character takes two columns and ASCII one; double width doubles both.
"""
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from firmware.gb2312 import code_point, seq_len, utf8

_COLS_58 = const(32)
_COLS_80 = const(48)

LEFT = const(0)
CENTRE = const(1)
_RIGHT = const(2)

_QR_EC_L = const(48)
_QR_EC_M = const(49)
_QR_EC_Q = const(50)
_QR_EC_H = const(51)
_QR_MAX = const(7089)  # GS ( k fn 80: pL + pH*256 = data length + 3 <= 7092

_OUT = const(64)  # bytes gathered before write() is called

_ESC = const(0x1B)
_GS = const(0x1D)
_FS = const(0x1C)

# Chinese line-breaking (禁则): these never start a line / never end one.
# (code points, not `ord(c) for c in "..."`: iterating a str interns each character for good)
_NO_START = (0xFF0C, 0x3002, 0x3001, 0xFF1B, 0xFF1A, 0xFF1F, 0xFF01, 0xFF09, 0x300D, 0x300F,  # ，。、；：？！）」』
             0x300B, 0x3009, 0x201D, 0x2019, 0x2026,                                          # 》〉”’…
             0x2C, 0x2E, 0x3B, 0x3A, 0x3F, 0x21, 0x29, 0x25)                                  # ,.;:?!)%
_NO_END = (0xFF08, 0x300C, 0x300E, 0x300A, 0x3008, 0x201C, 0x2018, 0x28)                      # （「『《〈“‘(


def display_width(text):
    """Printed columns of text (str or UTF-8 bytes): ASCII 1, anything else 2 (hanzi or its □)."""
    w = 0
    for b in utf8(text):
        if b < 0x80:
            w += 1
        elif b >= 0xC0:  # lead byte; continuation bytes add nothing
            w += 2
    return w


def centre_pad(text, cols):
    """Spaces to put before text to centre it in cols (for printers that ignore ESC a)."""
    free = cols - display_width(text)
    return free // 2 if free > 0 else 0


def _can_break(a, b):
    """May a line end between code points a and b?"""
    if a == 0x20 or b == 0x20:
        return True
    if a < 0x80 and b < 0x80:
        return False  # inside an ASCII word or number
    return b not in _NO_START and a not in _NO_END


def line_end(buf, i, cols):
    """End offset of the line of UTF-8 buf starting at offset i, at most cols display columns.

    Breaks at spaces or next to CJK characters, keeps closing punctuation off the
    start of a line, stops at a newline, and cuts a word only when it alone is too long.
    """
    n = len(buf)
    w = 0
    j = i
    brk = -1   # last offset where the next line may start
    prev = -1
    while j < n:
        b = buf[j]
        if b == 0x0A:
            return j
        cp = code_point(buf, j)
        if j > i and _can_break(prev, cp):
            brk = j
        w += 1 if b < 0x80 else 2
        if w > cols:
            if cp != 0x20 and brk > i:
                return brk
            break
        prev = cp
        j += seq_len(b)
    if j == i and j < n:
        return i + seq_len(buf[i])  # one character wider than the line: print it anyway
    return j


def each_line(buf, cols, emit):
    """Call emit(buf, start, end) for every line of UTF-8 buf wrapped to cols (no spaces at a break)."""
    n = len(buf)
    i = 0
    while i < n:
        end = line_end(buf, i, cols)
        e = end
        while e > i and buf[e - 1] == 0x20:
            e -= 1
        emit(buf, i, e)
        i = end
        if i < n and buf[i] == 0x0A:
            i += 1
        else:
            while i < n and buf[i] == 0x20:
                i += 1


def wrap(text, cols):
    """The lines of text broken to cols display columns, as a list of str."""
    out = []
    each_line(utf8(text), cols, lambda buf, a, b: out.append(bytes(buf[a:b]).decode("utf-8")))
    return out


class EscPos:
    """One printer job. `gb` is a firmware.gb2312.Gb2312 or None (then non-ASCII prints as '?').

    Output is gathered in a 64-byte buffer and handed to write() when full, at
    cut() and at flush(), so a ticket costs the port about ten writes, not seventy.
    """

    def __init__(self, write, cols=_COLS_58, gb=None):
        self._write = write
        self.cols = cols
        self.gb = gb
        self._out = bytearray(_OUT)
        self._view = memoryview(self._out)
        self._n = 0
        self._put_fn = self._put  # bound once: encode_into gets it for every text run
        self._width = 1

    def flush(self):
        """Hand everything gathered so far to write()."""
        if self._n:
            self._write(self._view[:self._n])
            self._n = 0
        return self

    def _room(self, k):
        if self._n + k > _OUT:
            self.flush()

    def _put(self, data):
        k = len(data)
        if k > _OUT:
            self.flush()
            self._write(data)
            return
        self._room(k)
        out = self._out
        n = self._n
        for i in range(k):
            out[n + i] = data[i]
        self._n = n + k

    def _byte(self, b):
        if self._n >= _OUT:
            self.flush()
        self._out[self._n] = b
        self._n += 1

    def _cmd(self, a, b, c):
        self._room(3)
        out = self._out
        n = self._n
        out[n] = a
        out[n + 1] = b
        out[n + 2] = c
        self._n = n + 3

    @property
    def line_cols(self):
        """Columns available at the current character width."""
        return self.cols // self._width

    def init(self):
        """ESC @: clear the buffer and reset modes (size, emphasis, alignment)."""
        self._width = 1
        self._put(b"\x1b@")
        return self

    def align(self, n):
        """ESC a n: LEFT, CENTRE or right (2); takes effect at the start of a line."""
        self._cmd(_ESC, 0x61, n)
        return self

    def emphasis(self, on=True):
        self._cmd(_ESC, 0x45, 1 if on else 0)
        return self

    def size(self, width=1, height=1):
        """GS ! n: character magnification 1..8 each way (applies to ASCII and hanzi)."""
        width = min(max(width, 1), 8)
        height = min(max(height, 1), 8)
        self._width = width
        self._cmd(_GS, 0x21, (width - 1) << 4 | (height - 1))
        return self

    def chinese(self, on=True):
        """FS & enters Chinese (GB2312 double-byte) mode; FS . leaves it."""
        self._put(b"\x1c&" if on else b"\x1c.")
        return self

    def text(self, s):
        """Print s (str or UTF-8 bytes) without a line feed."""
        buf = utf8(s)
        self._span(buf, 0, len(buf))
        return self

    def _span(self, buf, start, end):
        # GB2312 through gb; without gb, ASCII only and '?' for everything else
        if self.gb is not None:
            self.gb.encode_into(self._put_fn, buf, start, end)
            return
        for i in range(start, end):
            b = buf[i]
            if 0x80 <= b < 0xC0:
                continue  # rest of a multi-byte character already shown as '?'
            self._byte(b if (0x20 <= b < 0x7F or b == 0x0A) else 0x3F)

    def _line_span(self, buf, start, end):
        if end > start:
            self._span(buf, start, end)
        self._byte(0x0A)

    def lf(self):
        self._byte(0x0A)
        return self

    def line(self, s=""):
        if s:
            self.text(s)
        self._byte(0x0A)
        return self

    def wrapped(self, s):
        """Print s broken into lines that fit the current width."""
        each_line(utf8(s), self.line_cols, self._line_span)
        return self

    def rule(self, ch="-"):
        """A full-width line of one ASCII character, e.g. "-" or "="."""
        c = ord(ch)
        for _ in range(self.cols):
            self._byte(c)
        self._byte(0x0A)
        return self

    def centred(self, s):
        """Print s centred (ESC a 1), wrapped to the current width, then back to left."""
        self.align(CENTRE)
        self.wrapped(s)
        self.align(LEFT)
        return self

    def feed(self, n=1):
        """ESC d n: print the buffer and feed n lines."""
        self._cmd(_ESC, 0x64, min(max(n, 0), 255))
        return self

    def _qr_fn(self, fn, arg):
        # GS ( k 3 0 49 fn arg: every one-parameter QR function has this shape
        self._put(b"\x1d(k\x03\x001")
        self._byte(fn)
        self._byte(arg)

    def qr(self, data, module=6, ec=_QR_EC_M):
        """Print a QR code (model 2) of data (str is sent as UTF-8)."""
        data = utf8(data)
        k = len(data)
        if not 0 < k <= _QR_MAX:
            raise ValueError("QR payload must be 1..%d bytes, got %d" % (_QR_MAX, k))
        self._put(b"\x1d(k\x04\x001A2\x00")          # fn 65: model 2
        self._qr_fn(0x43, min(max(module, 1), 16))  # fn 67: module size in dots
        self._qr_fn(0x45, ec)                       # fn 69: error correction level
        k += 3
        self._put(b"\x1d(k")                         # fn 80: store k-3 data bytes
        self._byte(k & 0xFF)
        self._byte(k >> 8)
        self._put(b"1P0")
        self._put(data)
        self._qr_fn(0x51, 0x30)                     # fn 81: print the stored symbol
        return self

    def cut(self, full=False, feed=None):
        """Cut and flush: GS V 0/1 here, or with feed GS V 65/66 n (feed n lines to the cutter first)."""
        if feed is None:
            self._cmd(_GS, 0x56, 0 if full else 1)
        else:
            self._cmd(_GS, 0x56, 65 if full else 66)
            self._byte(min(max(feed, 0), 255))
        return self.flush()
