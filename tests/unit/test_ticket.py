"""Ticket layout bytes (runs under CPython and MicroPython; tests/test_ticket_decode.py decodes them)."""
from _util import rmtree, tmpdir
from firmware import config, messages, texts
from firmware.gb2312 import Gb2312
from firmware.ticket import print_ticket, render

_GB = Gb2312()


def _ticket(**over):
    t = {
        "hall": {"zh": "市民服务中心", "en": "Citizen Service Centre"},
        "service": {"zh": "社保业务", "en": "Social Insurance"},
        "number": "A001",
        "kind": "normal",
        "ahead": 3,
        "wait_min": 12,
        "time": "2026-11-25 14:50",
        "notice": {"zh": "请留意叫号，过号请重新取号。", "en": "Please wait for your number."},
        "qr": "https://hall.example/q?t=A001",
        "lang2": "en",
    }
    for k in over:
        t[k] = over[k]
    return t


def _print(t, cols=32):
    buf = bytearray()
    print_ticket(buf.extend, t, cols, _GB)
    return bytes(buf)


def _gb(s):
    return _GB.encode(s)


def test_starts_with_init_and_chinese_mode_and_ends_with_cut():
    b = _print(_ticket())
    assert b.startswith(b"\x1b@\x1c&")
    assert b.endswith(b"\x1dVB\x04")


def test_number_is_double_size_and_bold():
    b = _print(_ticket())
    assert b"\x1d!\x11\x1bE\x01A001\n\x1bE\x00\x1d!\x00" in b


def test_chinese_and_english_lines():
    b = _print(_ticket())
    for s in ("市民服务中心", "Citizen Service Centre", "社保业务", "Social Insurance",
              "前面还有 3 人 / 3 ahead", "预计等候 约 12 分钟", "about 12 min",
              "取号时间 2026-11-25 14:50", "请留意叫号，过号请重新取号。", "扫码查看排队进度"):
        assert _gb(s) in b, s


def test_wait_shares_a_line_on_80mm():
    assert _gb("预计等候 约 12 分钟 / about 12 min") in _print(_ticket(), 48)
    assert _gb("预计等候 约 12 分钟 / about 12 min") not in _print(_ticket(), 32)


def test_qr_carries_payload():
    b = _print(_ticket())
    assert b"\x1d(k\x20\x001P0https://hall.example/q?t=A001" in b
    assert b"\x1d(k\x03\x001Q0" in b


def test_kind_marks():
    assert _gb("【绿色通道 Priority】") in _print(_ticket(kind="priority"))
    assert _gb("【预约 Appointment】") in _print(_ticket(kind="appointment"))
    normal = _print(_ticket())
    assert _gb("绿色通道") not in normal and _gb("预约") not in normal


def test_missing_translation_and_fields_are_skipped():
    t = _ticket(lang2="ug", notice=None, qr=None, wait_min=None)
    t["service"] = {"zh": "医保业务"}
    b = _print(t)
    assert _gb("医保业务") in b
    assert b"ahead" not in b and b"Insurance" not in b
    assert _gb("预计等候") not in b
    assert b"\x1d(k" not in b
    assert _gb("前面还有 3 人\n") in b


def test_no_second_language():
    t = _ticket()
    del t["lang2"]
    b = _print(t)
    assert b"Citizen" not in b and b"ahead" not in b
    assert _gb("前面还有 3 人") in b


def test_plain_string_names_count_as_chinese():
    b = _print(_ticket(hall="社区服务站", service="民政"))
    assert _gb("社区服务站") in b and _gb("民政") in b


def test_emoji_does_not_break_the_ticket():
    b = _print(_ticket(hall={"zh": "服务中心😀", "en": "Hall"}))
    assert _gb("服务中心") + b"\xa1\xf5" in b
    assert b.endswith(b"\x1dVB\x04")


def test_size_budget():
    long_notice = {"zh": "请留意叫号，过号请重新取号。本票仅限当日使用，请妥善保管。" * 2,
                   "en": "Please listen for your number; if you miss it, take a new ticket. " * 2}
    for cols in (32, 48):
        for kind in ("normal", "priority", "appointment"):
            b = _print(_ticket(kind=kind, notice=long_notice), cols)
            assert len(b) <= 2048, (cols, kind, len(b))


def test_two_tickets_are_independent():
    buf = bytearray()
    print_ticket(buf.extend, _ticket(number="A001"), 32, _GB)
    first = len(buf)
    print_ticket(buf.extend, _ticket(number="A002"), 32, _GB)
    assert bytes(buf[first:]).startswith(b"\x1b@")
    assert b"A002" in buf[first:] and b"A001" not in buf[first:].replace(b"t=A001", b"")


def test_oversized_qr_is_left_out_but_ticket_printed():
    b = _print(_ticket(qr="x" * 8000))
    assert b"\x1d(k" not in b and b"A001" in b
    assert b.endswith(b"\x1dVB\x04")


def test_sheet_gathers_a_ticket_in_place_and_spills_a_longer_one():
    from firmware.ticket import _Sheet
    whole = _print(_ticket())
    own = bytearray(1024)
    sheet = _Sheet(own)
    print_ticket(sheet.write, _ticket(), 32, _GB)
    assert sheet.buf is own and bytes(own[:sheet.n]) == whole    # laid out where it was given
    small = bytearray(100)
    sheet = _Sheet(small)
    print_ticket(sheet.write, _ticket(), 32, _GB)
    assert sheet.buf is not small and bytes(sheet.buf[:sheet.n]) == whole  # moved, nothing lost


# ---- large print (printer.large_print) ------------------------------------------------------

_BIG = b"\x1d!\x11"
_PLAIN = b"\x1d!\x00"
_LONG = {"zh": "请留意叫号，过号请重新取号。本票仅限当日使用，请妥善保管。" * 3,
         "en": "Please listen for your number; if you miss it, take a new ticket. " * 3}


def _big_runs(b):
    """The byte runs printed at double size that are not the number (between GS ! 0x11 and GS ! 0)."""
    runs = []
    i = b.find(_BIG)
    while i >= 0:
        j = b.index(_PLAIN, i)
        run = b[i + 3:j]
        if not run.startswith(b"\x1bE\x01"):  # the number: bold inside its double size
            runs.append(run)
        i = b.find(_BIG, j)
    return runs


def test_a_plain_ticket_is_byte_for_byte_what_it_was_before_large_print():
    import binascii
    import hashlib
    h = hashlib.sha256()
    for cols in (32, 48):
        for kind in ("normal", "priority", "appointment"):
            b = _print(_ticket(kind=kind), cols)
            assert _print(_ticket(kind=kind, large=False), cols) == b
            h.update(b)
    # sha256 of these six tickets as printed before large print existed (update only on purpose)
    assert binascii.hexlify(h.digest()) == b"8f90bf6ff6471069cb9416143792ba5bc213ec870fc827fc9ecba55873ad6ae1"
    assert _big_runs(_print(_ticket())) == []


def test_large_print_doubles_service_and_notice_wrapped_to_half_the_columns():
    b = _print(_ticket(large=True))
    assert _big_runs(b) == [_gb("社保业务\nSocial Insurance\n"),
                            _gb("请留意叫号，过号\n请重新取号。\nPlease wait for\nyour number.\n")]
    assert b"\x1d!\x11\x1bE\x01A001\n\x1bE\x00\x1d!\x00" in b      # the number stays large
    assert _gb("前面还有 3 人 / 3 ahead") in b                           # the rest at normal size
    for cols in (32, 48):
        for run in _big_runs(_print(_ticket(large=True, notice=_LONG), cols)):
            for line in run.split(b"\n"):
                assert len(line) <= cols // 2, (cols, line)   # GB2312: one byte per column


def test_large_print_keeps_the_byte_budget_for_the_longest_texts():
    service = {"zh": "社会保障卡及医疗保险综合业务", "en": "Social Security Card and Medical Insurance"}
    hall = {"zh": "深圳市南山区政务服务中心", "en": "Nanshan District Government Service Center"}
    for cols in (32, 48):
        for kind in ("normal", "priority", "appointment"):
            b = _print(_ticket(kind=kind, notice=_LONG, service=service, hall=hall, large=True), cols)
            assert len(b) <= 2048, (cols, kind, len(b))
    assert len(_print(_ticket(large=True))) <= 1024      # a usual one still fits app.sheet


def _config(**over):
    c = {"version": 1, "site": "s", "device": "term01", "key": "00" * 16, "hall": {"zh": "大厅", "en": "Hall"},
         "services": [{"code": "A", "prefix": "A", "name": {"zh": "社保业务", "en": "Social Insurance"}}],
         "counters": [{"id": "1", "services": ["A"]}]}
    c.update(over)
    return c


class _Hall:
    tz = 480
    day = "2026-11-25"


class _App:
    """What ticket.render reads of the terminal."""

    def __init__(self, printer):
        cfg = _config(printer=printer)
        assert config.validate(cfg) == [], config.validate(cfg)
        self.cfg = texts.compact(config.normalise(cfg))     # the config as the app keeps it
        self.langs = ["zh", "en"]
        self.hall = _Hall()
        self.sheet = bytearray(1024)

    def now(self):
        return 1795618068


def _rendered(large_print, kind):
    pr = {"cols": 32, "notice": {"zh": "请留意叫号", "en": "Listen for your number"}, "qr_prefix": "q/"}
    if large_print is not None:
        pr["large_print"] = large_print
    d = {"ticket": "A001", "service": "A", "kind": kind, "ahead": 0, "wait_min": 0}
    return bytes(render(_App(pr), d))


def test_large_print_setting_priority_by_default_all_and_off():
    d = tmpdir("large")
    path = messages.TEXTS
    try:
        with open(d + "/texts.txt", "w") as f:
            f.write("svc.A\t社保业务\tSocial Insurance\nnotice\t请留意叫号\tListen for your number\n")
        messages.TEXTS = d + "/texts.txt"
        big = [_gb("社保业务\nSocial Insurance\n"), _gb("请留意叫号\nListen for your\nnumber\n")]
        for setting, kind, large in ((None, "priority", True), (None, "normal", False),
                                     ("priority", "priority", True), ("priority", "appointment", False),
                                     ("all", "normal", True), ("all", "appointment", True),
                                     ("off", "priority", False), ("off", "normal", False)):
            b = _rendered(setting, kind)
            assert _big_runs(b) == (big if large else []), (setting, kind)
            assert b.endswith(b"\x1dVB\x04")
    finally:
        messages.TEXTS = path
        rmtree(d)


def test_large_print_setting_is_validated_with_its_key_named():
    base = _config()
    assert config.validate(base) == [] and config.normalise(base)["printer"]["large_print"] == "priority"
    for v in ("off", "priority", "all"):
        base["printer"] = {"large_print": v}
        assert config.validate(base) == [], v
    for v in ("big", "", True, 2, None, ["all"]):
        base["printer"] = {"large_print": v}
        errs = config.validate(base)
        assert [p for p, _ in errs] == ["printer.large_print"], (v, errs)
        assert '"off", "priority"' in errs[0][1]
    base["printer"] = {"large": "all"}
    assert [p for p, _ in config.validate(base)] == ["printer.large"]
