"""Drive a simulated terminal the way a hall and its backend would: control port + mosquitto_sub."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.broker import LIVE, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "sim", "config.example.json")


def example_config(**over):
    with open(EXAMPLE, encoding="utf-8") as f:
        cfg = json.load(f)
    for k, v in over.items():
        cfg[k] = v
    return cfg


def fast_config(**over):
    """The example hall with a short printer settle time, so tests get tickets quickly, and
    no guard between two 'next' presses (scenarios call many citizens in a row)."""
    cfg = example_config(**over)
    cfg["printer"] = dict(cfg["printer"], settle_ms=50)
    cfg["queue"] = dict(cfg["queue"], next_guard_s=0)
    return cfg


class Sim:
    """One sim/run process on its own state dir; restart() = power back on after kill()."""

    def __init__(self, broker_port, cfg=None, state=None, flash="files", heap=None, config_path=None,
                 frames=False):
        self.state = state or tempfile.mkdtemp(prefix="qterm-state-")
        self.frames = frames
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
        if self.frames:
            env["QTERM_FRAMES"] = "1"   # the display picture (tests/conftest.py turns it off)
        if self.heap:
            env["QTERM_HEAP"] = self.heap
        args = [os.path.join(ROOT, "sim", "run"), "--config", self.config_path, "--state", self.state,
                "--broker", "127.0.0.1:%d" % self.broker_port, "--control", str(self.port)]
        if self.flash != "files":
            args += ["--flash", self.flash]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if wait:
            try:
                self.connect()
            except BaseException:
                self.stop()     # a device that did not come up is not left running
                raise
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
        s = self.ask({"op": "status"})
        if s.get("error") == "device out of memory":    # say so, not KeyError on a field
            raise AssertionError("status refused: device out of memory")
        return s

    def printer_bytes(self):
        try:
            with open(os.path.join(self.state, "printer.bin"), "rb") as f:
                return f.read()
        except OSError:
            return b""

    def wait_connected(self, timeout=20):
        """Wait until the device's MQTT session is up and its outbox delivered."""
        deadline = time.time() + timeout
        while not self.status()["connected"]:
            if time.time() > deadline:
                raise RuntimeError("the simulator never connected:\n" + self.output())
            time.sleep(0.05)
        return self.wait_drained()

    def wait_drained(self, timeout=10, sub=None):
        """Until every event is delivered to the broker; with sub, also until that subscriber
        (a backend's mosquitto_sub) has written the last one: on a loaded host its copy comes
        a moment after the broker acknowledged the device."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.status()
            if s["outbox"] == 0 and s["connected"]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("outbox not drained: %r" % (self.status(),))
        with open(self.config_path, encoding="utf-8") as f:
            dev = json.load(f)["device"]
        if sub is not None:
            while not any(e["seq"] >= s["seq"] for e in events(sub, dev=dev)):
                if time.time() > deadline + 10:
                    raise AssertionError("event %d never reached the subscriber" % s["seq"])
                time.sleep(0.05)
        else:   # the backends of this broker that see everything: a moment for their copy
            for other in [b for b in LIVE if b.topic == "qterm/#" and b.port == self.broker_port]:
                t = time.time() + 5
                while time.time() < t and not any(e["seq"] >= s["seq"] for e in events(other, dev=dev)):
                    time.sleep(0.05)
        return s

    def reconnect(self, timeout=20):
        """Open the control port again after the device restarted itself (a config.set); the
        process, its PID and the port stay the same."""
        self._close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.connect(timeout=deadline - time.time())
            try:
                return self.status()
            except (RuntimeError, OSError, ValueError):   # the old instance was still closing
                self._close()
                time.sleep(0.1)
        raise RuntimeError("simulator did not come back:\n" + self.output())

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
        for path in (self.log_path, self.config_path):
            try:
                os.remove(path)
            except OSError:
                pass


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


def sign_command(key_hex, op, args=None, ts=None, cid=None):
    """A backend command as the device expects it, signed independently of the firmware code
    (CPython json + hmac): canonical = sorted keys, no spaces, raw UTF-8."""
    import binascii
    import hashlib
    import hmac
    import uuid
    body = {"args": args or {}, "id": cid or uuid.uuid4().hex[:16], "op": op,
            "ts": int(time.time()) if ts is None else ts}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    body["mac"] = binascii.hexlify(hmac.new(binascii.unhexlify(key_hex), canon, hashlib.sha256).digest()).decode()[:32]
    return body


def publish(port, topic, payload, qos=1, retain=False):
    """mosquitto_pub, as any backend would publish."""
    if not isinstance(payload, (bytes, str)):
        payload = json.dumps(payload, ensure_ascii=False)
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-t", topic]
    if retain:
        args.append("-r")
    if isinstance(payload, bytes):
        subprocess.run(args + ["-s"], input=payload, check=True, timeout=10)
    else:
        subprocess.run(args + ["-m", payload], check=True, timeout=10)


def command(sim, sub, key_hex, op, args=None, timeout=8.0, **kw):
    """Send a signed command to the sim's device and wait for its cmd/reply."""
    cmd = sign_command(key_hex, op, args, **kw)
    return send_raw_command(sim, sub, cmd, cmd["id"], timeout)


def ok(reply):
    """assert a reply is ok, showing the reply when it is not (a refusal for memory then
    names itself: tests/conftest.py runs such a test again)."""
    assert reply.get("ok"), reply
    return reply


def send_raw_command(sim, sub, payload, cid, timeout=8.0, site="hall01", dev="term01"):
    base = "qterm/v1/%s/%s/" % (site, dev)
    before = len(sub.lines())
    publish(sim.broker_port, base + "cmd", payload)
    deadline = time.time() + timeout
    while time.time() < deadline:
        for ln in sub.lines()[before:]:
            if ln.startswith(base + "cmd/reply "):
                reply = json.loads(ln.split(" ", 1)[1])
                if reply.get("id") == cid:
                    return reply
                if reply.get("id") is None and reply.get("error") == "low_memory":
                    return reply    # refused before its id could be read: this command's
        time.sleep(0.05)
    raise AssertionError("no cmd/reply for %r within %.1fs; device output:\n%s\nlast lines at the broker:\n%s" % (
        cid, timeout, sim.output()[-1200:], "\n".join(ln[:200] for ln in sub.lines()[-6:])))
