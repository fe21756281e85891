"""The simulator's display.png (sim/frames.py): a PNG decoded back independently, frames drawn
by the device's own panel code, and a live simulated terminal whose picture follows its display
and whose watcher dies with it."""
import os
import signal
import struct
import time
import zlib

import pytest

from firmware import panel, textrender
from firmware.font import Font
from sim import frames
from tests.broker import Broker, Subscriber
from tests.e2e.harness import Sim, command, fast_config


def decode_png(data):
    """(width, height, depth, color, palette, rows): an independent reader of what frames.png
    writes (non-interlaced, any filter type except Paeth/Avg/Up is refused: we write none)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    p = 8
    chunks = []
    while p < len(data):
        n, = struct.unpack(">I", data[p:p + 4])
        kind, body = data[p + 4:p + 8], data[p + 8:p + 8 + n]
        crc, = struct.unpack(">I", data[p + 8 + n:p + 12 + n])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        p += 12 + n
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    w, h, depth, color, comp, filt, lace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (comp, filt, lace) == (0, 0, 0)
    palette = b"".join(b for k, b in chunks if k == b"PLTE")
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    channels = {0: 1, 2: 3, 3: 1}[color]
    stride = (w * channels * depth + 7) // 8
    assert len(raw) == h * (stride + 1)
    rows = []
    for y in range(h):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        assert line[0] == 0
        rows.append(line[1:])
    return w, h, depth, color, palette, rows


def rgb_at(img, x, y):
    w, h, depth, color, palette, rows = img
    if color == 2:
        return bytes(rows[y][3 * x:3 * x + 3])
    i = rows[y][x]
    return bytes(palette[3 * i:3 * i + 3])


# ------------------------------------------------------------ unit

def test_png_one_bit_grayscale_round_trip():
    rows = [bytes([0b10100000, 0b01000000]), bytes([0xFF, 0xC0]), bytes([0, 0])]
    w, h, depth, color, _, got = decode_png(frames.png(10, 3, rows, depth=1, color=0))
    assert (w, h, depth, color) == (10, 3, 1, 0)
    assert got == rows
    bit = lambda x, y: got[y][x >> 3] >> (7 - (x & 7)) & 1  # noqa: E731
    assert [bit(x, 0) for x in range(10)] == [1, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert all(bit(x, 1) for x in range(10)) and not any(bit(x, 2) for x in range(10))


def test_png_rgb_and_palette():
    img = decode_png(frames.png(2, 1, [b"\x01\x02\x03\xff\x00\x80"]))
    assert img[:2] == (2, 1) and rgb_at(img, 1, 0) == b"\xff\x00\x80"
    img = decode_png(frames.png(3, 1, [b"\x00\x01\x02"], 8, 3, b"\0\0\0\x10\x20\x30\xff\xff\xff"))
    assert rgb_at(img, 1, 0) == b"\x10\x20\x30"


def test_led_frame_is_textrender_output():
    w, h = 256, 32
    lines = ["A001 1", "请A001号到1号窗口", "A001 Counter 1"]
    got = frames.draw("led", w, h, lines)
    want = bytearray(w // 8 * h)
    with Font() as f:
        for row, text in enumerate(lines[1:]):
            x = (w - textrender.text_width(text)) // 2
            textrender.draw(f, want, w, h, x, 16 * row, text)
    assert got == want and any(want)
    img = decode_png(frames.picture("led", w, h, got))
    assert img[:2] == (w * frames.LED_CELL, h * frames.LED_CELL)
    lit, dim = frames._LED_PALETTE[6:9], frames._LED_PALETTE[3:6]
    for y in range(h):
        for x in range(w):
            on = want[y * (w // 8) + (x >> 3)] & (0x80 >> (x & 7))
            c = frames.LED_CELL
            assert rgb_at(img, c * x + 1, c * y + 1) == (lit if on else dim)
            assert rgb_at(img, c * x, c * y) == b"\0\0\0"       # the dot is round: corner dark


def test_geometry_per_config_and_role():
    g = frames.geometry
    assert g({"role": "screen"}) == ("face", 320, 240)
    assert g({"role": "counter"}) == ("face", 320, 240)
    assert g({"role": "all"}) == ("face", 320, 240)
    assert g({"role": "screen", "board": {"display": {"type": "hub12", "modules": 4}}}) == ("led", 128, 16)
    assert g({"board": {"display": {"type": "st7789", "height": 320, "rotation": 0}}}) == ("face", 240, 320)
    assert g({"board": {"display": {"type": "st7789", "height": 320, "rotation": 3}}}) == ("face", 320, 240)


# ------------------------------------------------------------ a live terminal

@pytest.fixture
def broker():
    b = Broker().start()
    yield b
    b.stop()


def _png(state, after=None, timeout=2.0):
    """display.png's bytes once it exists (and differs from `after`)."""
    path = os.path.join(state, "display.png")
    deadline = time.time() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data != after:
                return data
        except FileNotFoundError:
            pass
        assert time.time() < deadline, "display.png %s within %.0f s" % ("unchanged" if after else "missing", timeout)
        time.sleep(0.05)


def _face_matches(img, lines):
    tft = frames.FakeTft(320, 240)
    panel.face(tft, lines)
    s = frames.TFT_SCALE
    for y in range(240):
        row = img[5][y * s]
        got = b"".join(bytes(row[3 * s * x:3 * s * x + 3]) for x in range(320))
        if got != bytes(tft.rgb[960 * y:960 * (y + 1)]):
            return False
    return True


def test_a_line_wider_than_the_panel_scrolls_in_the_picture(tmp_path):
    """The watcher alone (as sim/launch.py forks it) on a state dir: a line wider than a HUB12
    sign moves on in display.png while it stands; lines that fit give a still picture."""
    import subprocess
    import sys
    state = str(tmp_path)
    with open(os.path.join(state, "config.json"), "w") as f:
        f.write('{"role": "counter", "board": {"display": {"type": "hub12", "modules": 4}}}')
    long = "请 A001 号到 社会保障卡补换领 3号窗口 办理"
    with open(os.path.join(state, "display.txt"), "w") as f:
        f.write("A001 3\n%s\n" % long)
    w = subprocess.Popen([sys.executable, os.path.join(frames.ROOT, "sim", "frames.py"), "--state", state,
                          "--config", os.path.join(state, "config.json")])
    try:
        first = _png(state, timeout=10)
        moved = _png(state, after=first, timeout=3)     # 8 px on, 250 ms later
        img = decode_png(moved)
        lit = [[rgb_at(img, x * frames.LED_CELL + 1, y * frames.LED_CELL + 1) == bytes(frames._LED_PALETTE[6:9])
                for x in range(128)] for y in range(16)]
        s = textrender.Scroller(long, 128)
        steps = []      # the line 8 px on, or a few steps on (a slow machine looked late)
        with Font() as f:
            for _ in range(6):
                s.step(frames.SCROLL_PX)
                buf = bytearray(16 * 16)
                s.draw(f, buf, 128, 16, 0)
                steps.append([[bool(buf[y * 16 + (x >> 3)] & (0x80 >> (x & 7))) for x in range(128)]
                              for y in range(16)])
        assert lit in steps
        with open(os.path.join(state, "display.txt.tmp"), "w") as f:
            f.write("A001 3\nA001 3\n")
        os.replace(os.path.join(state, "display.txt.tmp"), os.path.join(state, "display.txt"))
        still = _png(state, after=moved, timeout=3)
        time.sleep(0.6)
        assert _png(state) == still                     # nothing moves: not rewritten
    finally:
        w.kill()
        w.wait()


def _watchers(pid):
    mark = ("--parent\0%d\0" % pid).encode()
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"sim/frames.py" in cmd and mark in cmd:
                found.append(int(p))
    return found


def test_display_png_follows_the_terminal_and_dies_with_it(broker):
    sim = Sim(broker.port, fast_config(), frames=True).start()
    try:
        assert sim.press("ticket:A")["ok"]
        first = _png(sim.state)
        img = decode_png(first)
        assert img[:4] == (640, 480, 8, 2)
        assert sim.press("next")["ok"]
        deadline = time.time() + 2
        data = first
        while True:     # the frame for the lines the display reports (it may change again)
            data = _png(sim.state, after=data, timeout=max(0.1, deadline - time.time()))
            lines = sim.ask({"op": "display"})["lines"]
            if _face_matches(decode_png(data), lines):
                break
            assert time.time() < deadline, "display.png never showed %r" % lines
        assert any("A001" in s for s in lines)
        pid = sim.proc.pid
        assert _watchers(pid), "no sim/frames.py child of the device"
        sim.kill()
        deadline = time.time() + 2
        while _watchers(pid):
            assert time.time() < deadline, "sim/frames.py outlived the device by 2 s"
            time.sleep(0.05)
    finally:
        sim.cleanup()


def test_one_watcher_across_a_restart(broker):
    """A config change restarts the device in the same process (exec): the watcher it already
    has goes on, no second one is forked, and a new frame still comes."""
    sub = Subscriber(broker.port, "qterm/#")
    cfg = fast_config()
    sim = Sim(broker.port, cfg, frames=True).start()
    try:
        pid = sim.proc.pid
        assert sim.press("ticket:A")["ok"]
        before = _png(sim.state)
        watchers = _watchers(pid)
        assert len(watchers) == 1
        r = command(sim, sub, cfg["key"], "config.set", {"patch": {"heartbeat_s": 10}}, timeout=15)
        assert r["ok"] and r["result"]["restart"], r
        sim.reconnect()
        assert _watchers(pid) == watchers
        assert sim.press("next")["ok"]
        _png(sim.state, after=before)
    finally:
        sim.cleanup()
        sub.stop()
