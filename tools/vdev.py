"""A virtual qterm board: the MicroPython unix port behind a pseudo-terminal.

mpremote (and so tools/qterm) talks to it exactly as to an ESP32 on a USB serial port:
raw REPL, raw-paste, the same file operations. Its flash is a host directory, mounted
as the device's "/" (so /active, /app_a, /data look as on the board). The unix port has
no soft reset, so connect with `mpremote connect <port> resume ...`; a Ctrl-D that ends
the interpreter restarts it, like a reboot, with the flash kept.

    python -m tools.vdev --flash DIR [--size-limit BYTES] [--cut-after BYTES] [--host-sim]

prints `vdev: port /dev/pts/N flash DIR` on its first line, then relays bytes until it
is terminated. --size-limit makes the flash that small (writes beyond it fail with
ENOSPC, statvfs reports it); --cut-after pulls the plug once the host has sent that many
bytes (the interpreter is killed mid-command and the port goes away); --host-sim also
mounts this repository read-only at /host, so the self-test can use the sim doubles
(sim.devices) as the board's hal.

Tests use VirtualDevice(flash, ...).start() / .stop() / .kill().
"""
import argparse
import os
import select
import signal
import subprocess
import sys
import termios
import time
import tty

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "micropython")

# Runs inside the unix port before its REPL starts (micropython -i -c). VfsPosix mounted with a
# root directory renames wrongly (both names get the root of the second one), so the flash is
# a small Python VFS over an unrooted VfsPosix that maps device paths to host paths itself;
# it also keeps the byte count for the size limit. Reads return real files so import works.
_SETUP = r'''
import os, sys, vfs


class _Wr:
    def __init__(self, fl, f):
        self._fl = fl
        self._f = f

    def write(self, b):
        n = len(b)
        if self._fl.limit and self._fl.used + n > self._fl.limit:
            raise OSError(28)
        n = self._f.write(b)
        self._fl.used += n or 0
        return n

    def read(self, *a):
        return self._f.read(*a)

    def readinto(self, *a):
        return self._f.readinto(*a)

    def seek(self, *a):
        return self._f.seek(*a)

    def tell(self):
        return self._f.tell()

    def flush(self):
        return self._f.flush()

    def close(self):
        return self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self._f.close()


class _Flash:
    def __init__(self, root, limit):
        self.root = root
        self.limit = limit
        self.cwd = "/"
        self.p = vfs.VfsPosix()
        self.used = self._du(root)

    def _du(self, host):
        n = 0
        for e in self.p.ilistdir(host):
            if e[1] & 0x4000:
                n += self._du(host + "/" + e[0])
            else:
                n += self.p.stat(host + "/" + e[0])[6]
        return n

    def _abs(self, path):
        if not path.startswith("/"):
            path = self.cwd + "/" + path
        out = []
        for part in path.split("/"):
            if part == "..":
                if out:
                    out.pop()
            elif part and part != ".":
                out.append(part)
        return "/" + "/".join(out)

    def _h(self, path):
        p = self._abs(path)
        return self.root if p == "/" else self.root + p

    def _size(self, path):
        try:
            st = self.p.stat(self._h(path))
        except OSError:
            return 0
        return 0 if st[0] & 0x4000 else st[6]

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def ilistdir(self, path):
        return self.p.ilistdir(self._h(path))

    def chdir(self, path):
        p = self._abs(path)
        self.p.stat(self._h(p))
        self.cwd = p

    def getcwd(self):
        return self.cwd

    def mkdir(self, path):
        self.p.mkdir(self._h(path))

    def rmdir(self, path):
        self.p.rmdir(self._h(path))

    def remove(self, path):
        n = self._size(path)
        self.p.remove(self._h(path))
        self.used -= n

    def rename(self, old, new):
        n = self._size(new)
        self.p.rename(self._h(old), self._h(new))
        self.used -= n

    def stat(self, path):
        return self.p.stat(self._h(path))

    def statvfs(self, path):
        if not self.limit:
            return self.p.statvfs(self.root)
        blocks = self.limit // 4096
        free = max(0, self.limit - self.used) // 4096
        return (4096, 4096, blocks, free, free, 0, 0, 0, 0, 255)

    def open(self, path, mode):
        if "r" in mode and "+" not in mode:
            return self.p.open(self._h(path), mode)
        if "w" in mode:
            self.used -= self._size(path)
        return _Wr(self, self.p.open(self._h(path), mode))


vfs.umount("/")
vfs.mount(_Flash(%(flash)r, %(limit)d), "/")
if %(host)r:
    vfs.mount(vfs.VfsPosix(%(host)r), "/host", readonly=True)
os.chdir("/")

'''


class VirtualDevice:
    """A vdev process for tests: start() gives .port; stop() = orderly; kill() = power cut."""

    def __init__(self, flash, size_limit=None, cut_after=None, host_sim=False, log=None):
        self.flash = os.path.abspath(flash)
        self.size_limit = size_limit
        self.cut_after = cut_after
        self.host_sim = host_sim
        self.log = log
        self.proc = None
        self.port = None

    def start(self, timeout=20):
        os.makedirs(self.flash, exist_ok=True)
        args = [sys.executable, "-m", "tools.vdev", "--flash", self.flash]
        if self.size_limit:
            args += ["--size-limit", str(self.size_limit)]
        if self.cut_after:
            args += ["--cut-after", str(self.cut_after)]
        if self.host_sim:
            args.append("--host-sim")
        err = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                                     start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("vdev: port "):
            self.kill()
            raise RuntimeError("virtual device did not start: %r" % line)
        self.port = line.split()[2]
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self):
        """Power cut: the relay and the interpreter (its own process group) at once."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(5)
        self.proc.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Relay:
    """Host pty <-> interpreter pty; restarts the interpreter when it exits."""

    def __init__(self, flash, limit, cut_after, host_sim):
        self.flash = flash
        self.cut_after = cut_after
        self.sent = 0
        self.setup = _SETUP % {"flash": flash, "limit": limit or 0, "host": ROOT if host_sim else ""}
        self.dev_master, self.dev_slave = os.openpty()
        self.host_master, self.host_slave = os.openpty()
        # Raw at once: an echoing line discipline would bounce the device's output back as input.
        tty.setraw(self.dev_slave)
        tty.setraw(self.host_slave)
        os.set_blocking(self.host_master, False)
        self.port = os.ttyname(self.host_slave)
        self.proc = None

    def boot(self):
        termios.tcflush(self.dev_slave, termios.TCIFLUSH)
        self.proc = subprocess.Popen([MICROPYTHON, "-i", "-c", self.setup], stdin=self.dev_slave,
                                     stdout=self.dev_slave, stderr=self.dev_slave, close_fds=True)

    def power_off(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def run(self):
        self.boot()
        while True:
            ready, _, _ = select.select([self.dev_master, self.host_master], [], [], 0.2)
            if self.dev_master in ready:
                data = os.read(self.dev_master, 4096)
                try:
                    os.write(self.host_master, data)
                except BlockingIOError:
                    pass  # nobody listening and the line is full: bytes lost, as on a UART
            if self.host_master in ready:
                try:
                    data = os.read(self.host_master, 4096)
                except BlockingIOError:
                    data = b""
                if self.cut_after is not None and self.sent + len(data) >= self.cut_after:
                    os.write(self.dev_master, data[:self.cut_after - self.sent])
                    time.sleep(0.05)
                    sys.stderr.write("vdev: plug pulled after %d bytes from the host\n" % self.cut_after)
                    self.power_off()
                    os._exit(0)
                self.sent += len(data)
                if data:
                    os.write(self.dev_master, data)
            if self.proc.poll() is not None:
                sys.stderr.write("vdev: interpreter exited (%s); restarting, flash kept\n" % self.proc.returncode)
                self.boot()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.vdev",
                                 description="A virtual qterm board (MicroPython unix port on a pseudo-terminal) "
                                             "for mpremote and tools/qterm; its flash is a host directory.")
    ap.add_argument("--flash", required=True, metavar="DIR", help="host directory that is the device's /")
    ap.add_argument("--size-limit", type=int, metavar="BYTES", help="flash size (writes beyond fail with ENOSPC)")
    ap.add_argument("--cut-after", type=int, metavar="BYTES",
                    help="pull the plug once the host has sent this many bytes")
    ap.add_argument("--host-sim", action="store_true",
                    help="mount this repository read-only at /host (sim doubles for the self-test)")
    args = ap.parse_args(argv)
    flash = os.path.abspath(args.flash)
    if not os.path.isdir(flash):
        ap.exit(2, "vdev: flash directory %s does not exist\n" % flash)
    if not os.access(MICROPYTHON, os.X_OK):
        ap.exit(2, "vdev: %s not found - run 'sh tools/dev.sh install'\n" % MICROPYTHON)
    relay = _Relay(flash, args.size_limit, args.cut_after, args.host_sim)

    def _stop(signum, frame):
        relay.power_off()
        os._exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print("vdev: port %s flash %s" % (relay.port, flash), flush=True)
    relay.run()


if __name__ == "__main__":
    main()
