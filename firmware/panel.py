"""What a pixel display lights for the lines firmware/screens.py shows (hal.display.show):
the render hooks of the HUB12 LED sign and the ST7789 face (hal/esp32/hub12.py, st7789.py),
drawn with the flash font (firmware/font.py, firmware/textrender.py).

lines[0] is the figure ("A001 -> 3", "P"), lines[1:] the words, one line a language. A sign
of one module row shows the first language's words (or the figure when there are none), a
taller sign one language a row; the face shows the figure large and every line below it.
Text that fits is centred; a line wider than the panel scrolls: led()/face() note it, and
led_step()/face_step() move it on (the driver's animate(), run by the app every ~33 ms
while something moves: hal/esp32/hub12.py, st7789.py). The newest call flashes by the
call screen blanking its lines (firmware/role_screen.py). A glyph's bitmap is read from flash
as it is drawn: nothing of the font stays in RAM; a scrolling line holds only its Scroller.
"""
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from firmware import textrender
from firmware.font import Font

_FG = const(0xFFE0)     # yellow on black: readable from across a hall
_BIG = const(3)         # the figure at 3x (48 px)


_moving = []    # [Scroller, y] of each line wider than the panel, drawn again by *_step
_band = None    # face_step's one 16-px band while something moves on the face


def led(buf, w, h, lines):
    """hub12 render hook: draw into the MONO_HLSB frame buf (w x h)."""
    global _band
    _band = None
    del _moving[:]
    for i in range(len(buf)):
        buf[i] = 0
    words = lines[1:] if len(lines) > 1 else lines
    with Font() as f:
        y = 0
        for text in words:
            if y + 16 > h:
                break
            if text:
                _line(f, buf, w, h, y, text, y)
            y += 16


def led_step(buf, w, h, n=1):
    """Move each scrolling line of the sign on by n pixels; False when none moves."""
    if not _moving:
        return False
    with Font() as f:
        for s, y in _moving:
            s.step(n)
            s.draw(f, buf, w, h, y)
    return True


def face(tft, lines):
    """st7789 render hook: the figure at 3x, then each line, one 16-px band at a time through
    one band buffer (a frame would not fit the heap). The gap between lines shrinks (8 px to
    none) so that a screen of many lines - the five rating choices - still fits."""
    global _band
    _band = None
    del _moving[:]
    w = tft.width
    tft.fill(0)
    band = bytearray(((w + 7) >> 3) * 16)
    used = 16 * (_BIG + len(lines) - 1)
    gap = min(8, max(0, (tft.height - 8 - used) // max(1, len(lines))))
    with Font() as f:
        y = 8
        for k in range(len(lines)):
            text = lines[k]
            scale = _BIG if k == 0 else 1
            if y + 16 * scale > tft.height:
                break
            if text:
                for i in range(len(band)):
                    band[i] = 0
                bw = w // scale
                if scale == 1:
                    _line(f, band, bw, 16, 0, text, y)
                else:
                    textrender.draw(f, band, bw, 16, _left(text, bw), 0, text)
                tft.blit_mono(band, bw, 16, 0, y, _FG, 0, scale)
            y += 16 * scale + gap
    if _moving:
        _band = band


def face_step(tft, n=1):
    """Move each scrolling line of the face on by n pixels; False when none moves."""
    band = _band
    if not _moving or band is None:
        return False
    w = tft.width
    with Font() as f:
        for s, y in _moving:
            s.step(n)
            s.draw(f, band, w, 16)
            tft.blit_mono(band, w, 16, 0, y, _FG, 0, 1)
    return True


def _line(f, buf, w, h, y, text, at):
    """A line of words at row y of buf: centred if it fits, else the start of its scroll
    (remembered as at: the row of the panel it is shown on)."""
    s = textrender.Scroller(text, w)
    if s.moving:
        _moving.append((s, at))
        s.draw(f, buf, w, h, y)
    else:
        textrender.draw(f, buf, w, h, _left(text, w), y, text)


def _left(text, w):
    return max(0, (w - textrender.text_width(text)) // 2)
