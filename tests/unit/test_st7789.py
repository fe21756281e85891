"""hal/esp32/st7789 (SPI TFT) on fake wires (CPython and MicroPython): the bytes it sends,
decoded by CS and D/C as the controller reads them."""
import gc
import sys

import fake_bus as fb
import fake_machine as fm
from _util import raises

fm.install()          # the driver's sleep_ms then moves fake time: nothing really waits
try:
    from hal.esp32.st7789 import St7789, color565
finally:
    fm.restore()

_MICROPYTHON = sys.implementation.name == "micropython"

# An 8x16 'A' (MONO_HLSB: one byte a row, bit 7 = leftmost)
_A = bytes((0x00, 0x00, 0x10, 0x38, 0x6C, 0xC6, 0xC6, 0xFE,
            0xC6, 0xC6, 0xC6, 0xC6, 0x00, 0x00, 0x00, 0x00))
_FG = color565(255, 255, 0)      # 0xFFE0
_BG = color565(0, 0, 128)        # 0x0010


def _tft(**kw):
    fm.reset_clock()
    bus = fb.Bus(clock=lambda: fm.clock.ms)
    pins = {"cs": fb.LogPin(bus, "cs", 1), "dc": fb.LogPin(bus, "dc", 1),
            "rst": fb.LogPin(bus, "rst", 1), "bl": fb.LogPin(bus, "bl", 0)}
    for name in ("rst", "bl"):
        if kw.get(name, True) is None:
            pins[name] = None
        kw.pop(name, None)
    tft = St7789(fb.LogSPI(bus), pins["cs"], pins["dc"], rst=pins["rst"], bl=pins["bl"], **kw)
    return tft, bus


_BIG = 8192


def _commands(bus, start=0):
    """[(command, data, ms)] as the controller sees them: CS low frames a transfer, a byte
    with D/C low is a command, the bytes after it with D/C high are its data. Data longer
    than _BIG (a fill) comes as ("big", length, {distinct writes}) so that no test builds a
    frame in the heap."""
    out = []
    cs = dc = 1
    for name, v, ms in bus.log[start:]:
        if name == "cs":
            cs = v
        elif name == "dc":
            dc = v
        elif name == "spi":
            assert cs == 0, "SPI write with CS high"
            if dc == 0:
                for b in v:
                    out.append((b, [], ms))
            else:
                assert out, "data before any command"
                out[-1][1].append(v)
    res = []
    for c, chunks, ms in out:
        n = sum(len(d) for d in chunks)
        res.append((c, b"".join(chunks) if n <= _BIG else ("big", n, set(chunks)), ms))
    return res


def _pixels(data):
    return [data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)]


def _glyph_pixel(bits, w, x, y):
    return bits[y * ((w + 7) // 8) + x // 8] & (0x80 >> (x & 7))


# ------------------------------------------------------------ init

def test_init_sequence_and_its_waits():
    tft, bus = _tft()
    cmds = _commands(bus)
    assert [(c, d) for c, d, _ in cmds[:7]] == [
        (0x01, b""),             # SWRESET
        (0x11, b""),             # SLPOUT
        (0x3A, b"\x55"),         # COLMOD: 65K colours, 16 bits a pixel
        (0x36, b"\x00"),         # MADCTL: rotation 0, RGB
        (0x21, b""),             # INVON
        (0x13, b""),             # NORON
        (0x29, b""),             # DISPON
    ]
    # then the whole panel is cleared (its RAM is random at power-up)
    assert [(c, d) for c, d, _ in cmds[7:9]] == [(0x2A, b"\x00\x00\x00\xef"),
                                                 (0x2B, b"\x00\x00\x00\xef")]
    assert cmds[9][0] == 0x2C and cmds[9][1] == ("big", 240 * 240 * 2, {bytes(480)})
    assert len(cmds) == 10
    # hardware reset pulse first, then >= 120 ms before SWRESET, >= 120 ms before SLPOUT,
    # >= 5 ms before the next command
    ev = bus.events()
    assert ev[:4] == [("cs", 1), ("dc", 1), ("bl", 0), ("rst", 0)]
    rst_high = [ms for n, v, ms in bus.log if n == "rst" and v == 1][0]
    assert cmds[0][2] - rst_high >= 120
    assert cmds[1][2] - cmds[0][2] >= 120
    assert cmds[2][2] - cmds[1][2] >= 5
    # backlight only once the clear is done; CS released at the end
    assert ev[-2:] == [("cs", 1), ("bl", 1)]
    assert [n for n, _ in ev].count("bl") == 2


def test_options_change_madctl_and_inversion():
    tft, bus = _tft(bgr=True, invert=False, rst=None, bl=None)
    cmds = _commands(bus)
    assert (cmds[3][0], cmds[3][1]) == (0x36, b"\x08")
    assert cmds[4][0] == 0x20                                   # INVOFF
    assert "rst" not in [n for n, _ in bus.events()]
    raises(ValueError, _tft, width=320, height=240)
    raises(ValueError, _tft, rotation=4)


def test_rotation_sets_madctl_size_and_the_240x240_offset():
    # rotation -> (MADCTL, width, height, CASET start, RASET start) for a 1x1 fill at 0,0
    want = {
        (240, 240): ((0x00, 240, 240, 0, 0), (0x60, 240, 240, 0, 0),
                     (0xC0, 240, 240, 0, 80), (0xA0, 240, 240, 80, 0)),
        (240, 320): ((0x00, 240, 320, 0, 0), (0x60, 320, 240, 0, 0),
                     (0xC0, 240, 320, 0, 0), (0xA0, 320, 240, 0, 0)),
    }
    for (pw, ph), rows in want.items():
        for rot in range(4):
            madctl, w, h, x0, y0 = rows[rot]
            tft, bus = _tft(width=pw, height=ph, rotation=rot)
            assert _commands(bus)[3][1] == bytes((madctl,)), (pw, ph, rot)
            assert (tft.width, tft.height) == (w, h)
            start = len(bus.log)
            tft.fill_rect(0, 0, 1, 1, 0)
            cmds = _commands(bus, start)
            assert cmds[0][1] == bytes((0, x0, 0, x0)) and cmds[1][1] == bytes((0, y0, 0, y0))


# ------------------------------------------------------------ drawing

def test_fill_rect_byte_stream():
    tft, bus = _tft()
    start = len(bus.log)
    tft.fill_rect(10, 20, 30, 4, 0xF800)
    assert [(c, d) for c, d, _ in _commands(bus, start)] == [
        (0x2A, b"\x00\x0a\x00\x27"),          # columns 10..39
        (0x2B, b"\x00\x14\x00\x17"),          # rows 20..23
        (0x2C, b"\xf8\x00" * 120),
    ]
    assert bus.events()[-1] == ("cs", 1)
    # clipped at the bottom-right corner; nothing at all when wholly off screen
    start = len(bus.log)
    tft.fill_rect(230, 235, 20, 20, 0x001F)
    assert [(c, d) for c, d, _ in _commands(bus, start)] == [
        (0x2A, b"\x00\xe6\x00\xef"), (0x2B, b"\x00\xeb\x00\xef"), (0x2C, b"\x00\x1f" * 50)]
    start = len(bus.log)
    tft.fill_rect(240, 0, 5, 5, 0)
    tft.fill_rect(-10, 0, 10, 5, 0)
    tft.fill_rect(0, 0, 0, 5, 0)
    assert bus.log[start:] == []


def test_a_full_screen_fill_goes_through_one_line_buffer():
    tft, bus = _tft(width=240, height=320)
    start = len(bus.log)
    tft.fill(color565(255, 0, 0))
    writes = [v for n, v, _ in bus.log[start:] if n == "spi"]
    assert max(len(w) for w in writes) <= 640                   # one line of the long side
    assert _commands(bus, start)[2][1] == ("big", 240 * 320 * 2, {b"\xf8\x00" * 320})


def test_blit_of_an_8x16_glyph():
    tft, bus = _tft()
    start = len(bus.log)
    tft.blit_mono(_A, 8, 16, 100, 50, _FG, _BG)
    cmds = _commands(bus, start)
    assert (cmds[0][1], cmds[1][1]) == (b"\x00\x64\x00\x6b", b"\x00\x32\x00\x41")
    data = cmds[2][1]
    assert len(data) == 8 * 16 * 2
    f, b = b"\xff\xe0", b"\x00\x10"
    assert data[3 * 16:4 * 16] == b + b + f + f + f + b + b + b       # row 3: 0x38
    assert data[7 * 16:8 * 16] == f * 7 + b                           # row 7: 0xFE
    px = _pixels(data)
    for y in range(16):
        for x in range(8):
            assert px[y * 8 + x] == (_FG if _glyph_pixel(_A, 8, x, y) else _BG), (x, y)
    # line by line: one 16-byte write a row, all from the same buffer
    writes = [v for n, v, _ in bus.log[start:] if n == "spi"]
    assert [len(w) for w in writes[-16:]] == [16] * 16


def test_blit_scaled_clipped_and_odd_widths():
    tft, bus = _tft()
    # scale 3, hanging off the left and top edges by a pixel and a half-pixel's worth
    start = len(bus.log)
    tft.blit_mono(_A, 8, 16, -4, -2, _FG, _BG, scale=3)
    cmds = _commands(bus, start)
    assert (cmds[0][1], cmds[1][1]) == (b"\x00\x00\x00\x13", b"\x00\x00\x00\x2d")  # 20 x 46
    px = _pixels(cmds[2][1])
    for sy in range(46):
        for sx in range(20):
            gx, gy = (sx + 4) // 3, (sy + 2) // 3
            assert px[sy * 20 + sx] == (_FG if _glyph_pixel(_A, 8, gx, gy) else _BG), (sx, sy)
    # a 12-pixel-wide bitmap has 2 bytes a row; the last 4 bits of each row are padding
    bits = bytes((0xA5, 0xF0, 0x0F, 0x50))            # 2 rows: 1010 0101 1111 / 0000 1111 0101
    start = len(bus.log)
    tft.blit_mono(bits, 12, 2, 234, 0, 1, 0)            # clipped to 6 columns on the right
    cmds = _commands(bus, start)
    assert cmds[0][1] == b"\x00\xea\x00\xef"
    assert _pixels(cmds[2][1]) == [1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1]
    start = len(bus.log)
    tft.blit_mono(bits, 12, 2, 240, 0, 1, 0)             # off screen: nothing
    assert bus.log[start:] == []


def test_show_draws_through_the_render_hook():
    seen = []

    def face(tft, lines):
        seen.append(list(lines))
        tft.fill_rect(0, 0, 240, 16, 0x07E0)

    tft, bus = _tft(render=face)
    start = len(bus.log)
    tft.show(["1号窗口", "张三 S001", "A001"])
    assert seen == [["1号窗口", "张三 S001", "A001"]]
    assert _commands(bus, start)[2][1] == b"\x07\xe0" * (240 * 16)
    plain, bus = _tft()
    start = len(bus.log)
    plain.show(["A001"])                                  # no renderer: a black face
    assert _commands(bus, start)[2][1] == ("big", 240 * 240 * 2, {bytes(480)})
    plain.backlight(False)
    assert bus.events()[-1] == ("bl", 0)


def test_drawing_holds_no_frame():
    spi = fb.QuietSPI()
    fm.reset_clock()
    tft = St7789(spi, fb.QuietPin(), fb.QuietPin(), rst=fb.QuietPin(), width=240, height=320)
    assert spi.bytes > 240 * 320 * 2                      # the clear went out ...
    assert len(tft._line) == 640                          # ... through one 640-byte line
    if not _MICROPYTHON:
        return
    gc.collect()
    before = gc.mem_alloc()
    tft.fill(0xFFFF)
    tft.blit_mono(_A, 8, 16, 0, 0, 0, 0xFFFF, scale=4)
    assert gc.mem_alloc() - before < 512                  # a few memoryview slices, no frame
