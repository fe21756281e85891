"""Text into a 1-bit bitmap: what a call screen or a counter face lights.

The bitmap is a bytearray in framebuf's MONO_HLSB layout (rows top to bottom, (w+7)//8
bytes a row, most significant bit = leftmost pixel), so a driver can wrap the same
bytes in framebuf.FrameBuffer; this module needs no framebuf (CPython has none) and
sets the bits itself.

Layout needs no font: 8 px for each byte below 0x80, 16 px for each multi-byte
UTF-8 character (font16.bin is built so). Text is walked as UTF-8 bytes: iterating a
str would intern every character met as a qstr for good (README "Interned names are a
lifetime budget"). Drawing allocates nothing per glyph: the font reads each one into
its own 32-byte buffer, and a glyph wholly outside the bitmap is not read at all.
Glyph cells are drawn opaque (lit pixels 1, the rest 0; the reverse with invert).
"""
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_ALL = const(0xFFFFFF)


def _utf8(text):
    if not isinstance(text, str):
        return text
    try:
        return memoryview(text)  # MicroPython: the str's own UTF-8 bytes, no copy
    except TypeError:
        return text.encode("utf-8")


def text_width(text):
    """Width in pixels of text (str or UTF-8 bytes)."""
    s = _utf8(text)
    n = len(s)
    i = px = 0
    while i < n:
        b = s[i]
        if b < 0x80:
            px += 8
            i += 1
        else:
            px += 16
            i += 1 if b < 0xC0 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
    return px


def draw(font, buf, w, h, x, y, text, invert=False):
    """Draw text with its top-left corner at (x, y), clipped to the w x h bitmap buf.

    Returns the advance (the text's width, clipped or not), so calls can be chained.
    """
    s = _utf8(text)
    n = len(s)
    stride = (w + 7) >> 3
    inv = _ALL if invert else 0
    g = font.buf
    r0 = -y if y < 0 else 0
    r1 = h - y if h - y < 16 else 16
    i = 0
    x0 = x
    while i < n:
        b = s[i]
        if b < 0x80:
            cp = b
            i += 1
            cw = 8
        else:
            # decode in place (no helper call, no tuple): a broken sequence becomes U+FFFD, a box
            k = 1 if b < 0xC0 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            if k == 1 or i + k > n:
                cp = 0xFFFD
            else:
                cp = b & (0x1F if k == 2 else 0x0F if k == 3 else 0x07)
                for j in range(i + 1, i + k):
                    cp = cp << 6 | (s[j] & 0x3F)
            i += k
            cw = 16
        if x + cw <= 0 or x >= w or r0 >= r1:
            x += cw
            continue
        font.glyph(cp)
        # a 16-pixel row shifted into a 24-bit window over bytes bx, bx+1, bx+2
        bx = x >> 3
        sh = 8 - (x & 7)
        m = (0xFFFF if cw == 16 else 0xFF00) << sh
        right = w - (bx << 3)
        if right < 24:
            m &= ~((1 << (24 - right)) - 1)
        m0 = (m >> 16) & 0xFF if 0 <= bx < stride else 0
        m1 = (m >> 8) & 0xFF if 0 <= bx + 1 < stride else 0
        m2 = m & 0xFF if 0 <= bx + 2 < stride else 0
        p = (y + r0) * stride + bx
        for r in range(r0, r1):
            if cw == 16:
                v = ((g[2 * r] << 8 | g[2 * r + 1]) << sh) ^ inv
            else:
                v = (g[r] << 8 + sh) ^ inv
            if m0:
                buf[p] = buf[p] & ~m0 | (v >> 16) & m0
            if m1:
                buf[p + 1] = buf[p + 1] & ~m1 | (v >> 8) & m1
            if m2:
                buf[p + 2] = buf[p + 2] & ~m2 | v & m2
            p += stride
        x += cw
    return x - x0


class Scroller:
    """One line of text that moves left a pixel per step and comes round again after a gap.

    Text no wider than the panel stands still at x = 0. The text is kept as UTF-8 bytes
    (a view of the str on MicroPython), so each frame allocates nothing.
    """

    def __init__(self, text, panel_w, gap=32):
        self.text = _utf8(text)
        self.width = text_width(self.text)
        self.period = self.width + gap
        self.moving = self.width > panel_w
        self.offset = 0

    def step(self, n=1):
        if self.moving:
            self.offset = (self.offset + n) % self.period

    def draw(self, font, buf, w, h, y=0, invert=False):
        """Clear rows y..y+15 across the bitmap and draw the text where the scroll has it."""
        stride = (w + 7) >> 3
        fill = 0xFF if invert else 0
        for p in range(max(y, 0) * stride, min(y + 16, h) * stride):
            buf[p] = fill
        x = -self.offset
        draw(font, buf, w, h, x, y, self.text, invert)
        if self.moving and x + self.period < w:
            draw(font, buf, w, h, x + self.period, y, self.text, invert)


def flash_on(ticks, half=2, times=5):
    """Whether the newest call is lit `ticks` display ticks after it appeared: `half` ticks
    on, `half` off, `times` times, then steady on (times=0: flash for as long as asked)."""
    if ticks < 0 or times and ticks >= 2 * half * times:
        return True
    return ticks // half % 2 == 0
