"""The MQTT client's code for the moments a connection starts or ends: open the socket
(TLS), CONNECT and its CONNACK, SUBSCRIBE, a clean DISCONNECT, the words for a failure,
and the TLS context of the broker config.

firmware.mqtt.link() loads this for one call and releases it after: connections start
seconds apart at the fastest, so none of it stays on the heap meanwhile. MQTTClient.conf
opens with what connect() reads, in the order unpacked below (keep the two in step).
The codec functions run under CPython too (unit tests); selftest sends a CONNECT with them.
"""
try:
    from micropython import const
except ImportError:  # CPython (codec tests)
    from copy import copy as const

from firmware.mqtt import packet

CONNACK = const(0x20)
_CONNECT = const(0x10)
_SUBSCRIBE = const(0x82)  # reserved flags 0010 are part of the fixed header
DISCONNECT_PACKET = b"\xe0\x00"
_CLOSE_WAIT_MS = const(2000)

# Why the last attempt or connection failed, in words a technician can act on: line i of
# one string. last_error is "<line> (<raw code>)" where there is a raw code (errno,
# mbedTLS code, text). firmware/mqtt.py names lines 0, 3 and 4.
_LINK = const(0)
_UNREACHABLE = const(1)
_REFUSED = const(2)
_TIMEOUT = const(3)
_SILENT = const(4)
_CLOSED = const(5)
_EARLY = const(6)
_CONNACK_RC = const(6)    # + return code 1..5
_TLS_CA = const(12)       # 12..15: the certificate checks why() recognises
_TLS_VERIFY = const(16)
_TLS_HANDSHAKE = const(17)
_PROTOCOL = const(18)
_OTHER = const(19)
_TLS_CUT = const(20)
_WHY = ("no network (link down)\n"
        "no route to the broker\n"
        "TCP connection refused: broker not listening on that port\n"
        "timeout: no answer from the broker\n"
        "broker stopped answering (keepalive timeout)\n"
        "connection closed by the broker\n"
        "closed by the broker before CONNACK: a TLS port? (broker.tls)\n"
        "refused: unacceptable protocol version (CONNACK 1)\n"
        "refused: client id rejected (CONNACK 2)\n"
        "refused: server unavailable (CONNACK 3)\n"
        "refused: bad user name or password (CONNACK 4)\n"
        "refused: not authorised, check broker.user and password (CONNACK 5)\n"
        "TLS: unknown CA, certificate not signed by broker.ca\n"
        "TLS: name mismatch, certificate not for broker.server_name\n"
        "TLS: certificate expired (or the device clock is wrong)\n"
        "TLS: certificate not yet valid (or the device clock is wrong)\n"
        "TLS: certificate rejected (verify failed)\n"
        "TLS: handshake failed\n"
        "protocol error: malformed packet from the broker\n"
        "error\n"
        "TLS: closed by the broker in the handshake (it may want a client certificate, "
        "broker.client_cert, or another TLS version)")


def _bytes(s):
    """Text for the wire: str -> UTF-8, bytes-like as is."""
    if isinstance(s, str):
        return s.encode()
    return s


def _put_str(buf, off, s):
    n = len(s)
    if n > 65535:
        raise ValueError("too long")
    buf[off] = n >> 8
    buf[off + 1] = n & 0xFF
    buf[off + 2:off + 2 + n] = s
    return off + 2 + n


def encode_connect(client_id, keepalive=30, clean_session=True, user=None, password=None,
                   will=None):
    """CONNECT packet. will = (topic, payload, retain, qos) or None."""
    cid = _bytes(client_id)
    rl = 10 + 2 + len(cid)
    flags = 0x02 if clean_session else 0
    if will:
        w_topic = _bytes(will[0])
        w_msg = _bytes(will[1])
        w_qos = will[3]
        if w_qos not in (0, 1, 2) or not w_topic:
            raise ValueError("bad will")
        flags |= 0x04 | (w_qos << 3) | (0x20 if will[2] else 0)
        rl += 4 + len(w_topic) + len(w_msg)
    if user is not None:
        user = _bytes(user)
        flags |= 0x80
        rl += 2 + len(user)
    if password is not None:
        if user is None:
            raise ValueError("no user")  # a password needs a user name (3.1.1 section 3.1.2.9)
        password = _bytes(password)
        flags |= 0x40
        rl += 2 + len(password)
    if not 0 <= keepalive <= 65535:
        raise ValueError("keepalive")
    pkt, off = packet(_CONNECT, rl)
    off = _put_str(pkt, off, b"MQTT")
    pkt[off] = 4  # protocol level 3.1.1
    pkt[off + 1] = flags
    pkt[off + 2] = keepalive >> 8
    pkt[off + 3] = keepalive & 0xFF
    off = _put_str(pkt, off + 4, cid)
    if will:
        off = _put_str(pkt, off, w_topic)
        off = _put_str(pkt, off, w_msg)
    if user is not None:
        off = _put_str(pkt, off, user)
    if password is not None:
        off = _put_str(pkt, off, password)
    return pkt


def encode_subscribe(pid, subs):
    """SUBSCRIBE for [(topic filter, qos), ...] in one packet."""
    if not subs or not 0 < pid < 65536:
        raise ValueError("bad sub")
    rl = 2
    for t, q in subs:
        rl += 3 + len(_bytes(t))
    pkt, off = packet(_SUBSCRIBE, rl)
    pkt[off] = pid >> 8
    pkt[off + 1] = pid & 0xFF
    off += 2
    for t, q in subs:
        if q not in (0, 1, 2):
            raise ValueError("bad qos")
        off = _put_str(pkt, off, _bytes(t))
        pkt[off] = q
        off += 1
    return pkt


def decode_connack(buf, off, end):
    """CONNACK body -> (session_present, return_code)."""
    if end - off != 2 or buf[off] & 0xFE:
        raise ValueError("connack")
    return bool(buf[off] & 1), buf[off + 1]


async def connect(c, gen):
    """Open c's connection: socket (and TLS), CONNECT, CONNACK, SUBSCRIBE.

    Returns the stream once the broker accepted us, None if this attempt ended (its
    failure is told to c). The caller starts the writer and becomes the reader.
    """
    import asyncio
    import select
    import socket
    from errno import EINPROGRESS
    from time import ticks_ms
    cid, server, port, keepalive, user, password, ctx, host, will, clean, subs = c.conf[:11]
    try:
        # getaddrinfo blocks during a DNS lookup; use an IP address where that matters.
        ai = socket.getaddrinfo(server, port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(ai[0], ai[1], ai[2])
        c._io[3] = s
        try:
            # TCP_NODELAY (Linux and lwIP numbers): every write is a whole packet, so
            # Nagle could only hold an event back behind an unacknowledged `state`.
            s.setsockopt(6, 1, 1)
        except OSError:
            pass
        s.setblocking(False)
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.args[0] != EINPROGRESS:
                raise
        # Writable = connected or failed; the first write reports which.
        poller = select.poll()
        poller.register(s, select.POLLOUT)
        while not poller.poll(0):
            await asyncio.sleep_ms(20)
        poller = None
        if gen != c._gen:
            return None
        if ctx:
            s = ctx.wrap_socket(s, server_hostname=host or server, do_handshake_on_connect=False)
            s.setblocking(False)
            c._io[2] = s
        # MicroPython's asyncio Stream is both reader and writer around a socket.
        w = asyncio.StreamWriter(s)
        w.write(encode_connect(cid, keepalive, clean, user, password, will))
        await w.drain()
        # Exactly the CONNACK's four bytes: what follows it is the reader's.
        ack = bytearray(4)
        n = 0
        while n < 4:
            k = await w.readinto(memoryview(ack)[n:])
            if gen != c._gen:
                return None
            if k is None:
                continue  # TLS record not complete yet
            if not k:
                raise OSError(0)  # end of stream: the broker closed the connection
            n += k
        c._last_rx = ticks_ms()
        if ack[0] != CONNACK or ack[1] != 2:
            raise ValueError("no connack")
        rc = decode_connack(ack, 2, 4)[1]
        if rc:
            if rc > 5:
                raise ValueError("connack %d" % rc)
            c._end(gen, why(c, _CONNACK_RC + rc))
            return None
        c.last_error = None
        c.connects += 1
        c.connected = True      # publish() may queue now; the writer starts when this returns
        if subs:
            c._pid = c._pid % 65535 + 1
            w.write(encode_subscribe(c._pid, subs))
            await w.drain()
        c._last_tx = ticks_ms()
        return w
    except Exception as e:
        c._end(gen, why(c, e))


async def disconnect(c):
    """MQTTClient.disconnect(): what publish() accepted goes out, then DISCONNECT."""
    import asyncio
    from time import ticks_diff, ticks_ms
    c._bye = 1
    if c.connected:
        c._wake.set()
        t = ticks_ms()
        while c._bye == 1 and c.connected and ticks_diff(ticks_ms(), t) < _CLOSE_WAIT_MS:
            await asyncio.sleep_ms(10)
    c._end(c._gen, None)


def why(c, e):
    """The words for e (an exception, or a line of _WHY) on client c, for last_error."""
    return words(e, c.connected, c.conf[6] is not None)


def words(e, connected=False, tls=False):
    """The words for e (an exception, or a line of _WHY): connected - after a CONNACK;
    tls - over TLS. Also firmware/selftest.py's, step by step."""
    raw = None
    if isinstance(e, int):
        i = e
    else:
        a = e.args
        x = a[0] if a else None
        if isinstance(x, str) and x[:1] == "\n":
            # mbedTLS names the failed certificate checks only as text, one line each
            # (starting with a newline); these words pick the line of _WHY, first wins.
            i = _TLS_VERIFY
            for k, w in enumerate(("trusted CA", "(CN)", "expired", "future")):
                if w in x:
                    i = _TLS_CA + k
                    break
            if i == _TLS_VERIFY:
                raw = x.strip().split("\n")[0]
        elif isinstance(e, ValueError):
            i, raw = _PROTOCOL, x
        elif not isinstance(x, int):
            i, raw = _OTHER, repr(e)
        elif x < 0:                                  # an mbedTLS error code
            # -0x7780: the broker ended the handshake with an alert (no client certificate,
            # no shared TLS version) - said as for a handshake it cut
            i = _TLS_VERIFY if x == -0x2700 else _TLS_CUT if x == -0x7780 else _TLS_HANDSHAKE
            raw = "-0x%x %s" % (-x, a[1]) if len(a) > 1 else "-0x%x" % -x
        else:
            if x in (0, 32, 103, 104):                # closed (reset) by the other end
                i = _CLOSED if connected else _TLS_CUT if tls else _EARLY
            else:
                i = (_REFUSED if x == 111 else _TIMEOUT if x == 110
                     else _UNREACHABLE if x in (100, 101, 113) else _OTHER)
            raw = "errno %d" % x if x else None
    a = 0
    for _ in range(i):
        a = _WHY.find("\n", a) + 1
    b = _WHY.find("\n", a)
    w = _WHY[a:b] if b > 0 else _WHY[a:]
    return w if raw is None else "%s (%s)" % (w, str(raw)[:60])


def tls(b, root):
    """(ssl_context, server_hostname, None) for the broker config b with tls on, or (None,
    None, words) when its TLS files cannot be loaded: the publisher's call, so that it holds
    none of these key names or words."""
    try:
        return tls_context(b, root), b.get("server_name") or b["host"], None
    except Exception as e:  # missing, unreadable or PEM files: never the terminal's end
        return None, None, files_words(b, e)


def files_words(b, e):
    """Why the TLS files (the broker's CA, the device's own certificate and key) could not be
    loaded (e), for status, device.boot, a refused config.set and the self-test."""
    what = "CA certificate " + (b.get("ca") or "ca.der")
    if b.get("client_cert"):
        what += " or client certificate %s / key %s" % (b["client_cert"], b.get("client_key"))
    if isinstance(e, OSError) and e.args and e.args[0] == 2:
        return "TLS: %s missing on the device" % what
    if isinstance(e, MemoryError):
        return "TLS: no memory to load %s now (tried again every 5 s)" % what
    return "TLS: %s unreadable (DER expected): %r" % (what, e)


def tls_context(b, root):
    """TLS with the CA certificate (DER) kept on flash and the broker's name checked
    (broker.server_name, default broker.host); None for plain TCP. b: the broker config."""
    if not b.get("tls"):
        return None
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ca = b.get("ca") or "ca.der"
    with open(_on_flash(root, ca), "rb") as f:
        ctx.load_verify_locations(cadata=f.read())
    if b.get("client_cert"):    # mutual TLS: the device's own certificate and key (DER)
        with open(_on_flash(root, b["client_cert"]), "rb") as f:
            cert = f.read()
        with open(_on_flash(root, b["client_key"]), "rb") as f:
            ctx.load_cert_chain(cert, f.read())
    return ctx


def _on_flash(root, name):
    return name if name.startswith("/") else root + "/" + name
