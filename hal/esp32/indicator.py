"""Indicator LEDs (active high) and a passive buzzer driven by PWM.

Example:
    from hal.esp32.indicator import GpioIndicator
    ind = GpioIndicator({"rate": 14, "net": 2}, buzzer_pin=13)
    ind.set("rate", True)
    ind.beep()          # needs a running asyncio loop to switch itself off
"""
import asyncio

from machine import PWM, Pin
from time import sleep_ms

from hal.indicator import Indicator

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_HALF = const(32768)    # 50 % duty: loudest square wave


class GpioIndicator(Indicator):
    def __init__(self, pin_map, buzzer_pin=None, freq=2700):
        self._pins = {}
        for what in pin_map:
            self._pins[what] = Pin(pin_map[what], Pin.OUT, value=0)
        self._pwm = None
        if buzzer_pin is not None:
            # duty 0 at construction: PWM() alone would start beeping at 50 %.
            self._pwm = PWM(Pin(buzzer_pin), freq=freq, duty_u16=0)
        self._beeps = 0

    def set(self, what, on):
        pin = self._pins.get(what)
        if pin is not None:
            pin.value(1 if on else 0)

    def beep(self, ms=80):
        if self._pwm is None:
            return
        self._beeps += 1
        self._pwm.duty_u16(_HALF)
        quiet = self._quiet_after(self._beeps, ms)
        try:
            asyncio.create_task(quiet)
        except RuntimeError:     # no running loop (CPython host tools): beep inline
            quiet.close()
            sleep_ms(ms)
            self._pwm.duty_u16(0)

    async def _quiet_after(self, beep_no, ms):
        await asyncio.sleep(ms / 1000)
        if beep_no == self._beeps:     # a newer beep owns the buzzer now
            self._pwm.duty_u16(0)
