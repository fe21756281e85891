"""Unicode -> GB2312 table lookups (runs under CPython and MicroPython)."""
from firmware.gb2312 import Gb2312, default_path
from _util import raises, rmtree, tmpdir

BOX = b"\xa1\xf5"  # GB2312 '□'


def test_default_table_is_beside_the_module():
    assert default_path().endswith("gb2312.bin")
    gb = Gb2312()
    assert gb.count >= 7445
    gb.close()


def test_ascii_passes_through():
    gb = Gb2312()
    assert gb.encode("A001 ok-3") == b"A001 ok-3"
    assert gb.encode("") == b""
    assert gb.encode("a\nb") == b"a\nb"


def test_common_hanzi_and_symbols():
    gb = Gb2312()
    assert gb.encode("中文") == b"\xd6\xd0\xce\xc4"
    assert gb.encode("社保") == b"\xc9\xe7\xb1\xa3"
    assert gb.encode("□") == BOX
    assert gb.encode("【") == b"\xa1\xbe"
    assert gb.encode("，") == b"\xa3\xac"
    assert gb.encode("é") == b"\xa8\xa6"       # pinyin row 8
    assert gb.encode("啊") == b"\xb0\xa1"      # first level-1 hanzi
    assert gb.encode("齄") == b"\xf7\xfe"      # last cell of the table
    assert gb.encode("あ") == b"\xa4\xa2"     # hiragana row 4


def test_gb18030_aliases_for_names():
    gb = Gb2312()
    assert gb.encode("·") == b"\xa1\xa4"   # U+00B7 as in 阿依古丽·买买提
    assert gb.encode("—") == b"\xa1\xaa"   # U+2014


def test_missing_characters_become_visible_box():
    gb = Gb2312()
    assert gb.encode("😀") == BOX           # outside the BMP
    assert gb.encode("堃") == BOX           # GBK-only hanzi
    assert gb.encode("€") == BOX
    assert gb.encode("x😀y") == b"x" + BOX + b"y"


def test_control_characters_never_reach_the_printer():
    gb = Gb2312()
    assert gb.encode("\x1b@\x1dV") == b"?@?V"
    assert gb.encode("\x7f\t") == b"??"


def test_custom_replacement():
    gb = Gb2312(replacement=b"?")
    assert gb.encode("😀中") == b"?\xd6\xd0"
    raises(ValueError, Gb2312, None, b"")


def test_encode_into_chunks_are_small_and_complete():
    gb = Gb2312()
    text = "前面还有人预计等候约分钟" * 9 + "A001"
    chunks = []
    gb.encode_into(lambda b: chunks.append(bytes(b)), text)
    assert max(len(c) for c in chunks) <= 32
    joined = b"".join(chunks)
    assert joined == gb.encode(text)
    assert len(joined) == 12 * 9 * 2 + 4


def test_cache_collisions_give_same_answers():
    small = Gb2312(cache=1)
    big = Gb2312(cache=256)
    text = "深圳市南山区政务服务中心社保业务医保大厅绿色通道预约前面还有"
    for _ in range(3):
        assert small.encode(text) == big.encode(text)
    assert small.lookup(0x4E2D) == 0xD6D0
    assert small.lookup(0x41) == 0          # ASCII is not looked up
    assert small.lookup(0x1F600) == 0


def test_missing_or_bad_table_fails_at_construction():
    d = tmpdir("gb")
    try:
        raises(OSError, Gb2312, d + "/nope.bin")
        with open(d + "/bad.bin", "wb") as f:
            f.write(b"NOTATABLE")
        raises(ValueError, Gb2312, d + "/bad.bin")
    finally:
        rmtree(d)


def test_truncated_table_degrades_to_box():
    d = tmpdir("gb")
    try:
        with open(default_path(), "rb") as f:
            head = f.read(8 + 4 * 100)
        with open(d + "/short.bin", "wb") as f:
            f.write(head)   # header still claims all records
        gb = Gb2312(d + "/short.bin")
        assert gb.encode("齄") == BOX
        gb.close()
    finally:
        rmtree(d)


def test_table_records_sorted_and_in_range():
    gb = Gb2312()
    with open(gb.path, "rb") as f:
        f.seek(8)
        prev = -1
        n = 0
        while True:
            r = f.read(4)
            if not r:
                break
            cp = r[0] << 8 | r[1]
            assert cp > prev
            assert 0xA1 <= r[2] <= 0xF7 and 0xA1 <= r[3] <= 0xFE
            prev = cp
            n += 1
    assert n == gb.count


def test_encode_into_a_byte_range_of_utf8():
    gb = Gb2312()
    buf = "A社保B".encode("utf-8")
    out = bytearray()
    gb.encode_into(out.extend, buf, 1, 7)     # just the two hanzi
    assert bytes(out) == b"\xc9\xe7\xb1\xa3"


def test_broken_utf8_bytes_become_box():
    gb = Gb2312()
    assert gb.encode(b"\xe4\xb8") == BOX        # truncated sequence
    assert gb.encode(b"\x80A") == BOX + b"A"    # stray continuation byte


def test_flash_read_error_prints_box_and_recovers():
    gb = Gb2312()
    real = gb._f

    class Broken:
        def seek(self, pos):
            raise OSError(5)

    gb._f = Broken()
    assert gb.encode("龙") == BOX
    gb._f = real
    assert gb.encode("龙") == b"\xc1\xfa"
