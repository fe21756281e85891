"""Every hal interface method exists on its simulator double and on its ESP32 driver."""
import importlib
import inspect

import pytest

from sim import devices
from tests.unit import fake_machine

PAIRS = [
    ("hal.printer", "PrinterPort", devices.SimPrinter, "hal.esp32.uart_printer", "UartPrinter"),
    ("hal.display", "Display", devices.SimDisplay, "hal.esp32.max7219", "Max7219"),
    ("hal.buttons", "Buttons", devices.SimButtons, "hal.esp32.gpio_buttons", "GpioButtons"),
    ("hal.indicator", "Indicator", devices.SimIndicator, "hal.esp32.indicator", "GpioIndicator"),
    ("hal.voice", "Voice", devices.SimVoice, "hal.esp32.syn6288", "Syn6288"),
    ("hal.clock", "Clock", devices.SimClock, "hal.esp32.clock", "RtcClock"),
    ("hal.storage", "Storage", devices.SimStorage, "hal.esp32.storage", "FlashStorage"),
    ("hal.netlink", "NetLink", devices.SimNet, "hal.esp32.wlan", "WlanLink"),
]


def _methods(cls):
    return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}


@pytest.mark.parametrize("iface_mod,iface,double,drv_mod,drv", PAIRS, ids=[p[1] for p in PAIRS])
def test_double_and_driver_implement_the_interface(iface_mod, iface, double, drv_mod, drv):
    interface = getattr(importlib.import_module(iface_mod), iface)
    wanted = _methods(interface)
    assert wanted, iface
    missing = {m for m in wanted if not callable(getattr(double, m, None))}
    assert not missing, "%s lacks %s" % (double.__name__, missing)
    fake_machine.install()
    try:
        driver = getattr(importlib.import_module(drv_mod), drv)
    finally:
        fake_machine.restore()
    missing = {m for m in wanted if not callable(getattr(driver, m, None))}
    assert not missing, "%s lacks %s" % (drv, missing)
    for m in wanted:
        if inspect.iscoroutinefunction(getattr(interface, m)):
            assert inspect.iscoroutinefunction(getattr(double, m)), "%s.%s must be async" % (double.__name__, m)
