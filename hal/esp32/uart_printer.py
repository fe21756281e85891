"""ESC/POS printer on a UART (TTL or RS-232 via a level shifter).

Example:
    from machine import UART
    from hal.esp32.uart_printer import UartPrinter
    p = UartPrinter(UART(2, baudrate=9600, tx=17, rx=16))
    p.write(b"\\x1b@Hello\\n\\n\\n")
    st = p.query(b"\\x10\\x04\\x04")    # paper sensor; None = printer silent
"""
import errno
from time import sleep_ms, ticks_diff, ticks_ms

from hal.printer import PrinterPort

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_REPLY_MAX = const(32)   # status replies are 1..8 bytes; room for a chatty model
_GAP_MS = const(20)      # silence after the first reply byte = reply complete


class UartPrinter(PrinterPort):
    def __init__(self, uart, write_timeout_ms=2000):
        self._uart = uart
        self._stall_ms = write_timeout_ms
        self._rx = bytearray(_REPLY_MAX)
        self._rxv = memoryview(self._rx)
        self._stream = None

    def write(self, data):
        """Send all of data; retry partial writes; OSError(ETIMEDOUT) if stuck.

        A printer holding CTS (paper out, buffer full) makes UART.write accept
        nothing; after write_timeout_ms without progress we give up rather than
        hang the ticket kiosk.
        """
        mv = memoryview(data)
        n = len(mv)
        sent = 0
        stalled_at = None
        while sent < n:
            k = self._uart.write(mv[sent:])
            if k:
                sent += k
                stalled_at = None
                continue
            now = ticks_ms()
            if stalled_at is None:
                stalled_at = now
            elif ticks_diff(now, stalled_at) >= self._stall_ms:
                raise OSError(errno.ETIMEDOUT)
            sleep_ms(1)

    async def send(self, data):
        """All of data through an asyncio stream on the UART: the loop runs while the FIFO
        drains. OSError(ETIMEDOUT) when the printer holds CTS for write_timeout_ms."""
        import asyncio
        if self._stream is None:
            self._stream = asyncio.StreamWriter(self._uart, {})
        self._stream.write(data)
        try:
            await asyncio.wait_for_ms(self._stream.drain(), self._stall_ms + len(data))
        except asyncio.TimeoutError:
            raise OSError(errno.ETIMEDOUT)

    def query(self, request, timeout_ms=300):
        """Send request and collect the reply; None if nothing came back."""
        u = self._uart
        k = u.any()
        while k:             # a late reply to an earlier query is not ours
            # never ask for more than is there: a UART with timeout > 0 would wait
            k = u.readinto(self._rxv[:min(k, _REPLY_MAX)]) and u.any()
        self.write(request)
        start = last = ticks_ms()
        n = 0
        while n < _REPLY_MAX:
            now = ticks_ms()
            k = u.any()
            if k:
                k = u.readinto(self._rxv[n:n + min(k, _REPLY_MAX - n)])
                if k:
                    n += k
                    last = now
                    continue
            if n and ticks_diff(now, last) >= _GAP_MS:
                break
            if ticks_diff(now, start) >= timeout_ms:
                break
            sleep_ms(1)
        if not n:
            return None
        return bytes(self._rxv[:n])
