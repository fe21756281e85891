"""MAX7219 8-digit 7-segment call-number display on SPI.

Shows lines[0] only: the called ticket on the left, the counter on the right
("A001 -> 3" shows as "A001   3"), "P" while paused. Digit register 1 is the
rightmost digit, as on the common 8-digit modules.

Example:
    from machine import SPI, Pin
    from hal.esp32.max7219 import Max7219
    spi = SPI(2, baudrate=1000000, sck=Pin(18), mosi=Pin(23), miso=None)
    d = Max7219(spi, Pin(5, Pin.OUT, value=1))
    d.show(["A001 -> 3"])
"""
from hal.display import Display

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_REG_DECODE = const(0x09)
_REG_INTENSITY = const(0x0A)
_REG_SCAN_LIMIT = const(0x0B)
_REG_SHUTDOWN = const(0x0C)
_REG_TEST = const(0x0F)
_DP = const(0x80)

# Segment bits in no-decode mode: DP A B C D E F G = bit 7..0.
_CHARS = "0123456789AbCdEFGHJLnoPrStUY- _"
_FONT = (b"\x7e\x30\x6d\x79\x33\x5b\x5f\x70\x7f\x7b"
         b"\x77\x1f\x4e\x3d\x4f\x47\x5e\x37\x3c\x0e\x15\x1d\x67\x05\x5b\x0f\x3e\x3b"
         b"\x01\x00\x08")


def glyph(ch):
    """Segment byte for one character; the other case is used when only that
    one exists on 7 segments; anything unshowable is blank."""
    i = _CHARS.find(ch)
    if i < 0:
        i = _CHARS.find(ch.upper())
        if i < 0:
            i = _CHARS.find(ch.lower())
    return _FONT[i] if i >= 0 else 0


def _width(token):
    # A '.' lights the previous digit's point instead of taking a digit.
    w = 0
    prev = False
    for ch in token:
        if ch == "." and prev:
            prev = False
            continue
        w += 1
        prev = ch != "."
    return w


class Max7219(Display):
    def __init__(self, spi, cs, digits=8, intensity=7):
        self._spi = spi
        self._cs = cs
        self._n = digits
        self._buf = bytearray(2)
        self._seg = bytearray(digits)
        self._shown = bytearray(digits)
        cs.value(1)
        self._send(_REG_DECODE, 0x00)
        self._send(_REG_INTENSITY, intensity & 0x0F)
        self._send(_REG_SCAN_LIMIT, digits - 1)
        self._send(_REG_SHUTDOWN, 0x01)   # 1 = normal operation
        self._send(_REG_TEST, 0x00)
        for i in range(digits):            # RAM is random after power-up
            self._send(i + 1, 0)

    def _send(self, reg, value):
        b = self._buf
        b[0] = reg
        b[1] = value
        self._cs.value(0)
        self._spi.write(b)
        self._cs.value(1)

    def _put(self, token, pos):
        seg = self._seg
        prev = False
        for ch in token:
            if ch == "." and prev:
                seg[pos - 1] |= _DP
                prev = False
                continue
            if pos >= self._n:
                break
            seg[pos] = _DP if ch == "." else glyph(ch)
            pos += 1
            prev = ch != "."
        return pos

    def render(self, text):
        """Lay text out into the segment buffer (left-to-right); returns it."""
        seg = self._seg
        for i in range(self._n):
            seg[i] = 0
        words = text.replace("->", " ").split()
        if not words:
            return seg
        first = words[0]
        last = words[-1]
        if len(words) > 1 and _width(first) + 1 + _width(last) <= self._n:
            self._put(first, 0)
            self._put(last, self._n - _width(last))
        else:
            pos = 0
            for w in words:
                pos = self._put(w, pos) + 1
                if pos >= self._n:
                    break
        return seg

    def show(self, lines):
        seg = self.render(lines[0] if lines else "")
        shown = self._shown
        n = self._n
        for i in range(n):
            if seg[i] != shown[i]:     # only changed digits go over SPI
                self._send(n - i, seg[i])
                shown[i] = seg[i]

    def intensity(self, level):
        """Brightness 0..15 (dim the hall display at night)."""
        self._send(_REG_INTENSITY, level & 0x0F)
