"""The board pin map's display choice: "type" max7219 | hub12 | st7789 (CPython and MicroPython).

These check the board_check patch proposed with the HUB12 and ST7789 drivers. Until it is
applied they are skipped under pytest ("until board_check patch") and return at once under
MicroPython (whose runner knows no skip).
"""
from hal.esp32.board_check import DEFAULT_BOARD, validate_board

try:
    import pytest
except ImportError:          # MicroPython
    pytest = None


def _copy(board):
    b = {}
    for k in board:
        v = board[k]
        b[k] = dict(v) if isinstance(v, dict) else v
    return b


# The wirings in the README: either display takes the MAX7219's SPI pins (SCK 18, MOSI 23,
# GPIO 5) plus the three lamps a counter's screen makes redundant (paper 25, thanks 27,
# rate 14 — a counter has no printer, and the screen says "rate" and "thanks").
HUB12 = {"type": "hub12", "spi": 2, "sck": 18, "mosi": 23, "lat": 5, "oe": 25, "a": 27,
         "b": 14, "modules": 4, "intensity": 10, "active_low": True, "oe_active_high": True,
         "timer": 0, "period_ms": 2, "baud": 4000000}
ST7789 = {"type": "st7789", "spi": 2, "sck": 18, "mosi": 23, "cs": 5, "dc": 27, "rst": 14,
          "bl": 25, "height": 320, "rotation": 1, "invert": True, "bgr": False,
          "baud": 40000000}


def _counter(display):
    """A counter: keypad, rating pad, the error/net lamps and buzzer, and this display."""
    return {"display": dict(display),
            "buttons": {"rate5": 21, "rate4": 22, "rate3": 19, "rate2": 4, "rate1": 15},
            "keypad": {"rows": [17, 16, 32, 33], "cols": [34, 35, 36, 39]},
            "indicator": {"error": 26, "net": 2, "buzzer": 13}}


def _patched():
    return validate_board(_counter(HUB12)) == [] and validate_board(_counter(ST7789)) == []


_PATCHED = _patched()


def _until_patch(fn):
    if pytest is not None:
        return pytest.mark.skipif(not _PATCHED, reason="until board_check patch")(fn)
    if _PATCHED:
        return fn

    def skipped():
        return None
    return skipped


def _errs(board):
    return dict(validate_board(board))


@_until_patch
def test_boards_with_each_display_are_valid():
    assert validate_board(DEFAULT_BOARD) == []                 # no "type": the MAX7219
    b = _copy(DEFAULT_BOARD)
    b["display"]["type"] = "max7219"
    assert validate_board(b) == []
    assert validate_board(_counter(HUB12)) == []
    assert validate_board(_counter(ST7789)) == []
    screen = {"display": dict(HUB12), "indicator": {"net": 2},
              "voice": {"uart": 1, "tx": 4, "rx": 36, "busy": 39}}
    assert validate_board(screen) == []
    least = {"display": {"type": "st7789", "spi": 1, "sck": 14, "mosi": 13, "cs": 15,
                         "dc": 27}}                            # rst and bl may be hard-wired
    assert validate_board(least) == []


@_until_patch
def test_unknown_display_type_is_named():
    for t in ("ili9341", "", 7, None):
        d = dict(HUB12)
        d["type"] = t
        assert _errs({"display": d}) == {
            "board.display.type": "unknown display type (max7219, hub12, st7789)"}, t


@_until_patch
def test_hub12_mistakes():
    d = dict(HUB12)
    del d["oe"]
    d["a"] = 35                 # input-only
    d["b"] = 18                 # SCK's pin
    d["modules"] = 0
    d["period_ms"] = 5          # 20 ms a frame: it flickers
    d["active_low"] = "yes"
    d["cs"] = 5                 # the MAX7219's key, not a HUB12 line
    e = _errs({"display": d})
    assert e["board.display.oe"] == "missing"
    assert "input-only" in e["board.display.a"]
    assert "already used by board.display.sck" in e["board.display.b"]
    assert e["board.display.modules"] == "must be an integer 1..16"
    assert e["board.display.period_ms"] == "must be an integer 1..3"
    assert e["board.display.active_low"] == "must be true or false"
    assert e["board.display.cs"] == "unknown key"
    assert "board.display.lat" not in e


@_until_patch
def test_st7789_mistakes():
    d = dict(ST7789)
    d["height"] = 300
    d["rotation"] = 4
    d["digits"] = 8             # a MAX7219 key
    d["bgr"] = 1
    d["bl"] = 6                 # flash
    e = _errs({"display": d})
    assert e["board.display.height"] == "must be 240 (240x240) or 320 (240x320)"
    assert e["board.display.rotation"] == "must be an integer 0..3"
    assert e["board.display.digits"] == "unknown key"
    assert e["board.display.bgr"] == "must be true or false"
    assert "flash" in e["board.display.bl"]
    d = dict(ST7789)
    del d["dc"]
    d["height"] = 240.0
    e = _errs({"display": d})
    assert e["board.display.dc"] == "missing" and "board.display.height" in e
    b = _counter(ST7789)
    b["indicator"]["thanks"] = 27                              # the D/C pin
    e = _errs(b)
    assert "already used by board.display.dc" in e["board.indicator.thanks"]


@_until_patch
def test_max7219_keeps_its_own_keys():
    b = _copy(DEFAULT_BOARD)
    b["display"]["oe"] = 25
    b["display"]["height"] = 240
    e = _errs(b)
    assert e["board.display.oe"] == "unknown key" and e["board.display.height"] == "unknown key"
