"""Run every pure-logic unit-test module again under the real MicroPython unix port, at a
small heap so that waste shows (the firmware's budget is 96K; a unit-test module compiles its
own source and the firmware's into the heap, so it needs more than the device does)."""
import glob
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
MODULES = sorted(glob.glob(os.path.join(ROOT, "tests", "unit", "test_*.py")))
HEAP = "256K"

# Tests that build fixtures bigger than the firmware ever holds get their own heap; the rest
# of their module still runs at HEAP. (module, test) -> heap, each with the reason.
BIG_FIXTURES = {
    # writes an oversized snapshot made in memory (good + bytes(100000)): ~200 KB of test data;
    # writing the padding in pieces would let it run at HEAP
    ("test_hall.py", "test_a_damaged_snapshot_is_refused_whole"): "1M",
    # make_hal's TFT clears its 320x240 face through fake_machine's SPI, which keeps every
    # byte written (150 KB): the driver itself streams through one 640-byte line buffer
    ("test_panel.py", "test_the_board_names_the_display_and_make_hal_wires_the_panel_drawing"): "1M",
}


def _run(path, heap, *select):
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=" + heap, os.path.join(ROOT, "tests", "mp_runner.py"), path]
                       + list(select), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, "at heap %s:\n%s%s" % (heap, r.stdout, r.stderr)
    assert " passed, 0 failed" in r.stdout


@pytest.mark.parametrize("path", MODULES, ids=[os.path.basename(p) for p in MODULES])
def test_unit_module_under_micropython(path):
    big = [(test, heap) for (mod, test), heap in BIG_FIXTURES.items() if mod == os.path.basename(path)]
    skip = []
    for test, _ in big:
        skip += ["--skip", test]
    _run(path, HEAP, *skip)
    for test, heap in big:
        with open(path, encoding="utf-8") as f:
            assert "def %s(" % test in f.read(), "BIG_FIXTURES names %s, which %s no longer has" % (test, path)
        _run(path, heap, "--only", test)
