"""Wall clock on the ESP32 RTC, set by NTP or by the backend.

The RTC keeps counting across soft resets but starts at the port's epoch after
power-up, so `synced` tells the firmware whether time() can be trusted.
Ports count from 2000-01-01 or 1970-01-01; time() always returns 1970 seconds.

Example:
    from hal.esp32.clock import RtcClock
    clock = RtcClock()
    if clock.sync("ntp.aliyun.com"):
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

    def sync(self, host="pool.ntp.org"):
        """Set the RTC from NTP (blocks up to ~1 s); True on success."""
        import ntptime           # imported here: its socket code is only needed now
        ntptime.host = host
        try:
            ntptime.settime()
        except (OSError, OverflowError, IndexError):
            return False
        self.synced = True
        return True
