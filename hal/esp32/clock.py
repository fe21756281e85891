"""Wall clock on the ESP32 RTC, set by NTP or by the backend.

The RTC keeps counting across soft resets but starts at the port's epoch after
power-up, so `synced` tells the firmware whether time() can be trusted.
Ports count from 2000-01-01 or 1970-01-01; time() always returns 1970 seconds.

Example:
    import asyncio
    from hal.esp32.clock import RtcClock
    clock = RtcClock()
    t = asyncio.run(clock.ntp_time("203.107.6.88"))   # an NTP server's address
    if t:
        clock.set_time(t)
        print(clock.time())
"""
import time

import machine

from hal.clock import Clock

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_SECONDS_1970_TO_2000 = const(946684800)
_SECONDS_1900_TO_1970 = const(2208988800)


class RtcClock(Clock):
    def __init__(self, rtc=None):
        self._rtc = rtc if rtc is not None else machine.RTC()
        self._offset = _SECONDS_1970_TO_2000 if time.gmtime(0)[0] == 2000 else 0
        self.synced = False

    def time(self):
        return int(time.time()) + self._offset

    def ticks_ms(self):
        return time.ticks_ms()

    def set_time(self, epoch):
        t = time.gmtime(int(epoch) - self._offset)
        # RTC order: year, month, day, weekday, hours, minutes, seconds, subseconds
        self._rtc.datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))
        self.synced = True

    async def ntp_time(self, server, timeout_ms=2000, port=123):
        """UTC epoch seconds from the NTP server at IPv4 address `server`, or None.

        One UDP request, polled without blocking: the event loop (buttons, printing, MQTT)
        runs while the answer is on its way. No name lookup (it would block): the
        validator insists on an address. The caller steps the clock with the result.
        """
        import asyncio
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            req = bytearray(48)
            req[0] = 0x1B                       # LI 0, version 3, mode 3 (client)
            s.sendto(req, socket.getaddrinfo(server, port)[0][-1])
            data = None
            for _ in range(timeout_ms // 20 + 1):
                try:
                    data = s.recv(48)
                    break
                except OSError:     # nothing yet (EAGAIN)
                    await asyncio.sleep(0.02)
        except OSError:
            return None
        finally:
            s.close()
        if data is None or len(data) < 48:
            return None
        secs = data[40] << 24 | data[41] << 16 | data[42] << 8 | data[43]   # transmit timestamp
        return secs - _SECONDS_1900_TO_1970 if secs else None
