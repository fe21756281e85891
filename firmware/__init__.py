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
    for name in names:
        sys.modules.pop("firmware." + name, None)
        try:
            delattr(pkg, name)
        except (AttributeError, KeyError):    # not loaded (MicroPython says KeyError)
            pass
    gc.collect()
