"""Wi-Fi station link with retries and capped, jittered exponential backoff.

ensure() never blocks the event loop: connect() only starts the attempt, and
the wait for an address is a series of short asyncio sleeps. A wrong password
or a missing access point ends the attempt early instead of waiting it out.
Jitter (+-25 %) keeps a hall full of terminals from hammering the access point
in step after it reboots.

Example:
    import asyncio
    from hal.esp32.wlan import WlanLink
    net = WlanLink("hall-wifi", "secret", hostname="qterm-k1")
    asyncio.run(net.ensure())
    print(net.info())
"""
import asyncio
import os

import network

from hal.netlink import NetLink


def backoff_ms(attempt, first_ms, max_ms):
    """Pause after failed attempt number attempt (0-based), without jitter."""
    d = first_ms
    while attempt > 0 and d < max_ms:
        d *= 2
        attempt -= 1
    return min(d, max_ms)


def jitter(ms):
    """ms spread over 75..125 % so terminals do not retry in lockstep."""
    r = os.urandom(1)[0]            # 0..255
    return ms * (768 + 2 * r) // 1024


class WlanLink(NetLink):
    def __init__(self, ssid, password, hostname=None, connect_ms=15000,
                 first_backoff_ms=1000, max_backoff_ms=60000, poll_ms=100):
        self._ssid = ssid
        self._password = password
        self._hostname = hostname
        self._connect_ms = connect_ms
        self._first = first_backoff_ms
        self._max = max_backoff_ms
        self._poll = poll_ms
        self._settle = min(1000, connect_ms // 2)
        self._wlan = network.WLAN(network.STA_IF)
        self._fatal = tuple(s for s in (getattr(network, "STAT_WRONG_PASSWORD", None),
                                        getattr(network, "STAT_NO_AP_FOUND", None))
                            if s is not None)
        self._busy = False
        self.attempts = 0          # connect() calls since boot
        self.last_status = None

    def up(self):
        return bool(self._wlan.isconnected())

    def _start(self):
        w = self._wlan
        if self._hostname:
            try:
                network.hostname(self._hostname)    # MicroPython >= 1.20
            except (AttributeError, ValueError, OSError):
                try:
                    w.config(dhcp_hostname=self._hostname)
                except (ValueError, OSError):
                    pass
        w.active(True)
        try:
            w.disconnect()       # an attempt still in progress refuses connect()
        except OSError:
            pass
        self.attempts += 1
        try:
            w.connect(self._ssid, self._password)
        except OSError as e:
            self.last_status = e.args[0] if e.args else -1
            return False
        return True

    async def _wait_up(self):
        waited = 0
        while waited < self._connect_ms:
            if self._wlan.isconnected():
                return True
            st = self._wlan.status()
            # Right after connect() the status may still be the last attempt's.
            if waited >= self._settle and st in self._fatal:
                self.last_status = st
                return False
            await asyncio.sleep(self._poll / 1000)
            waited += self._poll
        self.last_status = self._wlan.status()
        return self._wlan.isconnected()

    async def ensure(self):
        while self._busy:             # another task is already connecting
            if self.up():
                return
            await asyncio.sleep(self._poll / 1000)
        if self.up():
            return
        self._busy = True
        try:
            failures = 0
            while True:
                if self._start() and await self._wait_up():
                    self.last_status = None
                    return
                pause = jitter(backoff_ms(failures, self._first, self._max))
                failures += 1
                await asyncio.sleep(pause / 1000)
        finally:
            self._busy = False

    def info(self):
        w = self._wlan
        d = {"up": False, "ssid": self._ssid, "attempts": self.attempts,
             "status": self.last_status}
        try:
            d["mac"] = ":".join("%02x" % b for b in w.config("mac"))
        except (ValueError, OSError):
            pass
        if w.isconnected():
            d["up"] = True
            d["ip"] = w.ifconfig()[0]
            try:
                d["rssi"] = w.status("rssi")
            except (ValueError, OSError):
                pass
        return d
