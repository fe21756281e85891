"""ST7789 SPI TFT (240x240 or 240x320, RGB565): the counter terminal's face.

A frame would be 115 KB (240x240x2) and the heap is 96 KiB, so nothing here holds one: the
panel keeps the picture in its own RAM and this driver sends rectangles into it. fill_rect
and blit_mono (a 1-bit MONO_HLSB bitmap — a glyph, a line of text — expanded to two
colours, optionally scaled up for the big calling number) go through ONE reused line buffer
of 2 x the long side bytes (480 or 640).

Commands (ST7789 datasheet): hardware reset (low >= 10 us, then 120 ms), SWRESET (0x01,
wait 120 ms before SLPOUT), SLPOUT (0x11, wait 5 ms), COLMOD 0x55 (0x3A: 65K colours, 16
bits a pixel), MADCTL (0x36: MY 0x80, MX 0x40, MV 0x20, BGR 0x08) for the rotation, INVON
(0x21: most ST7789 modules are built to be driven inverted; invert=False sends INVOFF),
NORON (0x13), DISPON (0x29). A rectangle is CASET (0x2A) x0,x1 / RASET (0x2B) y0,y1 as
big-endian 16-bit, RAMWR (0x2C), then its pixels row by row, each big-endian RGB565. CS
stays low from RAMWR to the last pixel. The controller's RAM is 240x320: a 240x240 panel
shows rows 0..239, so rotated by 180/270 degrees its window moves by 80.

The constructor blocks ~0.3 s (the reset waits) and clears the panel before the backlight
goes on, so no noise from the random RAM shows at boot.

Example:
    from machine import SPI, Pin
    from hal.esp32.st7789 import St7789, color565
    spi = SPI(2, baudrate=40000000, sck=Pin(18), mosi=Pin(23), miso=None)
    tft = St7789(spi, cs=Pin(5, Pin.OUT, value=1), dc=Pin(27, Pin.OUT),
                 rst=Pin(14, Pin.OUT, value=1), bl=Pin(25, Pin.OUT, value=0))
    tft.fill_rect(0, 0, 240, 40, color565(0, 80, 160))
    glyph = bytes(16)                       # an 8x16 MONO_HLSB glyph: 1 byte a row
    tft.blit_mono(glyph, 8, 16, 10, 12, 0xFFFF, color565(0, 80, 160), scale=3)
"""
import time

from hal.display import Display
from hal.esp32 import scroll

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_SWRESET = const(0x01)
_SLPOUT = const(0x11)
_NORON = const(0x13)
_INVOFF = const(0x20)
_INVON = const(0x21)
_DISPON = const(0x29)
_CASET = const(0x2A)
_RASET = const(0x2B)
_RAMWR = const(0x2C)
_MADCTL = const(0x36)
_COLMOD = const(0x3A)
_COLMOD_565 = const(0x55)
_BGR = const(0x08)

# rotation -> MADCTL bits; 0 = portrait, connector at the bottom, then 90-degree steps
_MADCTL_ROT = b"\x00\x60\xc0\xa0"


def color565(r, g, b):
    """RGB 0..255 each -> an RGB565 colour."""
    return (r & 0xF8) << 8 | (g & 0xFC) << 3 | b >> 3


class St7789(Display):
    def __init__(self, spi, cs, dc, rst=None, bl=None, width=240, height=240, rotation=0,
                 bgr=False, invert=True, render=None, step=None):
        if (width, height) not in ((240, 240), (240, 320)):
            raise ValueError("panel: 240x240 or 240x320")
        if rotation not in (0, 1, 2, 3):
            raise ValueError("rotation: 0..3 (x 90 degrees)")
        self._spi = spi
        self._cs = cs
        self._dc = dc
        self._bl = bl
        self._render = render
        self._step = step
        self.scrolling = False   # hal/esp32/scroll.py runs animate() meanwhile
        if rotation & 1:
            width, height = height, width
        self.width = width
        self.height = height
        self._xoff = 80 if width == height and rotation == 3 else 0
        self._yoff = 80 if width == height and rotation == 2 else 0
        self._c1 = bytearray(1)
        self._c4 = bytearray(4)
        self._line = bytearray(2 * max(width, height))
        self._mv = memoryview(self._line)
        cs.value(1)
        dc.value(1)
        if bl is not None:
            bl.value(0)
        if rst is not None:
            rst.value(0)
            time.sleep_ms(1)
            rst.value(1)
            time.sleep_ms(120)
        self._cmd(_SWRESET)
        time.sleep_ms(150)
        self._cmd(_SLPOUT)
        time.sleep_ms(10)
        self._cmd1(_COLMOD, _COLMOD_565)
        self._cmd1(_MADCTL, _MADCTL_ROT[rotation] | (_BGR if bgr else 0))
        self._cmd(_INVON if invert else _INVOFF)
        self._cmd(_NORON)
        self._cmd(_DISPON)
        self.fill_rect(0, 0, width, height, 0)
        if bl is not None:
            bl.value(1)

    # ------------------------------------------------------------ bus

    def _cmd(self, c, data=None):
        cs = self._cs
        dc = self._dc
        b = self._c1
        b[0] = c
        cs.value(0)
        dc.value(0)
        self._spi.write(b)
        dc.value(1)
        if data is not None:
            self._spi.write(data)
        cs.value(1)

    def _cmd1(self, c, v):
        d = self._c4
        d[0] = v
        self._cmd(c, memoryview(d)[:1])

    def _pair(self, c, a, b):
        d = self._c4
        d[0] = a >> 8
        d[1] = a & 0xFF
        d[2] = b >> 8
        d[3] = b & 0xFF
        self._cmd(c, d)

    def _window(self, x, y, w, h):
        """Address the rectangle and start RAMWR; CS stays low for the pixels."""
        x += self._xoff
        y += self._yoff
        self._pair(_CASET, x, x + w - 1)
        self._pair(_RASET, y, y + h - 1)
        b = self._c1
        b[0] = _RAMWR
        self._cs.value(0)
        self._dc.value(0)
        self._spi.write(b)
        self._dc.value(1)

    def _clip(self, x, y, w, h):
        x0 = max(0, x)
        y0 = max(0, y)
        x1 = min(self.width, x + w)
        y1 = min(self.height, y + h)
        return x0, y0, x1 - x0, y1 - y0

    # ------------------------------------------------------------ drawing

    def fill_rect(self, x, y, w, h, color):
        """Fill a rectangle (clipped to the screen) with an RGB565 colour."""
        x, y, w, h = self._clip(x, y, w, h)
        if w <= 0 or h <= 0:
            return
        mv = self._mv
        total = 2 * w * h
        n = min(len(mv), total)
        mv[0] = color >> 8
        mv[1] = color & 0xFF
        k = 2
        while k < n:                          # double the filled part: log2 copies
            m = min(k, n - k)
            mv[k:k + m] = mv[:m]
            k += m
        self._window(x, y, w, h)              # pixels wrap at the window's edge by themselves
        spi = self._spi
        chunk = mv[:n]
        while total >= n:
            spi.write(chunk)
            total -= n
        if total:
            spi.write(mv[:total])
        self._cs.value(1)

    def fill(self, color):
        self.fill_rect(0, 0, self.width, self.height, color)

    def blit_mono(self, bits, w, h, x, y, fg, bg, scale=1):
        """Draw a w x h MONO_HLSB bitmap (bit 7 = leftmost, rows of (w+7)//8 bytes) at x, y:
        1 bits in fg, 0 bits in bg (RGB565), each pixel scale x scale; clipped to the screen."""
        s = scale
        dx0, dy0, n, rows = self._clip(x, y, w * s, h * s)
        if n <= 0 or rows <= 0:
            return
        stride = (w + 7) >> 3
        fh = fg >> 8
        fl = fg & 0xFF
        bh = bg >> 8
        bl = bg & 0xFF
        line = self._line
        n2 = 2 * n
        out = self._mv[:n2]
        sx0 = (dx0 - x) // s
        rep0 = s - (dx0 - x) % s               # repeats left of the first source pixel
        self._window(dx0, dy0, n, rows)
        spi = self._spi
        last = -1
        for ry in range(dy0, dy0 + rows):
            sy = (ry - y) // s
            if sy != last:
                last = sy
                p = sy * stride + (sx0 >> 3)
                mask = 0x80 >> (sx0 & 7)
                v = bits[p]
                r = rep0
                i = 0
                while i < n2:
                    if mask == 0:
                        mask = 0x80
                        p += 1
                        v = bits[p]
                    if v & mask:
                        line[i] = fh
                        line[i + 1] = fl
                    else:
                        line[i] = bh
                        line[i + 1] = bl
                    i += 2
                    r -= 1
                    if r == 0:
                        r = s
                        mask >>= 1
            spi.write(out)
        self._cs.value(1)

    def backlight(self, on):
        if self._bl is not None:
            self._bl.value(1 if on else 0)

    def show(self, lines):
        """hal.display.Display: render(self, lines) draws the face; without one, black."""
        if self._render is not None:
            self._render(self, lines)
            if self._step is not None:
                scroll.start(self)
        else:
            self.fill(0)

    def animate(self, n=1):
        """hal.display.Display: step(self, n) moves the lines that scroll on by n pixels;
        True while something moves."""
        return self._step is not None and self._step(self, n)
