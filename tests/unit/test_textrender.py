"""Text into a MONO_HLSB bitmap, the scroller and the flash phase (CPython and MicroPython).

Every drawing is compared pixel by pixel with a plain reference painter below, which sets
one pixel at a time from the font's bitmap: an independent way to the same picture."""
import sys

from firmware.font import Font
from firmware.textrender import Scroller, draw, flash_on, text_width

CALL = "请A001号到3号窗口"


def _skip(why):
    try:
        import pytest
    except ImportError:
        return  # MicroPython: mp_runner counts it as passed
    pytest.skip(why)


def pixel(buf, w, x, y):
    return buf[y * ((w + 7) >> 3) + (x >> 3)] >> (7 - (x & 7)) & 1


def pixels(buf, w, h):
    return [[pixel(buf, w, x, y) for x in range(w)] for y in range(h)]


def reference(font, grid, x, y, text, invert=False):
    """Paint text into grid (rows of 0/1) one pixel at a time; return the advance."""
    h = len(grid)
    w = len(grid[0])
    x0 = x
    for ch in text:
        cw = font.glyph(ord(ch))
        per_row = cw >> 3
        for r in range(16):
            for c in range(cw):
                bit = font.buf[r * per_row + (c >> 3)] >> (7 - (c & 7)) & 1
                if 0 <= x + c < w and 0 <= y + r < h:
                    grid[y + r][x + c] = bit ^ (1 if invert else 0)
        x += cw
    return x - x0


def show(buf, w, h):
    """ASCII art of a bitmap, to look at (pytest -s); not asserted."""
    for y in range(h):
        print("".join("#" if pixel(buf, w, x, y) else "." for x in range(w)))


def filled(n, value):
    buf = bytearray(n)   # MicroPython has no bytearray * int
    for i in range(n):
        buf[i] = value
    return buf


def same_as_reference(font, w, h, x, y, text, invert=False, fill=0):
    buf = filled(((w + 7) >> 3) * h, fill)
    grid = pixels(buf, w, h)
    before = bytes(buf)
    adv = draw(font, buf, w, h, x, y, text, invert)
    assert adv == reference(font, grid, x, y, text, invert) == text_width(text)
    assert pixels(buf, w, h) == grid, (w, h, x, y, text, invert)
    if w & 7:   # the padding bits at the end of each row are not pixels: left alone
        stride = (w + 7) >> 3
        pad = (1 << (8 - (w & 7))) - 1
        for row in range(h):
            i = row * stride + stride - 1
            assert buf[i] & pad == before[i] & pad
    return buf


def test_widths_follow_from_the_bytes():
    assert text_width("") == 0
    assert text_width("A001") == 32
    assert text_width("请") == 16
    assert text_width(CALL) == 6 * 16 + 5 * 8 == 136
    assert text_width(CALL.encode("utf-8")) == 136
    assert text_width("，。【】") == 64
    assert text_width("😀") == 16               # missing: a 16-px box
    assert text_width(b"\x80A") == 24           # stray continuation byte: a box, then A
    assert text_width(b"A\xe4\xb8") == 24       # truncated sequence at the end: one box


def test_call_line_into_128x16():
    w, h = 128, 16
    with Font() as f:
        buf = same_as_reference(f, w, h, 0, 0, CALL)
        print()
        show(buf, w, h)
        # glyph cells: 请 0-15, A 16-23, 0 24-31, 0 32-39, 1 40-47, 号 48-63, 到 64-79, 3 80-87,
        # 号 88-103, 窗 104-119, 口 120-127 (clipped: its right half is off the panel)
        f.glyph(ord("请"))                     # row 0 = 0x0040: one pixel at column 9
        assert [pixel(buf, w, x, 0) for x in range(16)] == [1 if x == 9 else 0 for x in range(16)]
        f.glyph(ord("A"))                      # row 9 = 0x7E: columns 1..6 of the cell at 16
        assert [pixel(buf, w, x, 9) for x in range(16, 24)] == [0, 1, 1, 1, 1, 1, 1, 0]
        f.glyph(ord("号"))
        for r in range(16):
            row = f.buf[2 * r] << 8 | f.buf[2 * r + 1]
            got = 0
            for x in range(88, 104):          # the second 号, byte-aligned
                got = got << 1 | pixel(buf, w, x, r)
            assert got == row
        f.glyph(ord("口"))
        for r in range(16):                   # only the left half of 口 is on the panel
            assert buf[r * 16 + 15] == f.buf[2 * r]


def test_every_alignment_and_invert_match_the_reference():
    with Font() as f:
        for x in range(-17, 10):
            same_as_reference(f, 40, 16, x, 0, "A请1", False, 0x5A)
            same_as_reference(f, 40, 16, x, 0, "A请1", True, 0x5A)


def test_clipping_at_the_right_edge():
    with Font() as f:
        for x in (120, 123, 126, 127, 128, 200):
            same_as_reference(f, 128, 16, x, 0, "口A", False, 0xA5)
        for x in (84, 90, 95, 99):                # a width that is not a whole number of bytes
            same_as_reference(f, 100, 16, x, 0, "窗口", False, 0xFF)
            same_as_reference(f, 100, 16, x, 0, "窗口", True, 0x00)
        buf = bytearray(2 * 16 * 2)               # 16 x 32: nothing spills into the next row
        draw(f, buf, 16, 32, 8, 0, "口")
        assert all(buf[2 * r] == 0 for r in range(32))


def test_clipping_at_the_left_top_and_bottom():
    with Font() as f:
        for x, y in ((-5, 0), (-20, 0), (0, -3), (3, 10), (-9, -15), (0, 15), (0, 16), (0, -16)):
            same_as_reference(f, 64, 16, x, y, "请A号", False, 0x3C)
        same_as_reference(f, 64, 40, 5, 20, CALL)


def test_glyphs_off_the_bitmap_are_not_read():
    class Counting:
        def __init__(self, font):
            self.font = font
            self.buf = font.buf
            self.reads = 0

        def glyph(self, cp):
            self.reads += 1
            return self.font.glyph(cp)

    with Font() as f:
        c = Counting(f)
        buf = bytearray(16 * 16)
        assert draw(c, buf, 128, 16, -1000, 0, CALL * 20) == 136 * 20
        # copy 7 starts at -48: its 号到3号窗口 cover x 0..87, then copy 8's 请A00 88..127
        assert c.reads == 10
        c.reads = 0
        draw(c, buf, 128, 16, 0, 20, CALL)        # below the bitmap
        assert c.reads == 0


def test_scroller_moves_one_pixel_a_step_and_wraps():
    w, h = 64, 32
    stride = w >> 3
    with Font() as f:
        s = Scroller(CALL, w, gap=32)
        assert s.moving and s.width == 136 and s.period == 168

        def frame():
            buf = filled(stride * h, 0xFF)
            s.draw(f, buf, w, h, 8)
            return buf

        def expected(offset):
            buf = filled(stride * h, 0xFF)
            grid = pixels(buf, w, h)
            for y in range(8, 24):
                grid[y] = [0] * w
            reference(f, grid, -offset, 8, CALL)
            reference(f, grid, -offset + 168, 8, CALL)
            return grid

        first = frame()
        assert pixels(first, w, h) == expected(0)
        for n, total in ((1, 1), (99, 100), (50, 150), (10, 160), (8, 0), (168 * 3 + 5, 5)):
            s.step(n)
            assert s.offset == total
            assert pixels(frame(), w, h) == expected(total), total
        s.step(163)
        assert s.offset == 0 and frame() == first
        assert all(first[y * stride] == 0xFF for y in list(range(8)) + list(range(24, 32)))


def test_short_text_stands_still():
    with Font() as f:
        s = Scroller("A001", 64)
        assert not s.moving
        s.step(5)
        assert s.offset == 0
        buf = bytearray(8 * 16)
        s.draw(f, buf, 64, 16, invert=True)
        ref = filled(8 * 16, 0xFF)
        draw(f, ref, 64, 16, 0, 0, "A001", True)
        assert buf == ref


def test_flash_phase():
    assert [flash_on(t, 2, 2) for t in range(10)] == [True, True, False, False, True, True,
                                                      False, False, True, True]
    assert [flash_on(t, 1, 0) for t in range(1000, 1004)] == [True, False, True, False]
    assert flash_on(-3) and flash_on(10 ** 6)


def test_no_allocation_per_glyph():
    """Drawing 10 glyphs and 400 allocates the same few bytes (MicroPython's gc; CPython skips)."""
    if sys.implementation.name != "micropython":
        _skip("gc.mem_alloc is MicroPython's")
        return
    import gc
    w, h = 1600, 16          # wide enough that every glyph of the long text is read and drawn
    buf = bytearray((w >> 3) * h)
    short = "请A001号到3号"
    long_text = ("请A001号到3号窗口，" * 40)[:400]
    with Font() as f:
        draw(f, buf, w, h, 0, 0, short)
        s = Scroller(long_text, 128)
        line = bytearray(16 * 16)

        def cost(fn):
            gc.collect()
            gc.disable()
            try:
                before = gc.mem_alloc()
                fn()
                return gc.mem_alloc() - before
            finally:
                gc.enable()

        a = cost(lambda: draw(f, buf, w, h, 0, 0, short))
        b = cost(lambda: draw(f, buf, w, h, -3, 0, long_text))
        c = cost(lambda: (s.step(1), s.draw(f, line, 128, 16)))
        print("alloc: 10 glyphs %d B, 400 glyphs %d B, a scroller frame %d B" % (a, b, c))
        assert b <= a + 32 and b < 256
        assert c < 256
