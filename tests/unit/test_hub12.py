"""hal/esp32/hub12 (P10 HUB12 LED modules) on fake wires (CPython and MicroPython)."""
import gc
import sys

import fake_bus as fb
from _util import raises
from hal.esp32.hub12 import Hub12, duty

_MICROPYTHON = sys.implementation.name == "micropython"


def _sign(modules=2, **kw):
    bus = fb.Bus()
    spi = fb.LogSPI(bus)
    a = fb.LogPin(bus, "a")
    b = fb.LogPin(bus, "b")
    lat = fb.LogPin(bus, "lat")
    oe = fb.LogPWM(bus, "oe")
    return Hub12(spi, a, b, lat, oe, modules=modules, **kw), bus


def _set(sign, x, y):
    sign.buf[y * sign.w // 8 + x // 8] |= 0x80 >> (x & 7)


def _decode(sign, g, stream, active_low):
    """What the modules light for row group g after stream was shifted in, modelled from the
    wires: the last bit shifted sits next to the controller, in the RIGHTMOST module; inside a
    module, from its input: per 8-pixel column from the right, rows g, g+4, g+8, g+12, each
    with its rightmost pixel first. Returns the set of lit (x, y)."""
    bits = []
    for byte in stream:
        for k in range(8):
            bits.append((byte >> (7 - k)) & 1)
    assert len(bits) == sign.w * 4
    lit = set()
    for p in range(len(bits)):                 # p = distance from the controller
        bit = bits[len(bits) - 1 - p]
        if bit == (0 if active_low else 1):
            module_from_right, q = p // 128, p % 128
            slot, pos = q // 8, q % 8
            col_from_right, quarter = slot // 4, slot % 4
            x = sign.w - 1 - (module_from_right * 32 + col_from_right * 8 + pos)
            lit.add((x, g + 4 * quarter))
    return lit


def _lit(sign, active_low):
    out = set()
    for g in range(4):
        out |= _decode(sign, g, bytes(sign.group_buffer(g)), active_low)
    return out


# ------------------------------------------------------------ shift order

# (x, y) -> (row group, byte index in that group's 32-byte buffer, byte) on 2 modules
_WHERE = {
    (0, 0): (0, 3, 0x80),      # top-left: the last byte of the first column
    (7, 0): (0, 3, 0x01),
    (8, 1): (1, 7, 0x80),
    (31, 15): (3, 12, 0x01),   # bottom-right of module 0: row 15 goes first in a column
    (32, 0): (0, 19, 0x80),    # module 1 follows module 0 in the stream
    (40, 6): (2, 22, 0x80),
    (33, 13): (1, 16, 0x40),
    (63, 15): (3, 28, 0x01),
}


def test_a_single_lit_pixel_lands_where_the_chain_puts_it():
    for (x, y), (group, index, value) in _WHERE.items():
        sign, _ = _sign(active_low=False)
        _set(sign, x, y)
        sign.commit()
        for g in range(4):
            want = bytearray(32)
            if g == group:
                want[index] = value
            assert bytes(sign.group_buffer(g)) == bytes(want), (x, y, g)
        assert _lit(sign, False) == {(x, y)}, (x, y)


def test_active_low_data_inverts_every_bit():
    sign, _ = _sign(active_low=True)
    for g in range(4):
        assert bytes(sign.group_buffer(g)) == b"\xff" * 32      # dark panel: all high
    _set(sign, 40, 6)
    sign.commit()
    want = bytearray(b"\xff" * 32)
    want[22] = 0x7F
    assert bytes(sign.group_buffer(2)) == bytes(want)
    assert _lit(sign, True) == {(40, 6)}


def test_every_frame_reaches_the_modules_unchanged():
    for modules in (1, 3):
        sign, _ = _sign(modules=modules, active_low=True)
        seed = 12345
        want = set()
        for y in range(16):
            for x in range(sign.w):
                seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
                if seed >> 16 & 1:
                    _set(sign, x, y)
                    want.add((x, y))
        sign.commit()
        assert _lit(sign, True) == want, modules


def test_the_frame_is_mono_hlsb_as_framebuf_draws_it():
    if not _MICROPYTHON:
        return                                 # framebuf exists only on MicroPython
    import framebuf
    sign, _ = _sign(active_low=False)
    fbuf = framebuf.FrameBuffer(sign.buf, sign.w, sign.h, framebuf.MONO_HLSB)
    for (x, y) in _WHERE:
        fbuf.pixel(x, y, 1)
    sign.commit()
    assert _lit(sign, False) == set(_WHERE)


# ------------------------------------------------------------ refresh

def test_each_refresh_shifts_latches_selects_then_lights_one_group():
    sign, bus = _sign(brightness=15)
    _set(sign, 0, 0)
    sign.commit()
    on = duty(15)
    for tick in range(6):
        g = tick % 4
        start = len(bus.log)
        sign.refresh_group()
        assert bus.events(start) == [
            ("oe", 0),                                   # dark while rows change
            ("spi", bytes(sign.group_buffer(g))),
            ("lat", 1), ("lat", 0),                      # rising edge latches
            ("a", g & 1), ("b", g >> 1),
            ("oe", on),
        ], tick


def test_brightness_and_oe_polarity():
    assert duty(15) == 65535 and duty(99) == 65535
    assert duty(0) == 255 and duty(-3) == 255
    assert duty(7) == 16383                              # half the levels: a quarter on
    sign, bus = _sign(brightness=3, oe_active_high=False)
    assert bus.log[0][:2] == ("oe", 65535)               # active-low OE: dark is high
    start = len(bus.log)
    sign.refresh_group()
    ev = bus.events(start)
    assert ev[0] == ("oe", 65535) and ev[-1] == ("oe", 65535 - duty(3))
    sign.brightness(15)
    start = len(bus.log)
    sign.refresh_group()
    assert bus.events(start)[-1] == ("oe", 0)


def test_drawing_shows_only_after_commit_and_never_half_a_frame():
    sign, bus = _sign(active_low=False)
    shown = sign.group_buffer(0)
    _set(sign, 0, 0)
    start = len(bus.log)
    sign.refresh_group()                                  # drawn but not committed
    assert bus.events(start)[1] == ("spi", bytes(32))
    sign.commit()
    assert bytes(shown) == bytes(32)                      # commit filled the other set
    for _ in range(3):
        sign.refresh_group()
    start = len(bus.log)
    sign.refresh_group()                                  # group 0 again
    want = bytearray(32)
    want[3] = 0x80
    assert bus.events(start)[1] == ("spi", bytes(want))


def test_the_timer_drives_the_refresh_and_stop_blanks():
    sign, bus = _sign()
    t = fb.Timer(0)
    sign.start(t)
    assert t.mode == t.PERIODIC and t.period == 2
    start = len(bus.log)
    t.fire(8)                                             # two whole frames
    ev = bus.events(start)
    assert [v for n, v in ev if n == "lat"] == [1, 0] * 8
    assert [(a, b) for (n, a), (_, b) in zip(ev, ev[1:]) if n == "a"] == \
        [(0, 0), (1, 0), (0, 1), (1, 1)] * 2
    sign.stop()
    assert t.deinits == 1 and t.callback is None
    assert bus.events()[-1] == ("oe", 0)
    sign2, _ = _sign(period_ms=3)
    t2 = fb.Timer(1)
    sign2.start(t2)
    assert t2.period == 3


def test_show_draws_through_the_render_hook():
    seen = []

    def render(buf, w, h, lines):
        seen.append((w, h, list(lines)))
        buf[0] = 0x80                                     # light (0, 0)

    sign, _ = _sign(modules=4, active_low=False, render=render)
    sign.show(["请A001号到3号窗口"])
    assert seen == [(128, 16, ["请A001号到3号窗口"])]
    assert _lit(sign, False) == {(0, 0)}
    plain, _ = _sign(active_low=False)                    # no renderer: a blank sign
    _set(plain, 5, 5)
    plain.show(["A001"])
    assert _lit(plain, False) == set()


def test_sizes():
    sign, _ = _sign(modules=4)
    assert (sign.w, sign.h, len(sign.buf)) == (128, 16, 256)
    assert len(sign.group_buffer(0)) == 64
    raises(ValueError, _sign, modules=0)
    raises(ValueError, _sign, modules=17)


def test_a_refresh_allocates_nothing():
    spi = fb.QuietSPI()
    pins = [fb.QuietPin() for _ in range(3)]
    oe = fb.QuietPWM()
    sign = Hub12(spi, pins[0], pins[1], pins[2], oe, modules=4)
    sign.commit()
    t = fb.Timer(0)
    sign.start(t)
    tick = t.callback
    oe.n = 0
    if not _MICROPYTHON:
        for _ in range(100):
            tick(t)
        assert spi.n == 100 and spi.bytes == 100 * 64 and oe.n == 200
        return
    import micropython
    gc.collect()
    before = gc.mem_alloc()
    n = 0
    while n < 100:
        tick(t)
        n += 1
    assert gc.mem_alloc() == before, gc.mem_alloc() - before
    micropython.heap_lock()                              # any allocation now raises
    try:
        n = 0
        while n < 100:
            tick(t)
            n += 1
    finally:
        micropython.heap_unlock()
    assert spi.n == 200 and spi.bytes == 200 * 64 and oe.n == 400
