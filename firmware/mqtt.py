"""MQTT 3.1.1 client for asyncio: pipelined QoS 1 publish, persistent session, will, TLS.

The top half is a pure codec (no socket, no asyncio) that also runs under CPython, so it
can be unit tested anywhere. The bottom half is MQTTClient, which runs under MicroPython's
asyncio (unix port and ESP32).

Why not umqtt.simple: it blocks the event loop while it waits, and it waits for each
PUBACK in turn. On loopback that costs little (its ~20 msg/s there is Nagle's algorithm
meeting the broker's delayed ACK, not the waiting); on a network every message costs a
round trip. Here up to `window` QoS 1 messages are on the wire at once, acknowledged in
order, each packet one write, with TCP_NODELAY (bench/bench_mqtt.py).

Failure behaviour: any socket error, malformed packet or silent broker (nothing received
for 1.5 x keepalive) closes the connection; run() reconnects with capped exponential
backoff and jitter. last_error says why, in words for the status display: link down,
no route, refused, timeout, closed, CONNACK 1-5, which TLS check failed, malformed
packet (see _WHY). It holds the latest failure and is cleared by an accepted CONNACK. Unacknowledged QoS 1 messages stay in memory and are re-sent first,
in their original order, with DUP=1 and the same packet id. QoS 0 messages not yet
written when the connection drops are discarded.

RAM: one receive buffer (rx_size, 1 KiB), one bytearray per queued message (at most
`window` QoS 1 + `window` QoS 0), fixed rings otherwise; nothing grows with uptime.

    c = MQTTClient("dev1", "192.168.1.10", will=("qterm/v1/h/dev1/status", b"offline", True, 1),
                   subs=[("qterm/v1/h/dev1/cmd", 1)], on_message=handle, on_ack=outbox.done)
    asyncio.create_task(c.run())
    pid = await c.publish("qterm/v1/h/dev1/evt/ticket.issued", body, qos=1)  # OSError if offline

TLS: pass an ssl.SSLContext with the CA loaded (this MicroPython build parses DER, not
PEM) and server_hostname for the name check.
"""
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# --- codec -----------------------------------------------------------------------------

CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)  # reserved flags 0010 are part of the fixed header
SUBACK = const(0x90)
UNSUBACK = const(0xB0)
PINGREQ = const(0xC0)
PINGRESP = const(0xD0)
DISCONNECT = const(0xE0)

_DUP = const(0x08)
_MAX_REMAINING = const(268435455)  # four varint bytes

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


def _bytes(s):
    """Text for the wire: str -> UTF-8, bytes-like as is."""
    if isinstance(s, str):
        return s.encode()
    return s


def remaining_length_size(n):
    """Bytes the remaining-length varint of n takes."""
    if n < 0 or n > _MAX_REMAINING:
        raise ValueError("too large")
    if n < 128:
        return 1
    if n < 16384:
        return 2
    if n < 2097152:
        return 3
    return 4


def encode_remaining_length(buf, off, n):
    """Write the varint for n into buf at off; return the offset after it."""
    remaining_length_size(n)  # range check
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            buf[off] = b | 0x80
            off += 1
        else:
            buf[off] = b
            return off + 1


def decode_remaining_length(buf, off, end):
    """Read a varint from buf[off:end].

    Returns (value, offset after it), or None if more bytes are needed.
    Raises ValueError for a varint longer than four bytes.
    """
    value = 0
    shift = 0
    for i in range(4):
        if off + i >= end:
            return None
        b = buf[off + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, off + i + 1
        shift += 7
    raise ValueError("varint")


def _put_str(buf, off, s):
    n = len(s)
    if n > 65535:
        raise ValueError("too long")
    buf[off] = n >> 8
    buf[off + 1] = n & 0xFF
    buf[off + 2:off + 2 + n] = s
    return off + 2 + n


def _new_packet(first, rl):
    """A bytearray sized for the whole packet with the fixed header filled in."""
    pkt = bytearray(1 + remaining_length_size(rl) + rl)
    pkt[0] = first
    return pkt, encode_remaining_length(pkt, 1, rl)


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
    pkt, off = _new_packet(CONNECT, rl)
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


def encode_publish(topic, payload, qos=0, retain=False, pid=0, dup=False):
    """PUBLISH packet in one bytearray (kept as is for a later re-send)."""
    topic = _bytes(topic)
    payload = _bytes(payload)
    if qos not in (0, 1, 2) or not topic or b"+" in topic or b"#" in topic or b"\0" in topic:
        # A broker disconnects on these; a re-send would loop forever.
        raise ValueError("bad topic")
    if qos and not 0 < pid < 65536:
        raise ValueError("bad pid")
    rl = 2 + len(topic) + (2 if qos else 0) + len(payload)
    pkt, off = _new_packet(PUBLISH | (qos << 1) | (1 if retain else 0) | (_DUP if dup else 0), rl)
    off = _put_str(pkt, off, topic)
    if qos:
        pkt[off] = pid >> 8
        pkt[off + 1] = pid & 0xFF
        off += 2
    pkt[off:] = payload
    return pkt


def encode_subscribe(pid, subs):
    """SUBSCRIBE for [(topic filter, qos), ...] in one packet."""
    if not subs or not 0 < pid < 65536:
        raise ValueError("bad sub")
    rl = 2
    for t, q in subs:
        rl += 3 + len(_bytes(t))
    pkt, off = _new_packet(SUBSCRIBE, rl)
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


def encode_puback(pid, buf=None):
    """PUBACK; pass a 4-byte buf to reuse it."""
    if buf is None:
        buf = bytearray(4)
    buf[0] = PUBACK
    buf[1] = 2
    buf[2] = pid >> 8
    buf[3] = pid & 0xFF
    return buf


def parse_header(buf, off, end):
    """Fixed header at buf[off:end] -> (first byte, header length, remaining length).

    None if the header is not complete yet. Raises ValueError when the packet is
    malformed or not one a broker may send to a client (reserved flags and lengths
    of 3.1.1).
    """
    if end - off < 2:
        return None
    r = decode_remaining_length(buf, off + 1, end)
    if r is None:
        return None
    first = buf[off]
    rl = r[0]
    if first & 0xF0 == PUBLISH:
        if (first >> 1) & 3 == 3:
            raise ValueError("qos 3")
    elif first == CONNACK or first == PUBACK or first == UNSUBACK:
        if rl != 2:
            raise ValueError("ack length")
    elif first == SUBACK:
        if rl < 3:
            raise ValueError("suback len")
    elif first == PINGRESP:
        if rl:
            raise ValueError("pingresp")
    else:
        raise ValueError("0x%02x" % first)
    return first, r[1] - off, rl


def decode_connack(buf, off, end):
    """CONNACK body -> (session_present, return_code)."""
    if end - off != 2 or buf[off] & 0xFE:
        raise ValueError("connack")
    return bool(buf[off] & 1), buf[off + 1]


def decode_ack(buf, off, end):
    """PUBACK / UNSUBACK body -> packet id."""
    if end - off != 2:
        raise ValueError("bad ack")
    pid = (buf[off] << 8) | buf[off + 1]
    if not pid:
        raise ValueError("pid 0")
    return pid


def decode_suback(buf, off, end):
    """SUBACK body -> (packet id, offset of the return codes)."""
    if end - off < 3:
        raise ValueError("bad suback")
    for i in range(off + 2, end):
        c = buf[i]
        if c > 2 and c != 0x80:
            raise ValueError("suback rc")
    return (buf[off] << 8) | buf[off + 1], off + 2


def decode_publish(first, buf, off, end):
    """PUBLISH body -> (topic str, qos, packet id or 0, payload offset)."""
    qos = (first >> 1) & 3
    if end - off < 2:
        raise ValueError("short pub")
    n = (buf[off] << 8) | buf[off + 1]
    t_end = off + 2 + n
    if not n or t_end + (2 if qos else 0) > end:
        raise ValueError("topic len")
    try:
        topic = str(memoryview(buf)[off + 2:t_end], "utf-8")
    except UnicodeError:
        raise ValueError("topic utf8")
    pid = 0
    if qos:
        pid = (buf[t_end] << 8) | buf[t_end + 1]
        if not pid:
            raise ValueError("pid 0")
        t_end += 2
    return topic, qos, pid, t_end


class RxBuffer:
    """Reassembles inbound packets from stream chunks in one fixed buffer.

    Read into space(), report the count with got(n), then call next() until it
    returns None. A packet larger than the buffer is returned once, truncated
    (complete=False), and its remaining bytes are then discarded as they arrive.
    """

    def __init__(self, size=1024):
        self.buf = bytearray(size)
        self.mv = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.skip = 0

    def space(self):
        """Where the next read goes (never empty)."""
        if self.start:
            n = self.end - self.start
            self.buf[0:n] = self.mv[self.start:self.end]
            self.start = 0
            self.end = n
        if not self.end:
            return self.mv
        return self.mv[self.end:]

    def got(self, n):
        self.end += n
        if self.skip:
            d = min(self.skip, self.end - self.start)
            self.skip -= d
            self.start += d
        if self.start == self.end:
            self.start = self.end = 0

    def next(self):
        """(first byte, body start, body end, complete) of the next packet, or None.

        The offsets stay valid until the next space() call.
        """
        if self.skip:
            return None
        h = parse_header(self.buf, self.start, self.end)
        if h is None:
            return None
        first, hl, rl = h
        off = self.start
        total = hl + rl
        if off + total <= self.end:
            self.start = off + total
            if self.start == self.end:
                self.start = self.end = 0  # the bytes stay put until the next read
            return first, off + hl, off + total, True
        have = self.end - off
        if total <= len(self.buf) or have < len(self.buf):
            return None  # wait for more (a too-large packet: until the buffer is full)
        self.skip = total - have
        self.start = self.end = 0
        return first, off + hl, off + have, False


# --- client ----------------------------------------------------------------------------

try:
    import asyncio
    import select
    import socket
    from errno import EINPROGRESS
    from os import urandom
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython: only the codec above is used
    ticks_ms = ticks_diff = None

_CONNECT_TIMEOUT_MS = const(10000)
_ACK_RING = const(8)      # inbound QoS 1 PUBACKs waiting for the writer
_CLOSE_WAIT_MS = const(2000)

# Why the last attempt or connection failed, in words a technician can act on: line i of
# one string (a single object on the heap; one string per reason would cost ~40 B each).
# last_error is "<line> (<raw code>)" where there is a raw code (errno, mbedTLS code, text).
_LINK = const(0)
_UNREACHABLE = const(1)
_REFUSED = const(2)
_TIMEOUT = const(3)
_SILENT = const(4)
_CLOSED = const(5)
_EARLY = const(6)
_CONNACK = const(6)       # + return code 1..5
_TLS_CA = const(12)       # 12..15: the certificate checks _fail() recognises
_TLS_VERIFY = const(16)
_TLS_HANDSHAKE = const(17)
_PROTOCOL = const(18)
_OTHER = const(19)
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
        "error")


def _text(i, raw=None):
    """Line i of _WHY, with the raw code in parentheses."""
    a = 0
    for _ in range(i):
        a = _WHY.find("\n", a) + 1
    b = _WHY.find("\n", a)
    w = _WHY[a:b] if b > 0 else _WHY[a:]
    return w if raw is None else "%s (%s)" % (w, raw)


class MQTTClient:
    """One broker connection, kept up by run(); publish() is safe from any task.

    Only the client's own tasks ever wait on the socket (session/reader and writer),
    so a drop can cancel them before closing it: closing a socket another task is
    polling leaves that task hanging on the unix port. The socket is created here,
    not by asyncio.open_connection, so that a connect cut short by a timeout or
    drop() is still closed (the unix port does not close lost sockets on GC).
    """

    def __init__(self, client_id, server, port=1883, keepalive=30, user=None, password=None,
                 ssl_context=None, server_hostname=None, will=None, clean_session=False,
                 window=16, subs=(), on_message=None, on_ack=None, on_state=None,
                 backoff_min_ms=500, backoff_max_ms=30000, rx_size=1024):
        self.client_id = client_id
        self.server = server
        self.port = port
        self.keepalive = keepalive
        self.user = user
        self.password = password
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.will = will
        self.clean_session = clean_session
        self.window = window
        self.subs = list(subs)
        self.on_message = on_message
        self.on_ack = on_ack
        self.on_state = on_state
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.enabled = True       # False: stay offline (network link down), no reconnect
        # Words for why the latest attempt or connection failed (status "mqtt_error");
        # None once a CONNACK accepted us: connected() and no error is the healthy state.
        self.last_error = None
        self.session_present = False
        self.granted = b""        # SUBACK return codes of the last subscribe
        self.connects = 0
        self._reached = False

        self._rx = RxBuffer(rx_size)
        self._ackbuf = bytearray(4)
        self._acks = [0] * _ACK_RING   # ring of inbound packet ids to acknowledge
        self._ack_head = 0
        self._ack_n = 0
        self._fl_pid = []   # QoS 1 in flight, oldest first; bounded by window
        self._fl_pkt = []
        self._sent = 0      # how many of the in-flight packets went out on this connection
        self._q0 = []       # QoS 0 packets not yet written; bounded by window
        self._pid = 0
        self._sub_pid = 0
        self._ping = False
        self._bye = 0       # 1: DISCONNECT requested, 2: written
        self._up = False
        self._running = False
        self._gen = 0       # bumped on every teardown so stale tasks notice
        self._sock = None
        self._tls = None
        self._tasks = [None, None, None]  # session/reader, writer, watchdog
        self._t0 = 0
        self._last_rx = 0
        self._last_tx = 0
        self._last_ping = 0
        self._kick = asyncio.Event()   # writer has work
        self._room = asyncio.Event()   # window space freed, or connection lost
        self._lost = asyncio.Event()   # connection ended
        self._acked = asyncio.Event()  # ack ring has space

    # --- public ---------------------------------------------------------------------------

    def connected(self):
        return self._up

    def inflight(self):
        return len(self._fl_pid)

    async def publish(self, topic, payload, qos=0, retain=False):
        """Queue a message; returns its packet id (QoS 1) or 0 (QoS 0).

        QoS 1 waits while `window` messages are unacknowledged. Raises OSError if the
        connection is down (before or while waiting); the message is then not queued.
        """
        if qos not in (0, 1):
            raise ValueError("qos 0 or 1")
        q = self._fl_pid if qos else self._q0
        while True:
            if not self._up:
                raise OSError(107)  # ENOTCONN
            if len(q) < self.window:
                break
            self._room.clear()
            await self._room.wait()
        if not qos:
            self._q0.append(encode_publish(topic, payload, 0, retain))
            self._kick.set()
            return 0
        pid = self._next_pid()
        pkt = encode_publish(topic, payload, 1, retain, pid)
        self._fl_pid.append(pid)
        self._fl_pkt.append(pkt)
        self._kick.set()
        return pid

    async def disconnect(self):
        """Flush queued packets, send DISCONNECT (the broker discards the will), stop run().

        QoS 1 messages still unacknowledged stay in inflight().
        """
        self._running = False
        if self._up:
            self._bye = 1
            self._kick.set()
            t = ticks_ms()
            while self._bye == 1 and self._up and ticks_diff(ticks_ms(), t) < _CLOSE_WAIT_MS:
                await asyncio.sleep_ms(10)
        self._teardown()

    def drop(self):
        """Close abruptly, no DISCONNECT, so the broker publishes the will."""
        self._teardown()
        if not self.enabled:
            self.last_error = _text(_LINK)

    async def run(self):
        """Connect and stay connected until disconnect(); never raises on network errors."""
        self._running = True
        delay = self.backoff_min_ms
        while self._running:
            if not self.enabled:
                if self.last_error is None:
                    self.last_error = _text(_LINK)  # down since boot
                await asyncio.sleep_ms(100)
                continue
            self._lost.clear()
            self._bye = 0
            self._reached = False
            self._t0 = self._last_rx = self._last_tx = self._last_ping = ticks_ms()
            tasks = self._tasks
            tasks[0] = asyncio.create_task(self._session(self._gen))
            tasks[2] = asyncio.create_task(self._watchdog(self._gen))
            await self._lost.wait()
            self._teardown()
            if not self._running:
                break
            if self._reached:
                delay = self.backoff_min_ms
            # Jitter spreads a hall's devices so they do not all return at once.
            j = int.from_bytes(urandom(2), "big") * delay >> 17
            t = ticks_ms()
            while self._running and ticks_diff(ticks_ms(), t) < delay // 2 + j:
                await asyncio.sleep_ms(50)
            delay = min(delay * 2, self.backoff_max_ms)
        self._running = False

    # --- connection tasks -----------------------------------------------------------------

    def _fail(self, gen, e):
        """End this connection; e is an exception, or a line of _WHY."""
        if gen != self._gen or self._lost.is_set():
            return
        self._lost.set()
        if self._bye:
            return  # disconnect() asked for the close: no failure
        raw = None
        if isinstance(e, int):
            i = e
        else:
            a = e.args
            c = a[0] if a else None
            if isinstance(c, str) and c[:1] == "\n":
                # mbedTLS names the failed certificate checks only as text, one line each
                # (starting with a newline); these words pick the line of _WHY, first wins.
                i = _TLS_VERIFY
                for k, w in enumerate(("trusted CA", "(CN)", "expired", "future")):
                    if w in c:
                        i = _TLS_CA + k
                        break
                if i == _TLS_VERIFY:
                    raw = c.strip().split("\n")[0]
            elif isinstance(e, ValueError):
                i, raw = _PROTOCOL, c
            elif not isinstance(c, int):
                i, raw = _OTHER, repr(e)
            elif c < 0:                                  # an mbedTLS error code
                i = _TLS_VERIFY if c == -0x2700 else _TLS_HANDSHAKE
                raw = "-0x%x %s" % (-c, a[1]) if len(a) > 1 else "-0x%x" % -c
            else:
                if c in (0, 32, 103, 104):                # closed (reset) by the other end
                    i = (_CLOSED if self._reached else _EARLY if self.ssl_context is None
                         else _TLS_HANDSHAKE)
                else:
                    i = (_REFUSED if c == 111 else _TIMEOUT if c == 110
                         else _UNREACHABLE if c in (100, 101, 113) else _OTHER)
                raw = "errno %d" % c if c else None
        try:
            self.last_error = _text(i, raw if raw is None else str(raw)[:60])
        except MemoryError:
            self.last_error = None

    async def _session(self, gen):
        """Open, CONNECT, wait for CONNACK, subscribe, then be the reader."""
        try:
            # getaddrinfo blocks during a DNS lookup; use an IP address where that matters.
            ai = socket.getaddrinfo(self.server, self.port, 0, socket.SOCK_STREAM)[0]
            s = socket.socket(ai[0], ai[1], ai[2])
            self._sock = s
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
            if gen != self._gen:
                return
            ctx = self.ssl_context
            if ctx:
                s = ctx.wrap_socket(s, server_hostname=self.server_hostname or self.server,
                                    do_handshake_on_connect=False)
                s.setblocking(False)
                # Closing the TLS object does not always close the socket under it
                # (not after a failed handshake), so teardown closes both.
                self._tls = s
            # MicroPython's asyncio Stream is both reader and writer around a socket.
            r = w = asyncio.StreamWriter(s)
            self._rx.start = self._rx.end = self._rx.skip = 0
            w.write(encode_connect(self.client_id, self.keepalive, self.clean_session,
                                   self.user, self.password, self.will))
            await w.drain()
            p = await self._read_packet(r, gen)
            if p is None:
                return
            if p[0] != CONNACK:
                raise ValueError("no connack")
            sp, rc = decode_connack(self._rx.buf, p[1], p[2])
            if rc:
                if rc > 5:
                    raise ValueError("connack %d" % rc)
                return self._fail(gen, _CONNACK + rc)
            self.session_present = sp
            self.last_error = None
            self.connects += 1
            self._reached = True
            if self.subs:
                self._sub_pid = self._next_pid()
                w.write(encode_subscribe(self._sub_pid, self.subs))
                await w.drain()
            self._last_tx = ticks_ms()
            self._tasks[1] = asyncio.create_task(self._writer(w, gen))
            self._up = True
            self._room.set()
            self._call(self.on_state, True)
            while gen == self._gen:
                p = await self._read_packet(r, gen)
                if p is None:
                    return
                await self._handle(p, gen)
        except Exception as e:
            self._fail(gen, e)

    async def _read_packet(self, r, gen):
        rx = self._rx
        while True:
            p = rx.next()
            if p is not None:
                return p
            n = await r.readinto(rx.space())
            if gen != self._gen:
                return None
            if n is None:
                continue  # TLS record not complete yet
            if not n:
                raise OSError(0)  # end of stream: the broker closed the connection
            rx.got(n)
            self._last_rx = ticks_ms()

    async def _handle(self, p, gen):
        first, off, end, complete = p
        buf = self._rx.buf
        kind = first & 0xF0
        if kind == PUBLISH:
            topic, qos, pid, poff = decode_publish(first, buf, off, end)
            if qos == 2:
                raise ValueError("qos 2")  # never subscribed with qos 2
            # A message larger than the receive buffer is dropped, but its topic is passed
            # with payload None so the application can answer the sender.
            self._call(self.on_message, topic, bytes(self._rx.mv[poff:end]) if complete else None)
            if qos:
                while self._ack_n == _ACK_RING:
                    self._acked.clear()
                    await self._acked.wait()
                    if gen != self._gen:
                        return
                self._acks[(self._ack_head + self._ack_n) % _ACK_RING] = pid
                self._ack_n += 1
                self._kick.set()
        elif kind == PUBACK:
            pid = decode_ack(buf, off, end)
            pids = self._fl_pid
            for i in range(min(self._sent, len(pids))):
                if pids[i] == pid:
                    del pids[i]
                    del self._fl_pkt[i]
                    self._sent -= 1
                    self._room.set()
                    self._call(self.on_ack, pid)
                    break
            # Not found: a late ack of a re-sent message. Ignore.
        elif kind == SUBACK:
            pid, coff = decode_suback(buf, off, end)
            if pid == self._sub_pid:
                self.granted = bytes(buf[coff:end])
        elif kind == CONNACK:
            raise ValueError("connack x2")
        # PINGRESP and UNSUBACK only prove the broker is alive (_last_rx).

    async def _writer(self, w, gen):
        """The only task that writes after CONNECT: one packet, drained, at a time.

        Draining before the next write also keeps TLS correct: mbedtls wants a
        retried write to repeat the same bytes.
        """
        try:
            while gen == self._gen:
                pkt = self._next_out()
                if pkt is None:
                    self._kick.clear()
                    await self._kick.wait()
                    continue
                w.write(pkt)
                await w.drain()
                self._last_tx = ticks_ms()
                if self._bye == 1 and pkt is DISCONNECT_PACKET:
                    self._bye = 2
                    return
        except Exception as e:
            self._fail(gen, e)

    def _next_out(self):
        if self._ack_n:
            pid = self._acks[self._ack_head]
            self._ack_head = (self._ack_head + 1) % _ACK_RING
            self._ack_n -= 1
            self._acked.set()
            return encode_puback(pid, self._ackbuf)
        if self._ping:
            self._ping = False
            return PINGREQ_PACKET
        if self._sent < len(self._fl_pkt):
            self._sent += 1
            return self._fl_pkt[self._sent - 1]
        if self._q0:
            self._room.set()
            return self._q0.pop(0)
        if self._bye == 1:
            return DISCONNECT_PACKET  # last: what publish() accepted goes out first
        return None

    async def _watchdog(self, gen):
        """Connect timeout, PINGREQ when idle, and drop when the broker goes silent."""
        ka = self.keepalive * 1000
        tick = min(ka // 4, 1000) if ka else 1000
        try:
            while gen == self._gen:
                await asyncio.sleep_ms(tick)
                now = ticks_ms()
                if not self._up:
                    if ticks_diff(now, self._t0) >= _CONNECT_TIMEOUT_MS:
                        return self._fail(gen, _TIMEOUT)
                    continue
                if not ka:
                    continue
                rx_idle = ticks_diff(now, self._last_rx)
                if rx_idle >= ka * 3 // 2:
                    return self._fail(gen, _SILENT)
                if ((ticks_diff(now, self._last_tx) >= ka or rx_idle >= ka)
                        and ticks_diff(now, self._last_ping) >= ka // 2):
                    self._last_ping = now
                    self._ping = True
                    self._kick.set()
        except Exception as e:
            self._fail(gen, e)

    # --- helpers --------------------------------------------------------------------------

    def _teardown(self):
        """Cancel our tasks, close the socket, keep unacked messages for the re-send."""
        self._gen += 1
        try:
            cur = asyncio.current_task()
        except RuntimeError:
            cur = None
        tasks = self._tasks
        for i in range(3):
            t = tasks[i]
            tasks[i] = None
            if t is not None and t is not cur and not t.done():
                t.cancel()
        for s in (self._tls, self._sock):
            if s is not None:
                try:
                    s.close()
                except Exception:
                    pass
        self._sock = self._tls = None
        for i in range(self._sent):
            self._fl_pkt[i][0] |= _DUP  # a re-delivery
        self._sent = 0
        del self._q0[:]
        self._ack_n = 0
        self._ping = False
        was = self._up
        self._up = False
        self._lost.set()
        self._room.set()
        self._acked.set()
        if was:
            self._call(self.on_state, False)

    def _next_pid(self):
        pid = self._pid
        while True:
            pid = pid % 65535 + 1
            if pid != self._sub_pid and pid not in self._fl_pid:
                self._pid = pid
                return pid

    def _call(self, fn, *args):
        # A failing handler must not take the connection down with it.
        if fn is None:
            return
        try:
            fn(*args)
        except Exception as e:
            try:
                import sys
                sys.print_exception(e)
            except AttributeError:
                pass
