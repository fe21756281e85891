"""Interned names stay within the pool a device already has, for every role, all day.

MicroPython interns every name a loaded module brings (and its path), and every character a
str iteration or index meets, in pools that only grow: when the last pool is full the next is
twice its size, in one block. In the simulator's 64-bit ROMFS layout the pools after boot
hold 1260 names (20 + 40 + ... + 640); the seventh would be one 14 KiB block, which a serving
96 KiB heap never has free - from then on every import of code with a new name would fail,
and if it ever succeeded the device would have 14 KiB less for the rest of its life. Code
loaded on demand and released keeps its names: so the sum over everything a role can ever
load is what counts. This test boots each role (the real sim/boot.py on a ROMFS image), then
imports every module the role's code can import (found by reading the sources' import
statements) and checks the count against BUDGET, which leaves room for the names made at
run time (mostly single characters).
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

from sim.hallconf import make_hall
from tests.broker import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POOL = 20 + 40 + 80 + 160 + 320 + 640   # names the six pools hold (64-bit unix port)
BUDGET = POOL - 60                      # what code may take; the rest is for run-time names

ROLE_MODULES = {"kiosk": "firmware.role_kiosk", "counter": "firmware.role_counter",
                "screen": "firmware.role_screen"}
# A device lays out and prints tickets only where it issues them (firmware/app.py issue()).
PRINTING = ("firmware.ticket", "firmware.escpos", "firmware.printer_status")
# What the simulated device runs besides firmware/: its boot, control port and doubles (the
# SYN6288 driver and voice double are loaded for each announcement).
ENTRY = ("firmware.app", "sim.boot", "sim.control", "sim.devices", "sim.voice", "hal.esp32.syn6288")


def _path(mod):
    base = os.path.join(ROOT, *mod.split("."))
    for p in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.exists(p):
            return p
    return None


def _imports(mod):
    with open(_path(mod), encoding="utf-8") as f:
        src = f.read()
    out = set()
    for pkg, names in re.findall(r"^\s*from ((?:firmware|sim|hal)[\w.]*) import ([\w, ()]+)", src, re.M):
        out.add(pkg)
        for name in re.split(r"[,\s()]+", names):
            if name and _path(pkg + "." + name):
                out.add(pkg + "." + name)
    out.update(re.findall(r"^\s*import ((?:firmware|sim|hal)[\w.]*)", src, re.M))
    return set(m for m in out if _path(m))


def lifetime_modules(role):
    """Every module the role's code can import (lazy imports included), in no particular order."""
    seen, todo = set(), list(ENTRY)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        for m in _imports(mod):
            if m in ROLE_MODULES.values() and m != ROLE_MODULES.get(role):
                continue
            if m in PRINTING and role not in ("all", "kiosk"):
                continue
            todo.append(m)
    return sorted(seen) + ["asyncio.funcs", "asyncio.stream"]


# Runs under the device's MicroPython: boots like sim/main.py, lets the device run a moment,
# then imports (and forgets again) every module of QSTR_MODS and reports the pools.
_PROBE = """
import os, sys, gc, micropython
import uctypes, vfs
addr, size = [int(x) for x in os.getenv("QTERM_ROM").split(":")]
vfs.mount(vfs.VfsRom(uctypes.bytearray_at(addr, size)), "/rom")
sys.path.insert(0, "/rom")
from sim import boot
dev = boot.main()
import asyncio
async def probe():
    await asyncio.sleep_ms(1500)
    for m in os.getenv("QSTR_MODS").split(","):
        try:
            __import__(m)
        except Exception as e:
            print("IMPORT-FAILED", m, repr(e))
        sys.modules.pop(m, None)
        gc.collect()
    micropython.qstr_info()
    sys.exit(0)
async def main():
    asyncio.create_task(probe())
    await dev
asyncio.run(main())
"""

# Runs under the venv's CPython: the image sim/launch.py builds, mapped, and the unix port.
_RUN = """
import os, sys
sys.path[:0] = [%r, %r]
import launch, micropython_run
launch.build_image()
os.environ["QTERM_ROM"] = "%%d:%%d" %% launch.map_image()
sys.exit(micropython_run.run_main(["micropython", "-X", "heapsize=512K"] + sys.argv[1:]))
""" % (os.path.join(ROOT, "sim"), ROOT)


def _config(role, tmp):
    if role == "all":
        path = os.path.join(ROOT, "sim", "config.example.json")
    else:
        cfgs = make_hall(os.path.join(ROOT, "sim", "config.example.json"), 2)
        path = os.path.join(tmp, role + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cfgs[{"kiosk": "kiosk", "counter": "ctr1", "screen": "screen"}[role]], f, ensure_ascii=False)
    return path


@pytest.mark.parametrize("role", ["all", "kiosk", "counter", "screen"])
def test_every_name_a_role_can_ever_load_fits_the_pools_it_has(role):
    tmp = tempfile.mkdtemp(prefix="qterm-qstr-")
    probe = os.path.join(tmp, "probe.py")
    with open(probe, "w") as f:
        f.write(_PROBE)
    mods = lifetime_modules(role)
    r = subprocess.run([sys.executable, "-c", _RUN, probe, "--config", _config(role, tmp),
                        "--state", os.path.join(tmp, "state"), "--broker", "127.0.0.1:%d" % free_port(),
                        "--control", str(free_port())],
                       env=dict(os.environ, QSTR_MODS=",".join(mods)), capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert "IMPORT-FAILED" not in out, out
    m = re.search(r"qstr pool: n_pool=(\d+), n_qstr=(\d+)", out)
    assert m, out
    pools, names = int(m.group(1)), int(m.group(2))
    print("%s: %d names interned after loading %d modules (budget %d of %d)" % (role, names, len(mods), BUDGET, POOL))
    assert pools <= 6 and names <= BUDGET, (
        "role %s interns %d names (budget %d, pools hold %d): trim names from code it loads "
        "(private int constants as const(), fewer module-level names)" % (role, names, BUDGET, POOL))


def test_the_module_list_follows_lazy_imports():
    mods = lifetime_modules("counter")
    assert "firmware.role_counter" in mods and "firmware.keyentry" in mods and "firmware.commands" in mods
    assert "firmware.role_kiosk" not in mods and "firmware.ticket" not in mods
    assert "firmware.ticket" in lifetime_modules("kiosk") and "firmware.announcer" in lifetime_modules("screen")
