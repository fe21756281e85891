"""The simulator's SYN6288: a UART double behind the real driver (hal/esp32/syn6288.py).

Each write() is taken as one frame (the driver writes a frame in one call), checked like
the module does - head 0xFD, length, XOR check byte, command 0x01, parameter (GB2312 text,
background music 0..15) - and one line is appended to the log, flushed at once:
    <device epoch s>\\tSAY\\t<text decoded back to Unicode>
    <device epoch s>\\tBAD\\t<head|length|check|command|parameter>\\t<hex of the frame>
Control characters in the text become spaces so that a frame is always one line.
GB2312 is decoded by one pass over the encoder's own table file (firmware/gb2312.bin,
sorted by code point, so the reverse lookup has to scan it) in 64-byte reads: the table
never sits in RAM. Where two code points share a code, the smaller one is the answer.

It answers as the module does: 0x41 and 0x4E for a good frame, 0x45 for a bad one, 0x4F
when the speech ends, len(text bytes) * ms_per_byte ms later (0 = at once). A good frame
while speaking cuts the speech short; a bad one leaves it alone. Replies wait in a 16-byte
RX buffer; beyond that they are lost, as on a UART nobody reads.
SimHal (sim/devices.py) loads it with the driver and the encoder for each announcement.

Example (micropython, in the repository):
    u = VoiceUart("/tmp/voice.log", "firmware/gb2312.bin", SimClock("/tmp/clock.json"))
    Syn6288(u, Gb2312().encode).say("请A001号到3号窗口")   # -> "<ts>\tSAY\t请A001号到3号窗口"
"""
from binascii import hexlify

try:
    from time import ticks_diff
except ImportError:     # CPython (host tests): the clocks passed in there do not wrap
    def ticks_diff(a, b):
        return a - b

_HEAD = 0xFD
_MAX_TEXT = 200
_RX = 16
_CHUNK = 64


class VoiceUart:
    """log: path of voice.log; table: path of gb2312.bin; clock: .time() (device epoch
    seconds) and .ticks_ms()."""

    def __init__(self, log, table, clock, ms_per_byte=130):
        self.log = log
        self.table = table
        self.clock = clock
        self.ms_per_byte = ms_per_byte
        self._rx = bytearray(_RX)
        self._n = 0
        self.start = 0          # ticks when the last good frame came ...
        self.dur = -1           # ... and ms it speaks for; -1 = silent

    # ---- the module's side of the wire
    def write(self, buf):
        f = bytes(buf)
        why = _problem(f)
        ts = self.clock.time()
        with open(self.log, "ab") as out:
            if why:
                out.write(("%d\tBAD\t%s\t" % (ts, why)).encode())
                out.write(hexlify(f))
            else:
                out.write(("%d\tSAY\t" % ts).encode())
                out.write(self._decode(f, 5, len(f) - 1))
            out.write(b"\n")
        if why:
            self._reply(0x45)
            return len(f)
        self._reply(0x41)
        self._reply(0x4E)
        self.start = self.clock.ticks_ms()
        self.dur = (len(f) - 6) * self.ms_per_byte
        return len(f)

    def any(self):
        if self.dur >= 0 and ticks_diff(self.clock.ticks_ms(), self.start) >= self.dur:
            self.dur = -1
            self._reply(0x4F)
        return self._n

    def readinto(self, buf, nbytes=None):
        k = min(self.any(), len(buf) if nbytes is None else nbytes)
        if not k:
            return None         # as machine.UART does when nothing arrived
        rx = self._rx
        for i in range(k):
            buf[i] = rx[i]
        rx[:self._n - k] = rx[k:self._n]
        self._n -= k
        return k

    def _reply(self, b):
        if self._n < _RX:
            self._rx[self._n] = b
            self._n += 1

    # ---- GB2312 back to Unicode
    def _decode(self, f, i, end):
        """UTF-8 bytes of the text f[i:end]; U+FFFD for a code the table lacks."""
        want = {}
        j = i
        while j < end:
            if f[j] >= 0x80 and j + 1 < end:
                want[f[j] << 8 | f[j + 1]] = 0
                j += 2
            else:
                j += 1
        if want:
            self._lookup(want)
        out = bytearray()
        j = i
        while j < end:
            b = f[j]
            if b < 0x80:
                out.append(b if 0x20 <= b < 0x7F else 0x20)
                j += 1
                continue
            cp = want.get(b << 8 | f[j + 1], 0) if j + 1 < end else 0
            _utf8(out, cp or 0xFFFD)
            j += 2
        return out

    def _lookup(self, want):
        """Fill want (GB2312 code -> 0) with code points, in one pass over the table."""
        left = len(want)
        buf = bytearray(_CHUNK)
        try:
            with open(self.table, "rb") as t:
                head = t.read(8)
                if len(head) != 8 or head[:4] != b"GB23" or head[5] != 4:
                    return
                todo = (head[6] << 8 | head[7]) * 4
                while todo > 0 and left:
                    k = t.readinto(buf)
                    if not k:
                        return
                    k = min(k, todo) & ~3
                    todo -= k
                    for r in range(0, k, 4):
                        code = buf[r + 2] << 8 | buf[r + 3]
                        if want.get(code) == 0:
                            want[code] = buf[r] << 8 | buf[r + 1]
                            left -= 1
        except OSError:
            pass                # no table: every character shows as U+FFFD


def _problem(f):
    """Why the module would refuse frame f, or None."""
    n = len(f)
    if not n or f[0] != _HEAD:
        return "head"
    if n < 6 or (f[1] << 8 | f[2]) != n - 3 or n - 6 > _MAX_TEXT:
        return "length"
    x = 0
    for b in f:
        x ^= b
    if x:
        return "check"
    if f[3] != 0x01:
        return "command"
    if f[4] & 7 or f[4] >> 3 > 15:
        return "parameter"
    return None


def _utf8(out, cp):
    if cp < 0x80:
        out.append(cp)
    elif cp < 0x800:
        out.append(0xC0 | cp >> 6)
        out.append(0x80 | cp & 0x3F)
    else:
        out.append(0xE0 | cp >> 12)
        out.append(0x80 | cp >> 6 & 0x3F)
        out.append(0x80 | cp & 0x3F)
