"""ESC/POS builder bytes and text layout helpers (runs under CPython and MicroPython)."""
from firmware import escpos
from firmware.escpos import EscPos, wrap, display_width, centre_pad
from firmware.gb2312 import Gb2312
from _util import raises


def _job(cols=32, gb=None):
    buf = bytearray()
    return EscPos(buf.extend, cols, gb), buf


def _out(p, buf):
    p.flush()
    return bytes(buf)


def test_mode_commands():
    p, buf = _job()
    p.init().align(escpos.CENTRE).emphasis(True).emphasis(False).chinese(True).chinese(False)
    assert _out(p, buf) == b"\x1b@" + b"\x1ba\x01" + b"\x1bE\x01\x1bE\x00" + b"\x1c&\x1c."


def test_size_double_and_clamped():
    p, buf = _job()
    p.size(2, 2)
    assert p.line_cols == 16
    p.size(1, 1)
    assert p.line_cols == 32
    p.size(9, 0)
    assert _out(p, buf) == b"\x1d!\x11" + b"\x1d!\x00" + b"\x1d!\x70"


def test_feed_and_line_feed():
    p, buf = _job()
    p.feed(3).lf().line("ok").line()
    assert _out(p, buf) == b"\x1bd\x03\nok\n\n"


def test_cuts():
    p, buf = _job()
    p.cut()
    p.cut(full=True)
    p.cut(feed=4)
    p.cut(full=True, feed=2)
    assert _out(p, buf) == b"\x1dV\x01" + b"\x1dV\x00" + b"\x1dVB\x04" + b"\x1dVA\x02"


def test_qr_model2_level_m_store_and_print():
    p, buf = _job()
    p.qr("abc", module=5)
    assert _out(p, buf) == (b"\x1d(k\x04\x001A2\x00"      # model 2
                          b"\x1d(k\x03\x001C\x05"       # module size 5
                          b"\x1d(k\x03\x001E1"          # level M
                          b"\x1d(k\x06\x001P0abc"       # store 3 bytes (pL = 3 + 3)
                          b"\x1d(k\x03\x001Q0")         # print


def test_qr_length_in_two_bytes_and_limits():
    p, buf = _job()
    p.qr(b"x" * 300)
    i = _out(p, buf).find(b"1P0")
    assert len(buf) == 9 + 8 + 8 + 8 + 300 + 8
    assert buf[i - 2] == (303 & 0xFF) and buf[i - 1] == 303 >> 8
    raises(ValueError, p.qr, "")
    raises(ValueError, p.qr, b"x" * 8000)


def test_text_without_table_is_ascii_only():
    p, buf = _job()
    p.text("A001 前\x1b!")
    assert _out(p, buf) == b"A001 ??!"


def test_text_with_table_is_gb2312():
    p, buf = _job(gb=Gb2312())
    p.line("号A")
    assert _out(p, buf) == "号A\n".encode("utf-8").replace("号".encode("utf-8"), b"\xba\xc5")


def test_output_is_gathered_and_flushed_at_cut():
    chunks = []
    p = EscPos(lambda b: chunks.append(bytes(b)), 32, Gb2312())
    p.init().align(1).size(2, 2).text("前面还有三人")
    assert chunks == []                         # still in the 64-byte buffer
    p.text("请留意叫号" * 6).cut()
    assert max(len(c) for c in chunks) <= 64 and len(chunks) >= 2
    joined = b"".join(chunks)
    assert joined.startswith(b"\x1b@\x1ba\x01\x1d!\x11")
    assert joined.endswith(b"\x1dV\x01")
    assert len(joined) == 2 + 3 + 3 + 12 + 60 + 3


def test_big_payload_goes_straight_through():
    chunks = []
    p = EscPos(lambda b: chunks.append(bytes(b)), 32)
    p.init().qr(b"y" * 200).cut()
    assert b"y" * 200 in chunks


def test_display_width_and_centre_pad():
    assert display_width("A001") == 4
    assert display_width("前面 3 人") == 9
    assert display_width("😀") == 2
    assert centre_pad("社保", 32) == 14
    assert centre_pad("x" * 40, 32) == 0


def test_wrap_ascii_words():
    assert list(wrap("Please listen for your number", 12)) == ["Please", "listen for", "your number"]
    assert list(wrap("short", 32)) == ["short"]
    assert list(wrap("", 32)) == []


def test_wrap_cjk_and_punctuation_never_starts_a_line():
    lines = list(wrap("请留意叫号，过号请重新取号。", 10))
    assert lines == ["请留意叫", "号，过号请", "重新取号。"]
    assert list(wrap("一二三四五", 4)) == ["一二", "三四", "五"]


def test_wrap_long_word_is_cut_and_newline_honoured():
    assert list(wrap("abcdefghij", 4)) == ["abcd", "efgh", "ij"]
    assert list(wrap("one\ntwo", 32)) == ["one", "two"]
    assert list(wrap("中", 1)) == ["中"]    # too wide for the line: printed, not looped on


def test_wrap_mixed_never_exceeds_width():
    texts = [
        "请于叫号后 3 分钟内到 5 号窗口办理，Please go to counter 5 within 3 minutes.",
        "医保业务 Medical Insurance（异地就医备案）",
        "a" * 70 + " 中文 " + "b" * 10,
    ]
    for cols in (8, 16, 32, 48):
        for t in texts:
            lines = list(wrap(t, cols))
            for ln in lines:
                assert display_width(ln) <= cols, (cols, ln)
            # nothing lost but the spaces at the breaks
            assert "".join(lines).replace(" ", "") == t.replace(" ", "")


def test_centred_wraps_at_current_size():
    p, buf = _job(cols=32)
    p.size(2, 2)
    p.centred("ABCDEFGHIJKLMNOPQRST")
    assert _out(p, buf) == b"\x1d!\x11\x1ba\x01ABCDEFGHIJKLMNOP\nQRST\n\x1ba\x00"


def test_rule_is_full_width():
    for cols in (32, 48, 20):
        p, buf = _job(cols=cols)
        p.rule()
        assert _out(p, buf) == b"-" * cols + b"\n"
    p, buf = _job(cols=32)
    p.rule("=")
    assert _out(p, buf) == b"=" * 32 + b"\n"


def test_text_accepts_utf8_bytes():
    p, buf = _job(gb=Gb2312())
    p.text("前A".encode("utf-8"))
    assert _out(p, buf) == b"\xc7\xb0A"
    p, buf = _job()
    p.text(b"\xe5\x89\x8dA")             # UTF-8 of 前 without a table
    assert _out(p, buf) == b"?A"


def test_display_width_of_bytes_and_wrap_of_bytes():
    assert display_width(b"\xe5\x89\x8dA") == 3
    assert wrap(b"abc def", 3) == ["abc", "def"]
    assert escpos.line_end(b"abc def", 0, 5) == 4     # break after the space
