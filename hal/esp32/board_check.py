"""Board pin map checks, without importing machine: shared by the firmware (make_hal) and
the host tool (tools/qterm validate), so both accept exactly the same boards.

validate_board(board) -> [(json_path, message)]; DEFAULT_BOARD is the ESP32-WROOM DevKit map.
"""

# ESP32-WROOM-32 DevKit (38 pins). Chosen so that boot straps stay safe:
# GPIO 12 only as a button to GND (it must not be pulled high at reset),
# GPIO 2 drives the on-board LED as "net". GPIO 34/35/36/39 (staff keys) are
# input-only without internal pull-ups: fit external 10 kΩ pull-ups to 3V3.
# Voice is not wired by default; to add it, free two pins, e.g. move "skip"
# and "rate2" and use {"uart": 1, "tx": 4, "rx": 36}.
DEFAULT_BOARD = {
    "printer": {"uart": 2, "tx": 17, "rx": 16, "baud": 9600},
    "display": {"spi": 2, "sck": 18, "mosi": 23, "cs": 5, "digits": 8, "intensity": 7},
    "buttons": {
        "ticket:A": 32, "ticket:B": 33,
        "rate5": 21, "rate4": 22, "rate3": 19, "rate2": 4, "rate1": 15,
        "next": 34, "recall": 35, "skip": 36, "finish": 39, "pause": 12,
    },
    "indicator": {"rate": 14, "thanks": 27, "error": 26, "paper": 25, "net": 2,
                  "buzzer": 13},
}

_FLASH_PINS = (6, 7, 8, 9, 10, 11)
_NO_SUCH_PINS = (20, 24, 28, 29, 30, 31)
_STAFF_KEYS = ("rate1", "rate2", "rate3", "rate4", "rate5",
               "next", "recall", "skip", "finish", "pause")
_LAMPS = ("rate", "thanks", "error", "paper", "net", "buzzer")
# section -> ((field, required, is_output), ...); "display" depends on its "type"
_PIN_FIELDS = {
    "printer": (("tx", True, True), ("rx", True, False)),
    "max7219": (("sck", True, True), ("mosi", True, True), ("cs", True, True),
                ("miso", False, False)),
    "hub12": (("sck", True, True), ("mosi", True, True), ("a", True, True), ("b", True, True),
              ("lat", True, True), ("oe", True, True)),
    "st7789": (("sck", True, True), ("mosi", True, True), ("cs", True, True), ("dc", True, True),
               ("rst", False, True), ("bl", False, True)),
    "voice": (("tx", True, True), ("rx", True, False), ("busy", False, False)),
}
# section -> ((field, required, lowest, highest), ...)
_NUM_FIELDS = {
    "printer": (("uart", True, 1, 2), ("baud", False, 1200, 921600)),
    "max7219": (("spi", True, 1, 2), ("digits", False, 1, 8), ("intensity", False, 0, 15),
                ("baud", False, 100000, 10000000)),
    # P10 modules chained (32 px each), brightness, the machine.Timer id and ms a row group
    "hub12": (("spi", True, 1, 2), ("modules", False, 1, 16), ("intensity", False, 0, 15),
              ("timer", False, 0, 3), ("period_ms", False, 1, 3),
              ("baud", False, 100000, 10000000)),
    "st7789": (("spi", True, 1, 2), ("rotation", False, 0, 3), ("baud", False, 1000000, 80000000)),
    "voice": (("uart", True, 1, 2), ("baud", False, 1200, 921600)),
}
# display type -> fields that are true/false
_BOOL_FIELDS = {"max7219": (), "hub12": ("active_low", "oe_active_high"),
                "st7789": ("invert", "bgr")}
_DISPLAY_TYPES = ("max7219", "hub12", "st7789")
_TOP_NUMS = (("debounce_ms", 5, 200), ("long_press_ms", 300, 10000))


def button_name_ok(name):
    """True for the press names firmware understands (see hal.buttons)."""
    if not isinstance(name, str):
        return False
    parts = name.split("@")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1]):
        return False
    base = parts[0]
    if base in _STAFF_KEYS:
        return True
    bits = base.split(":")
    if bits[0] != "ticket" or len(bits) not in (2, 3) or not bits[1]:
        return False
    return len(bits) == 2 or bits[2] == "priority"


def _pin_problem(v, output):
    if not isinstance(v, int) or isinstance(v, bool):
        return "must be a GPIO number, got %r" % (v,)
    if v in _FLASH_PINS:
        return "GPIO %d is wired to the module's SPI flash" % v
    if v in (1, 3):
        return "GPIO %d is UART0 (USB serial and REPL)" % v
    if v < 0 or v > 39 or v in _NO_SUCH_PINS:
        return "the ESP32 has no GPIO %d" % v
    if output and v >= 34:
        return "GPIO %d is input-only and cannot drive an output" % v
    return None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def validate_board(board):
    """Check a "board" section; returns [(json_path, message), ...], empty if fine."""
    errs = []
    if not isinstance(board, dict):
        return [("board", "must be an object")]
    used = {}

    def pin(path, v, output):
        msg = _pin_problem(v, output)
        if msg:
            errs.append((path, msg))
        elif v in used:
            errs.append((path, "GPIO %d is already used by %s" % (v, used[v])))
        else:
            used[v] = path

    for key in board:
        if key not in ("printer", "display", "buttons", "indicator", "voice", "keypad",
                       "debounce_ms", "long_press_ms", "data_dir"):
            errs.append(("board." + str(key), "unknown key"))
    for key, lo, hi in _TOP_NUMS:
        if key in board and (not _is_int(board[key]) or not lo <= board[key] <= hi):
            errs.append(("board." + key, "must be an integer %d..%d" % (lo, hi)))
    if "data_dir" in board and not (isinstance(board["data_dir"], str)
                                    and board["data_dir"].startswith("/")):
        errs.append(("board.data_dir", "must be an absolute path like \"/data\""))

    for sec in ("printer", "display", "voice"):
        s = board.get(sec)
        if s is None:
            continue
        base = "board." + sec
        if not isinstance(s, dict):
            errs.append((base, "must be an object"))
            continue
        kind = sec
        bools = ()
        if sec == "display":
            kind = s.get("type", "max7219")
            if kind not in _DISPLAY_TYPES:
                errs.append((base + ".type", "unknown display type (max7219, hub12, st7789)"))
                continue
            bools = _BOOL_FIELDS[kind]
            for name in bools:
                if name in s and not isinstance(s[name], bool):
                    errs.append((base + "." + name, "must be true or false"))
            h = s.get("height", 240)
            if kind == "st7789" and not (_is_int(h) and h in (240, 320)):
                errs.append((base + ".height", "must be 240 (240x240) or 320 (240x320)"))
        known = [f[0] for f in _PIN_FIELDS[kind]] + [f[0] for f in _NUM_FIELDS[kind]] + list(bools)
        if sec == "display":
            known.append("type")
            if kind == "st7789":
                known.append("height")
        for k in s:
            if k not in known:
                errs.append((base + "." + str(k), "unknown key"))
        for name, required, output in _PIN_FIELDS[kind]:
            v = s.get(name)
            if v is None:
                if required:
                    errs.append((base + "." + name, "missing"))
                continue
            pin(base + "." + name, v, output)
        for name, required, lo, hi in _NUM_FIELDS[kind]:
            v = s.get(name)
            if v is None:
                if required:
                    errs.append((base + "." + name, "missing"))
            elif not _is_int(v) or not lo <= v <= hi:
                errs.append((base + "." + name, "must be an integer %d..%d" % (lo, hi)))
    p = board.get("printer")
    v = board.get("voice")
    if isinstance(p, dict) and isinstance(v, dict) and p.get("uart") is not None \
            and p.get("uart") == v.get("uart"):
        errs.append(("board.voice.uart", "UART %r is already used by the printer" % (v["uart"],)))

    b = board.get("buttons")
    if b is not None:
        if not isinstance(b, dict):
            errs.append(("board.buttons", "must be an object {name: GPIO}"))
        else:
            if len(b) > 127:
                errs.append(("board.buttons", "too many buttons"))
            for name in b:
                path = "board.buttons." + str(name)
                if not button_name_ok(name):
                    errs.append((path, "unknown button name (ticket:<code>[:priority], "
                                       "rate1..rate5, next, recall, skip, finish, pause, "
                                       "optionally @<counter>)"))
                pin(path, b[name], False)

    k = board.get("keypad")
    if k is not None:
        # rows are driven (open-drain), so no input-only pin; columns only read
        if not isinstance(k, dict):
            errs.append(("board.keypad", "must be an object {rows, cols}"))
        else:
            for name in k:
                if name not in ("rows", "cols"):
                    errs.append(("board.keypad." + str(name), "unknown key"))
            for name in ("rows", "cols"):
                path = "board.keypad." + name
                pins = k.get(name)
                if pins is None:
                    errs.append((path, "missing"))
                elif not isinstance(pins, (list, tuple)) or len(pins) != 4:
                    errs.append((path, "must be a list of 4 GPIO numbers"))
                else:
                    for i in range(4):
                        pin("%s[%d]" % (path, i), pins[i], name == "rows")

    ind = board.get("indicator")
    if ind is not None:
        if not isinstance(ind, dict):
            errs.append(("board.indicator", "must be an object {lamp: GPIO}"))
        else:
            for name in ind:
                path = "board.indicator." + str(name)
                if name not in _LAMPS:
                    errs.append((path, "unknown lamp (rate, thanks, error, paper, net, buzzer)"))
                pin(path, ind[name], True)
    return errs
