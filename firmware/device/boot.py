# qterm boot (deployed as /boot.py): put the active firmware slot first on sys.path.
# tools/qterm deploy stages a new firmware in the other slot and then switches /active
# by renaming a complete file over it, so this reads either the old or the new slot,
# never half of one. Anything unexpected falls back to /app_a. A board flashed with the
# firmware frozen in (the layout a hall should use, see README) has ".frozen" in /active.
import sys


def _active():
    try:
        with open("/active") as f:
            slot = f.read().strip()
    except OSError:
        slot = ""
    return slot if slot in ("/app_a", "/app_b", "/rom", ".frozen") else "/app_a"


_slot = _active()
if _slot in sys.path:
    # ".frozen" (firmware frozen into the image, see build/device/manifest.py): first, so the
    # data-file folder /firmware (messages.txt, gb2312.bin) does not hide the frozen package
    sys.path.remove(_slot)
sys.path.insert(0, _slot)
del _active, _slot
