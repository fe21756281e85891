"""Ticket layout bytes (runs under CPython and MicroPython; tests/test_ticket_decode.py decodes them)."""
from firmware.gb2312 import Gb2312
from firmware.ticket import print_ticket

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
