"""Simulated terminal entry (run by sim/run via sim/launch.py under the MicroPython unix port):
  sim/run --config FILE --state DIR --broker 127.0.0.1:PORT --control PORT [--flash files|lfs] [--echo]

Kept tiny because this file is compiled on the device heap; everything else runs from
the ROMFS image, as the firmware does from flash on the ESP32.
"""
import os
import sys


def _mount_firmware():
    """Mount the ROMFS image sim/launch.py mapped (bytecode runs in place, as from ESP32
    flash); without one, import the sources next to this file."""
    code = os.getenv("QTERM_CODE_DIR")  # a deployed device tree (tools/qterm deploy tests)
    rom = os.getenv("QTERM_ROM")
    if code:
        sys.path.insert(0, __file__.rsplit("/sim/", 1)[0])  # the sim doubles
        sys.path.insert(0, code)
    elif rom:
        import uctypes
        import vfs
        addr, size = [int(x) for x in rom.split(":")]
        vfs.mount(vfs.VfsRom(uctypes.bytearray_at(addr, size)), "/rom")
        sys.path.insert(0, "/rom")
    else:
        sys.path.insert(0, __file__.rsplit("/sim/", 1)[0])


_mount_firmware()
from sim import boot  # noqa: E402

_device = boot.main()
del boot
sys.modules.pop("sim.boot")
delattr(sys.modules["sim"], "boot")
import asyncio  # noqa: E402

asyncio.run(_device)
