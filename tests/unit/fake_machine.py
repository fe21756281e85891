"""Small fakes of `machine`, `network`, `ntptime` and `time` for the hal/esp32 driver tests.

install() puts them in sys.modules (the real asyncio is imported first, so it
keeps the real clock), the test imports the drivers, then restore() puts the
originals back: the drivers keep the fakes they imported, other tests are not
affected. The fake `time` only moves when a test calls advance() or a driver
calls sleep_ms(), so timeouts are tested without waiting.
"""
import sys

import asyncio  # noqa: F401  (must bind the real time module before the fake goes in)
import time as _real_time

_PERIOD = 1 << 30        # MicroPython ticks wrap at 2**30
_HALF = _PERIOD // 2


class _Module:
    def __init__(self, name):
        self.__name__ = name


# ---------------------------------------------------------------- time

class _Clock:
    ms = 0               # monotonic, not wrapped
    wall = 1700000000    # seconds since the fake epoch at ms == 0
    epoch_year = 1970


clock = _Clock()


def advance(ms):
    clock.ms += ms


def set_level(gpio, level):
    """What the wire at gpio reads (a key to GND reads 0 while pressed)."""
    Pin.levels[gpio] = level


def reset_pins():
    Pin.levels.clear()
    Pin.made.clear()


def reset_clock(start_ms=0, wall=1700000000, epoch_year=1970):
    clock.ms = start_ms
    clock.wall = wall
    clock.epoch_year = epoch_year


def _ticks_ms():
    return clock.ms % _PERIOD


def _ticks_diff(a, b):
    return ((a - b + _HALF) % _PERIOD) - _HALF


def _ticks_add(a, d):
    return (a + d) % _PERIOD


def _sleep_ms(ms):
    clock.ms += ms


def _sleep(s):
    clock.ms += int(s * 1000)


def _epoch_shift():
    return 946684800 if clock.epoch_year == 2000 else 0


def _time():
    return clock.wall + clock.ms // 1000


def _gmtime(secs=None):
    if secs is None:
        secs = _time()
    t = _real_time.gmtime(secs + _epoch_shift())
    return tuple(t)[:8]


def days_from_civil(y, m, d):
    """Days since 1970-01-01 (proleptic Gregorian), for the fake RTC."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


time = _Module("time")
time.ticks_ms = _ticks_ms
time.ticks_diff = _ticks_diff
time.ticks_add = _ticks_add
time.sleep_ms = _sleep_ms
time.sleep = _sleep
time.time = _time
time.gmtime = _gmtime
time.localtime = _gmtime


# ---------------------------------------------------------------- machine

class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_FALLING = 2
    IRQ_RISING = 1
    made = {}            # GPIO number -> the last Pin made for it
    levels = {}          # GPIO number -> level on the wire (idle inputs read high)

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self.history = []
        if value is not None:
            Pin.levels[id] = 1 if value else 0
        Pin.made[id] = self

    @property
    def level(self):
        return Pin.levels.get(self.id, 1)

    def value(self, v=None):
        if v is None:
            return self.level
        Pin.levels[self.id] = 1 if v else 0
        self.history.append(Pin.levels[self.id])

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, *a, **kw):
        return None


class UART:
    made = {}

    def __init__(self, id, baudrate=115200, **kw):
        self.id = id
        self.baudrate = baudrate
        self.kw = kw
        self.written = bytearray()
        self.max_chunk = None     # accept at most this many bytes a write
        self.stalls = 0           # next N writes accept nothing (return 0)
        self.stuck = False        # every write accepts nothing
        self._rx = []             # [(due_ms, bytes)]
        self.replies = []         # [(request, reply, delay_ms)]
        UART.made[id] = self

    def feed(self, data, delay_ms=0):
        self._rx.append((clock.ms + delay_ms, bytes(data)))

    def reply(self, request, reply, delay_ms=0):
        """When request is written, reply arrives delay_ms later."""
        self.replies.append((bytes(request), bytes(reply), delay_ms))

    def write(self, buf):
        if self.stuck:
            return 0
        if self.stalls:
            self.stalls -= 1
            return 0
        data = bytes(buf)
        if self.max_chunk is not None:
            data = data[:self.max_chunk]
        self.written.extend(data)
        for req, rep, delay in self.replies:
            if bytes(self.written).endswith(req):
                self.feed(rep, delay)
        return len(data)

    def _ready(self):
        out = bytearray()
        keep = []
        for due, data in self._rx:
            if due <= clock.ms:
                out.extend(data)
            else:
                keep.append((due, data))
        return out, keep

    def any(self):
        return len(self._ready()[0])

    def readinto(self, buf, n=None):
        out, keep = self._ready()
        if not out:
            return None
        if n is None or n > len(buf):
            n = len(buf)
        n = min(n, len(out))
        for i in range(n):
            buf[i] = out[i]
        rest = bytes(out[n:])
        self._rx = ([(clock.ms, rest)] if rest else []) + keep
        return n

    def read(self, n=None):
        out, keep = self._ready()
        if not out:
            return None
        b = bytearray(len(out) if n is None else min(n, len(out)))
        self.readinto(b)
        return bytes(b)


class SPI:
    made = {}

    def __init__(self, id, baudrate=500000, **kw):
        self.id = id
        self.baudrate = baudrate
        self.kw = kw
        self.writes = []
        SPI.made[id] = self

    def write(self, buf):
        self.writes.append(bytes(buf))


class PWM:
    made = []

    def __init__(self, pin, freq=0, duty_u16=None, duty=None):
        self.pin = pin
        self._freq = freq
        self.duty = 512 if duty_u16 is None else duty_u16   # the ESP32 default trap
        self.duties = []
        PWM.made.append(self)

    def duty_u16(self, v=None):
        if v is None:
            return self.duty
        self.duty = v
        self.duties.append(v)

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f

    def deinit(self):
        self.duty = 0


class RTC:
    def datetime(self, t=None):
        if t is None:
            return _gmtime()
        # (year, month, day, weekday, hours, minutes, seconds, subseconds)
        secs = days_from_civil(t[0], t[1], t[2]) * 86400 + t[4] * 3600 + t[5] * 60 + t[6]
        clock.wall = secs - _epoch_shift() - clock.ms // 1000
        RTC.last = t


machine = _Module("machine")
machine.Pin = Pin
machine.UART = UART
machine.SPI = SPI
machine.PWM = PWM
machine.RTC = RTC


# ---------------------------------------------------------------- network

class WLAN:
    connect_after = 1            # connect() calls needed before it associates
    fail_status = 1001           # status() while not connected (STAT_CONNECTING)
    last = None

    def __init__(self, interface=0):
        self.interface = interface
        self._active = False
        self.connects = 0
        self.connected = False
        self.settings = {}
        self.calls = []
        WLAN.last = self

    def active(self, v=None):
        if v is None:
            return self._active
        self._active = bool(v)

    def connect(self, ssid=None, key=None):
        if not self._active:
            raise OSError("STA must be active")
        self.calls.append(("connect", ssid, key))
        self.connects += 1
        if self.connects >= WLAN.connect_after:
            self.connected = True

    def disconnect(self):
        self.calls.append(("disconnect",))
        self.connected = False

    def isconnected(self):
        return self.connected

    def status(self, param=None):
        if param == "rssi":
            if not self.connected:
                raise OSError("not connected")
            return -58
        return 1010 if self.connected else WLAN.fail_status

    def ifconfig(self):
        return ("192.168.1.50", "255.255.255.0", "192.168.1.1", "192.168.1.1")

    def config(self, *args, **kw):
        if kw:
            self.settings.update(kw)
            return None
        if args and args[0] == "mac":
            return b"\x24\x0a\xc4\x00\x00\x01"
        raise ValueError("unknown config param")


network = _Module("network")
network.WLAN = WLAN
network.STA_IF = 0
network.AP_IF = 1
network.STAT_IDLE = 1000
network.STAT_CONNECTING = 1001
network.STAT_GOT_IP = 1010
network.STAT_NO_AP_FOUND = 201
network.STAT_WRONG_PASSWORD = 202
network.names = []


def _hostname(name=None):
    if name is None:
        return network.names[-1] if network.names else "esp32"
    network.names.append(name)


network.hostname = _hostname


# ---------------------------------------------------------------- ntptime

ntptime = _Module("ntptime")
ntptime.host = "pool.ntp.org"
ntptime.now = 1700000000       # what the "server" says (UTC, 1970 epoch)
ntptime.fail = False


def _settime():
    if ntptime.fail:
        raise OSError(110)
    clock.wall = ntptime.now - _epoch_shift() - clock.ms // 1000


ntptime.settime = _settime


# ---------------------------------------------------------------- install

_FAKES = {"machine": machine, "network": network, "ntptime": ntptime, "time": time}
_saved = []


def install():
    """Put the fakes in sys.modules; drop cached hal.esp32 driver modules so the
    next import binds to the fakes."""
    saved = {}
    for name in _FAKES:
        saved[name] = sys.modules.get(name)
        sys.modules[name] = _FAKES[name]
    for name in list(sys.modules):
        if name.startswith("hal.esp32."):
            del sys.modules[name]
    _saved.append(saved)


def restore():
    saved = _saved.pop()
    for name in saved:
        if saved[name] is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved[name]


class installed:
    """with installed(): ... for lazy imports (ntptime) inside a test."""

    def __enter__(self):
        saved = {}
        for name in ("network", "ntptime"):
            saved[name] = sys.modules.get(name)
            sys.modules[name] = _FAKES[name]
        self._saved = saved
        return self

    def __exit__(self, *exc):
        for name in self._saved:
            if self._saved[name] is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = self._saved[name]
        return False
