"""hal/esp32/matrix_keypad on a fake 4x4 matrix (CPython and MicroPython)."""
import asyncio

import fake_machine as fm

fm.install()
try:
    from hal.esp32.matrix_keypad import KEYS, MatrixKeypad
finally:
    fm.restore()


class _Matrix:
    """Keys as switches between row and column wires: a column reads low when any path of
    pressed keys joins it to a row driven low, so 3 keys on a rectangle ghost a 4th
    exactly as a diode-less keypad does."""

    def __init__(self):
        self.down = set()
        self.low = [False] * 4
        self.rows = [_RowPin(self, r) for r in range(4)]
        self.cols = [_ColPin(self, c) for c in range(4)]

    def press(self, *chars):
        for ch in chars:
            self.down.add(KEYS.index(ch))

    def release(self, *chars):
        for ch in chars:
            self.down.discard(KEYS.index(ch))

    def col_low(self, c):
        seen_cols = {c}
        seen_rows = set()
        todo = [c]
        while todo:
            col = todo.pop()
            for k in self.down:
                if k % 4 != col or k // 4 in seen_rows:
                    continue
                r = k // 4
                if self.low[r]:
                    return True
                seen_rows.add(r)
                for k2 in self.down:
                    if k2 // 4 == r and k2 % 4 not in seen_cols:
                        seen_cols.add(k2 % 4)
                        todo.append(k2 % 4)
        return False


class _RowPin:
    def __init__(self, m, r):
        self.m, self.r = m, r

    def value(self, v=None):
        assert v is not None
        self.m.low[self.r] = not v


class _ColPin:
    def __init__(self, m, c):
        self.m, self.c = m, c

    def value(self, v=None):
        return 0 if self.m.col_low(self.c) else 1


def _pad(m, **kw):
    return MatrixKeypad(m.rows, m.cols, **kw)


def _take(pad):
    out = []
    while pad.pending():
        out.append(asyncio.run(pad.next_key()))
    pad.stop()
    return "".join(out)


def _steps(pad, n):
    for _ in range(n):
        pad.step()


def test_every_key_maps_to_its_char():
    m = _Matrix()
    pad = _pad(m, queue_size=16)
    for ch in KEYS:
        m.press(ch)
        _steps(pad, 3)
        m.release(ch)
        _steps(pad, 3)
    assert _take(pad) == KEYS
    assert all(not low for low in m.low)     # every row is released after a scan


def test_press_reported_once_after_stable_scans_and_never_repeats():
    m = _Matrix()
    pad = _pad(m, stable=3)
    m.press("5")
    _steps(pad, 2)
    assert pad.pending() == 0
    pad.step()
    assert pad.pending() == 1
    _steps(pad, 100)                          # held: no repeat
    assert pad.pending() == 1
    m.release("5")
    _steps(pad, 3)
    m.press("5")
    _steps(pad, 3)
    assert _take(pad) == "55"


def test_bounce_is_not_a_press():
    m = _Matrix()
    pad = _pad(m, stable=3)
    for _ in range(10):                       # contact chatter: never 3 scans alike
        m.press("7")
        _steps(pad, 2)
        m.release("7")
        _steps(pad, 2)
    assert pad.pending() == 0
    m.press("7")                              # it settles
    _steps(pad, 3)
    for _ in range(3):                        # release chatter: no second press
        m.release("7")
        pad.step()
        m.press("7")
        pad.step()
    assert _take(pad) == "7"


def test_two_keys_down_are_ignored_and_ghosts_never_report():
    m = _Matrix()
    pad = _pad(m)
    m.press("1", "2")
    _steps(pad, 10)
    assert pad.pending() == 0
    m.press("4")                              # 1, 2, 4 on a rectangle: 5 reads down too
    _steps(pad, 10)
    m.release("1", "2", "4")
    _steps(pad, 10)
    assert pad.pending() == 0
    # rolling over: the next key is taken once it is down alone, the first is not repeated
    m.press("3")
    _steps(pad, 3)
    m.press("6")
    _steps(pad, 5)
    m.release("3")
    _steps(pad, 3)
    m.press("3")
    _steps(pad, 5)
    m.release("3")
    _steps(pad, 5)
    assert _take(pad) == "36"


def test_ring_overflow_drops_newest_and_counts():
    m = _Matrix()
    pad = _pad(m, queue_size=4)
    for ch in "123456":
        m.press(ch)
        _steps(pad, 3)
        m.release(ch)
        _steps(pad, 3)
    assert pad.pending() == 4 and pad.dropped == 2
    assert _take(pad) == "1234"
    m.press("9")
    _steps(pad, 3)
    assert _take(pad) == "9"                  # the ring wraps


def test_key_held_at_boot_and_clear():
    m = _Matrix()
    m.press("D")
    pad = _pad(m)
    _steps(pad, 10)
    assert pad.pending() == 0                 # stuck or held at boot: not a press
    m.release("D")
    _steps(pad, 3)
    m.press("#")
    _steps(pad, 3)
    assert pad.pending() == 1
    pad.clear()
    _steps(pad, 10)                           # still held after clear: not again
    assert pad.pending() == 0


def test_next_key_waits_on_the_scanning_task():
    m = _Matrix()
    pad = _pad(m)

    async def scenario():
        waiter = asyncio.create_task(pad.next_key())
        await asyncio.sleep(0.05)
        m.press("*")
        got = await asyncio.wait_for(waiter, 2)
        pad.stop()
        return got

    assert asyncio.run(scenario()) == "*"


def test_gpio_numbers_get_open_drain_rows_and_pulled_up_columns():
    fm.reset_pins()
    MatrixKeypad((13, 12, 14, 27), (26, 25, 34, 39))
    for g in (13, 12, 14, 27):
        p = fm.Pin.made[g]
        assert p.mode == fm.Pin.OPEN_DRAIN and p.level == 1
    assert fm.Pin.made[26].pull == fm.Pin.PULL_UP and fm.Pin.made[26].mode == fm.Pin.IN
    assert fm.Pin.made[34].pull != fm.Pin.PULL_UP   # no pull-up in silicon there
    fm.reset_pins()
