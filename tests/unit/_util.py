"""Helpers for unit tests that must run under CPython and MicroPython alike."""
import os

_counter = [0]


def raises(exc, fn, *args, **kw):
    """Assert fn(*args, **kw) raises exc; return the exception."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("did not raise %r" % (exc,))


def rmtree(path):
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        p = path + "/" + name
        if os.stat(p)[0] & 0x4000:
            rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


def tmpdir(tag="t"):
    """A fresh empty directory under /tmp (no tempfile module on MicroPython)."""
    _counter[0] += 1
    import binascii
    path = "/tmp/qterm-%s-%d-%s" % (tag, _counter[0], binascii.hexlify(os.urandom(6)).decode())
    rmtree(path)
    os.mkdir(path)
    return path
