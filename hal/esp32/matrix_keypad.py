"""4x4 matrix keypad (the counter's 呼叫器), scanned by an asyncio task every 10 ms.

Keys, row by row:  1 2 3 A / 4 5 6 B / 7 8 9 C / * 0 # D.

Wiring: the 4 row pins are driven, the 4 column pins read. Rows are OPEN-DRAIN: idle rows
float and only the row being scanned is pulled low, so two keys pressed in one column
never short a high row to a low one. Columns have pull-ups (internal; GPIO 34..39 have
none in silicon and can only be columns: fit external 10 kΩ to 3V3, as also helps long
cables). A key reads as a low column while its row is low. Keep boot-strap pins (0, 2, 5,
12, 15) off the keypad: a key held at reset would join them to a pulled-up column.

Debounce: a scan gives one key, none, or "several". A key counts as pressed once the
same single key has been seen in `stable` scans in a row, and is reported at that moment,
once: holding it never repeats. A scan with 2+ keys down is ignored, because without
diodes 3 keys on a rectangle make a 4th that is not pressed (ghosting); rolling from one
key to the next (press the next before releasing the last) still reports the new key
once it is down alone. A key held at boot (or stuck) is not reported until released.

Queue: a preallocated ring of queue_size key chars; when full the NEWEST key is dropped
and counted in .dropped (like hal.esp32.gpio_buttons).

Why a task and not machine.Timer: the ring and the Event are then only touched by the
loop (a Timer callback would need a ThreadSafeFlag and interrupt-safe code), and a test
can call step() directly. The cost: a loop blocked longer than a keystroke (~60 ms)
misses it.

Example:
    import asyncio
    from hal.esp32.matrix_keypad import MatrixKeypad
    pad = MatrixKeypad(rows=(13, 14, 27, 26), cols=(25, 33, 32, 4))
    async def main():
        while True:
            print(await pad.next_key())      # "1".."9", "0", "A".."D", "*", "#"
    asyncio.run(main())
"""
import asyncio

from machine import Pin

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

try:
    from asyncio import sleep_ms     # an int: no float made 100 times a second
except ImportError:                  # CPython (host tests)
    async def sleep_ms(ms):
        await asyncio.sleep(ms / 1000)

KEYS = "123A456B789C*0#D"    # index = row * 4 + column
_POLL_MS = const(10)
_NONE = const(16)            # scan results besides a key index 0..15
_MANY = const(17)


def _row(p):
    if isinstance(p, int):   # a GPIO number; otherwise a ready Pin (or a test's fake)
        return Pin(p, Pin.OPEN_DRAIN, value=1)
    return p


def _col(p):
    if isinstance(p, int):
        return Pin(p, Pin.IN) if 34 <= p <= 39 else Pin(p, Pin.IN, Pin.PULL_UP)
    return p


class MatrixKeypad:
    def __init__(self, rows, cols, stable=3, queue_size=8):
        if len(rows) != 4 or len(cols) != 4:
            raise ValueError("4 rows and 4 cols")
        self._rows = [_row(p) for p in rows]
        self._cols = [_col(p) for p in cols]
        self._stable = max(1, stable)
        self._raw = _NONE          # last scan and how many scans in a row gave it
        self._runs = 0
        self._held = self.scan()   # what is down now was not pressed now
        self._q = bytearray(queue_size)
        self._head = 0
        self._count = 0
        self.dropped = 0
        self._ready = asyncio.Event()
        self._task = None

    def scan(self):
        """One pass over the matrix: a key index 0..15, _NONE or _MANY."""
        found = _NONE
        cols = self._cols
        for r in range(4):
            row = self._rows[r]
            row.value(0)
            for c in range(4):
                if cols[c].value() == 0:
                    found = r * 4 + c if found == _NONE else _MANY
            row.value(1)
            if found == _MANY:
                break
        return found

    def step(self):
        """Scan once; queue a key that has just become stably down alone."""
        k = self.scan()
        if k != self._raw:
            self._raw = k
            self._runs = 1
        elif self._runs < self._stable:
            self._runs += 1
        if self._runs != self._stable:
            return
        self._runs += 1            # act once per stable run
        if k == _NONE:
            self._held = _NONE
        elif k != _MANY and k != self._held:
            self._held = k
            self._push(k)

    def _push(self, k):
        size = len(self._q)
        if self._count >= size:
            self.dropped += 1
            return
        self._q[(self._head + self._count) % size] = k
        self._count += 1
        self._ready.set()

    async def _poll(self):
        while True:
            self.step()
            await sleep_ms(_POLL_MS)

    def start(self):
        """Start the scanning task (next_key starts it if nobody did)."""
        if self._task is None:
            self._task = asyncio.create_task(self._poll())
        return self._task

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def next_key(self):
        """Wait for the next key and return its char."""
        self.start()
        while not self._count:
            self._ready.clear()
            await self._ready.wait()
        k = self._q[self._head]
        self._head = (self._head + 1) % len(self._q)
        self._count -= 1
        return KEYS[k]

    def pending(self):
        return self._count

    def clear(self):
        """Drop queued keys (a key held now is not reported again on its own)."""
        self._count = 0
