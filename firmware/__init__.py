"""qterm firmware.

Rarely used code (boot recovery, commands, ticket layout, counter management...) is imported
for the one job that needs it and released after: release() is the one place that does it.
"""
import gc
import sys


def release(*names):
    """Forget the modules firmware.<name> (and the package's reference to each) so that their
    function objects can be collected: on a 96 KiB heap they are worth more as free RAM."""
    if sys.implementation.name != "micropython":
        return      # CPython (unit tests): RAM to spare, and re-imports are slow
    pkg = sys.modules.get("firmware")
    dropped = False
    for name in names:
        m = sys.modules.get("firmware." + name)
        if m is not None and _held(m, names):
            continue
        if sys.modules.pop("firmware." + name, None) is not None:
            dropped = True
        try:
            delattr(pkg, name)
            dropped = True      # (an import that failed half-way leaves only this)
        except (AttributeError, KeyError):    # not loaded (MicroPython says KeyError)
            pass
    if dropped:     # a collection costs ~1 ms a 96 KiB heap: none when there was nothing to free
        gc.collect()


def _held(m, names):
    """True if a loaded module other than those being released holds m among its globals
    (commands imports text, for one): forgetting m would not free it, and the next import
    would load a second copy beside it."""
    for key, other in sys.modules.items():
        if other is m or key == "firmware" or key[9:] in names:
            continue
        for v in other.__dict__.values():
            if v is m:
                return True
    return False
