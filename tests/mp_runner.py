"""Run one unit-test module under MicroPython (or CPython): every test_* function.

Usage: micropython tests/mp_runner.py tests/unit/test_x.py
Prints 'N passed, N failed' and exits 1 on any failure, so pytest can wrap it.
"""
import sys

_ROOT = __file__.rsplit("/tests/", 1)[0] if "/tests/" in __file__ else "."


def main(path):
    sys.path.insert(0, _ROOT)
    sys.path.insert(0, _ROOT + "/tests/unit")
    name = path.rsplit("/", 1)[-1][:-3]
    mod = __import__(name)
    passed = failed = 0
    for attr in sorted(dir(mod)):
        if not attr.startswith("test_"):
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
            try:
                sys.print_exception(e)
            except AttributeError:
                import traceback
                traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or not passed else 0)


main(sys.argv[1])
