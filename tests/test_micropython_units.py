"""Run every pure-logic unit-test module again under the real MicroPython unix port."""
import glob
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
MODULES = sorted(glob.glob(os.path.join(ROOT, "tests", "unit", "test_*.py")))


@pytest.mark.parametrize("path", MODULES, ids=[os.path.basename(p) for p in MODULES])
def test_unit_module_under_micropython(path):
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=4M", os.path.join(ROOT, "tests", "mp_runner.py"), path],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed, 0 failed" in r.stdout
