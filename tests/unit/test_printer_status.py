"""Printer paper state from DLE EOT 4 / GS r 1 replies (runs under CPython and MicroPython)."""
from firmware.printer_status import decode_dle_eot4, decode_gs_r1, paper_state, DLE_EOT_4, GS_R_1
from _util import raises


class FakePort:
    """Answers each request from a scripted list; records what was asked."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.asked = []

    def query(self, request, timeout_ms):
        self.asked.append((bytes(request), timeout_ms))
        r = self.replies.pop(0) if self.replies else None
        if isinstance(r, Exception):
            raise r
        return r


def test_decode_dle_eot4_bits():
    assert decode_dle_eot4(0x12) == "ok"
    assert decode_dle_eot4(0x1E) == "near_end"   # bits 2,3
    assert decode_dle_eot4(0x16) == "near_end"   # one near-end bit is enough
    assert decode_dle_eot4(0x72) == "out"        # bits 5,6
    assert decode_dle_eot4(0x7E) == "out"        # out wins over near end


def test_decode_dle_eot4_rejects_wrong_fixed_bits():
    for b in (0x00, 0xFF, 0x10, 0x02, 0x92):
        raises(ValueError, decode_dle_eot4, b)


def test_decode_gs_r1_bits():
    assert decode_gs_r1(0x00) == "ok"
    assert decode_gs_r1(0x03) == "near_end"
    assert decode_gs_r1(0x0C) == "out"
    assert decode_gs_r1(0x60) == "ok"            # reserved bits ignored
    raises(ValueError, decode_gs_r1, 0x10)
    raises(ValueError, decode_gs_r1, 0x80)


def test_paper_state_asks_dle_eot_4():
    port = FakePort(b"\x12")
    assert paper_state(port, 150) == "ok"
    assert port.asked == [(DLE_EOT_4, 150)]
    assert DLE_EOT_4 == b"\x10\x04\x04"
    assert paper_state(FakePort(b"\x1e")) == "near_end"
    assert paper_state(FakePort(b"\x7e")) == "out"


def test_no_answer_is_offline():
    port = FakePort(None)
    assert paper_state(port) == "offline"
    assert len(port.asked) == 1                 # silence is not retried with GS r
    assert paper_state(FakePort(b"")) == "offline"
    assert paper_state(FakePort(OSError(5))) == "offline"


def test_last_byte_of_reply_counts():
    assert paper_state(FakePort(b"\x7e\x12")) == "ok"


def test_untrusted_reply_falls_back_to_gs_r1():
    port = FakePort(b"\x00", b"\x03")
    assert paper_state(port) == "near_end"
    assert [a[0] for a in port.asked] == [DLE_EOT_4, GS_R_1]
    assert paper_state(FakePort(b"\xff", b"\xff")) == "offline"
    assert paper_state(FakePort(b"\xff", None)) == "offline"
