"""Build MicroPython unix ports from source for the heap bench (not part of the product).

  .venv/bin/python bench/unixport.py [--src DIR] [--arch x64|x86|all] [--frozen|--plain]

prints one line per executable: "<name> <loader prefix...> <path>". Each port gets the small
helper in bench/usermod/qterm_host (maps a ROMFS image, restarts on exit code 3), so that
sim/launch.py can run the simulator under it (QTERM_MICROPYTHON, QTERM_MICROPYTHON_PREFIX).

- x64 is a native build with the host gcc, x86 a 32-bit one with Debian's gcc-i686-linux-gnu
  (4-byte pointers and 31-bit small ints, as on the ESP32). Both without TLS, btree and ffi:
  the source in ../shared/vendor leaves those submodules out.
- "plain" freezes only asyncio (what the unix port lacks of an ESP32's board manifest);
  "frozen" also freezes firmware/, hal/ (build/device/manifest.py, as tools/qterm build writes
  it for the ESP32) and the simulator's sim/. The two must be separate executables: names
  frozen into an image are no longer interned on the heap, which would flatter the ROMFS and
  files figures of a frozen executable.

The source is --src DIR (a MicroPython tree with py/ and ports/unix/), or else the tarball in
../shared/vendor unpacked into build/bench/. Builds land in build/bench/ports/<name>/.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_BUILD = os.path.join(ROOT, "build", "bench")
VENDOR = os.path.join(os.path.dirname(ROOT), "shared", "vendor")
USERMOD = os.path.join(ROOT, "bench", "usermod")
X86_LOADER = ["/usr/i686-linux-gnu/lib/ld-linux.so.2", "--library-path", "/usr/i686-linux-gnu/lib"]
_MAKE_FLAGS = ["MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0", "MICROPY_SSL_MBEDTLS=0"]
# The unix port has no boards/manifest.py; the ESP32's includes asyncio among its modules, and
# build/device/manifest.py includes $(PORT_DIR)/boards/manifest.py, so the bench adds one.
BOARD_MANIFEST = 'include("$(MPY_DIR)/extmod/asyncio")\n'
# The simulator's device side (sim/launch.py and sim/console.py run under CPython on the host).
SIM_FILES = tuple(sorted(n for n in os.listdir(os.path.join(ROOT, "sim"))
                         if n.endswith(".py") and n not in ("launch.py", "console.py")))


class Unavailable(Exception):
    """No MicroPython source or no compiler: the message says which and what to do."""


def vendor_tarball():
    found = sorted(glob.glob(os.path.join(VENDOR, "micropython-*-src.tar.gz")))
    return found[-1] if found else None


def source(src=None):
    """Path of a MicroPython source tree: --src, or the vendor tarball unpacked into build/bench/."""
    if src:
        src = os.path.abspath(src)
        if not os.path.isdir(os.path.join(src, "py")) or not os.path.isdir(os.path.join(src, "ports", "unix")):
            raise Unavailable("%s is not a MicroPython source tree (no py/ or ports/unix/)" % src)
        return src
    tarball = vendor_tarball()
    if not tarball:
        raise Unavailable("no MicroPython source: pass --src DIR or put the tarball in %s" % VENDOR)
    name = os.path.basename(tarball)[:-len("-unix-src.tar.gz")]
    tree = os.path.join(BENCH_BUILD, name)
    stamp = os.path.join(BENCH_BUILD, name + ".unpacked")
    if not os.path.exists(stamp) or os.path.getmtime(stamp) < os.path.getmtime(tarball):
        shutil.rmtree(tree, ignore_errors=True)
        os.makedirs(BENCH_BUILD, exist_ok=True)
        with tarfile.open(tarball) as tf:
            tops = set(m.name.split("/", 1)[0] for m in tf.getmembers())
            if tops != {name}:
                raise Unavailable("%s: expected everything under %s/, found %s" % (tarball, name, sorted(tops)))
            tf.extractall(BENCH_BUILD)
        open(stamp, "w").close()
    return tree


def _run(cmd, log, **kw):
    with open(log, "a") as out:
        out.write("$ %s\n" % " ".join(cmd))
        out.flush()
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        with open(log, errors="replace") as f:
            tail = f.read()[-3000:]
        raise RuntimeError("%s failed (log %s):\n%s" % (" ".join(cmd[:3]), log, tail))


def _jobs():
    return "-j%d" % max(1, os.cpu_count() or 1)


def check_compiler(arch):
    gcc = "i686-linux-gnu-gcc" if arch == "x86" else "gcc"
    if not shutil.which(gcc):
        raise Unavailable("%s not found: apt-get install %s" % (gcc, "gcc-i686-linux-gnu" if arch == "x86" else "gcc"))
    if arch == "x86" and not os.path.exists(X86_LOADER[0]):
        raise Unavailable("%s not found: apt-get install gcc-i686-linux-gnu (it brings the 32-bit libc)" % X86_LOADER[0])


def prepare(src, log):
    """mpy-cross and the stand-in board manifest, once per source tree."""
    board = os.path.join(src, "ports", "unix", "boards", "manifest.py")
    if not os.path.exists(board):
        os.makedirs(os.path.dirname(board), exist_ok=True)
        with open(board, "w") as f:
            f.write(BOARD_MANIFEST)
    if not os.path.exists(os.path.join(src, "mpy-cross", "build", "mpy-cross")):
        _run(["make", "-C", os.path.join(src, "mpy-cross"), _jobs()], log)
    return board


def sim_manifest(device_manifest, path):
    """A manifest with the firmware (as the ESP32 gets it) plus the simulator's doubles."""
    with open(path, "w") as f:
        f.write("# qterm simulator, frozen (written by bench/unixport.py)\n")
        f.write("include(%r)\n" % device_manifest)
        f.write("package('sim', base_path=%r, files=%r)\n" % (ROOT, list(SIM_FILES)))
    return path


def build_port(src, arch, manifest, name, log):
    """Build one unix port; returns its executable's path."""
    check_compiler(arch)
    out = os.path.join(BENCH_BUILD, "ports", name)
    os.makedirs(out, exist_ok=True)
    cmd = ["make", "-C", os.path.join(src, "ports", "unix"), _jobs(), "BUILD=" + out,
           "FROZEN_MANIFEST=" + manifest, "USER_C_MODULES=" + USERMOD] + _MAKE_FLAGS
    if arch == "x86":
        cmd.append("CROSS_COMPILE=i686-linux-gnu-")
    _run(cmd, log)
    return os.path.join(out, "micropython")


def device_build():
    """tools/qterm build into build/bench/device (its manifest.py is what gets frozen)."""
    sys.path.insert(0, ROOT)
    from tools.build import build
    out = os.path.join(BENCH_BUILD, "device")
    build(out=out, romfs=False)
    return out


def build_all(src=None, arches=("x64", "x86"), kinds=("plain", "frozen"), log=None):
    """{name: (loader prefix list, executable)} for each arch x kind; raises Unavailable."""
    tree = source(src)
    log = log or os.path.join(BENCH_BUILD, "unixport.log")
    os.makedirs(BENCH_BUILD, exist_ok=True)
    board = prepare(tree, log)
    manifests = {"plain": board}
    if "frozen" in kinds:
        dev = device_build()
        manifests["frozen"] = sim_manifest(os.path.join(dev, "manifest.py"),
                                           os.path.join(BENCH_BUILD, "sim-manifest.py"))
    ports = {}
    for arch in arches:
        for kind in kinds:
            name = "%s-%s" % (arch, kind)
            exe = build_port(tree, arch, manifests[kind], name, log)
            ports[name] = (list(X86_LOADER) if arch == "x86" else [], exe)
    return ports


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", metavar="DIR", help="MicroPython source tree (default: the tarball in ../shared/vendor)")
    ap.add_argument("--arch", choices=("x64", "x86", "all"), default="all")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--frozen", dest="kinds", action="store_const", const=("frozen",))
    g.add_argument("--plain", dest="kinds", action="store_const", const=("plain",))
    a = ap.parse_args()
    arches = ("x64", "x86") if a.arch == "all" else (a.arch,)
    try:
        ports = build_all(a.src, arches, a.kinds or ("plain", "frozen"))
    except Unavailable as e:
        print("unixport: %s" % e, file=sys.stderr)
        return 2
    except RuntimeError as e:
        print("unixport: %s" % e, file=sys.stderr)
        return 1
    for name, (prefix, exe) in sorted(ports.items()):
        print(" ".join([name] + prefix + [exe]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
