"""Fakes of the wires a display driver drives, logged in ONE list in the order they happen
(CPython and MicroPython), for the hal/esp32 display driver tests.

Bus().log holds (name, value, ms): a pin level, ("spi", bytes written, ms) or a PWM duty; ms
comes from the clock given (fake_machine's, so a driver's sleep_ms shows as time passing).
Equal writes in a row share one bytes object, so a full-screen fill (115 KB) logs ~10 KB.
The Quiet* fakes record only the last value and a count — they allocate nothing, so a test
can check under MicroPython that a timer tick allocates nothing.
"""


class Bus:
    def __init__(self, clock=None):
        self.log = []
        self._clock = clock

    def now(self):
        return self._clock() if self._clock is not None else 0

    def add(self, name, value):
        self.log.append((name, value, self.now()))

    def events(self, start=0):
        """The log from start as (name, value) pairs."""
        return [(n, v) for n, v, _ in self.log[start:]]


class LogPin:
    def __init__(self, bus, name, value=0):
        self.bus = bus
        self.name = name
        self.v = value

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = 1 if v else 0
        self.bus.add(self.name, self.v)

    def __call__(self, v=None):
        return self.value(v)


class LogSPI:
    def __init__(self, bus, name="spi"):
        self.bus = bus
        self.name = name

    def write(self, buf):
        log = self.bus.log
        if log and log[-1][0] == self.name and log[-1][1] == buf:
            data = log[-1][1]      # a run of equal writes (a fill) shares one copy
        else:
            data = bytes(buf)
        self.bus.add(self.name, data)


class LogPWM:
    def __init__(self, bus, name="oe"):
        self.bus = bus
        self.name = name
        self.duty = 0

    def duty_u16(self, v=None):
        if v is None:
            return self.duty
        self.duty = v
        self.bus.add(self.name, v)


class Timer:
    """machine.Timer's shape; fire() runs the callback as the hardware would."""
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=0):
        self.id = id
        self.mode = None
        self.period = None
        self.callback = None
        self.deinits = 0

    def init(self, mode=PERIODIC, period=-1, callback=None, freq=None):
        self.mode = mode
        self.period = period
        self.callback = callback

    def deinit(self):
        self.callback = None
        self.deinits += 1

    def fire(self, n=1):
        for _ in range(n):
            self.callback(self)


class QuietPin:
    def __init__(self):
        self.v = 0
        self.n = 0

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
        self.n += 1


class QuietSPI:
    def __init__(self):
        self.n = 0
        self.bytes = 0

    def write(self, buf):
        self.n += 1
        self.bytes += len(buf)


class QuietPWM:
    def __init__(self):
        self.duty = 0
        self.n = 0

    def duty_u16(self, v=None):
        if v is None:
            return self.duty
        self.duty = v
        self.n += 1
