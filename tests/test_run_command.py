"""The README's run command, used the way a person uses it: `sh tools/dev.sh run` in a terminal
(a pseudo-terminal here), type at the console, read the answer, leave, and nothing is left running.

Each run gets its own state dir (QTERM_STATE) and control port (QTERM_CONTROL_PORT). The
venv is already installed when the suite runs, so the command's install step is a no-op.
"""
import http.client
import json
import os
import pty
import select
import signal
import socket
import tempfile
import time

import pytest

from tests.broker import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = b"qterm> "
BOOT_S = 90  # the first run after a source change builds the ROMFS image
EXIT_S = 30  # the run command stops what it started: TERM, 5 s, KILL - more on a loaded CI machine


class Terminal:
    """`sh tools/dev.sh run` on a pseudo-terminal that is its controlling terminal (so Ctrl-C
    reaches the whole foreground process group, as in a person's terminal window)."""

    def __init__(self, state, control_port, args=(), **env):
        # its own panel port too: runs side by side must not meet on the default 7780
        e = dict(os.environ, QTERM_STATE=state, QTERM_CONTROL_PORT=str(control_port),
                 QTERM_PANEL_PORT=str(free_port()))
        e.update(env)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes the command
            try:
                os.chdir(ROOT)
                os.execvpe("sh", ["sh", "tools/dev.sh", "run"] + list(args), e)
            finally:
                os._exit(127)
        self.out = b""
        self.status = None

    def read_until(self, needle, timeout, start=0):
        """Wait until needle appears in the output after offset start; the output on failure."""
        deadline = time.monotonic() + timeout
        while needle not in self.out[start:]:
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(min(left, 0.2)) and self.exited():
                raise AssertionError("%r not seen within %ss (exit status %r); terminal shows:\n%s" % (
                    needle, timeout, self.status, self.text()[-3000:]))
        return self.out.index(needle, start)

    def _pump(self, wait):
        r, _, _ = select.select([self.fd], [], [], wait)
        if not r:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: every process holding the terminal has gone
            return False
        self.out += chunk
        return bool(chunk)

    def type(self, keys):
        os.write(self.fd, keys)

    def exited(self):
        if self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
        return self.status is not None

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.exited():
            if time.monotonic() > deadline:
                raise AssertionError("the run command did not end within %ss; terminal shows:\n%s" % (
                    timeout, self.text()[-2000:]))
            self._pump(0.1)
        while self._pump(0):  # the rest of the output
            pass
        return self.status

    def text(self):
        return self.out.decode("utf-8", "replace")

    def close(self):
        if not self.exited():
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.pid, sig)
                except OSError:
                    pass
                try:
                    self.wait_exit(3)
                    break
                except AssertionError:
                    pass
        os.close(self.fd)


def processes_of(state):
    """{pid: command line} of live processes that name this run's state dir (the simulator
    gets --state STATE, mosquitto its STATE/mosquitto.conf); zombies count as gone."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/stat" % pid) as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] in "ZX"
        except OSError:
            continue
        if state in cmd and not zombie and int(pid) != os.getpid():
            found[int(pid)] = cmd
    return found


def wait_gone(state, timeout=10):
    deadline = time.monotonic() + timeout
    while processes_of(state) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes_of(state)


@pytest.fixture
def state():
    d = tempfile.mkdtemp(prefix="qterm-run-")
    yield d
    for pid in processes_of(d):  # only if the command under test left them: don't leak them
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.parametrize("leave", ["quit", "eof", "ctrl-c"])
def test_run_gives_a_console_that_takes_a_ticket_and_leaves_nothing_running(state, leave):
    term = Terminal(state, free_port())
    try:
        at = term.read_until(PROMPT, BOOT_S)
        assert b"cannot reach" not in term.out
        running = processes_of(state)
        assert any("mosquitto" in c for c in running.values()), running
        assert any("--state " + state in c for c in running.values()), running

        term.type(b"t A\r")
        at = term.read_until(b'"ticket": "A001"', 15, at + len(PROMPT))
        term.read_until(PROMPT, 15, at)
        assert os.path.getsize(os.path.join(state, "printer.bin")) > 0, "the ticket was printed"

        term.type({"quit": b"quit\r", "eof": b"\x04", "ctrl-c": b"\x03"}[leave])
        status = term.wait_exit(EXIT_S)
        assert status == (130 if leave == "ctrl-c" else 0), (status, term.text()[-1500:])
        assert wait_gone(state) == {}, "left running after the console ended"
    finally:
        term.close()


def test_run_hall_console_ends_on_ctrl_c_and_stops_the_hall(state):
    """`run --hall 1` at a person's terminal: a ticket at the kiosk, then Ctrl-C at the prompt
    ends the run (130) and every device of the hall with it."""
    term = Terminal(state, free_port(), args=["--hall", "1"])
    try:
        at = term.read_until(b"qterm 1> ", BOOT_S * 2)
        term.type(b"kiosk: t A\r")
        at = term.read_until(b'"ticket": "A001"', 15, at)
        term.read_until(b"> ", 15, at)
        term.type(b"\x03")
        assert term.wait_exit(EXIT_S) == 130, term.text()[-1500:]
        assert wait_gone(state) == {}, "left running after the console ended"
    finally:
        term.close()


def test_run_again_on_the_same_state_keeps_the_device(state):
    """Idempotent: a second run boots the same device (boot 2) and numbering goes on."""
    for boot, ticket in ((1, b"A001"), (2, b"A002")):
        term = Terminal(state, free_port())
        try:
            at = term.read_until(PROMPT, BOOT_S)
            assert b"(boot %d)" % boot in term.out, term.text()[-1500:]
            term.type(b"t A\r")
            term.read_until(b'"ticket": "' + ticket + b'"', 15, at)
            term.type(b"quit\r")
            assert term.wait_exit(EXIT_S) == 0
            assert wait_gone(state) == {}
        finally:
            term.close()


def test_a_simulator_that_cannot_start_is_shown_and_no_console_starts(state, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1}')
    term = Terminal(state, free_port(), QTERM_CONFIG=str(bad))
    try:
        status = term.wait_exit(BOOT_S)
        text = term.text()
        assert status != 0, text
        assert "simulator exited before it opened" in text, text
        assert "no usable configuration" in text, "the simulator's own last lines are shown:\n" + text
        assert PROMPT.decode() not in text and "cannot reach" not in text, text
        assert wait_gone(state) == {}
    finally:
        term.close()


def test_a_control_port_in_use_is_refused_before_anything_starts(state):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        term = Terminal(state, busy.getsockname()[1])
        try:
            status = term.wait_exit(EXIT_S)
            assert status == 1 and "already in use" in term.text(), term.text()
            assert wait_gone(state) == {}
            assert not os.path.exists(os.path.join(state, "printer.bin"))
        finally:
            term.close()
    finally:
        busy.close()


def _http(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def test_run_serves_the_browser_panel_and_stops_it(state):
    panel_port = free_port()
    term = Terminal(state, free_port(), QTERM_PANEL_PORT=str(panel_port))
    try:
        term.read_until(PROMPT, BOOT_S)
        assert ("panel  http://127.0.0.1:%d/" % panel_port).encode() in term.out, term.text()[-1500:]
        status, page = _http(panel_port, "GET", "/")
        assert status == 200 and b"/panel.js" in page
        status, data = _http(panel_port, "GET", "/api/panel")
        dev = json.loads(data)["devices"][0]
        assert status == 200 and dev["role"] == "all" and dev["error"] is None, dev
        assert any(k["button"] == "ticket:A" for g in dev["buttons"] for k in g["keys"])
        origin = "http://127.0.0.1:%d" % panel_port
        status, data = _http(panel_port, "POST", "/api/press", json.dumps({"device": 0, "button": "ticket:A"}),
                             {"Origin": origin, "Content-Type": "application/json"})
        assert status == 200 and json.loads(data)["ticket"] == "A001", data
        term.type(b"quit\r")
        assert term.wait_exit(EXIT_S) == 0
        assert wait_gone(state) == {}, "the panel (or another part) was left running"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", panel_port), 1).close()
    finally:
        term.close()


def test_a_panel_port_in_use_is_said_and_the_run_goes_on(state):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        term = Terminal(state, free_port(), QTERM_PANEL_PORT=str(busy.getsockname()[1]))
        try:
            at = term.read_until(PROMPT, BOOT_S)
            assert b"no browser panel this run" in term.out, term.text()[-1500:]
            term.type(b"t A\r")
            term.read_until(b'"ticket": "A001"', 15, at + len(PROMPT))
            term.type(b"quit\r")
            assert term.wait_exit(EXIT_S) == 0
            assert wait_gone(state) == {}
        finally:
            term.close()
    finally:
        busy.close()
