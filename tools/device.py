"""Talking to a terminal over its USB serial REPL (mpremote's Python API), and the tools' error type.

Device(port) enters the raw REPL without a soft reset (what `mpremote resume` does): that
works on the virtual device (tools/vdev; the unix port cannot soft-reset) and, on an
ESP32, stops the running main.py with Ctrl-C without restarting it. main.py's watchdog
keeps running after that, so every command first feeds qterm_wdt when it exists.

File data travels base64-encoded in 1 KiB chunks; hashes are computed on the device
(sha256), so what is compared is what the flash holds.
"""
import ast
import binascii
import contextlib
import io
import os
import stat
import sys

CHUNK = 1024


class ToolError(Exception):
    """A failure the technician can act on: the message names the file, key or port; code is the exit status."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


class DeviceError(ToolError):
    """The device ran our code and raised: .device_error is its last traceback line."""

    def __init__(self, message, device_error):
        super().__init__(message)
        self.device_error = device_error

    @property
    def no_space(self):
        e = self.device_error
        return "ENOSPC" in e or "Errno 28" in e or e.rstrip().endswith("OSError: 28")


# Loaded once per session; names start with _q so they do not meet anything of main.py's.
_HELPERS = r'''
import os, sys, gc, hashlib, binascii
def _qfeed():
    w = globals().get("qterm_wdt")
    if w:
        w.feed()
def _qsha(p):
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    with open(p, "rb") as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(m[:n])
            _qfeed()
    return binascii.hexlify(h.digest()).decode()
def _qsum(p):
    try:
        return _qsha(p)
    except OSError:
        return None
def _qls(d, rel=""):
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return
    for e in it:
        p = d + "/" + e[0]
        r = rel + e[0]
        if e[1] & 0x4000:
            _qls(p, r + "/")
        else:
            print("%s\t%d\t%s" % (r, os.stat(p)[6], _qsha(p)))
def _qmkdirs(p):
    cur = ""
    for part in p.split("/")[1:-1]:
        cur += "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass
def _qopen(p):
    global _qf
    _qmkdirs(p)
    _qf = open(p, "wb")
def _qw(s):
    _qf.write(binascii.a2b_base64(s))
def _qclose():
    global _qf
    if _qf:
        _qf.close()
    _qf = None
def _qcp(a, b):
    _qmkdirs(b)
    buf = bytearray(512)
    with open(a, "rb") as s:
        with open(b, "wb") as d:
            while True:
                n = s.readinto(buf)
                if not n:
                    break
                d.write(memoryview(buf)[:n])
def _qrm(p):
    try:
        os.remove(p)
    except OSError:
        pass
def _qread(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None
def _qput(p, text):
    _qmkdirs(p)
    with open(p + ".tmp", "w") as f:
        f.write(text)
    os.rename(p + ".tmp", p)
def _qfree(p):
    s = os.statvfs(p)
    return [s[0], s[0] * s[2], s[0] * s[4]]
_qf = None
gc.collect()
'''


def _open_problem(port):
    """Why pyserial cannot open port (mpremote only says "failed to access")."""
    import serial
    try:
        serial.Serial(port, 115200, timeout=1, exclusive=True).close()
    except (serial.SerialException, OSError) as e:
        text = str(e)
        if "lock" in text:
            return "in use by another program (mpremote repl, a serial monitor?)"
        if "ioctl" in text or "configure" in text:
            return "not a serial port (%s)" % text
        return text
    return None


def _last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else text.strip()


class Device:
    """One serial session with a board running MicroPython (or tools/vdev)."""

    def __init__(self, port, timeout=10):
        self.port = port
        self.timeout = timeout
        self.t = None
        self.platform = None

    # ---- session ---------------------------------------------------------------
    def open(self):
        port = self.port
        if not os.path.exists(port):
            raise ToolError("no device at %s: no such port (plugged in? `mpremote devs` lists the ports)" % port)
        try:
            mode = os.stat(port).st_mode
        except OSError as e:
            raise ToolError("cannot use port %s: %s" % (port, e.strerror))
        if not stat.S_ISCHR(mode):
            raise ToolError("%s is not a serial port (expected a device like /dev/ttyUSB0)" % port)
        try:
            from mpremote.transport_serial import SerialTransport, TransportError
        except ImportError:
            raise ToolError("mpremote is not installed for %s: run 'sh tools/dev.sh install'" % sys.executable, 2)
        try:
            # The serial timeout bounds each read, so a silent port fails instead of hanging.
            self.t = SerialTransport(port, baudrate=115200, timeout=1)
        except (TransportError, OSError) as e:
            raise ToolError("cannot open %s: %s" % (port, _open_problem(port) or e))
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.t.enter_raw_repl(soft_reset=False, timeout_overall=self.timeout)
        except (TransportError, OSError) as e:
            self.close()
            raise ToolError("no MicroPython REPL answered on %s within %g s (%s): wrong port, "
                            "or the board is busy/not running MicroPython?" % (port, self.timeout, e))
        try:
            self.run(_HELPERS)
            self.platform = self.eval("sys.platform")
        except ToolError:
            self.close()
            raise
        return self

    def close(self):
        if self.t is None:
            return
        try:
            self.t.exit_raw_repl()
        except Exception:  # the link may already be gone; closing must not raise
            pass
        try:
            self.t.close()
        except Exception:
            pass
        self.t = None

    def __enter__(self):
        return self if self.t is not None else self.open()

    def __exit__(self, *exc):
        self.close()

    @property
    def virtual(self):
        """The unix port (tools/vdev): no reset, no hardware of its own."""
        return self.platform == "linux"

    # ---- running code ------------------------------------------------------------
    def run(self, code, timeout=30, consumer=None, what=None):
        """Run code on the device; its printed output as bytes (also streamed to consumer)."""
        from mpremote.transport import TransportError
        try:
            out, err = self.t.exec_raw("_qfeed()\n" + code if self.platform else code,
                                       timeout=timeout, data_consumer=consumer)
        except (TransportError, OSError) as e:
            raise ToolError("connection to %s lost%s: %s" % (self.port, " while " + what if what else "", str(e) or "no answer"))
        if err:
            text = err.decode("utf-8", "replace")
            raise DeviceError("%s failed on the device at %s: %s" % (what or "a command", self.port, _last_line(text)),
                              _last_line(text))
        return out

    def eval(self, expr, what=None):
        out = self.run("print(repr(%s))" % expr, what=what)
        return ast.literal_eval(out.decode("utf-8", "replace").strip())

    # ---- files ---------------------------------------------------------------------
    def hashes(self, root):
        """{relative path: (size, sha256 hex)} of every file under root on the device."""
        out = self.run("_qls(%r)" % root, timeout=60, what="reading hashes of %s" % root)
        files = {}
        for line in out.decode("utf-8", "replace").splitlines():
            parts = line.strip().split("\t")
            if len(parts) == 3:
                files[parts[0]] = (int(parts[1]), parts[2])
        return files

    def sha256(self, path):
        """sha256 hex of a file on the device, None when it does not exist."""
        return self.eval("_qsum(%r)" % path, what="hashing %s" % path)

    def read_text(self, path):
        return self.eval("_qread(%r)" % path, what="reading %s" % path)

    def write_file(self, path, data, what=None):
        """Write data to path, in chunks; nothing is renamed, so stage into a temp name or an inactive slot."""
        what = what or "writing %s" % path
        self.run("_qopen(%r)" % path, what=what)
        try:
            for i in range(0, len(data), CHUNK):
                b64 = binascii.b2a_base64(data[i:i + CHUNK], newline=False).decode()
                self.run("_qw(%r)" % b64, what=what)
        finally:
            if self.t is not None:
                try:
                    self.run("_qclose()", what=what)
                except ToolError:
                    pass

    def put_text(self, path, text):
        """Replace a file atomically: write path.tmp, rename it over path."""
        if len(text) <= 256:
            self.run("_qput(%r, %r)" % (path, text), what="writing %s" % path)
            return
        self.write_file(path + ".tmp", text.encode("utf-8"), what="writing %s" % path)
        self.rename(path + ".tmp", path)

    def copy(self, src, dst):
        self.run("_qcp(%r, %r)" % (src, dst), what="copying %s to %s" % (src, dst))

    def remove(self, path):
        self.run("_qrm(%r)" % path, what="removing %s" % path)

    def rename(self, src, dst):
        self.run("os.rename(%r, %r)" % (src, dst), what="renaming %s to %s" % (src, dst))

    def free(self, path="/"):
        """(block size, total bytes, free bytes) of the filesystem holding path."""
        return tuple(self.eval("_qfree(%r)" % path, what="reading free space"))

    def active_slot(self):
        """The slot /active names ("/app_a", "/app_b", "/rom"), or None on a fresh board."""
        text = self.read_text("/active")
        slot = (text or "").strip()
        return slot if slot in ("/app_a", "/app_b", "/rom") else None


def fingerprint(key):
    """What may be shown of a device key: the first 16 hex digits of its sha256."""
    import hashlib
    return hashlib.sha256(key).hexdigest()[:16]
