"""The terminal talks to a TLS broker as configured: CA from its flash, name checked, password."""
import json
import os
import shutil
import subprocess
import time

import pytest

from tests.broker import Broker, Subscriber, free_port
from tests.e2e.harness import Sim, example_config, publish, sign_command, wait_event
from tests.pki import mtls_broker, pki, tls_broker  # noqa: F401 - fixtures


def _sim(broker, pki, ca="ca.der", password="s3cret", server_name="localhost"):
    cfg = example_config()
    cfg["broker"] = {"host": "127.0.0.1", "port": broker.tls_port, "keepalive": 10, "tls": True,
                     "ca": "ca.der", "server_name": server_name, "user": "term01", "password": password}
    sim = Sim(broker.tls_port, cfg)
    os.makedirs(os.path.join(sim.state, "flash"), exist_ok=True)
    shutil.copy(os.path.join(pki, ca), os.path.join(sim.state, "flash", "ca.der"))
    return sim.start()


def test_events_flow_over_tls_with_password(pki, tls_broker):
    sub = Subscriber(tls_broker.port, "qterm/#")
    sim = _sim(tls_broker, pki)
    try:
        assert sim.press("ticket:A")["ok"]
        issued = wait_event(sub, "ticket.issued", timeout=15)
        assert issued["data"]["ticket"] == "A001"
        s = sim.status()
        assert s["connected"] is True and s["mqtt_error"] is None  # the healthy state
    finally:
        sim.cleanup()
        sub.stop()


REFUSALS = {  # what is wrong -> (config change, the words `status` shows as mqtt_error)
    "wrong CA": ({"ca": "other.der"}, "TLS: unknown CA, certificate not signed by broker.ca"),
    # mosquitto answers a wrong password with CONNACK 5 (not authorised), not 4
    "wrong password": ({"password": "guess"},
                       "refused: not authorised, check broker.user and password (CONNACK 5)"),
    "wrong name": ({"server_name": "broker.example"},
                   "TLS: name mismatch, certificate not for broker.server_name"),
}


@pytest.mark.parametrize("what", sorted(REFUSALS))
def test_untrusted_or_unauthorised_broker_gets_nothing(pki, tls_broker, what):
    sub = Subscriber(tls_broker.port, "qterm/#")
    kw, words = REFUSALS[what]
    sim = _sim(tls_broker, pki, **kw)
    try:
        assert sim.press("ticket:A")["ok"]  # the citizen is served regardless
        deadline = time.time() + 15
        s = sim.status()
        while s["mqtt_error"] is None and time.time() < deadline:
            time.sleep(0.1)
            s = sim.status()
        assert s["mqtt_error"] == words
        assert s["connected"] is False and s["outbox"] >= 1
        assert not [ln for ln in sub.lines() if "/evt/" in ln]
    finally:
        sim.cleanup()
        sub.stop()


def _status_error(sim, timeout=15):
    deadline = time.time() + timeout
    s = sim.status()
    while s["mqtt_error"] is None and time.time() < deadline:
        time.sleep(0.1)
        s = sim.status()
    return s


def _wait_boot(sim, boot, timeout, connected=False):
    """Wait until the device restarted itself into boot number `boot` (and, with connected, is
    online); the control port is reopened as the process comes back."""
    deadline = time.time() + timeout
    s = None
    while time.time() < deadline:
        try:
            s = sim.reconnect(timeout=5)
            if s.get("boot") == boot and (s.get("connected") or not connected):
                return s
        except RuntimeError:
            pass
        time.sleep(0.3)
    raise AssertionError("not back in boot %d%s: %r" % (boot, " and connected" if connected else "", s))


@pytest.mark.parametrize("ca", ["missing", "pem"])
def test_broken_ca_serves_offline_says_why_and_comes_online_when_fixed(pki, tls_broker, ca):
    """tls on with no ca.der (or a PEM one): the terminal boots and serves, status and device.boot
    say what is wrong; a good ca.der copied to the flash brings it online, every event in order."""
    sub = Subscriber(tls_broker.port, "qterm/#")
    cfg = example_config()
    cfg["broker"] = {"host": "127.0.0.1", "port": tls_broker.tls_port, "keepalive": 10, "tls": True,
                     "ca": "ca.der", "server_name": "localhost", "user": "term01", "password": "s3cret"}
    sim = Sim(tls_broker.tls_port, cfg)
    flash = os.path.join(sim.state, "flash")
    os.makedirs(flash, exist_ok=True)
    if ca == "pem":
        shutil.copy(os.path.join(pki, "ca.pem"), os.path.join(flash, "ca.der"))
    try:
        sim.start()
        assert sim.press("ticket:A")["ok"]                # the citizen is served regardless
        assert sim.press("next")["ok"]
        s = _status_error(sim)
        want = "missing on the device" if ca == "missing" else "unreadable (DER expected)"
        assert s["mqtt_error"].startswith("TLS: CA certificate ca.der ") and want in s["mqtt_error"], s
        assert s["connected"] is False and s["outbox"] >= 3
        shutil.copy(os.path.join(pki, "ca.der"), os.path.join(flash, "ca.der.tmp"))
        os.replace(os.path.join(flash, "ca.der.tmp"), os.path.join(flash, "ca.der"))
        # Loaded within seconds; short of a large enough free block all day long (a busy
        # day's heap is many small holes), after a soft restart that loads it at boot.
        deadline = time.time() + 40
        while True:
            try:
                s = sim.status()
                if s["connected"]:
                    break
            except (RuntimeError, OSError, ValueError):
                s = sim.reconnect()
            assert time.time() < deadline, (s, sim.output()[-2000:])
            time.sleep(0.2)
        sim.wait_drained(sub=sub)
        assert s["mqtt_error"] is None
        evts = [json.loads(ln.split(" ", 1)[1]) for ln in sub.lines() if "/evt/" in ln]
        assert [e["seq"] for e in evts][:4] == [1, 2, 3, 4]
        boot = [e for e in evts if e["type"] == "device.boot"][0]
        assert any(want in p for p in boot["data"]["problems"]), boot["data"]["problems"]
        assert [e["data"]["ticket"] for e in evts if e["type"] == "ticket.issued"] == ["A001"]
    finally:
        sim.cleanup()
        sub.stop()


def test_a_wrong_password_by_config_set_is_tried_then_reverted_and_nothing_is_lost(pki, tls_broker):
    """No remote change can lock the terminal out: a signed config.set with a broker password that
    the broker refuses is applied on trial; not connected within broker.confirm_s, the terminal
    goes back to the settings that connected, reconnects, announces config.reverted (which keys,
    why), and every event of the trial arrives in order."""
    sub = Subscriber(tls_broker.port, "qterm/#")
    sim = _sim(tls_broker, pki)
    sim.broker_port = tls_broker.port       # the backend's (plain) listener, for commands
    key = example_config()["key"]
    try:
        sim.wait_connected(timeout=20)
        boot = sim.status()["boot"]
        cmd = sign_command(key, "config.set", {"patch": {"broker": {"password": "typo", "confirm_s": 10}}})
        publish(tls_broker.port, "qterm/v1/hall01/term01/cmd", cmd)
        _wait_boot(sim, boot + 1, 20)                # the restart that applies it
        assert sim.press("ticket:A")["ok"]           # served on trial, offline
        s = _status_error(sim)
        assert s["connected"] is False and "CONNACK 5" in s["mqtt_error"], s
        _wait_boot(sim, boot + 2, 40, connected=True)    # confirm_s, then the restart that reverts
        s = sim.wait_drained(timeout=15)
        rev = wait_event(sub, "config.reverted", timeout=10)
        assert rev["data"]["keys"] == ["broker"] and "CONNACK 5" in rev["data"]["why"], rev
        evts = [json.loads(ln.split(" ", 1)[1]) for ln in sub.lines() if "/evt/" in ln]
        seqs = [e["seq"] for e in evts]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert [e["data"]["ticket"] for e in evts if e["type"] == "ticket.issued"] == ["A001"]
        # what connected is kept: a restart stays on the good password
        sim.kill()
        sim.broker_port = tls_broker.tls_port     # (sim/run's --broker: the TLS listener)
        sim.start()
        assert sim.wait_connected(timeout=20)["mqtt_error"] is None
    finally:
        sim.cleanup()
        sub.stop()


@pytest.mark.parametrize("with_cert", [True, False])
def test_mutual_tls_connects_with_the_device_certificate_and_is_refused_without(pki, mtls_broker, with_cert):
    sub = Subscriber(mtls_broker.port, "qterm/#")
    cfg = example_config()
    cfg["broker"] = {"host": "127.0.0.1", "port": mtls_broker.tls_port, "keepalive": 10, "tls": True,
                     "ca": "ca.der", "server_name": "localhost"}
    if with_cert:
        cfg["broker"].update(client_cert="device.der", client_key="device.key.der")
    sim = Sim(mtls_broker.tls_port, cfg)
    flash = os.path.join(sim.state, "flash")
    os.makedirs(flash, exist_ok=True)
    for name in ("ca.der", "device.der", "device.key.der"):
        shutil.copy(os.path.join(pki, name), os.path.join(flash, name))
    try:
        sim.start()
        assert sim.press("ticket:A")["ok"]
        if with_cert:
            s = sim.wait_connected(timeout=20)
            assert s["mqtt_error"] is None
            assert wait_event(sub, "ticket.issued", timeout=10)["data"]["ticket"] == "A001"
        else:
            s = _status_error(sim)
            assert s["connected"] is False and s["mqtt_error"].startswith(("TLS", "closed")), s
            time.sleep(1)
            assert not [ln for ln in sub.lines() if "/evt/" in ln]
    finally:
        sim.cleanup()
        sub.stop()


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")


def _selftest_broker(pki, tmp, port, **broker):
    """firmware/selftest.py's broker check under MicroPython, as tools/qterm selftest runs it."""
    root = os.path.join(tmp, "flash")
    os.makedirs(root, exist_ok=True)
    for name in ("ca.der", "other.der", "device.der", "device.key.der"):
        shutil.copy(os.path.join(pki, name), os.path.join(root, name))
    b = {"host": "127.0.0.1", "port": port, "tls": True, "ca": "ca.der", "server_name": "localhost"}
    b.update(broker)
    script = os.path.join(tmp, "st.py")
    with open(script, "w") as f:
        f.write("import sys\nsys.path.insert(0, %r)\nfrom firmware import selftest\n"
                "print(selftest.broker({'device': 'st1', 'broker': %r}, %r))\n"
                % (ROOT, b, root))
    r = subprocess.run([MICROPYTHON, script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_selftest_names_the_failing_step(pki, tls_broker, mtls_broker, tmp_path):
    ok = _selftest_broker(pki, str(tmp_path), tls_broker.tls_port, user="term01", password="s3cret")
    assert ok.startswith("(True,"), ok
    cases = [
        (tls_broker.tls_port, {"ca": "other.der"}, "TLS handshake with 127.0.0.1:%d: TLS: unknown CA"),
        (tls_broker.tls_port, {"server_name": "broker.example"}, "TLS handshake with 127.0.0.1:%d: TLS: name mismatch"),
        (tls_broker.tls_port, {"user": "term01", "password": "guess"},
         "MQTT CONNECT to 127.0.0.1:%d: refused: not authorised"),
        (tls_broker.tls_port, {"ca": "missing.der"},
         "TLS files: TLS: CA certificate missing.der missing on the device"),
        (mtls_broker.tls_port, {}, "TLS handshake with 127.0.0.1:%d: TLS: closed by the broker in the handshake"),
        (free_port(), {}, "TCP to 127.0.0.1:%d: TCP connection refused"),
    ]
    for port, kw, words in cases:
        out = _selftest_broker(pki, str(tmp_path), port, **kw)
        want = words % port if "%d" in words else words
        assert out.startswith("(False,") and want in out, (kw, out)
    out = _selftest_broker(pki, str(tmp_path), mtls_broker.tls_port, client_cert="device.der",
                           client_key="device.key.der")
    assert out.startswith("(True,"), out


def test_tls_waits_for_a_device_clock_it_can_check_certificates_by(pki, tls_broker):
    """The certificate-time rule: an RTC that lost the time (2000) means no TLS handshake, the
    terminal serves offline and says why; once the clock is set it connects and delivers."""
    sub = Subscriber(tls_broker.port, "qterm/#")
    sim = _sim(tls_broker, pki)
    try:
        sim.wait_connected(timeout=20)
        now = sim.ask({"op": "clock"})["time"]
        sim.ask({"op": "clock", "set": 946684800})
        deadline = time.time() + 10
        s = sim.status()
        while (s["connected"] or not s["mqtt_error"]) and time.time() < deadline:
            time.sleep(0.1)
            s = sim.status()
        assert s["connected"] is False and s["mqtt_error"].startswith("TLS: device clock not set"), s
        assert sim.press("ticket:A")["ok"]
        sim.ask({"op": "clock", "set": now + 5})
        s = sim.wait_connected(timeout=30)
        assert s["mqtt_error"] is None
        assert wait_event(sub, "ticket.issued", timeout=10)["data"]["ticket"] == "A001"
    finally:
        sim.cleanup()
        sub.stop()


def test_selftest_on_a_tls13_only_broker_names_the_handshake(pki, tmp_path):
    """A broker that speaks TLS 1.3 only: the check connects, or names the TLS handshake as the
    failing step (it once read the mbedTLS code as "host name not found (DNS)")."""
    port = free_port()
    conf = ("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\ntls_version tlsv1.3\n"
            "allow_anonymous true\n") % (port, os.path.join(pki, "ca.pem"), os.path.join(pki, "server.pem"),
                                         os.path.join(pki, "server.key"))
    b = Broker(extra_conf=conf, global_conf="per_listener_settings true\n").start()
    try:
        out = _selftest_broker(pki, str(tmp_path), port)
        assert out.startswith("(True,") or "TLS handshake with 127.0.0.1:%d: TLS: " % port in out, out
        assert "DNS" not in out, out
    finally:
        b.stop()


def test_a_new_ca_file_that_does_not_connect_is_put_back(pki, tls_broker):
    """A CA file changed on the flash (a technician's copy, a backend tool) is on trial like a
    config change: the wrong one is replaced by the one that connected, config.reverted says so."""
    sub = Subscriber(tls_broker.port, "qterm/#")
    cfg = example_config()
    cfg["broker"] = {"host": "127.0.0.1", "port": tls_broker.tls_port, "keepalive": 10, "tls": True,
                     "ca": "ca.der", "server_name": "localhost", "user": "term01", "password": "s3cret",
                     "confirm_s": 10}
    sim = Sim(tls_broker.tls_port, cfg)
    flash = os.path.join(sim.state, "flash")
    os.makedirs(flash, exist_ok=True)
    shutil.copy(os.path.join(pki, "ca.der"), os.path.join(flash, "ca.der"))
    try:
        sim.start()
        sim.wait_connected(timeout=20)                  # the CA that connected is remembered
        deadline = time.time() + 5
        while not os.path.exists(os.path.join(flash, "ca.der.good")) and time.time() < deadline:
            time.sleep(0.1)
        sim.kill()
        shutil.copy(os.path.join(pki, "other.der"), os.path.join(flash, "ca.der"))
        sim.start()
        boot = sim.status()["boot"]
        assert sim.press("ticket:A")["ok"]
        s = _status_error(sim)
        assert s["connected"] is False and "unknown CA" in s["mqtt_error"], s
        _wait_boot(sim, boot + 1, 40, connected=True)    # confirm_s, then the restart that reverts
        rev = wait_event(sub, "config.reverted", timeout=10)
        assert rev["data"]["keys"] == ["ca.der"] and "unknown CA" in rev["data"]["why"], rev
        with open(os.path.join(flash, "ca.der"), "rb") as f, open(os.path.join(pki, "ca.der"), "rb") as g:
            assert f.read() == g.read()
        assert wait_event(sub, "ticket.issued", timeout=10)["data"]["ticket"] == "A001"
    finally:
        sim.cleanup()
        sub.stop()
