"""The screens' font file and its glyph lookups (runs under CPython and MicroPython).

Expected bitmaps are copied from Debian's /usr/share/unifont/unifont.hex (Unifont 15.0.01),
so these tests check the committed font16.bin against its source, not against itself."""
import sys

from firmware.font import Font, default_path
from _util import raises, rmtree, tmpdir

HEX = "/usr/share/unifont/unifont.hex"
BOX = bytes([0, 0, 0x7F, 0xFE] + [0x40, 0x02] * 12 + [0x7F, 0xFE, 0, 0])
NARROW_BOX = bytes([0, 0x7E] + [0x42] * 12 + [0x7E, 0])


def unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


def _skip(why):
    try:
        import pytest
    except ImportError:
        return  # MicroPython: mp_runner counts it as passed
    pytest.skip(why)


def test_default_font_is_beside_the_module():
    assert default_path().endswith("/font16.bin")
    with Font() as f:
        assert f.count >= 7447   # every code point the ticket's GB2312 table encodes


def test_ascii_is_8_wide():
    with Font() as f:
        assert f.glyph(ord("A")) == 8
        assert bytes(f.buf[:16]) == unhex("0000000018242442427E424242420000")
        assert f.glyph(ord(" ")) == 8
        assert bytes(f.buf[:16]) == bytes(16)
        assert f.glyph(ord("0")) == 8 and any(f.buf[:16])


def test_hanzi_are_16_wide():
    with Font() as f:
        assert f.glyph(ord("请")) == 16
        assert bytes(f.buf) == unhex("0040404027FC204003F80040E7FE200023F8220823F822082BF8320822280210")
        assert f.glyph(ord("号")) == 16
        assert bytes(f.buf) == unhex("00001FF01010101010101FF00000FFFE080010001FF000100010001000A00040")
        seen = set()
        for ch in ("窗", "口", "啊", "齄"):      # first and last GB2312 hanzi too
            assert f.glyph(ord(ch)) == 16
            assert any(f.buf) and bytes(f.buf) != BOX
            seen.add(bytes(f.buf))
        assert len(seen) == 4


def test_punctuation_and_symbols():
    with Font() as f:
        assert f.glyph(ord("，")) == 16
        assert bytes(f.buf) == unhex("00000000000000000000000000000000000000000000000003C000C000C00300")
        for ch in "。：（）【】“”、①⑩□■○●★※℃№":
            assert f.glyph(ord(ch)) == 16, ch
            assert any(f.buf) and bytes(f.buf) != BOX, ch
        assert f.glyph(ord("⑪")) == 16                # not in GB2312, added from Unifont
        assert bytes(f.buf) != BOX and any(f.buf)
        assert f.glyph(ord("▶")) == 16 and bytes(f.buf) != BOX


def test_narrow_unifont_symbols_are_centred_lines_stretched():
    with Font() as f:
        f.glyph(ord("α"))   # Unifont 8x16 000000000000324A444444444A320000, centred: 4 px each side
        rows = [f.buf[2 * r] << 8 | f.buf[2 * r + 1] for r in range(16)]
        assert rows == [b << 4 for b in unhex("000000000000324A444444444A320000")]
        f.glyph(ord("─"))   # box drawing: 00FF in row 7 of 8 px becomes a full 16-px line
        assert f.buf[14] == 0xFF and f.buf[15] == 0xFF
        assert not any(f.buf[:14]) and not any(f.buf[16:])
        f.glyph(ord("—"))   # the dash of 破折号 —— must join too
        assert any(f.buf[2 * r] & 0x80 and f.buf[2 * r + 1] & 0x01 for r in range(16))


def test_missing_characters_are_a_box():
    with Font() as f:
        for cp in (ord("堃"), 0x1F600, 0xFFFD, 0xE000, 0xFFFF):   # GBK-only, emoji, replacement, private use
            assert f.glyph(cp) == 16
            assert bytes(f.buf) == BOX, hex(cp)
        f.glyph(ord("请"))
        assert bytes(f.buf) != BOX


def test_control_characters_are_a_narrow_box():
    with Font() as f:
        for cp in (0, 9, 10, 0x1B, 0x7F):
            assert f.glyph(cp) == 8
            assert bytes(f.buf[:16]) == NARROW_BOX


def test_cache_collisions_give_same_glyphs():
    text = "深圳市南山区政务服务中心社保业务医保大厅请到号窗口"
    small = Font(cache=1)
    big = Font(cache=64)
    try:
        for _ in range(2):
            for ch in text:     # iterating a str is fine in a test; the firmware walks bytes
                small.glyph(ord(ch))
                big.glyph(ord(ch))
                assert small.buf == big.buf
        small.glyph(0x1F600)     # outside the BMP: never cached, still a box
        assert bytes(small.buf) == BOX
    finally:
        small.close()
        big.close()


def test_index_is_sorted_and_covers_the_gb2312_table():
    from firmware.gb2312 import default_path as gb_path
    with Font() as font:
        n = font.count
    f = open(default_path(), "rb")
    g = open(gb_path(), "rb")
    try:
        f.seek(2096)
        head = g.read(8)
        seen = 0
        last = 0x7F

        def next_font_cp():
            r = f.read(2)
            cp = r[0] << 8 | r[1]
            assert cp > last, hex(cp)    # sorted, unique, no ASCII
            return cp

        for _ in range(head[6] << 8 | head[7]):    # both lists are sorted: walk them together
            r = g.read(4)
            want = r[0] << 8 | r[1]
            while last < want and seen < n:
                last = next_font_cp()
                seen += 1
            assert last == want, hex(want)
        while seen < n:
            last = next_font_cp()
            seen += 1
        assert f.read(2) != b"" and last <= 0xFFFF
    finally:
        f.close()
        g.close()


def test_missing_bad_or_truncated_font_fails_at_construction():
    d = tmpdir("font")
    try:
        raises(OSError, Font, d + "/nope.bin")
        with open(d + "/bad.bin", "wb") as f:
            f.write(b"NOTAFONT" * 4)
        raises(ValueError, Font, d + "/bad.bin")
        with open(default_path(), "rb") as src:
            head = src.read(4096)
        with open(d + "/short.bin", "wb") as f:
            f.write(head)   # header still claims every glyph
        raises(ValueError, Font, d + "/short.bin")
    finally:
        rmtree(d)


def test_flash_read_error_gives_a_blank_cell_and_recovers():
    f = Font()
    real = f._f

    class Broken:
        def seek(self, pos, whence=0):
            raise OSError(5)

    f._f = Broken()
    assert f.glyph(ord("龙")) == 16
    assert not any(f.buf)
    assert f.glyph(ord("A")) == 8
    f._f = real
    f.glyph(ord("龙"))
    assert any(f.buf) and bytes(f.buf) != BOX
    f.close()


def test_generator_gives_the_committed_bytes():
    """Regenerates the font from the installed Debian package and compares (CPython only)."""
    if sys.implementation.name == "micropython":
        return
    import os
    if not os.path.exists(HEX):
        _skip("Debian package unifont not installed (%s)" % HEX)
        return
    import subprocess
    from tools.gen_font import font_bytes, read_hex
    with open(default_path(), "rb") as f:
        committed = f.read()
    assert font_bytes(read_hex(HEX)) == committed
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, os.path.join(root, "tools", "gen_font.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "matches" in r.stdout
