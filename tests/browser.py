"""Headless Chromium for tests, stdlib only: the DevTools protocol over a pipe.

    from tests.browser import Browser, need_chromium
    need_chromium()                         # skip locally, fail in CI (CI=true) without it
    with Browser() as b:
        b.open("http://127.0.0.1:8080/")
        b.wait("document.querySelector('#rate').textContent !== '—'", timeout=10)
        b.click("#refresh")
        text = b.eval("document.title")
        b.screenshot("artifacts/page.png")

Chromium runs with --remote-debugging-pipe: it reads commands on its fd 3 and writes replies
and events on its fd 4, each a JSON message ended by a NUL byte. No port is opened, so tests
running side by side never collide and nothing else on the host can drive the browser.
One page (target) per Browser, attached with flatten=true: its commands carry a sessionId.
"""
import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

BINARY = "chromium"     # Debian's package; $QTERM_CHROMIUM overrides
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
         # quiet and light: no first-run UI, no background fetches, /tmp instead of a small /dev/shm
         "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--mute-audio",
         "--hide-scrollbars", "--disable-dev-shm-usage")


class BrowserError(Exception):
    """A DevTools command failed, the page threw, or the browser went away."""


def find_chromium():
    """Path of the Chromium binary, or None."""
    return shutil.which(os.environ.get("QTERM_CHROMIUM") or BINARY)


def need_chromium():
    """For tests: without Chromium, fail in CI (the test command installs it, so its absence
    is a broken setup) and skip elsewhere (a developer without it can still run the rest)."""
    import pytest
    if find_chromium() is None:
        why = ("headless Chromium not found (binary %r): install it with `apt-get install -y chromium`"
               % (os.environ.get("QTERM_CHROMIUM") or BINARY))
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)


_EXEC_ON_3_4 = """import os, sys
r, w = int(sys.argv[1]), int(sys.argv[2])
os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w)
os.execvp(sys.argv[3], sys.argv[3:])"""


def _high_fd(fd):
    """A close-on-exec copy of fd numbered >= 10, and fd closed: the child maps it onto 3 or
    4, and a number that is itself 3 or 4 would be clobbered on the way."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    def __init__(self, width=1280, height=900, timeout=30.0, binary=None):
        binary = binary or find_chromium()
        if binary is None:
            raise BrowserError("chromium not found")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="qterm-chromium-")
        self.log_path = os.path.join(self.profile, "chromium.log")
        cmd_r, self._cmd_w = os.pipe()       # us -> browser (its fd 3)
        self._reply_r, reply_w = os.pipe()   # browser -> us (its fd 4)
        cmd_r, reply_w = _high_fd(cmd_r), _high_fd(reply_w)
        args = list(FLAGS) + ["--user-data-dir=" + self.profile, "--window-size=%d,%d" % (width, height),
                              "about:blank"]
        # subprocess keeps pass_fds at their own numbers; a two-line exec puts them on 3 and 4
        # (Python, not sh: dash takes single-digit fds only).
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", _EXEC_ON_3_4, str(cmd_r), str(reply_w), binary] + args,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         pass_fds=(cmd_r, reply_w), start_new_session=True)
        os.close(cmd_r)
        os.close(reply_w)
        self._next_id = 0
        self._replies = {}
        self._events = []
        self._gone = None            # why the reply pipe ended
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="chromium-pipe", daemon=True)
        self._reader.start()
        self.session = None
        self.target = None

    # --- protocol -------------------------------------------------------------------------

    def _read(self):
        buf = b""
        try:
            while True:
                chunk = os.read(self._reply_r, 1 << 16)
                if not chunk:
                    break
                buf += chunk
                *msgs, buf = buf.split(b"\0")
                for raw in msgs:
                    msg = json.loads(raw)
                    with self._cond:
                        if "id" in msg:
                            self._replies[msg["id"]] = msg
                        else:
                            self._events.append(msg)
                        self._cond.notify_all()
        except (OSError, ValueError) as e:
            self._gone = "reply pipe: %s" % e
        with self._cond:
            self._gone = self._gone or "browser closed its pipe"
            self._cond.notify_all()

    def send(self, method, params=None, session=True, timeout=None):
        """One DevTools command; its result dict. session=True: to the open page, None: to
        the browser itself."""
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session is True:
            session = self.session
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        with self._write_lock:
            try:
                while data:
                    data = data[os.write(self._cmd_w, data):]
            except OSError as e:
                raise BrowserError("%s: browser gone (%s)%s" % (method, e, self._log_tail()))
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if self._gone or left <= 0:
                    raise BrowserError("%s: %s%s" % (method, self._gone or "no answer in time", self._log_tail()))
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise BrowserError("%s: %s" % (method, reply["error"].get("message", reply["error"])))
        return reply.get("result", {})

    def _log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                tail = f.read()[-1500:].decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return ("\n--- chromium log ---\n" + tail) if tail else ""

    # --- the page ------------------------------------------------------------------------

    def open(self, url, timeout=None):
        """Load url in this browser's page (made on first use) and wait until it has loaded."""
        if self.session is None:
            self.target = self.send("Target.createTarget", {"url": "about:blank"}, session=None)["targetId"]
            self.session = self.send("Target.attachToTarget", {"targetId": self.target, "flatten": True},
                                     session=None)["sessionId"]
            self.send("Page.enable")
            self.send("Runtime.enable")
        with self._cond:
            seen = len(self._events)
        nav = self.send("Page.navigate", {"url": url})
        if nav.get("errorText"):
            raise BrowserError("cannot open %s: %s" % (url, nav["errorText"]))
        if nav.get("loaderId"):     # a new document (not a #fragment): wait for its load event
            self._wait_event("Page.loadEventFired", seen, timeout or self.timeout)

    def _wait_event(self, method, after, timeout):
        """Wait for a DevTools event of this page newer than index `after` of the event list."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(e.get("method") == method and e.get("sessionId") == self.session
                          for e in self._events[after:]):
                left = deadline - time.monotonic()
                if self._gone or left <= 0:
                    raise BrowserError("no %s: %s%s" % (method, self._gone or "timed out", self._log_tail()))
                self._cond.wait(left)

    def eval(self, js, timeout=None):
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.send("Runtime.evaluate", {"expression": js, "returnByValue": True, "awaitPromise": True},
                      timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise BrowserError("page threw on %r: %s" % (js[:200], text))
        return r.get("result", {}).get("value")

    def wait(self, condition, timeout=10.0, interval=0.1):
        """Poll a JavaScript condition until it is truthy; its value. A BrowserError names the
        condition and its last value when the time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(condition)
            if value:
                return value
            if time.monotonic() >= deadline:
                raise BrowserError("timed out after %.1f s waiting for %s (last value %r)"
                                   % (timeout, condition, value))
            time.sleep(interval)

    def text(self, css):
        """textContent of the first element matching css (None if there is none)."""
        return self.eval("(e => e && e.textContent)(document.querySelector(%s))" % json.dumps(css))

    def click(self, css):
        """Click the first element matching css, as a user would (its click handlers run)."""
        if not self.eval("(e => (e && (e.click(), true)) || false)(document.querySelector(%s))" % json.dumps(css)):
            raise BrowserError("nothing to click: no element matches %s" % css)

    def screenshot(self, path):
        """Save what the page shows as a PNG at path (directories made)."""
        png = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)
        return path

    def events(self, method=None):
        """DevTools events received so far (e.g. "Runtime.consoleAPICalled", "Runtime.exceptionThrown")."""
        with self._cond:
            return [e for e in self._events if method is None or e.get("method") == method]

    # --- lifetime ------------------------------------------------------------------------

    def close(self):
        """Ask the browser to quit, then kill its process group (renderers and all) and remove
        the profile. Safe to call twice."""
        if self.proc is None:
            return
        try:
            if not self._gone:
                self.send("Browser.close", session=None, timeout=5)
        except BrowserError:
            pass
        # The pipe ends when every process holding it is gone. Only then is the leader reaped:
        # until then its pid (= the group id) cannot be reused, so killpg hits only our group.
        self._reader.join(5)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None
        self._reader.join(5)
        for fd in (self._cmd_w, self._reply_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
