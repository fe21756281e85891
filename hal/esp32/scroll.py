"""A pixel display's scrolling lines keep moving by themselves (HUB12 sign, ST7789 face).

After show(), if its render hook left a line wider than the panel, start() runs a task that
calls the display's animate(1) every 33 ms (~30 px/s) until nothing moves - the next show()
of lines that fit ends it. The firmware and the simulator know nothing of it: a display that
never scrolls costs no task and no RAM.
"""
import asyncio

_FRAME_MS = 33


def start(display):
    """Keep display animating while something moves (called after each show())."""
    if display.scrolling:
        return
    co = _run(display)
    try:
        asyncio.create_task(co)
    except RuntimeError:    # no event loop (CPython tests, which call animate() by hand)
        co.close()
        return
    display.scrolling = True


async def _run(display):
    try:
        while display.animate(1):
            await asyncio.sleep_ms(_FRAME_MS)
    except Exception:   # noqa: BLE001 - short of memory, a font read: the line stands still
        pass
    finally:
        display.scrolling = False
