"""The simulated display's picture: <state>/display.png, what the panel would light.

Host side of the display double (CPython, no image library). The device writes the lines it
shows to <state>/display.txt (sim/devices.py SimHal.show: a file write, nearly no heap);
this watcher, forked by sim/launch.py before MicroPython starts, polls that file every
100 ms and draws it with the code a real panel runs - firmware/panel.py's led() into a
MONO_HLSB frame as hub12.py holds it, face() into a small fake of st7789.py's surface - then
writes display.png (temp + rename, so a reader never sees half a picture). A line wider
than the panel scrolls in the picture too: moved on 8 px every 250 ms (the device's driver
moves it 1 px every 33 ms).

The panel follows the device's config (the stored one, else --config): board.display.type
"hub12" (modules x 32 by 16, red LEDs) or "st7789" (height/rotation as the driver takes
them); without one, every role shows the counter face, a 320 x 240 ST7789 (big enough for
every line a role shows: a call screen's earlier calls, a kiosk's waiting counts). In the
PNG a LED is a round red dot in a 4 x 4 cell (unlit ones dim), a TFT pixel 2 x 2.

It lives as long as the device: the kernel kills it with its parent (PR_SET_PDEATHSIG, set
by launch.py), and it also checks its parent every poll. It holds no port and no file open
between polls, and runs in /, so the state dir can be removed under it.

  python sim/frames.py --state DIR [--config FILE] [--parent PID]   (started by sim/launch.py)
  python sim/frames.py --render OUT.png --role counter LINE...       (one picture, for a person)
"""
import json
import os
import struct
import sys
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from firmware import panel  # noqa: E402  (CPython runs the device's drawing code as is)

POLL_S = 0.1
SCROLL_S, SCROLL_PX = 0.25, 8   # a scrolling line's picture: 8 px on every 250 ms
LED_CELL = 4        # PNG pixels a LED takes each way
TFT_SCALE = 2

# palette of the LED sign: background, unlit LED, lit LED
_LED_PALETTE = bytes((0, 0, 0, 0x38, 0x08, 0x08, 0xFF, 0x28, 0x18))
# a LED within its cell: 0 = background, 1 = the LED (round-ish: the corners left dark)
_DOT = ((0, 1, 1, 0), (1, 1, 1, 1), (1, 1, 1, 1), (0, 1, 1, 0))


# ------------------------------------------------------------ PNG

def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, rows, depth=8, color=2, palette=None):
    """A PNG file (bytes): rows are the packed scanlines (bytes each, no filter byte).

    color: 0 grayscale, 2 RGB, 3 palette (palette: bytes r,g,b,...); depth 1, 2, 4 or 8."""
    raw = bytearray()
    for r in rows:
        raw.append(0)           # filter: none (zlib does the work on mostly-dark frames)
        raw += r
    out = [b"\x89PNG\r\n\x1a\n",
           _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))]
    if color == 3:
        out.append(_chunk(b"PLTE", bytes(palette)))
    out.append(_chunk(b"IDAT", zlib.compress(bytes(raw), 6)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


# ------------------------------------------------------------ panels

class FakeTft:
    """What firmware/panel.face uses of hal/esp32/st7789.St7789: width, height, fill,
    fill_rect, blit_mono (same arguments, same clipping), into an RGB frame (3 bytes a pixel)."""

    def __init__(self, width=320, height=240):
        self.width = width
        self.height = height
        self.rgb = bytearray(3 * width * height)

    @staticmethod
    def rgb888(c):
        r, g, b = c >> 11 & 0x1F, c >> 5 & 0x3F, c & 0x1F
        return bytes((r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2))

    def fill_rect(self, x, y, w, h, color):
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        run = self.rgb888(color) * (x1 - x0)
        for yy in range(y0, y1):
            p = 3 * (yy * self.width + x0)
            self.rgb[p:p + len(run)] = run

    def fill(self, color):
        self.fill_rect(0, 0, self.width, self.height, color)

    def blit_mono(self, bits, w, h, x, y, fg, bg, scale=1):
        fgc, bgc = self.rgb888(fg), self.rgb888(bg)
        stride = (w + 7) >> 3
        for sy in range(h):
            row = bytearray()
            for sx in range(w):
                on = bits[sy * stride + (sx >> 3)] & (0x80 >> (sx & 7))
                row += (fgc if on else bgc) * scale
            x0 = max(0, x)
            x1 = min(self.width, x + w * scale)
            if x1 <= x0:
                return
            part = row[3 * (x0 - x):3 * (x1 - x)]
            for k in range(scale):
                yy = y + sy * scale + k
                if 0 <= yy < self.height:
                    p = 3 * (yy * self.width + x0)
                    self.rgb[p:p + len(part)] = part


def geometry(cfg):
    """("led", w, h) or ("face", w, h) for the device's config."""
    d = ((cfg or {}).get("board") or {}).get("display") or {}
    kind = d.get("type")
    if kind == "hub12":
        return "led", 32 * int(d.get("modules", 1)), 16
    if kind == "st7789":
        w, h = 240, int(d.get("height", 240))
        return ("face", h, w) if int(d.get("rotation", 0)) & 1 else ("face", w, h)
    # no display configured: the face, 320 x 240 (an ST7789 in landscape) - a panel one can
    # build with hal/esp32 and big enough for every line a role shows (a call screen's last calls)
    return "face", 320, 240


def draw(kind, w, h, lines):
    """The panel's frame for lines: a MONO_HLSB bytearray (led) or a FakeTft (face)."""
    if kind == "led":
        buf = bytearray(((w + 7) >> 3) * h)
        panel.led(buf, w, h, lines)
        return buf
    tft = FakeTft(w, h)
    panel.face(tft, lines)
    return tft


def picture(kind, w, h, frame):
    """The PNG of a frame draw() made."""
    if kind == "led":
        stride = (w + 7) >> 3
        rows = []
        for y in range(h):
            leds = [2 if frame[y * stride + (x >> 3)] & (0x80 >> (x & 7)) else 1 for x in range(w)]
            for dot in _DOT:
                rows.append(bytes(v * d for v in leds for d in dot))
        return png(w * LED_CELL, h * LED_CELL, rows, 8, 3, _LED_PALETTE)
    s = TFT_SCALE
    rows = []
    rgb = frame.rgb
    for y in range(h):
        line = rgb[3 * w * y:3 * w * (y + 1)]
        wide = b"".join(bytes(line[i:i + 3]) * s for i in range(0, len(line), 3))
        rows.extend([wide] * s)
    return png(w * s, h * s, rows, 8, 2)


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ------------------------------------------------------------ the watcher

def _config(state, fallback):
    for path in (os.path.join(state, "flash", "config.json"), fallback):
        if not path:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
            if isinstance(cfg, dict):
                return cfg
        except (OSError, ValueError):
            continue
    return {}


def watch(state, config=None, parent=None):
    src = os.path.join(state, "display.txt")
    out = os.path.join(state, "display.png")
    last = None
    said = None
    shown = None        # (kind, w, h, frame) of the picture, while a line of it scrolls
    moved = 0.0
    while True:
        if parent and os.getppid() != parent:
            return          # the device is gone (power cut or exit): so is its picture
        key = None
        try:
            st = os.stat(src)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if key != last:
                with open(src, encoding="utf-8", errors="replace") as f:
                    lines = f.read().split("\n")[:-1]
                kind, w, h = geometry(_config(state, config))
                frame = draw(kind, w, h, lines)
                write_atomic(out, picture(kind, w, h, frame))
                last = key
                shown = (kind, w, h, frame) if panel._moving else None
                moved = time.monotonic()
            elif shown and time.monotonic() - moved >= SCROLL_S:
                # a line wider than the panel scrolls as the device's would (~30 px/s), in
                # steps a person looking at the picture can follow
                moved = time.monotonic()
                kind, w, h, frame = shown
                if kind == "led":
                    panel.led_step(frame, w, h, SCROLL_PX)
                else:
                    panel.face_step(frame, SCROLL_PX)
                write_atomic(out, picture(kind, w, h, frame))
        except FileNotFoundError:
            pass            # nothing shown yet, or the state dir is being removed
        except Exception as e:  # noqa: BLE001  a bad frame must not end the pictures
            msg = "qterm-sim: display.png: %s: %s" % (type(e).__name__, e)
            if msg != said:
                sys.stderr.write(msg + "\n")
                said = msg
            last = key or last  # not retried every poll: the next change tries again
        time.sleep(POLL_S)


def main(argv):
    opts = {}
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        opts[argv[i][2:]] = argv[i + 1] if i + 1 < len(argv) else ""
        i += 2
    if "help" in opts or not ("state" in opts or "render" in opts):
        sys.stdout.write(__doc__)
        return 0 if "help" in opts else 2
    if "render" in opts:
        kind, w, h = geometry({"role": opts.get("role", "counter")})
        write_atomic(opts["render"], picture(kind, w, h, draw(kind, w, h, argv[i:])))
        return 0
    try:
        watch(opts["state"], opts.get("config"), int(opts["parent"]) if opts.get("parent") else None)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
