"""Board wiring: builds the ESP32 drivers from the config's "board" section.

Config shape (all pins are GPIO numbers; a missing section = no such device):
  "board": {
    "printer":   {"uart": 2, "tx": 17, "rx": 16, "baud": 9600},
    "display":   {"spi": 2, "sck": 18, "mosi": 23, "cs": 5, "digits": 8,
                  "intensity": 7},                  # "miso" optional, unused
                 # or {"type": "hub12", "spi": 2, "sck": 18, "mosi": 23, "lat": 5, "oe": 25,
                 #     "a": 27, "b": 14, "modules": 4}   (P10 LED sign, README "Displays")
                 # or {"type": "st7789", "spi": 2, "sck": 18, "mosi": 23, "cs": 5, "dc": 27,
                 #     "rst": 14, "bl": 25, "height": 320, "rotation": 1}   (the counter's face)
    "buttons":   {"ticket:A": 32, "rate5": 21, "next": 34, ...},
    "indicator": {"rate": 14, "thanks": 27, "error": 26, "paper": 25,
                  "net": 2, "buzzer": 13},
    "voice":     {"uart": 1, "tx": 4, "rx": 36, "baud": 9600, "busy": 39},
    "keypad":    {"rows": [13, 14, 27, 26], "cols": [25, 33, 32, 4]},  # 4x4 呼叫器
    "debounce_ms": 30, "long_press_ms": 1500, "data_dir": "/data"
  }
  "wifi": {"ssid": "...", "password": "...", "hostname": "..."}

Example:
    from hal.esp32.board import make_hal
    hal = make_hal(cfg, encode=gb2312.encode)
    hal.display.show(["A001 -> 3"])
"""
from machine import SPI, UART, Pin

from hal.esp32.board_check import DEFAULT_BOARD, button_name_ok, validate_board  # noqa: F401
from hal.esp32.clock import RtcClock
from hal.esp32.gpio_buttons import GpioButtons
from hal.esp32.indicator import GpioIndicator
from hal.esp32.max7219 import Max7219
from hal.esp32.storage import FlashStorage
from hal.esp32.syn6288 import Syn6288
from hal.esp32.uart_printer import UartPrinter
from hal.esp32.wlan import WlanLink

# SPI clock per display type: the MAX7219 allows 10 MHz but long leads want less; HUB12
# ribbon cables 4 MHz; the TFT's 240x320 px want speed (40 MHz is reliable on short wires)
_BAUD = {"max7219": 1000000, "hub12": 4000000, "st7789": 40000000}

class Hal:
    """The drivers of one terminal; an attribute is None when not fitted."""

    def __init__(self):
        self.printer = None
        self.display = None
        self.buttons = None
        self.keypad = None
        self.indicator = None
        self.voice = None
        self.clock = None
        self.storage = None
        self.net = None


def make_hal(cfg, encode=None, render=None):
    """Build the drivers from cfg["board"] (DEFAULT_BOARD if absent) and cfg["wifi"].

    encode: str -> GB2312 bytes for the voice module; without it no voice.
    render: the firmware's drawing for pixel displays, an object with led(buf, w, h, lines),
    led_step(buf, w, h, n), face(tft, lines) and face_step(tft, n) (firmware/panel.py);
    without it a HUB12 sign stays dark and a TFT black.
    Raises ValueError naming the first bad board setting.
    """
    board = cfg.get("board") or DEFAULT_BOARD
    errs = validate_board(board)
    if errs:
        raise ValueError("%s: %s" % errs[0])
    hal = Hal()

    p = board.get("printer")
    if p:
        hal.printer = UartPrinter(UART(p["uart"], baudrate=p.get("baud", 9600),
                                       tx=p["tx"], rx=p["rx"]))
    d = board.get("display")
    if d:
        miso = d.get("miso")
        # miso=None: otherwise the port claims its default MISO pin (GPIO 19).
        kind = d.get("type", "max7219")
        spi = SPI(d["spi"], baudrate=d.get("baud", _BAUD[kind]), polarity=0, phase=0,
                  sck=Pin(d["sck"]), mosi=Pin(d["mosi"]),
                  miso=Pin(miso) if miso is not None else None)
        if kind == "hub12":     # the larger displays are imported only when fitted
            from hal.esp32.hub12 import Hub12
            from machine import PWM, Timer
            hal.display = Hub12(spi, Pin(d["a"], Pin.OUT), Pin(d["b"], Pin.OUT),
                                Pin(d["lat"], Pin.OUT, value=0), PWM(Pin(d["oe"]), freq=20000, duty_u16=0),
                                modules=d.get("modules", 1), active_low=d.get("active_low", True),
                                brightness=d.get("intensity", 15), oe_active_high=d.get("oe_active_high", True),
                                render=render.led if render else None, period_ms=d.get("period_ms", 2),
                                step=render.led_step if render else None)
            hal.display.start(Timer(d.get("timer", 0)))
        elif kind == "st7789":
            from hal.esp32.st7789 import St7789
            rst, bl = d.get("rst"), d.get("bl")
            hal.display = St7789(spi, Pin(d["cs"], Pin.OUT, value=1), Pin(d["dc"], Pin.OUT),
                                 rst=Pin(rst, Pin.OUT) if rst is not None else None,
                                 bl=Pin(bl, Pin.OUT) if bl is not None else None,
                                 height=d.get("height", 240), rotation=d.get("rotation", 0),
                                 bgr=d.get("bgr", False), invert=d.get("invert", True),
                                 render=render.face if render else None,
                                 step=render.face_step if render else None)
        else:
            hal.display = Max7219(spi, Pin(d["cs"], Pin.OUT, value=1),
                                  digits=d.get("digits", 8), intensity=d.get("intensity", 7))
    if board.get("buttons"):
        hal.buttons = GpioButtons(board["buttons"], debounce_ms=board.get("debounce_ms", 30),
                                  long_ms=board.get("long_press_ms", 1500))
    k = board.get("keypad")
    if k:
        # imported only when fitted: most terminals have none
        from hal.esp32.matrix_keypad import MatrixKeypad
        hal.keypad = MatrixKeypad(k["rows"], k["cols"],
                                  stable=max(1, board.get("debounce_ms", 30) // 10))
    ind = board.get("indicator")
    if ind:
        lamps = {}
        for k in ind:
            if k != "buzzer":
                lamps[k] = ind[k]
        hal.indicator = GpioIndicator(lamps, buzzer_pin=ind.get("buzzer"))
    v = board.get("voice")
    if v and encode is not None:
        busy = v.get("busy")
        hal.voice = Syn6288(UART(v["uart"], baudrate=v.get("baud", 9600), tx=v["tx"], rx=v["rx"]),
                            encode, busy_pin=Pin(busy, Pin.IN) if busy is not None else None)
    hal.clock = RtcClock()
    hal.storage = FlashStorage(board.get("data_dir", "/data"))
    w = cfg.get("wifi") or {}
    if w.get("ssid"):
        hal.net = WlanLink(w["ssid"], w.get("password", ""), hostname=w.get("hostname"))
    return hal
