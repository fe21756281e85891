"""firmware/panel: the words screens.py shows, lit on a HUB12 sign and drawn on the TFT face
(through the real drivers on fake wires; CPython and MicroPython)."""
import fake_bus as fb
from firmware import panel, textrender
from firmware.font import Font
from hal.esp32.hub12 import Hub12

CALL = ["A001 -> 3", "请 A001 号到 3号窗口 办理", "A001 please go to Counter 3"]


def _sign(modules):
    return Hub12(fb.QuietSPI(), fb.QuietPin(), fb.QuietPin(), fb.QuietPin(), fb.QuietPWM(),
                 modules=modules, render=panel.led, step=panel.led_step)


def _expected(w, h, rows):
    buf = bytearray(w * h // 8)
    with Font() as f:
        for k in range(len(rows)):
            x = max(0, (w - textrender.text_width(rows[k])) // 2)
            textrender.draw(f, buf, w, h, x, 16 * k, rows[k])
    return buf


def test_a_sign_of_one_row_shows_the_first_language_centred():
    sign = _sign(4)                         # 128 x 16
    sign.show(CALL)
    assert sign.buf == _expected(128, 16, [CALL[1]])
    assert any(sign.buf)
    # committed: the row groups the timer shifts out are no longer all dark (active low: 0 lit)
    assert any(b != 0xFF for g in range(4) for b in bytes(sign.group_buffer(g)))


def test_a_figure_alone_is_shown_and_a_new_screen_clears_the_last():
    sign = _sign(2)
    sign.show(CALL)
    sign.show(["P"])
    assert sign.buf == _expected(64, 16, ["P"])


class _Face:
    """The St7789 surface panel.face draws with: fill and blit_mono, recorded."""
    width = 240
    height = 320

    def __init__(self, bits=True):
        self.calls = []
        self.bits = bits    # keep what each blit drew (MicroPython's test heap: a few)

    def fill(self, color):
        self.calls.append(("fill", color))

    def blit_mono(self, bits, w, h, x, y, fg, bg, scale=1):
        self.calls.append(("blit", bytes(bits[:((w + 7) >> 3) * h]) if self.bits else None,
                           w, h, x, y, fg, bg, scale))


def test_the_face_shows_the_figure_large_and_each_language_below():
    tft = _Face()
    panel.face(tft, CALL)
    assert tft.calls[0] == ("fill", 0)
    blits = tft.calls[1:]
    assert [(c[5], c[8]) for c in blits] == [(8, 3), (64, 1), (88, 1)]   # y and scale
    figure = blits[0]
    assert figure[2] == 80 and figure[1] == bytes(_expected(80, 16, [CALL[0]]))
    assert blits[1][1] == bytes(_expected(240, 16, [CALL[1]]))
    assert all(c[6] == 0xFFE0 and c[7] == 0 for c in blits)


def test_the_face_stops_at_the_bottom_edge():
    tft = _Face()
    tft.height = 100
    panel.face(tft, CALL + ["more", "and more"])
    # too many lines for 8-px gaps: no gaps; 88 + 16 > 100: no fourth line
    assert [c[5] for c in tft.calls[1:]] == [8, 56, 72]


def test_the_face_fits_a_rating_screen_by_narrowing_the_gaps():
    """The counter face's rating screen: the figure, the prompt in two languages, the five
    choices and who is on duty (two lines) - every line on a 320 x 240 face."""
    tft = _Face(False)
    tft.width, tft.height = 320, 240
    lines = ["A001", "请对本次服务评价 A001", "Please rate this service A001"] + \
        ["%d choice" % n for n in range(5, 0, -1)] + ["1号窗口 工号 S001", "Counter 1 - staff no. S001"]
    panel.face(tft, lines)
    ys = [c[5] for c in tft.calls[1:]]
    assert len(ys) == len(lines) and ys[-1] + 16 <= 240
    assert all(b - a >= 16 for a, b in zip(ys[1:], ys[2:]))     # no two lines overlap


LONG = "请 A001 号到 社会保障卡补换领 3号窗口 办理"


def test_a_line_wider_than_the_sign_scrolls_and_one_that_fits_stands_still():
    sign = _sign(4)                         # 128 px: LONG is wider
    assert textrender.text_width(LONG) > 128
    sign.show(["A001", LONG])
    s = textrender.Scroller(LONG, 128)
    start = _scrolled(s, 128)
    assert sign.buf == start                # its start at the left edge, not centred
    groups = bytes(sign.group_buffer(0))
    assert sign.animate(3)                  # moved 3 px on, and committed
    s.step(3)
    assert sign.buf == _scrolled(s, 128) and sign.buf != start
    assert bytes(sign.group_buffer(0)) != groups
    sign.show(["A001", "A001 3"])           # a line that fits: nothing moves any more
    assert not sign.animate(3)
    assert sign.buf == _expected(128, 16, ["A001 3"])


def _scrolled(s, w):
    buf = bytearray(w * 16 // 8)
    with Font() as f:
        s.draw(f, buf, w, 16, 0)
    return buf


def test_a_long_line_on_the_face_scrolls_in_its_own_band():
    tft = _Face(False)
    panel.face(tft, ["A001", LONG + LONG, "short"])
    y = tft.calls[2][5]                     # the long line's band
    del tft.calls[:]
    assert panel.face_step(tft, 5)
    assert [(c[0], c[5]) for c in tft.calls] == [("blit", y)]  # only that band is drawn again
    panel.face(tft, CALL)
    assert not panel.face_step(tft, 5)


def test_the_board_names_the_display_and_make_hal_wires_the_panel_drawing(tmp_path=None):
    """A counter's board with a HUB12 sign, one with an ST7789 face: make_hal builds that
    driver with firmware/panel's hook, and the words screens.py shows light up."""
    import fake_machine as fm
    data = str(tmp_path) if tmp_path is not None else "/tmp"
    fm.install()
    fm.machine.Timer = fb.Timer
    try:
        from hal.esp32.board import make_hal
        sign = {"type": "hub12", "spi": 2, "sck": 18, "mosi": 23, "lat": 5, "oe": 25, "a": 27,
                "b": 14, "modules": 2}
        hal = make_hal({"board": {"display": sign, "data_dir": data}}, render=panel)
        hal.display.show(CALL)
        assert hal.display.w == 64 and hal.display.buf == _expected(64, 16, [CALL[1]])
        assert hal.display._timer is not None      # refreshed by the timer from the start
        face = {"type": "st7789", "spi": 2, "sck": 18, "mosi": 23, "cs": 5, "dc": 27, "rst": 14,
                "bl": 25, "height": 320, "rotation": 1}
        hal = make_hal({"board": {"display": face, "data_dir": data}}, render=panel)
        assert (hal.display.width, hal.display.height) == (320, 240)
        hal.display.show(CALL)                     # draws through the fake SPI without error
        plain = make_hal({"board": {"display": {"spi": 2, "sck": 18, "mosi": 23, "cs": 5},
                                    "data_dir": data}})
        assert type(plain.display).__name__ == "Max7219"
    finally:
        fm.restore()
