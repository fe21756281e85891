"""What a pixel display lights for the lines firmware/screens.py shows (hal.display.show):
the render hooks of the HUB12 LED sign and the ST7789 face (hal/esp32/hub12.py, st7789.py),
drawn with the flash font (firmware/font.py, firmware/textrender.py).

lines[0] is the figure ("A001 -> 3", "P"), lines[1:] the words, one line a language. A sign
of one module row shows the first language's words (or the figure when there are none), a
taller sign one language a row; the face shows the figure large and every line below it.
Text is centred and cut at the edge; scrolling and the flashing newest call come with the
per-role screens (issue 14). A glyph's bitmap is read from flash as it is drawn: nothing of
the font stays in RAM.
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


def led(buf, w, h, lines):
    """hub12 render hook: draw into the MONO_HLSB frame buf (w x h)."""
    for i in range(len(buf)):
        buf[i] = 0
    words = lines[1:] if len(lines) > 1 else lines
    with Font() as f:
        y = 0
        for text in words:
            if y + 16 > h:
                break
            if text:
                textrender.draw(f, buf, w, h, _left(text, w), y, text)
            y += 16


def face(tft, lines):
    """st7789 render hook: the figure at 3x, then each line, one 16-px band at a time through
    one band buffer (a frame would not fit the heap)."""
    w = tft.width
    tft.fill(0)
    band = bytearray(((w + 7) >> 3) * 16)
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
                textrender.draw(f, band, bw, 16, _left(text, bw), 0, text)
                tft.blit_mono(band, bw, 16, 0, y, _FG, 0, scale)
            y += 16 * scale + 8


def _left(text, w):
    return max(0, (w - textrender.text_width(text)) // 2)
