"""HUB12 red LED modules (P10, 32x16 each, chained N wide): the hall's 窗口屏 / 条屏.

The frame is .buf, MONO_HLSB (w = 32*N, h = 16, bit 7 of a byte = its leftmost pixel,
1 = LED on); a renderer draws into it and calls commit(). The modules have no memory: they
are scanned 1/4 — a timer shows one row group at a time, every period_ms, 4 groups a frame.

Shift order (the Freetronics DMD library's, which the common P10 HUB12 modules follow): for
row group g (A/B = g & 1, g >> 1; rows g, g+4, g+8, g+12), for each 8-pixel column c of the
whole chain from the left, the bytes of rows g+12, g+8, g+4, g go out, MSB first. The first
byte sent travels furthest: the controller's cable goes into the RIGHTMOST module seen from
the front (follow the arrows on the modules' backs), and module 0 (x 0..31) is the last of
the chain. Then LAT (STB) pulses high to latch, A/B select the group, and OE lights it.
Data is active low on most modules (active_low=True: a 0 bit lights the LED); OE is "on"
when high on most (oe_active_high=True).

commit() turns the frame into the 4 groups' shift buffers (16*N bytes each) once per change,
so the timer only writes a ready buffer: nothing is allocated on a tick. The buffers are
doubled: commit() fills the set the timer is not showing and swaps with one assignment, so a
tick between two statements of commit() never shows half a frame.

Brightness: OE is a machine.PWM (>= 20 kHz); "on" is a duty of brightness 0..15 (a square
law, so the steps look even), "off" is 0 while the data is latched and the rows switch — so
a group never lights with the previous group's data (ghosting).

Why the timer callback calls SPI directly, without micropython.schedule: on the ESP32 a
machine.Timer callback is already a scheduled ("soft") callback, run by the interpreter
between bytecodes, where SPI.write may be called (a hard IRQ could not: the ESP-IDF SPI
driver waits on a semaphore). The cost of soft: a call that blocks the interpreter (a flash
erase, tens of ms; a TLS handshake, ~1-2 s) holds one row group lit — the panel shows every
4th row, brighter, until the call returns. stop() before such a call blanks it instead.

Example:
    from machine import SPI, Pin, PWM, Timer
    from hal.esp32.hub12 import Hub12
    spi = SPI(2, baudrate=4000000, sck=Pin(18), mosi=Pin(23), miso=None)
    oe = PWM(Pin(25), freq=20000, duty_u16=0)
    sign = Hub12(spi, Pin(27, Pin.OUT), Pin(14, Pin.OUT), Pin(5, Pin.OUT, value=0), oe,
                 modules=2, brightness=10)
    sign.buf[0] = 0x80          # top-left LED (x 0, y 0)
    sign.commit()
    sign.start(Timer(0))        # one row group every 2 ms: 125 frames/s
"""
from hal.display import Display
from hal.esp32 import scroll

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_W = const(32)          # pixels across one module
_H = const(16)
_GROUPS = const(4)      # 1/4 scan
_FULL = const(65535)


def duty(brightness):
    """OE duty (0..65535) for brightness 0..15: ((b+1)/16)^2, so 15 is fully on."""
    b = min(15, max(0, brightness)) + 1
    return b * b * 256 - 1


class Hub12(Display):
    def __init__(self, spi, a, b, lat, oe, modules=1, active_low=True, brightness=15,
                 oe_active_high=True, render=None, period_ms=2, step=None):
        if not 1 <= modules <= 16:
            raise ValueError("modules: 1..16")
        self._spi = spi
        self._a = a
        self._b = b
        self._lat = lat
        self._oe = oe
        self._n = modules
        self.w = _W * modules
        self.h = _H
        self.buf = bytearray(self.w * _H // 8)
        self._inv = 0xFF if active_low else 0x00
        self._oe_high = oe_active_high
        self._render = render
        self._step = step
        self.scrolling = False   # hal/esp32/scroll.py runs animate() meanwhile
        self._period = period_ms
        self._timer = None
        self._group = 0
        size = 4 * 4 * modules                 # bytes a group: 4 rows x 4N byte columns
        self._sets = (bytearray(size * _GROUPS), bytearray(size * _GROUPS))
        views = []
        for s in self._sets:
            mv = memoryview(s)
            for g in range(_GROUPS):
                views.append(mv[g * size:(g + 1) * size])
        self._views = tuple(views)             # [set * 4 + group]
        self._shown = 0                        # the set the timer shows
        self._on = 0
        self._off = 0
        self.brightness(brightness)
        oe.duty_u16(self._off)
        lat.value(0)
        self.commit()

    def brightness(self, level):
        """0..15 (dim the sign at night); takes effect at the next tick."""
        on = duty(level)
        if self._oe_high:
            self._on, self._off = on, 0
        else:
            self._on, self._off = _FULL - on, _FULL

    def commit(self):
        """Rebuild the shift buffers from .buf (after drawing; not in the timer)."""
        back = 1 - self._shown
        out = self._sets[back]
        src = self.buf
        bpr = self.w // 8                      # bytes a row of the frame
        inv = self._inv
        i = 0
        for g in range(_GROUPS):
            for c in range(bpr):
                base = g * bpr + c
                out[i] = src[base + 12 * bpr] ^ inv
                out[i + 1] = src[base + 8 * bpr] ^ inv
                out[i + 2] = src[base + 4 * bpr] ^ inv
                out[i + 3] = src[base] ^ inv
                i += 4
        self._shown = back                     # one store: the swap is atomic for the timer

    def group_buffer(self, g):
        """The bytes the next refresh of row group g shifts out (for tests and scopes)."""
        return self._views[self._shown * _GROUPS + g]

    def refresh_group(self, _timer=None):
        """Show the next row group. Runs on every timer tick; allocates nothing."""
        g = self._group
        oe = self._oe
        oe.duty_u16(self._off)                 # LEDC applies it at its next period: by the latch
        self._spi.write(self._views[self._shown * _GROUPS + g])
        lat = self._lat
        lat.value(1)
        lat.value(0)
        self._a.value(g & 1)
        self._b.value(g >> 1)
        oe.duty_u16(self._on)
        self._group = (g + 1) & 3

    def start(self, timer):
        """Refresh from timer (a machine.Timer), one row group per period_ms."""
        self.stop()
        self._timer = timer
        timer.init(mode=timer.PERIODIC, period=self._period, callback=self.refresh_group)

    def stop(self):
        """Stop refreshing and blank the sign (OE off)."""
        if self._timer is not None:
            self._timer.deinit()
            self._timer = None
        self._oe.duty_u16(self._off)

    def show(self, lines):
        """hal.display.Display: the renderer draws lines into .buf; without one, blank."""
        buf = self.buf
        if self._render is not None:
            self._render(buf, self.w, self.h, lines)
        else:
            for i in range(len(buf)):
                buf[i] = 0
        self.commit()
        if self._step is not None:
            scroll.start(self)

    def animate(self, n=1):
        """hal.display.Display: step(buf, w, h, n) moves the lines that scroll on by n pixels,
        then the frame is committed; True while something moves."""
        if self._step is not None and self._step(self.buf, self.w, self.h, n):
            self.commit()
            return True
        return False
