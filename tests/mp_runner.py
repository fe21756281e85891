"""Run one unit-test module under MicroPython (or CPython): every test_* function.

Usage: micropython -X heapsize=256K tests/mp_runner.py tests/unit/test_x.py [--only NAME | --skip NAME ...]
Prints 'N passed, N failed' and exits 1 on any failure (or when nothing ran), so pytest can wrap it.
--only/--skip let one test with a big fixture run at its own heap while the rest run small.
"""
import sys

_ROOT = __file__.rsplit("/tests/", 1)[0] if "/tests/" in __file__ else "."


def _print_exception(e):
    try:
        sys.print_exception(e)
    except AttributeError:
        import traceback
        traceback.print_exc()


def main(path, args):
    only, skip = [], []
    while args:
        flag, name = args[0], args[1]
        (only if flag == "--only" else skip).append(name)
        args = args[2:]
    sys.path.insert(0, _ROOT)
    sys.path.insert(0, _ROOT + "/tests/unit")
    name = path.rsplit("/", 1)[-1][:-3]
    try:
        mod = __import__(name)
    except MemoryError as e:  # the module and the firmware it imports don't fit this heap
        print("FAIL", name, "import:", repr(e))
        _print_exception(e)
        print("0 passed, 1 failed")
        sys.exit(1)
    passed = failed = 0
    for attr in sorted(dir(mod)):
        if not attr.startswith("test_") or attr in skip or only and attr not in only:
            continue
        fn = getattr(mod, attr)
        if not callable(fn):
            continue
        try:
            fn()
            passed += 1
        except Exception as e:
            failed += 1
            print("FAIL", name, attr, repr(e))
            _print_exception(e)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or not passed else 0)


main(sys.argv[1], sys.argv[2:])
