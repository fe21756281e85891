# qterm boot (deployed as /boot.py): put the active firmware slot first on sys.path.
# tools/qterm deploy stages a new firmware in the other slot and then switches /active
# by renaming a complete file over it, so this reads either the old or the new slot,
# never half of one. Anything unexpected falls back to /app_a.
import sys


def _active():
    try:
        with open("/active") as f:
            slot = f.read().strip()
    except OSError:
        slot = ""
    return slot if slot in ("/app_a", "/app_b", "/rom") else "/app_a"


sys.path.insert(0, _active())
del _active
