"""Start a throw-away mosquitto on a free loopback port (tests and bench share this)."""
import os
import shutil
import socket
import subprocess
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    """A mosquitto process listening on 127.0.0.1:<port>; stop() ends it."""

    def __init__(self, port=None, extra_conf="", global_conf=""):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="qterm-broker-")
        self.extra_conf = extra_conf
        self.global_conf = global_conf  # settings mosquitto wants before any listener
        self.proc = None

    def start(self):
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(self.global_conf)
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" % self.port)
            f.write(self.extra_conf)
        self.proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "log"), "w"))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("mosquitto exited: " + open(os.path.join(self.dir, "log")).read())
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen on port %d" % self.port)

    def stop(self):
        """Stop the broker (start() may be called again: a restart on the same port)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __del__(self):
        if self.proc is None or self.proc.poll() is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Subscriber:
    """mosquitto_sub -v on a topic filter, lines collected in a file (the backend's view)."""

    def __init__(self, port, topic="qterm/#"):
        fd, self.path = tempfile.mkstemp(prefix="qterm-sub-", suffix=".log")
        os.close(fd)
        self.proc = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                                      "-v", "-t", topic], stdout=open(self.path, "w"),
                                     stderr=subprocess.STDOUT)
        time.sleep(0.3)

    def lines(self):
        with open(self.path, encoding="utf-8", errors="replace") as f:
            return [ln.rstrip("\n") for ln in f if ln.strip()]

    def wait_for(self, predicate, timeout=5.0):
        """Wait until some line satisfies predicate(line); return that line."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for ln in self.lines():
                if predicate(ln):
                    return ln
            time.sleep(0.05)
        raise AssertionError("no matching line within %.1fs; got:\n%s" % (timeout, "\n".join(self.lines()[-30:])))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)
        try:
            os.remove(self.path)
        except OSError:
            pass
