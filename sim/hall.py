"""Start a simulated hall: one kiosk, counters ctr1..ctrN and a call screen, each its own
sim/run process (its own PID, flash and control port), on one broker (host CPython).

  sim/hall --counters N --state DIR --broker 127.0.0.1:PORT [--config TEMPLATE] [--echo]

Writes DIR/<device>/config.json (kept on a re-run: a hall keeps its identity and keys),
DIR/keystore.json (0600, for tools/qterm verify), starts the devices, waits until each control
port answers a status request and then writes DIR/hall.json. It stays in the foreground:
SIGTERM/SIGINT stops every device it started. A device that dies is noted, never restarted:
tests cut power on purpose and bring a device back themselves from its "argv" in hall.json.
"""
import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.join(ROOT, "sim"):
    sys.path[0] = ROOT      # run as sim/hall.py: import sim.* and firmware.* as packages

from sim import hallconf  # noqa: E402

RUN = os.path.join(ROOT, "sim", "run")
TEMPLATE = os.path.join(ROOT, "sim", "config.example.json")
BOOT_S = 90         # a device's boot, generous for a loaded CI machine
_PR_SET_PDEATHSIG = 1


class HallError(Exception):
    """A problem a person can act on; the message names the file, device or port."""


def say(msg):
    sys.stderr.write("qterm-hall: %s\n" % msg)
    sys.stderr.flush()


def _write_atomic(path, data, mode=0o644):
    tmp = "%s.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.chmod(tmp, mode)     # umask must not widen or narrow what was asked
    os.replace(tmp, path)


def hall_configs(state, n, template):
    """{device: config path}: the ones already in state when it holds a hall, else new ones."""
    names = ["kiosk"] + [hallconf.counter_device(str(i)) for i in range(1, n + 1)] + ["screen"]
    paths = {d: os.path.join(state, d, "config.json") for d in names}
    have = [d for d in names if os.path.exists(paths[d])]
    if have:
        kiosk = _read(paths["kiosk"]) if "kiosk" in have else None
        count = len(kiosk.get("counters") or ()) if kiosk else None
        if len(have) != len(names) or count != n:
            raise HallError("%s already holds a hall (%s) that is not one of %d counters: use its own "
                            "--counters%s or another --state" % (state, ", ".join(have), n,
                                                                 " %d" % count if count else ""))
        configs = {d: _read(paths[d]) for d in names}
        _check(configs, state)
    else:
        try:
            configs = hallconf.make_hall(template, n)
        except (OSError, ValueError) as e:
            raise HallError("cannot build the hall from %s: %s" % (template, e))
        _check(configs, template)
        for d, cfg in configs.items():
            os.makedirs(os.path.join(state, d), exist_ok=True)
            _write_atomic(paths[d], cfg, 0o600)     # the device key is in it
    _write_atomic(os.path.join(state, "keystore.json"), hallconf.keystore(configs), 0o600)
    return paths


def _check(configs, source):
    """Refuse before anything starts: a device would only say it in its sim.log."""
    from firmware import config
    for name, cfg in configs.items():
        errors = config.validate(cfg)
        if errors:
            raise HallError("the %s config (from %s) is not valid:\n  %s" % (
                name, source, "\n  ".join(config.describe(errors))))


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise HallError("cannot read %s: %s" % (path, e))


def free_ports(n):
    """n distinct free loopback ports (held open together so none is handed out twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent():
    """In the device's process before exec: a supervisor killed outright takes its hall with it
    (otherwise devices linger holding ports). The signal survives the device's own re-exec."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Device:
    def __init__(self, name, config, broker, control, echo):
        self.name = name
        self.dir = os.path.dirname(config)
        self.log_path = os.path.join(self.dir, "sim.log")
        self.control = control
        self.argv = [RUN, "--config", config, "--state", os.path.join(self.dir, "state"),
                     "--broker", broker, "--control", str(control)] + (["--echo"] if echo else [])
        self.proc = None
        self.began = 0      # size of sim.log when this start began
        self.seen = 0       # bytes of sim.log already echoed

    def start(self):
        try:
            self.began = self.seen = os.path.getsize(self.log_path)
        except OSError:
            self.began = self.seen = 0
        with open(self.log_path, "ab") as log:
            # A session of its own: a terminal's Ctrl-C is for the console; this supervisor stops devices.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent)

    def answers(self):
        """True once the control port answers {"op":"status"} with ok."""
        try:
            with socket.create_connection(("127.0.0.1", self.control), 1) as s:
                s.settimeout(10)
                s.sendall(b'{"op": "status"}\n')
                f = s.makefile("rb")
                return json.loads(f.readline() or b"{}").get("ok") is True
        except (OSError, ValueError):
            return False

    def tail(self, lines=20):
        """The last lines this start wrote (sim.log also holds earlier runs)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(self.began, os.path.getsize(self.log_path) - 8192))
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(no output: %s)" % e
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def echo(self, out):
        """Copy what the device wrote since last time to out, each line marked with its name."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.seen)
                data = f.read()
        except OSError:
            return
        cut = data.rfind(b"\n") + 1     # whole lines only; the rest comes next time
        self.seen += cut
        for line in data[:cut].decode("utf-8", "replace").splitlines():
            out.write("[%s] %s\n" % (self.name, line))
        out.flush()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()

    def reap(self, timeout):
        if not self.proc:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def entry(self):
        return {"device": self.name, "control": self.control, "pid": self.proc.pid, "argv": self.argv}


def wait_booted(devices, seconds):
    """Wait until every control port answers; a device that ends first or never answers fails."""
    deadline = time.monotonic() + seconds
    pending = list(devices)
    while pending:
        for d in list(pending):
            if d.answers():
                pending.remove(d)
            elif d.proc.poll() is not None:
                raise HallError("%s exited (code %s) before its control port 127.0.0.1:%d answered; "
                                "its last output (%s):\n%s" % (d.name, d.proc.returncode, d.control,
                                                                d.log_path, d.tail()))
        if pending and time.monotonic() > deadline:
            d = pending[0]
            raise HallError("%s did not answer on 127.0.0.1:%d within %d s; its last output (%s):\n%s" % (
                d.name, d.control, seconds, d.log_path, d.tail()))
        time.sleep(0.1)


def _prebuild():
    """Build the firmware image once here, not in every device at the same time."""
    if os.environ.get("QTERM_MICROPYTHON") or os.environ.get("QTERM_CODE_DIR") \
            or os.environ.get("QTERM_ROMFS", "1") == "0":
        return      # sim/launch.py decides these layouts per device
    from sim import launch
    launch.build_image()


class _Stop(Exception):
    pass


def _on_signal(signum, frame):
    raise _Stop(signum)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="sim/hall", description="Start a simulated hall (kiosk, counters, screen) "
                                 "as separate sim/run processes on one broker and supervise them.")
    ap.add_argument("--counters", type=int, required=True, help="number of counters (devices ctr1..ctrN)")
    ap.add_argument("--state", required=True, help="hall directory: DIR/<device>/, keystore.json, hall.json")
    ap.add_argument("--broker", required=True, help="the broker, 127.0.0.1:PORT")
    ap.add_argument("--config", default=TEMPLATE, help="template config for every device (default: %(default)s)")
    ap.add_argument("--echo", action="store_true", help="devices echo display/voice/printer; shown here by name")
    a = ap.parse_args(argv)
    host, _, port = a.broker.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        ap.error("--broker must be HOST:PORT, e.g. 127.0.0.1:1883")
    if not 1 <= a.counters <= 99:
        ap.error("--counters must be 1..99")
    state = os.path.abspath(a.state)
    broker = "%s:%s" % (host or "127.0.0.1", port)

    devices = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        # An ignored signal stays ignored: started in the background (tools/dev.sh run --hall), the
        # console owns Ctrl-C and whoever started the hall stops it with SIGTERM.
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _on_signal)
    hall_json = os.path.join(state, "hall.json")
    try:
        os.makedirs(state, exist_ok=True)
        try:
            os.remove(hall_json)    # left by a supervisor killed outright: it names dead ports
        except FileNotFoundError:
            pass
        paths = hall_configs(state, a.counters, os.path.abspath(a.config))
        _prebuild()
        ports = free_ports(len(paths))
        for (name, path), control in zip(paths.items(), ports):
            devices.append(Device(name, path, broker, control, a.echo))
        for d in devices:
            d.start()
        wait_booted(devices, BOOT_S)
        hall = {"kiosk": devices[0].entry(), "counters": [], "screen": devices[-1].entry(),
                "broker": broker, "keystore": os.path.join(state, "keystore.json")}
        for i, d in enumerate(devices[1:-1], 1):
            hall["counters"].append(dict({"id": str(i)}, **d.entry()))
        _write_atomic(hall_json, hall)
        for d in devices:
            say("%-6s pid %-7d control 127.0.0.1:%d  log %s" % (d.name, d.proc.pid, d.control, d.log_path))
        say("hall up on broker %s: %s" % (broker, hall_json))
        supervise(devices, a.echo)
    except _Stop:
        return 0
    except HallError as e:
        say(str(e))
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # a second Ctrl-C must not leave devices behind
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for d in devices:
            d.stop()
        for d in devices:
            d.reap(5)
        if devices:
            try:
                os.remove(hall_json)    # its ports and PIDs are gone with the devices
            except OSError:
                pass
    return 0


def supervise(devices, echo):
    """Until a signal: note devices that end (a power cut in a test, a crash), echo output."""
    alive = list(devices)
    while True:
        if echo:
            for d in devices:
                d.echo(sys.stdout)
        for d in list(alive):
            rc = d.proc.poll()
            if rc is not None:
                alive.remove(d)
                say("%s (pid %d) ended with %s; not restarted (its argv is in hall.json)" % (
                    d.name, d.proc.pid, "signal %d" % -rc if rc < 0 else "code %d" % rc))
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
