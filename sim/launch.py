"""Start the MicroPython unix port with the firmware in a memory-mapped ROMFS image.

On the ESP32 the firmware's bytecode runs from flash (a ROMFS partition or frozen into
the image), so it costs no heap; only objects do. The simulator does the same: it builds
a ROMFS image of firmware/, the hal interfaces and the sim doubles (mpremote romfs build,
each .py compiled by mpy-cross), maps it read-only into this process like the flash cache
maps a partition, and then runs MicroPython in this very process (the unix port is a
library here), so this PID is the device and SIGKILL is a power cut.

QTERM_HEAP (default 128K; the budget is 96K, see README) sets the heap; QTERM_ROMFS=0 loads plain .py files instead;
QTERM_CODE_DIR=DIR runs firmware/ and hal/ from DIR (e.g. a tree deployed by tools/qterm).
"""
import ctypes
import mmap
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("QTERM_BUILD") or os.path.join(ROOT, "build", "sim")
IMAGE = os.path.join(BUILD, "qterm.romfs")
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))

# What goes into the image: the device's code and data, the hal interfaces, the doubles.
_TREES = (("firmware", ("device",)), ("hal", ("esp32",)), ("sim", ("main.py", "launch.py", "console.py", "config.example.json", "run")))


def _sources():
    for tree, skip in _TREES:
        base = os.path.join(ROOT, tree)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and not (skip and d in skip)]
            for name in filenames:
                if skip and name in skip:
                    continue
                if name.endswith((".py", ".bin", ".txt")):
                    yield os.path.join(dirpath, name)


def build_image():
    """Rebuild the ROMFS image when any source is newer; atomic so running sims keep theirs."""
    srcs = list(_sources())
    try:
        built = os.path.getmtime(IMAGE)
        if all(os.path.getmtime(p) <= built for p in srcs) and os.path.getmtime(__file__) <= built:
            return
    except OSError:
        pass
    os.makedirs(BUILD, exist_ok=True)
    stage = os.path.join(BUILD, "stage.%d" % os.getpid())
    shutil.rmtree(stage, ignore_errors=True)
    for p in srcs:
        dst = os.path.join(stage, os.path.relpath(p, ROOT))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(p, dst)
    tmp = IMAGE + ".%d" % os.getpid()
    r = subprocess.run([os.path.join(VENV_BIN, "mpremote"), "romfs", "-o", tmp, "build", stage],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    shutil.rmtree(stage, ignore_errors=True)
    if r.returncode != 0:
        sys.exit("qterm-sim: building the firmware image failed:\n" + r.stderr)
    os.replace(tmp, IMAGE)


def map_image():
    """(address, size) of the image mapped read-only and private (later rebuilds can't touch it)."""
    fd = os.open(IMAGE, os.O_RDONLY)
    size = os.fstat(fd).st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        sys.exit("qterm-sim: cannot map %s: errno %d" % (IMAGE, ctypes.get_errno()))
    os.close(fd)
    return addr, size


def main():
    import micropython_run
    heap = os.environ.get("QTERM_HEAP", "128K")
    if os.environ.get("QTERM_ROMFS", "1") != "0" and not os.environ.get("QTERM_CODE_DIR"):
        build_image()
        os.environ["QTERM_ROM"] = "%d:%d" % map_image()
    else:
        os.environ.pop("QTERM_ROM", None)
    argv = ["micropython", "-X", "heapsize=" + heap, os.path.join(ROOT, "sim", "main.py")] + sys.argv[1:]
    sys.stdout.flush()
    rc = micropython_run.run_main(argv)
    if rc == 3:  # the firmware asked for a reset (e.g. a config change): same PID, fresh device
        sys.stdout.flush()
        sys.stderr.flush()
        os.closerange(3, 4096)  # the device's sockets (control port, broker) die with the reset
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit(rc)


if __name__ == "__main__":
    main()
