"""The simulator's SYN6288 double decodes the real driver's frames (CPython, fake clock), and
SimHal speaks through driver + double under the MicroPython unix port, holding none of it after."""
import os
import subprocess

from firmware.gb2312 import Gb2312, default_path
from sim.voice import VoiceUart
from tests.unit import fake_machine as fm

fm.install()
try:
    from hal.esp32.syn6288 import Syn6288
finally:
    fm.restore()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")


def _voice(tmp_path, ms_per_byte=130):
    fm.reset_clock(wall=1700000000)
    gb = Gb2312()
    uart = VoiceUart(str(tmp_path / "voice.log"), default_path(), fm.time, ms_per_byte)
    return Syn6288(uart, gb.encode), uart


def _log(tmp_path):
    with open(tmp_path / "voice.log", encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


def test_good_frames_decode_to_the_same_text(tmp_path):
    v, _ = _voice(tmp_path)
    texts = ["请A001号到3号窗口", "Number A001, please go to Counter 3", "再次呼叫，请B012号到10号窗口",
             "阿依古丽·买买提—社保【医保】", "谢谢您的评价"]
    for t in texts:
        v.say(t)
    fm.advance(1000)
    v.say("x😀y\n堃")                  # what GB2312 lacks is said as the encoder's box
    assert _log(tmp_path) == ([["1700000000", "SAY", t] for t in texts]
                              + [["1700000001", "SAY", "x□y □"]])


def test_a_long_text_is_cut_on_a_character(tmp_path):
    v, _ = _voice(tmp_path)
    v.say("请" * 150)
    assert _log(tmp_path) == [["1700000000", "SAY", "请" * 100]]


def test_bad_frames_are_logged_and_refused(tmp_path):
    v, uart = _voice(tmp_path)
    good = bytes(v.frame("请A001号"))
    wrong_xor = good[:-1] + bytes([good[-1] ^ 0x5A])
    cases = [(wrong_xor, "check"), (b"\xfe" + good[1:], "head"), (good[:-2] + good[-1:], "length"),
             (_framed(0x02, 0x00, b""), "command"), (_framed(0x01, 0x01, b"A"), "parameter"),
             (b"", "head"), (b"\xfd\x00", "length")]
    for frame, _ in cases:
        assert uart.write(frame) == len(frame)
    assert _log(tmp_path) == [["1700000000", "BAD", why, frame.hex()] for frame, why in cases]
    buf = bytearray(32)
    assert uart.readinto(buf) == len(cases) and set(buf[:len(cases)]) == {0x45}
    assert uart.any() == 0 and uart.readinto(buf) is None
    uart.write(_framed(0x01, 0x08, b"A"))    # background music 1 is a good frame
    assert _log(tmp_path)[-1] == ["1700000000", "SAY", "A"]


def _framed(cmd, param, text):
    f = bytearray([0xFD, 0, len(text) + 3, cmd, param]) + text
    x = 0
    for b in f:
        x ^= b
    return bytes(f + bytes([x]))


def test_replies_and_busy_follow_the_speech_time(tmp_path):
    v, uart = _voice(tmp_path, ms_per_byte=100)
    assert not v.busy()
    v.say("请A001")                       # 6 bytes: 600 ms
    buf = bytearray(8)
    assert v.busy()
    fm.advance(599)
    assert v.busy()
    fm.advance(1)
    assert not v.busy()
    v.say("请")
    fm.advance(500)                       # replies wait on the wire until read
    assert uart.readinto(buf) == 3 and bytes(buf[:3]) == b"\x41\x4e\x4f"


def test_a_slow_module_is_waited_for_past_the_drivers_estimate(tmp_path):
    v, _ = _voice(tmp_path, ms_per_byte=1000)   # slower than the driver's 130 ms guess
    v.say("请A001")                       # 6 bytes: the guess says 600 + 780 ms
    fm.advance(3000)
    assert v.busy()                       # the module answered: its 0x4F is awaited
    fm.advance(3000)
    assert not v.busy()


def test_instant_speech_and_cut_short(tmp_path):
    v, uart = _voice(tmp_path, ms_per_byte=0)
    v.say("请A001号到3号窗口")
    assert not v.busy()
    uart.ms_per_byte = 130
    v.say("请A001号到3号窗口")            # 17 bytes: 2210 ms
    fm.advance(1000)
    v.say("A")                            # cuts it short: 130 ms from now
    assert v.busy()
    fm.advance(130)
    assert not v.busy()
    assert [r[2] for r in _log(tmp_path)] == ["请A001号到3号窗口", "请A001号到3号窗口", "A"]


_SIM_SAYS = """
import sys, time
sys.path.insert(0, %(root)r)
from sim.devices import SimHal
hal = SimHal(%(state)r, %(state)r)
hal.voice_ms_per_byte = 20
assert not hal.busy()
hal.voice.say("请A001号到3号窗口")
assert hal.busy()
time.sleep_ms(500)
assert not hal.busy()
hal.voice_ms_per_byte = 0
hal.voice.say("Number A001, please go to Counter 3")
assert not hal.busy()
for m in ("hal.esp32.syn6288", "sim.voice", "firmware.gb2312"):
    assert m not in sys.modules, m      # let go after each announcement
print("said", hal.said[-3:])
"""


def test_simhal_speaks_through_the_driver_under_micropython(tmp_path):
    state = str(tmp_path)
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=256K", "-c", _SIM_SAYS % {"root": ROOT, "state": state}],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "said" in r.stdout
    rows = _log(tmp_path)
    assert [row[1:] for row in rows] == [["SAY", "请A001号到3号窗口"], ["SAY", "Number A001, please go to Counter 3"]]
    assert all(abs(int(row[0]) - int(__import__("time").time())) < 60 for row in rows)
