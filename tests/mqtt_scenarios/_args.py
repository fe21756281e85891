"""Shared start-up for the MQTT scenario scripts (run by MicroPython, not pytest).

argv: ROOT key=value ... ; ROOT goes on sys.path so `from firmware import mqtt` works.
"""
import sys

sys.path.insert(0, sys.argv[1])
ARGS = {}
for _a in sys.argv[2:]:
    _k, _v = _a.split("=", 1)
    ARGS[_k] = _v


def arg(name, default=None):
    v = ARGS.get(name)
    if v is None:
        return default
    if isinstance(default, int):
        return int(v)
    return v


def ssl_context():
    """Client TLS context from ca=<DER file>, or None for plain TCP."""
    ca = arg("ca")
    if not ca:
        return None
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    with open(ca, "rb") as f:
        ctx.load_verify_locations(cadata=f.read())  # this build takes DER, not PEM
    return ctx


def say(*words):
    print(*words)
    try:
        sys.stdout.flush()
    except AttributeError:
        pass


def open_fds():
    """File descriptors this process holds (unix port only): catches leaked sockets."""
    import os
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1
