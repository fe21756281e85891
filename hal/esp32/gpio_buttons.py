"""Debounced push buttons on GPIO (active low, to GND), polled by an asyncio task.

A press is reported once, when the key is released (after debounce), so a held
key never repeats. A service key ("ticket:<code>") held for long_ms reports
"ticket:<code>:priority" at that moment instead, and nothing on release.

Queue: a preallocated ring of queue_size presses. When it is full the NEWEST
press is dropped and counted in .dropped (a citizen hammering keys must not
push out the press that is already waiting).

GPIO 34..39 have no internal pull-up: wire an external 10 kΩ pull-up there.

Example:
    import asyncio
    from hal.esp32.gpio_buttons import GpioButtons
    keys = GpioButtons({"ticket:A": 32, "rate5": 21, "next": 34})
    async def main():
        while True:
            print(await keys.next_press())
    asyncio.run(main())
"""
import asyncio
from array import array

from machine import Pin
from time import ticks_diff, ticks_ms

from hal.buttons import Buttons

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_POLL_MS = const(10)     # a real press lasts 80+ ms; 10 ms halves the CPU of 5
_LONG = const(0x80)     # queue entry flag: long press of button (entry & 0x7F)


def _long_name(name):
    # Only a plain service key gets a long-press meaning.
    if name.startswith("ticket:") and name.count(":") == 1 and "@" not in name:
        return name + ":priority"
    return None


class GpioButtons(Buttons):
    def __init__(self, pin_map, debounce_ms=30, long_ms=1500, queue_size=8):
        names = list(pin_map)
        n = len(names)
        if n > 127:
            raise ValueError("too many buttons")
        self._names = names
        self._long_names = [_long_name(x) for x in names]
        self._pins = []
        for name in names:
            num = pin_map[name]
            if 34 <= num <= 39:       # input-only pads: no pull-up in silicon
                self._pins.append(Pin(num, Pin.IN))
            else:
                self._pins.append(Pin(num, Pin.IN, Pin.PULL_UP))
        self._debounce = debounce_ms
        self._long_ms = long_ms
        # Per-button state, allocated once.
        self._raw = bytearray(n)      # last sampled level, 1 = pressed
        self._state = bytearray(n)    # debounced level
        self._spent = bytearray(n)    # this hold already reported (or cleared)
        self._since = array("i", [0] * n)   # ticks of last raw change
        self._down = array("i", [0] * n)    # ticks the current hold began
        now = ticks_ms()
        for i in range(n):
            # A key held (or stuck) at boot is not a press.
            p = 1 if self._pins[i].value() == 0 else 0
            self._raw[i] = p
            self._state[i] = p
            self._spent[i] = p
            self._since[i] = now
            self._down[i] = now
        self._q = bytearray(queue_size)
        self._head = 0
        self._count = 0
        self.dropped = 0
        self._ready = asyncio.Event()
        self._task = None

    def _push(self, entry):
        size = len(self._q)
        if self._count >= size:
            self.dropped += 1
            return
        self._q[(self._head + self._count) % size] = entry
        self._count += 1
        self._ready.set()

    def _pop(self):
        entry = self._q[self._head]
        self._head = (self._head + 1) % len(self._q)
        self._count -= 1
        i = entry & 0x7F
        return self._long_names[i] if entry & _LONG else self._names[i]

    def step(self, now):
        """Sample every pin once at ticks now; queue finished presses."""
        pins = self._pins
        raw = self._raw
        state = self._state
        spent = self._spent
        since = self._since
        for i in range(len(raw)):
            p = 1 if pins[i].value() == 0 else 0
            if p != raw[i]:
                raw[i] = p
                since[i] = now
            elif p != state[i] and ticks_diff(now, since[i]) >= self._debounce:
                state[i] = p
                if p:
                    self._down[i] = since[i]
                    spent[i] = 0
                elif not spent[i]:
                    self._push(i)
            if (state[i] and not spent[i] and self._long_names[i] is not None
                    and ticks_diff(now, self._down[i]) >= self._long_ms):
                spent[i] = 1
                self._push(i | _LONG)

    async def _poll(self):
        while True:
            self.step(ticks_ms())
            await asyncio.sleep(_POLL_MS / 1000)

    def start(self):
        """Start the polling task (next_press starts it if nobody did)."""
        if self._task is None:
            self._task = asyncio.create_task(self._poll())
        return self._task

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def next_press(self):
        self.start()
        while not self._count:
            self._ready.clear()
            await self._ready.wait()
        return self._pop()

    def pending(self):
        return self._count

    def clear(self):
        """Drop queued presses; keys held right now will not report on release."""
        self._count = 0
        for i in range(len(self._state)):
            if self._state[i]:
                self._spent[i] = 1
