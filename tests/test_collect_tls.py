"""The collector on a hall broker that takes TLS only (as the terminals' own TLS brokers):
the broker's certificate checked against --cafile and --server-name, a password or a client
certificate, and a refused certificate said in words at start and while reconnecting."""
import os
import sqlite3
import subprocess
import sys

import pytest

from tests.pki import mtls_broker, pki, tls_broker  # noqa: F401 - fixtures
from tests.test_collect import KEY, KEY2, ROOT, CollectorProc, Device, _all_sent, _count, _keystore, _wait
from tools.mqtt_session import tls_context


def _collect(port, db, ks, *extra):
    return subprocess.run([sys.executable, "-m", "tools", "collect", "--broker", "127.0.0.1:%d" % port,
                           "--db", db, "--keystore", ks, "--seconds", "1"] + list(extra),
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("ca", ["ca.der", "ca.pem"])
def test_events_over_tls_with_a_password_are_stored_once(tmp_path, pki, tls_broker, ca):
    """Devices publish on the plain listener; the collector reads on the TLS one. 600 events
    in bursts: TLS records carry several PUBLISHes (decrypted bytes select() does not see)."""
    keys = {"kiosk": KEY2, "ctr1": KEY}
    ks = _keystore(str(tmp_path / "keys.json"), keys)
    db = str(tmp_path / "hall.sqlite")
    col = CollectorProc(tls_broker.tls_port, db, ks, "--cafile", os.path.join(pki, ca), "--server-name", "localhost",
                        "--user", "term01", "--password", "s3cret")
    try:
        col.start()
        _all_sent([Device(tls_broker.port, d, k, 300, 600).start_() for d, k in keys.items()])
        _wait(lambda: _count(db) >= 600, 30, "600 events in the database")
        assert col.term() == 0
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT device || '/' || seq) FROM events").fetchone() == (600, 600)
        assert conn.execute("SELECT COUNT(*) FROM suspect").fetchone() == (0,)
        conn.close()
    finally:
        col.cleanup()


def test_a_certificate_not_from_the_ca_or_for_another_name_is_refused_in_words(tmp_path, pki, tls_broker):
    ks = _keystore(str(tmp_path / "keys.json"), {"ctr1": KEY})
    db = str(tmp_path / "hall.sqlite")
    login = ["--user", "term01", "--password", "s3cret"]
    r = _collect(tls_broker.tls_port, db, ks, "--cafile", os.path.join(pki, "other.pem"),
                 "--server-name", "localhost", *login)
    assert r.returncode == 1, r.stderr
    assert "certificate is not accepted" in r.stderr and "--cafile" in r.stderr, r.stderr
    r = _collect(tls_broker.tls_port, db, ks, "--cafile", os.path.join(pki, "ca.pem"), *login)
    assert r.returncode == 1 and "the name 127.0.0.1" in r.stderr, r.stderr    # the cert is for localhost
    r = _collect(tls_broker.tls_port, db, ks, "--cafile", os.path.join(pki, "ca.pem"),
                 "--server-name", "localhost", "--user", "term01", "--password", "wrong")
    assert r.returncode == 1 and "CONNACK 5: not authorised" in r.stderr, r.stderr   # mosquitto says 5
    r = _collect(tls_broker.tls_port, db, ks, *login)                 # plain MQTT to a TLS port
    assert r.returncode == 1 and "cannot reach the broker" in r.stderr, r.stderr
    r = _collect(tls_broker.tls_port, db, ks, "--cafile", os.path.join(pki, "ca.pem"),
                 "--server-name", "localhost", *login)
    assert r.returncode == 0 and "collecting from" in r.stderr, r.stderr


@pytest.mark.parametrize("with_cert", [True, False])
def test_a_broker_that_wants_a_client_certificate(tmp_path, pki, mtls_broker, with_cert):
    ks = _keystore(str(tmp_path / "keys.json"), {"ctr1": KEY})
    cert = ["--cert", os.path.join(pki, "device.pem"), "--key", os.path.join(pki, "device.key")] if with_cert else []
    r = _collect(mtls_broker.tls_port, str(tmp_path / "h.sqlite"), ks, "--cafile", os.path.join(pki, "ca.pem"),
                 "--server-name", "localhost", *cert)
    if with_cert:
        assert r.returncode == 0 and "collecting from" in r.stderr, r.stderr
    else:
        assert r.returncode == 1 and "cannot reach the broker" in r.stderr, r.stderr


def test_tls_options_that_cannot_be_used_are_usage_errors(tmp_path, pki):
    ks = _keystore(str(tmp_path / "keys.json"), {"ctr1": KEY})
    db = str(tmp_path / "h.sqlite")
    for extra, words in [
        (["--cert", os.path.join(pki, "device.pem"), "--key", os.path.join(pki, "device.key")], "go with --cafile"),
        (["--server-name", "localhost"], "go with --cafile"),
        (["--cafile", str(tmp_path / "missing.pem")], "missing.pem"),
        (["--cafile", ks], "is no certificate"),
        (["--cafile", os.path.join(pki, "ca.pem"), "--cert", os.path.join(pki, "device.pem")], "both"),
        (["--cafile", os.path.join(pki, "ca.pem"), "--cert", os.path.join(pki, "device.der"),
          "--key", os.path.join(pki, "device.key.der")], "PEM expected"),
        (["--cafile", os.path.join(pki, "ca.pem"), "--cert", os.path.join(pki, "device.pem"),
          "--key", os.path.join(pki, "server.key")], "matching"),
    ]:
        r = _collect(1, db, ks, *extra)
        assert r.returncode == 2 and words in r.stderr, (extra, r.stderr)


def test_tls_context_reads_a_ca_in_pem_or_der(pki):
    for name in ("ca.pem", "ca.der"):
        ctx = tls_context(os.path.join(pki, name))
        assert ctx.cert_store_stats()["x509_ca"] == 1 and ctx.check_hostname


def test_a_reconnect_that_keeps_failing_says_why_once_per_reason():
    import io
    import ssl

    from tools import collect

    class Refusing:
        host, port, server_name = "127.0.0.1", 1, "broker.hall"

        def __init__(self):
            self.errors = [ssl.SSLCertVerificationError(1, "certificate verify failed"),
                           ssl.SSLCertVerificationError(1, "certificate verify failed"),
                           ConnectionRefusedError(111, "Connection refused")]

        def open(self):
            raise self.errors.pop(0)

        def close(self, disconnect=True):
            pass

    log = io.StringIO()
    col = collect.Collector(Refusing(), None, log=log)
    backoff = collect.BACKOFF_MIN_S / 100
    for _ in range(3):
        backoff = col._reconnect(backoff, None)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "certificate is not accepted" in lines[0] and "broker.hall" in lines[0], lines
    assert "Connection refused" in lines[1] and not col.up


@pytest.mark.parametrize("prefix", [
    b"Bag Attributes\n    friendlyName: qterm test CA\nsubject=CN = qterm test CA\n\n",   # openssl pkcs12 -out
    b"\xef\xbb\xbf",                                                                      # a UTF-8 BOM
    "# 大厅 CA, f\u00fcr die Halle\n".encode(),                                            # a comment, UTF-8
])
def test_a_pem_ca_with_text_around_it_is_taken_as_openssl_takes_it(pki, tmp_path, prefix):
    """Found by attacking: PEM was recognised only when the file started with -----BEGIN and
    was pure ASCII; what openssl pkcs12 / x509 -text write was 'no certificate'."""
    with open(os.path.join(pki, "ca.pem"), "rb") as f:
        pem = f.read()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(prefix + pem + b"\ntrailing words\n")
    assert tls_context(str(ca)).cert_store_stats()["x509_ca"] == 1


def test_an_encrypted_client_key_is_refused_in_words_not_asked_for(tmp_path, pki):
    """OpenSSL would ask for the passphrase on the terminal (a service hangs, or fails with
    'Invalid argument' without one)."""
    enc = str(tmp_path / "enc.key")
    subprocess.run(["openssl", "pkey", "-in", os.path.join(pki, "device.key"), "-aes256", "-passout", "pass:x",
                    "-out", enc], check=True, capture_output=True)
    ks = _keystore(str(tmp_path / "keys.json"), {"ctr1": KEY})
    r = subprocess.run([sys.executable, "-m", "tools", "collect", "--broker", "127.0.0.1:1", "--db",
                        str(tmp_path / "h.sqlite"), "--keystore", ks, "--cafile", os.path.join(pki, "ca.pem"),
                        "--cert", os.path.join(pki, "device.pem"), "--key", enc],
                       cwd=ROOT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "encrypted" in r.stderr and "passphrase" in r.stderr, r.stderr


def test_tls_to_a_plain_mqtt_port_asks_whether_it_is_a_tls_listener(tmp_path, pki, tls_broker):
    ks = _keystore(str(tmp_path / "keys.json"), {"ctr1": KEY})
    r = _collect(tls_broker.port, str(tmp_path / "h.sqlite"), ks, "--cafile", os.path.join(pki, "ca.pem"),
                 "--server-name", "localhost")
    assert r.returncode == 1 and "a TLS listener?" in r.stderr, r.stderr
