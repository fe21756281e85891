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
    forget_failed_imports()
    if dropped:     # a collection costs ~1 ms a 96 KiB heap: none when there was nothing to free
        gc.collect()


def forget_failed_imports():
    """Let the GC have the modules whose import failed (short of memory, typically).
    MicroPython unregisters such a module from sys.modules but leaves the object in the
    freed slot of the table (py/builtinimport.c -> mp_map_lookup REMOVE keeps the value), and
    the GC scans the whole table: each failed import pinned a half-loaded module - ~7 KiB for
    the ticket layout - until an import happened to reuse that slot. An int key k is hashed to
    k: adding and deleting 0..63 writes over every free slot of a table of up to 64 (dict
    deletion itself clears the value). Harmless on a table with nothing stale."""
    mods = sys.modules
    for k in range(64):
        if k not in mods:
            mods[k] = None
            del mods[k]


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
