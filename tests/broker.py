"""Start a throw-away mosquitto on a free loopback port (tests and bench share this)."""
import binascii
import os
import shutil
import socket
import subprocess
import tempfile
import time


_GIVEN = set()


def free_port():
    """A loopback port nobody listens on, and not one this process handed out before (the
    kernel can give the same one twice in a row: a broker's two listeners then clashed)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _GIVEN:
            _GIVEN.add(port)
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


LIVE = []   # Subscribers running now (Sim.wait_drained waits for their copy of an event)


class Subscriber:
    """mosquitto_sub -v on a topic filter, lines collected in a file (the backend's view).

    Ready when constructed: its subscription is active at the broker (a probe message on a
    probe topic of its own came back), not merely started. Probe lines stay out of lines().
    """

    def __init__(self, port, topic="qterm/#", timeout=10.0):
        fd, self.path = tempfile.mkstemp(prefix="qterm-sub-", suffix=".log")
        os.close(fd)
        self.port = port
        self.probe_topic = "probe/qterm-sub/" + binascii.hexlify(os.urandom(6)).decode()
        self.probes = 0
        self.proc = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                                      "-v", "-t", topic, "-t", self.probe_topic], stdout=open(self.path, "w"),
                                     stderr=subprocess.STDOUT)
        self.wait_ready(timeout)
        self.topic = topic
        LIVE.append(self)

    def wait_ready(self, timeout=10.0):
        """Publish probes until one arrives: the subscription is active now (again, after the
        broker restarted: mosquitto_sub reconnects and subscribes anew on its own)."""
        self.probes += 1
        line = "%s ready-%d" % (self.probe_topic, self.probes)
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto_sub exited (%s): %s" % (self.proc.returncode, self._raw()[-500:]))
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-q", "1",
                            "-t", self.probe_topic, "-m", line.split(" ", 1)[1]],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            wait = time.time() + 0.1
            while time.time() < wait:
                if line in self._raw().splitlines():
                    return self
                time.sleep(0.02)
            if time.time() > deadline:
                raise AssertionError("subscriber on port %d not subscribed within %.1fs:\n%s" % (
                    self.port, timeout, self._raw()[-500:]))

    def _raw(self):
        with open(self.path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def lines(self):
        probe = self.probe_topic + " "
        return [ln for ln in self._raw().splitlines() if ln.strip() and not ln.startswith(probe)]

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
        if self in LIVE:
            LIVE.remove(self)
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # its clean disconnect waits on a loaded broker
            self.proc.kill()
            self.proc.wait(5)
        try:
            os.remove(self.path)
        except OSError:
            pass
