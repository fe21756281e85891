"""SYN6288 Chinese text-to-speech module on a UART (9600 8N1 by default).

Frame: 0xFD, length (2 bytes, big endian: command + parameter + text +
checksum), command 0x01 (synthesize), parameter (high 5 bits background music,
0 = none; low 3 bits text encoding, 0 = GB2312), text (<= 200 bytes), XOR of
all previous bytes. The module answers 0x41 (frame accepted), 0x45 (frame
rejected), 0x4E (playing) and 0x4F (idle, also sent when speech ends).

busy(): the BUSY pin if wired (high = playing, set busy_level for boards that
invert it), else the 0x4F reply, else an estimate from the text length. Once the module
has answered the frame, its 0x4F is awaited up to 4x the estimate: English (one byte a
letter) runs far slower than 130 ms a byte, and a guess that ends early would let the next
announcement cut this one short.

Example:
    from machine import UART
    from hal.esp32.syn6288 import Syn6288
    v = Syn6288(UART(1, baudrate=9600, tx=4, rx=36), encode=gb2312_encode)
    v.say("请A001号到3号窗口")
"""
from time import ticks_diff, ticks_ms

from hal.voice import Voice

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_HEAD = const(0xFD)
_CMD_SPEAK = const(0x01)
_PARAM_GB2312 = const(0x00)    # no background music, GB2312 text
_MAX_TEXT = const(200)
_ACK_OK = const(0x41)
_ACK_IDLE = const(0x4F)
_ACK_PLAYING = const(0x4E)
_MS_PER_BYTE = const(130)      # ~4 Chinese characters a second, 2 bytes each
_MS_SLACK = const(600)
_HEARD_FACTOR = const(4)        # the module answered: wait this much longer for its 0x4F


def fit_gb2312(data, limit=_MAX_TEXT):
    """Length of the longest prefix of data <= limit that ends on a character."""
    i = 0
    n = len(data)
    while i < n:
        step = 2 if data[i] >= 0x80 else 1
        if i + step > limit:
            break
        i += step
    return min(i, n)


class Syn6288(Voice):
    def __init__(self, uart, encode, busy_pin=None, busy_level=1):
        self._uart = uart
        self._encode = encode
        self._busy_pin = busy_pin
        self._busy_level = busy_level
        self._frame = bytearray(_MAX_TEXT + 6)
        self._fv = memoryview(self._frame)
        self._rx = bytearray(8)
        self._rxv = memoryview(self._rx)
        self._since = ticks_ms()
        self._est = 0
        self._speaking = False
        self._heard = False

    def frame(self, text):
        """Build the synthesize frame for text; returns a view of its bytes."""
        data = self._encode(text)
        n = fit_gb2312(data)
        f = self._frame
        f[0] = _HEAD
        f[1] = (n + 3) >> 8
        f[2] = (n + 3) & 0xFF
        f[3] = _CMD_SPEAK
        f[4] = _PARAM_GB2312
        f[5:5 + n] = memoryview(data)[:n]
        x = 0
        for i in range(5 + n):
            x ^= f[i]
        f[5 + n] = x
        return self._fv[:n + 6]

    def say(self, text):
        fr = self.frame(text)
        self._drain()                       # an old 0x4F must not end this one
        self._uart.write(fr)
        self._speaking = True
        self._heard = False
        self._since = ticks_ms()
        self._est = _MS_SLACK + _MS_PER_BYTE * (len(fr) - 6)

    def _drain(self):
        u = self._uart
        k = u.any()
        while k:
            k = u.readinto(self._rxv[:min(k, 8)])
            if not k:
                break
            for i in range(k):
                b = self._rx[i]
                if b == _ACK_IDLE:
                    self._speaking = False
                elif b == _ACK_PLAYING:
                    self._speaking = True
                if b == _ACK_OK or b == _ACK_PLAYING:
                    self._heard = True
            k = u.any()

    def busy(self):
        if self._busy_pin is not None:
            return self._busy_pin.value() == self._busy_level
        self._drain()
        if self._speaking:
            limit = self._est * _HEARD_FACTOR if self._heard else self._est
            if ticks_diff(ticks_ms(), self._since) >= limit:
                self._speaking = False      # reply lost or no RX wire
        return self._speaking
