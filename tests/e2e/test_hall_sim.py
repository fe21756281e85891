"""sim/hall: a whole hall (kiosk, counters, call screen) as separate simulated devices on a real
mosquitto, and `sh tools/dev.sh run --hall N` that brings one up for a person."""
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from tests.e2e.harness import ROOT, events
from tests.test_run_command import processes_of, wait_gone
from tools.verify import load_keystore

HALL = os.path.join(ROOT, "sim", "hall")
UP_S = 120      # the first start after a source change builds the firmware image


class HallRun:
    """One sim/hall process in its own session (so a test's cleanup reaches it and nothing else)."""

    def __init__(self, state, broker_port, counters=2, env=None):
        self.state = state
        self.out_path = state + ".out"
        self.proc = subprocess.Popen(
            [HALL, "--counters", str(counters), "--state", state, "--broker", "127.0.0.1:%d" % broker_port],
            stdin=subprocess.DEVNULL, stdout=open(self.out_path, "ab"), stderr=subprocess.STDOUT,
            env=dict(os.environ, **(env or {})), start_new_session=True)

    def output(self):
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_up(self):
        """hall.json once the hall wrote it (every control port answered)."""
        path = os.path.join(self.state, "hall.json")
        deadline = time.monotonic() + UP_S
        while not os.path.exists(path):
            assert self.proc.poll() is None, "sim/hall exited %s:\n%s" % (self.proc.returncode, self.output())
            assert time.monotonic() < deadline, "hall not up in %ss:\n%s" % (UP_S, self.output())
            time.sleep(0.05)
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def ask(port, req, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(json.dumps(req).encode() + b"\n")
        return json.loads(s.makefile("rb").readline())


def wait_answers(port, proc=None, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ask(port, {"op": "status"})
        except (OSError, ValueError):
            if proc is not None and proc.poll() is not None:
                raise AssertionError("device exited %s" % proc.returncode)
            assert time.monotonic() < deadline, "nothing answers on 127.0.0.1:%d" % port
            time.sleep(0.05)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def until(fn, timeout, what):
    """fn()'s first true value within timeout; else fail saying what (a callable: read at the end)."""
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if r:
            return r
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.1)


def log_tail(state, device, n=15):
    with open(os.path.join(state, device, "sim.log"), encoding="utf-8", errors="replace") as f:
        return "\n".join(f.read().splitlines()[-n:])


def wait_linked(hall, state, timeout=20):
    """Until every counter has had its first answer from the kiosk (the hall's control ports
    answer before that; meanwhile a counter's keys are refused, as on a real one just powered on)."""
    until(lambda: all(ask(c["control"], {"op": "status"})["hall"]["reached"] for c in hall["counters"]),
          timeout, lambda: "the counters never reached the kiosk; kiosk log:\n" + log_tail(state, "kiosk"))


@pytest.fixture
def state():
    d = tempfile.mkdtemp(prefix="qterm-hall-")
    yield d
    for pid in processes_of(d):     # whatever a failing test left running
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_a_hall_comes_up_and_a_counter_survives_a_power_cut(broker, state):
    run = HallRun(state, broker.port)
    restarted = None
    try:
        hall = run.wait_up()
        assert hall["broker"] == "127.0.0.1:%d" % broker.port
        assert hall["kiosk"]["device"] == "kiosk" and hall["screen"]["device"] == "screen"
        assert [(c["id"], c["device"]) for c in hall["counters"]] == [("1", "ctr1"), ("2", "ctr2")]
        devices = [hall["kiosk"]] + hall["counters"] + [hall["screen"]]
        assert len({d["control"] for d in devices}) == 4 and len({d["pid"] for d in devices}) == 4
        for d in devices:
            assert alive(d["pid"]) and all(not a.startswith(".") for a in d["argv"])
            assert d["argv"][0] == os.path.join(ROOT, "sim", "run")
            assert d["argv"][d["argv"].index("--control") + 1] == str(d["control"])
            s = ask(d["control"], {"op": "status"})
            assert s["ok"] and s["device"] == d["device"], s
            assert s["role"] == {"kiosk": "kiosk", "screen": "screen"}.get(d["device"], "counter"), s
            cfg = json.load(open(os.path.join(state, d["device"], "config.json"), encoding="utf-8"))
            assert cfg["device"] == d["device"]
        assert stat.S_IMODE(os.stat(hall["keystore"]).st_mode) == 0o600
        assert sorted(load_keystore(hall["keystore"])) == ["ctr1", "ctr2", "kiosk", "screen"]

        # Power cut at counter 1: the hall notes it and does not bring it back.
        ctr = hall["counters"][0]
        os.kill(ctr["pid"], signal.SIGKILL)
        until(lambda: "ctr1 (pid %d) ended with signal 9" % ctr["pid"] in run.output(), 10, run.output)
        time.sleep(0.5)
        assert not alive(ctr["pid"]) and run.proc.poll() is None
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", ctr["control"]), 1).close()

        # Power back on from its argv: same flash, same control port, the next boot.
        log = open(os.path.join(state, "ctr1", "restart.log"), "ab")
        restarted = subprocess.Popen(ctr["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        s = wait_answers(ctr["control"], restarted)
        assert (s["device"], s["role"], s["boot"]) == ("ctr1", "counter", 2), s
        # ... and it works in the hall again: a ticket at the kiosk, called at counter 1.
        t = ask(hall["kiosk"]["control"], {"op": "press", "button": "ticket:A"})
        assert t["ok"] and t["ticket"] == "A001", t
        wait_linked(hall, state)
        r = ask(ctr["control"], {"op": "press", "button": "next"})
        assert r["ok"] and r["ticket"] == "A001", r
        assert ask(ctr["control"], {"op": "status"})["hall"]["serving"] == "A001"

        assert run.stop() == 0
        for d in [hall["kiosk"], hall["counters"][1], hall["screen"]]:
            assert not alive(d["pid"]), "%s outlived its hall" % d["device"]
        assert restarted.poll() is None, "a device the test restarted is the test's, not the hall's"
    finally:
        if restarted is not None and restarted.poll() is None:
            restarted.kill()
            restarted.wait()
        run.stop()


def test_a_hall_started_again_keeps_its_devices_and_keys(broker, state):
    run = HallRun(state, broker.port)
    try:
        run.wait_up()
        configs = {d: open(os.path.join(state, d, "config.json"), "rb").read() for d in ("kiosk", "ctr1", "ctr2", "screen")}
        keys = open(os.path.join(state, "keystore.json"), "rb").read()
    finally:
        assert run.stop() == 0
    assert not os.path.exists(os.path.join(state, "hall.json")), "a stopped hall leaves no hall.json"
    run = HallRun(state, broker.port)
    try:
        hall = run.wait_up()
        for d, raw in configs.items():
            assert open(os.path.join(state, d, "config.json"), "rb").read() == raw, d
        assert open(os.path.join(state, "keystore.json"), "rb").read() == keys
        assert ask(hall["kiosk"]["control"], {"op": "status"})["boot"] == 2
    finally:
        assert run.stop() == 0
    # Another number of counters on the same hall is refused, naming the hall's own.
    run = HallRun(state, broker.port, counters=3)
    assert run.proc.wait(30) == 1
    assert "--counters 2" in run.output()


def test_a_device_that_cannot_boot_shows_its_log_and_stops_the_hall(broker, state):
    run = HallRun(state, broker.port, env={"QTERM_HEAP": "16K"})
    assert run.proc.wait(UP_S) != 0
    out = run.output()
    assert "before its control port" in out and "MemoryError" in out, out
    assert not os.path.exists(os.path.join(state, "hall.json"))
    assert wait_gone(state) == {}


def dev_sh_run_hall(state, **env):
    """`sh tools/dev.sh run --hall 2` with stdin not a terminal; (process, output reader)."""
    out_path = state + ".dev.out"
    proc = subprocess.Popen(["sh", "tools/dev.sh", "run", "--hall", "2"], cwd=ROOT,
                            env=dict(os.environ, QTERM_STATE=state, **env), stdin=subprocess.DEVNULL,
                            stdout=open(out_path, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def output():
        with open(out_path, encoding="utf-8", errors="replace") as f:
            return f.read()
    return proc, output


def test_dev_sh_run_hall_comes_up_without_a_terminal(state):
    proc, output = dev_sh_run_hall(state)
    try:
        hall_json = os.path.join(state, "hall", "hall.json")
        until(lambda: os.path.exists(hall_json) and "watch events" in output() or proc.poll() is not None,
              UP_S, lambda: "dev.sh run --hall 2 not up:\n" + output())
        assert proc.poll() is None, output()
        hall = json.load(open(hall_json, encoding="utf-8"))
        assert len(hall["counters"]) == 2
        assert ask(hall["screen"]["control"], {"op": "status"})["role"] == "screen"
        running = processes_of(state)
        assert any("mosquitto" in c for c in running.values()), running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 143, output()
        assert wait_gone(state) == {}, "left running after dev.sh ended"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_dev_sh_run_hall_that_cannot_come_up_says_why(state):
    proc, output = dev_sh_run_hall(state, QTERM_HEAP="16K")
    try:
        assert proc.wait(UP_S) == 1, output()
        assert "the hall did not come up" in output() and "MemoryError" in output(), output()
        assert wait_gone(state) == {}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def console(hall_json, commands):
    r = subprocess.run([os.path.join(ROOT, ".venv", "bin", "python"), "-m", "sim.console", "--hall", hall_json, commands],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def test_the_console_addresses_each_device_of_a_hall(broker, state):
    run = HallRun(state, broker.port)
    try:
        hall = run.wait_up()
        hj = os.path.join(state, "hall.json")
        # Up = every control port answers; a counter's first word with the kiosk follows (until
        # then its keys are refused "busy"/"not_sent", as on a real counter just powered on).
        wait_linked(hall, state)
        rc, out = console(hj, "kiosk: t A, t B, 1: next, use 2, next, screen: display")
        assert rc == 0, out
        lines = out.splitlines()
        assert lines[0].startswith("kiosk: ") and '"A001"' in lines[0], out
        assert lines[1].startswith("kiosk: ") and '"B001"' in lines[1], out     # t goes to the kiosk
        assert lines[2].startswith("1: ") and '"ticket.called"' in lines[2], out
        assert lines[4].startswith("2: ") and '"B001"' in lines[4], out         # 'use 2' then a staff key
        assert lines[5].startswith("screen: "), out
        rc, out = console(hj, "ctr2: finish, r 5")     # a counter by its device name; r to the current one
        assert rc == 0 and out.splitlines()[1].startswith("1: "), out
        rc, out = console(hj, "bogus: status")
        assert rc == 1 and "no device 'bogus'" in out, out
        rc, out = console(hj, "help")
        assert rc == 2 and "'kiosk: t A'" in out, out
        os.kill(hall["counters"][1]["pid"], signal.SIGKILL)
        until(lambda: "ctr2 (pid" in run.output(), 10, run.output)
        rc, out = console(hj, "2: status")
        assert rc == 1 and "2 does not answer on 127.0.0.1:%d" % hall["counters"][1]["control"] in out, out
        rc, out = console(hj, "kiosk: status")
        assert rc == 0, "the other devices still answer: " + out
    finally:
        run.stop()


class BootFailed(Exception):
    pass


def test_a_hall_restarted_after_a_finished_service_boots(broker, state):
    run = HallRun(state, broker.port)
    try:
        hall = run.wait_up()
        wait_linked(hall, state)
        ctr = hall["counters"][0]["control"]
        assert ask(hall["kiosk"]["control"], {"op": "press", "button": "ticket:A"})["ok"]
        assert ask(ctr, {"op": "press", "button": "next"})["ok"]
        assert ask(ctr, {"op": "press", "button": "finish"})["ok"]
    finally:
        assert run.stop() == 0
    run = HallRun(state, broker.port)
    try:
        try:
            run.wait_up()
        except AssertionError as e:
            raise BootFailed(str(e))
    finally:
        run.stop()


def _said(state):
    """What the call screen's voice double decoded, line by line: (SAY|BAD, text)."""
    try:
        with open(os.path.join(state, "screen", "state", "voice.log"), encoding="utf-8") as f:
            return [tuple(ln.split("\t")[1:3]) for ln in f.read().splitlines()]
    except OSError:
        return []


def _heard(state, hall, n):
    scr = hall["screen"]["control"]
    return until(lambda: len(_said(state)) >= n and _said(state), 20,
                 lambda: "the screen said %r, expected %d phrases; its status %r, log:\n%s"
                 % (_said(state), n, ask(scr, {"op": "status"}).get("hall"), log_tail(state, "screen")))


def test_a_day_in_a_hall_survives_power_cuts_and_the_screen_says_each_call(broker, sub, state):
    """Done-when of the hall issue, checked as a technician would: against sim/hall, devices
    power-cut with SIGKILL and switched on again from hall.json's argv, the backend's view from
    mosquitto_sub, and what the call screen said from its voice.log."""
    run = HallRun(state, broker.port)
    restarted = []

    def power_on(dev):
        log = open(os.path.join(state, dev["device"], "restart.log"), "ab")
        p = subprocess.Popen(dev["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        restarted.append(p)
        return wait_answers(dev["control"], p)

    def power_cut(dev):
        os.kill(dev["pid"], signal.SIGKILL)
        until(lambda: not alive(dev["pid"]), 10, "%s outlived SIGKILL" % dev["device"])

    try:
        hall = run.wait_up()
        wait_linked(hall, state)
        kiosk, scr = hall["kiosk"], hall["screen"]["control"]
        c1, c2 = hall["counters"]
        press = lambda dev, b: ask(dev["control"], {"op": "press", "button": b})   # noqa: E731
        assert ask(scr, {"op": "voice", "ms_per_byte": 0})["ok"]    # speech ends at once
        assert ask(scr, {"op": "voice", "ms_per_byte": -1})["ok"] is False
        for code in "AABB":
            assert press(kiosk, "ticket:" + code)["ok"]
        assert press(c1, "next")["ticket"] == "A001"
        _heard(state, hall, 2)
        assert press(c2, "next")["ticket"] == "B001"    # counter 2 serves B first
        _heard(state, hall, 4)
        assert press(c1, "recall")["ok"]
        _heard(state, hall, 6)

        # The kiosk loses power while both counters serve: a served citizen still rates.
        power_cut(kiosk)
        r = press(c1, "finish")
        assert r["ok"], r
        r = press(c1, "rate5")
        assert r["ok"] and r["event"] == "rating.submitted", r
        s = power_on(kiosk)
        assert s["boot"] == 2 and s["waiting"] == {"A": 1, "B": 1}, s

        # Counter 2 loses power mid-service: back on, it shows its citizen's number again.
        power_cut(c2)
        s = power_on(c2)
        assert s["hall"]["serving"] == "B001", s
        assert any("B001" in ln for ln in ask(c2["control"], {"op": "display"})["lines"])
        wait_linked(hall, state)
        until(lambda: not ask(c1["control"], {"op": "status"})["hall"]["pending_finish"], 30,
              lambda: "counter 1's finish never reached the kiosk: %r" % ask(c1["control"], {"op": "status"}))
        assert press(c2, "finish")["ok"] and press(c2, "rate4")["ok"]
        assert press(c1, "next")["ticket"] == "A002"
        _heard(state, hall, 8)
        assert press(c2, "next")["ticket"] == "B002"
        _heard(state, hall, 10)
        for dev in [kiosk] + hall["counters"]:
            until(lambda: wait_answers(dev["control"])["outbox"] == 0, 30, "%s never drained" % dev["device"])
        time.sleep(1)

        said = _said(state)
        assert [k for k, _ in said] == ["SAY"] * 10, said
        texts = [t for _, t in said]
        want = [("A001", ""), ("B001", ""), ("A001", "again")] + [("A002", ""), ("B002", "")]
        for i, (ticket, again) in enumerate(want):
            zh, en = texts[2 * i], texts[2 * i + 1]
            assert ("请%s号到" % ticket) in zh and zh.startswith("再次呼叫") == bool(again), texts
            assert ("Number %s, please go to" % ticket) in en and en.startswith("Again:") == bool(again), texts

        # The backend's view: each ticket called once, the finish of A001 applied once though
        # it was pressed while the kiosk was dark, one rating each, every event verifies.
        evts = [e for e in events(sub, dev="kiosk")]
        called = [e["data"]["ticket"] for e in evts if e["type"] == "ticket.called"]
        assert sorted(called) == ["A001", "A002", "B001", "B002"], called
        fin = [e["data"]["ticket"] for e in evts if e["type"] == "service.finished"]
        assert sorted(fin) == ["A001", "B001"], fin
        rated = [e["data"]["ticket"] for name in ("ctr1", "ctr2") for e in events(sub, dev=name)
                 if e["type"] == "rating.submitted"]
        assert sorted(rated) == ["A001", "B001"], rated
        r = subprocess.run([sys.executable, "-m", "tools.verify", "--keys", hall["keystore"], sub.path],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    finally:
        for p in restarted:
            if p.poll() is None:
                p.kill()
                p.wait()
        run.stop()
