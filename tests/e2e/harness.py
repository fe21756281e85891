"""Drive a simulated terminal the way a hall and its backend would: control port + mosquitto_sub."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.broker import Broker, Subscriber, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "sim", "config.example.json")


def example_config(**over):
    with open(EXAMPLE, encoding="utf-8") as f:
        cfg = json.load(f)
    for k, v in over.items():
        cfg[k] = v
    return cfg


class Sim:
    """One sim/run process on its own state dir; restart() = power back on after kill()."""

    def __init__(self, broker_port, cfg=None, state=None, flash="files", heap=None, config_path=None):
        self.state = state or tempfile.mkdtemp(prefix="qterm-state-")
        self.broker_port = broker_port
        self.flash = flash
        self.heap = heap
        self.config_path = config_path or os.path.join(self.state, "..", os.path.basename(self.state) + ".json")
        if cfg is not None:
            self.write_config(cfg)
        self.proc = None
        self.port = None
        self.sock = None
        self.file = None
        self.log_path = os.path.join(tempfile.gettempdir(), os.path.basename(self.state) + ".log")

    def write_config(self, cfg):
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False)

    def start(self, wait=True):
        self.port = free_port()
        env = dict(os.environ)
        if self.heap:
            env["QTERM_HEAP"] = self.heap
        args = [os.path.join(ROOT, "sim", "run"), "--config", self.config_path, "--state", self.state,
                "--broker", "127.0.0.1:%d" % self.broker_port, "--control", str(self.port)]
        if self.flash != "files":
            args += ["--flash", self.flash]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.connect()
        return self

    def connect(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("simulator exited %s:\n%s" % (self.proc.returncode, self.output()))
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), 0.5)
                self.sock.settimeout(30)
                self.file = self.sock.makefile("rwb")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("simulator control port never opened:\n" + self.output())

    def output(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def ask(self, req):
        raw = req if isinstance(req, bytes) else json.dumps(req).encode()
        self.file.write(raw + b"\n")
        self.file.flush()
        line = self.file.readline()
        if not line:
            raise RuntimeError("control connection closed:\n" + self.output())
        return json.loads(line)

    def press(self, button, counter=None):
        req = {"op": "press", "button": button}
        if counter:
            req["counter"] = counter
        return self.ask(req)

    def staff(self, action, **kw):
        req = {"op": "staff", "action": action}
        req.update(kw)
        return self.ask(req)

    def status(self):
        return self.ask({"op": "status"})

    def printer_bytes(self):
        try:
            with open(os.path.join(self.state, "printer.bin"), "rb") as f:
                return f.read()
        except OSError:
            return b""

    def wait_drained(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.status()
            if s["outbox"] == 0 and s["connected"]:
                return s
            time.sleep(0.05)
        raise AssertionError("outbox not drained: %r" % (self.status(),))

    def kill(self):
        """Power cut: SIGKILL, no goodbye."""
        self._close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        self._close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.state, ignore_errors=True)


def events(sub, etype=None, dev="term01"):
    """Parsed event envelopes seen by the subscriber (deduplicated on seq), in arrival order."""
    out, seen = [], set()
    for line in sub.lines():
        topic, _, payload = line.partition(" ")
        if "/evt/" not in topic:
            continue
        try:
            env = json.loads(payload)
        except ValueError:
            continue
        if env.get("dev") != dev or env["seq"] in seen:
            continue
        seen.add(env["seq"])
        if etype is None or env["type"] == etype:
            out.append(env)
    return out


def wait_event(sub, etype, pred=None, timeout=5.0, dev="term01"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for env in events(sub, etype, dev):
            if pred is None or pred(env):
                return env
        time.sleep(0.05)
    raise AssertionError("no %s event within %.1fs; seen: %s" % (
        etype, timeout, [e["type"] for e in events(sub, None, dev)][-20:]))
