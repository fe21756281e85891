"""A throw-away CA and a 'localhost' server certificate made with openssl (tests only), and
the fixtures of TLS brokers that use them (import them into a test module to use them)."""
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from tests.broker import Broker, free_port


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """Fill directory d: ca.pem/ca.der (test CA), server.pem/server.key for CN=localhost,
    other.pem/other.der (an unrelated CA), device.der/device.key.der (a client certificate for
    CN=term01 from the test CA, for mutual TLS). MicroPython's ssl here parses DER only."""
    os.chmod(d, 0o755)  # mosquitto reads the key after dropping root
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=qterm test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out",
             "other.pem", "-days", "2", "-subj", "/CN=some other CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "device.key", "-out", "device.csr",
             "-subj", "/CN=term01", cwd=d)
    _openssl("x509", "-req", "-in", "device.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "device.pem", "-days", "2", cwd=d)
    _openssl("x509", "-in", "device.pem", "-outform", "DER", "-out", "device.der", cwd=d)
    _openssl("rsa", "-in", "device.key", "-outform", "DER", "-out", "device.key.der", cwd=d)
    _openssl("x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der", cwd=d)
    _openssl("x509", "-in", "other.pem", "-outform", "DER", "-out", "other.der", cwd=d)
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    return d


@pytest.fixture(scope="module")
def pki():
    d = make_pki(tempfile.mkdtemp(prefix="qterm-pki-"))
    subprocess.run(["mosquitto_passwd", "-b", "-c", os.path.join(d, "passwd"), "term01", "s3cret"],
                   check=True, capture_output=True)
    os.chmod(os.path.join(d, "passwd"), 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tls_broker(pki):
    """A plain listener for the backend's view, and a TLS listener that wants a password."""
    tls_port = free_port()
    conf = ("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n"
            "allow_anonymous false\npassword_file %s\n") % (
        tls_port, os.path.join(pki, "ca.pem"), os.path.join(pki, "server.pem"),
        os.path.join(pki, "server.key"), os.path.join(pki, "passwd"))
    b = Broker(extra_conf=conf, global_conf="per_listener_settings true\n")
    b.start()
    b.tls_port = tls_port
    yield b
    b.stop()


@pytest.fixture
def mtls_broker(pki):
    """A TLS listener that wants a client certificate from the test CA (no password)."""
    tls_port = free_port()
    conf = ("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n"
            "require_certificate true\nallow_anonymous true\n") % (
        tls_port, os.path.join(pki, "ca.pem"), os.path.join(pki, "server.pem"), os.path.join(pki, "server.key"))
    b = Broker(extra_conf=conf, global_conf="per_listener_settings true\n")
    b.start()
    b.tls_port = tls_port
    yield b
    b.stop()
