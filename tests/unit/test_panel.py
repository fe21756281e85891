"""firmware/panel: the words screens.py shows, lit on a HUB12 sign and drawn on the TFT face
(through the real drivers on fake wires; CPython and MicroPython)."""
import fake_bus as fb
from firmware import panel, textrender
from firmware.font import Font
from hal.esp32.hub12 import Hub12

CALL = ["A001 -> 3", "请 A001 号到 3号窗口 办理", "A001 please go to Counter 3"]


def _sign(modules):
    return Hub12(fb.QuietSPI(), fb.QuietPin(), fb.QuietPin(), fb.QuietPin(), fb.QuietPWM(),
                 modules=modules, render=panel.led)


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

    def __init__(self):
        self.calls = []

    def fill(self, color):
        self.calls.append(("fill", color))

    def blit_mono(self, bits, w, h, x, y, fg, bg, scale=1):
        self.calls.append(("blit", bytes(bits[:((w + 7) >> 3) * h]), w, h, x, y, fg, bg, scale))


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
    assert [c[5] for c in tft.calls[1:]] == [8, 64]     # 88 + 16 > 100: no third line


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
