"""hal/esp32/scroll: a display whose lines scroll keeps animating by itself until nothing
moves, one task at a time (MicroPython: the device's asyncio; CPython has no sleep_ms)."""
import sys

import asyncio

from hal.esp32 import scroll


class _Display:
    def __init__(self, frames):
        self.frames = frames    # how many more animate() calls find something moving
        self.calls = 0
        self.scrolling = False

    def animate(self, n=1):
        self.calls += 1
        self.frames -= 1
        return self.frames >= 0


def test_the_task_animates_until_nothing_moves_and_one_runs_at_a_time():
    if sys.implementation.name != "micropython":
        return      # asyncio.sleep_ms is MicroPython's
    d = _Display(3)

    async def main():
        scroll.start(d)
        scroll.start(d)             # a second show() while it runs: no second task
        assert d.scrolling
        await asyncio.sleep_ms(300)
        assert not d.scrolling and d.calls == 4     # 3 moved, the 4th found nothing
        d.frames = 1
        scroll.start(d)             # the next show() with a long line starts it again
        await asyncio.sleep_ms(150)
        assert d.calls == 6 and not d.scrolling

    asyncio.run(main())


def test_without_an_event_loop_nothing_starts():
    if sys.implementation.name == "micropython":
        return      # MicroPython queues the task for the next asyncio.run
    d = _Display(3)
    scroll.start(d)
    assert not d.scrolling and d.calls == 0
