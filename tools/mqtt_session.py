"""A blocking MQTT 3.1.1 session for host tools (CPython stdlib, one plain socket).

The packets are built and parsed by the firmware's own codec (firmware/mqtt.py and
firmware/mqtt_link.py run under CPython), so a host tool and the device speak the same
bytes. What this adds is the host side of a session: connect, subscribe, receive the
PUBLISHes that have arrived, and acknowledge them *when the caller says so* - the collector
commits an event to its database first, then sends its PUBACK.

    s = Session("127.0.0.1", 1883, "qterm-collector", subs=[("qterm/v1/+/+/evt/#", 1)])
    s.open()                              # -> session_present; MQTTError if refused
    for m in s.receive(0.5):              # Message(topic, payload, qos, pid, dup)
        ...
    s.ack([m.pid for m in msgs if m.qos == 1])
    s.close()

With tls=tls_context(CA) the connection is TLS, the broker's certificate checked against the
CA and against server_name (default: host) - a hall broker that only takes TLS, as the
terminals' own brokers usually are.

Failures: OSError (socket, TLS: ssl.SSLError is one), MQTTError (refused, malformed packet,
silent broker). The caller reconnects; nothing received but not acknowledged is lost, the
broker sends it again.
"""
import select
import socket
import ssl
import time
from collections import namedtuple

from firmware.mqtt import decode_publish, encode_publish, parse_header
from firmware.mqtt_link import decode_connack, encode_connect, encode_subscribe

Message = namedtuple("Message", "topic payload qos pid dup")

_CONNACK = 0x20
_PUBLISH = 0x30
_PUBACK = 0x40
_SUBACK = 0x90
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
_REFUSED = {1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
            4: "bad user name or password", 5: "not authorised"}


class MQTTError(Exception):
    """The broker refused us, sent a malformed packet, or went silent."""


def tls_context(cafile, certfile=None, keyfile=None):
    """A client TLS context trusting the CA in cafile (PEM, or DER as the terminals keep it),
    with a client certificate and key (PEM) for a broker that asks for one. ValueError names
    the file that cannot be used."""
    try:
        with open(cafile, "rb") as f:
            ca = f.read()
    except OSError as e:
        raise ValueError("CA certificate %s: %s" % (cafile, e.strerror or e))
    # This CA only, as the terminals trust only theirs: not the system's public CAs too.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # checks the certificate and its name
    try:
        if b"-----BEGIN" in ca:     # PEM, maybe with text around it (openssl -text, pkcs12 -out)
            ctx.load_verify_locations(cafile=cafile)
        else:
            ctx.load_verify_locations(cadata=ca)
    except (ssl.SSLError, ValueError) as e:
        raise ValueError("CA certificate %s is no certificate (PEM or DER expected): %s" % (cafile, e))
    if certfile or keyfile:
        if not (certfile and keyfile):
            raise ValueError("a client certificate needs both its certificate and its key file")
        try:
            ctx.load_cert_chain(certfile, keyfile, password=_no_passphrase)
        except (OSError, ssl.SSLError) as e:
            raise ValueError("client certificate %s / key %s cannot be used (PEM expected, the key "
                             "matching the certificate): %s" % (certfile, keyfile, e))
    return ctx


def _no_passphrase():
    # OpenSSL would ask on the terminal (a service has none, and would hang or fail obscurely)
    raise ValueError("the client key is encrypted: give it without a passphrase "
                     "(openssl pkey -in KEY -out PLAIN_KEY), kept readable by this user only")


def puback(pid):
    return bytes((_PUBACK, 2, pid >> 8, pid & 0xFF))


class Session:
    """One connection to a broker; open() again after a failure (a new socket)."""

    def __init__(self, host, port, client_id, subs=(), clean=True, keepalive=30,
                 user=None, password=None, timeout=5.0, tls=None, server_name=None):
        self.host, self.port = host, port
        self.client_id = client_id
        self.subs = list(subs)
        self.clean = clean
        self.keepalive = keepalive
        self.user, self.password = user, password
        self.timeout = timeout
        self.tls, self.server_name = tls, server_name or host
        self.sock = None
        self.acked = []           # PUBACKs received for our own QoS 1 publishes (packet ids)
        self._buf = bytearray()
        self._pending = []        # PUBLISHes that arrived while open() waited for its acks
        self._last_rx = self._last_tx = 0.0
        self._pid = 0

    # --- connection ---------------------------------------------------------------------

    def open(self):
        """Connect, CONNECT, SUBSCRIBE; returns whether the broker kept our session."""
        self.close(disconnect=False)
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=self.server_name)
            except ssl.SSLError:
                sock.close()
                raise
            except OSError as e:    # reset, closed, timed out: a plain MQTT port does that
                sock.close()
                raise OSError(e.errno, "%s during the TLS handshake (is %s:%d a TLS listener?)"
                              % (e.strerror or e, self.host, self.port)) from e
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self._buf = bytearray()
        self._pending = []
        self._last_rx = time.monotonic()
        self._send(encode_connect(self.client_id, self.keepalive, self.clean, self.user, self.password))
        first, body = self._wait_for(_CONNACK)
        present, rc = decode_connack(body, 0, len(body))
        if rc:
            self.close(disconnect=False)
            raise MQTTError("CONNACK %d: %s" % (rc, _REFUSED.get(rc, "refused")))
        if self.subs:
            pid = self._next_pid()
            self._send(encode_subscribe(pid, self.subs))
            first, body = self._wait_for(_SUBACK)
            if body[2:].count(0x80):
                raise MQTTError("subscription refused by the broker: %s" % ", ".join(
                    t for (t, q), rc in zip(self.subs, body[2:]) if rc == 0x80))
        return present

    def close(self, disconnect=True):
        """Close the socket; with disconnect, say goodbye first (the session stays if not clean)."""
        if self.sock is None:
            return
        try:
            if disconnect:
                self.sock.sendall(DISCONNECT)
        except OSError:
            pass
        self.sock.close()
        self.sock = None

    # --- traffic ------------------------------------------------------------------------

    def receive(self, timeout):
        """The PUBLISHes that arrived within timeout seconds (waits for the first only)."""
        if self._pending:
            out, self._pending = self._pending, []
            return out
        self._keepalive()
        if not self._readable(max(0.0, min(timeout, self._quiet_left()))):
            self._keepalive()
            return []
        self._read()
        out = []
        for first, body in self._packets():
            self._dispatch(first, body, out)
        return out

    def ack(self, pids):
        """PUBACK the given packet ids, in one write (in the order received, as 3.1.1 asks)."""
        if pids:
            self._send(b"".join(puback(p) for p in pids))

    def publish(self, topic, payload, qos=0, retain=False):
        """Send one PUBLISH; its packet id (QoS 1: watch self.acked) or 0."""
        pid = self._next_pid() if qos else 0
        self._send(encode_publish(topic, payload, qos, retain, pid))
        return pid

    # --- inside -------------------------------------------------------------------------

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    def _send(self, data):
        self.sock.sendall(data)
        self._last_tx = time.monotonic()

    def _quiet_left(self):
        """Seconds until a silent broker counts as gone (1.5 x keepalive, as the device does)."""
        return self._last_rx + 1.5 * self.keepalive - time.monotonic() if self.keepalive else 3600.0

    def _keepalive(self):
        if not self.keepalive:
            return
        if self._quiet_left() <= 0:
            raise MQTTError("broker stopped answering (keepalive timeout)")
        if time.monotonic() - self._last_tx >= self.keepalive / 2:
            self._send(PINGREQ)

    def _readable(self, timeout):
        """Bytes to read within timeout. TLS may hold decrypted bytes the socket no longer
        shows to select (a record read whole, only part of it taken)."""
        if self.tls is not None and self.sock.pending():
            return True
        return bool(select.select([self.sock], [], [], timeout)[0])

    def _read(self):
        data = self.sock.recv(1 << 18)
        if not data:
            raise MQTTError("connection closed by the broker")
        self._buf += data
        self._last_rx = time.monotonic()

    def _packets(self):
        """Complete packets in the buffer as (first byte, body bytes); the rest stays."""
        buf, off, end = self._buf, 0, len(self._buf)
        out = []
        while off < end:
            try:
                head = parse_header(buf, off, end)
            except ValueError as e:
                raise MQTTError("malformed packet from the broker: %s" % e)
            if head is None or off + head[1] + head[2] > end:
                break
            first, hl, rl = head
            out.append((first, bytes(buf[off + hl:off + hl + rl])))
            off += hl + rl
        del buf[:off]
        return out

    def _dispatch(self, first, body, out):
        if first & 0xF0 == _PUBLISH:
            try:
                topic, qos, pid, at = decode_publish(first, body, 0, len(body))
            except ValueError as e:
                raise MQTTError("malformed PUBLISH from the broker: %s" % e)
            out.append(Message(topic, body[at:], qos, pid, bool(first & 8)))
        elif first == _PUBACK:
            self.acked.append(body[0] << 8 | body[1])

    def _wait_for(self, kind):
        """Read until a packet of kind arrives; PUBLISHes meanwhile are kept for receive()."""
        deadline = time.monotonic() + self.timeout
        while True:
            found = None
            for first, body in self._packets():
                if first == kind and found is None:
                    found = first, body
                else:
                    self._dispatch(first, body, self._pending)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0 or not self._readable(left):
                raise MQTTError("timeout: no %s from the broker" % ("CONNACK" if kind == _CONNACK else "SUBACK"))
            self._read()
