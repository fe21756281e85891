"""MQTT 3.1.1 client for asyncio: pipelined QoS 1 publish, persistent session, will, TLS.

The codec functions at the top (no socket, no asyncio) also run under CPython, so they
can be unit tested anywhere. MQTTClient runs under MicroPython's asyncio (unix port and
ESP32). What only a connection's start or end needs (CONNECT, CONNACK, SUBSCRIBE, the
words for a failure, DISCONNECT) lives in firmware/mqtt_link.py, loaded by link() for
that moment and released after: reconnects are seconds apart at the fastest.

Why not umqtt.simple: it blocks the event loop while it waits, and it waits for each
PUBACK in turn. On loopback that costs little (its ~20 msg/s there is Nagle's algorithm
meeting the broker's delayed ACK, not the waiting); on a network every message costs a
round trip. Here up to `window` QoS 1 messages are on the wire at once, acknowledged in
order, each packet one write, with TCP_NODELAY (bench/bench_mqtt.py).

Failure behaviour: any socket error, malformed packet or silent broker (nothing received
for 1.5 x keepalive) closes the connection; run() reconnects with capped exponential
backoff and jitter. last_error says why, in words for the status display (mqtt_link.why):
link down, no route, refused, timeout, closed, CONNACK 1-5, which TLS check failed,
malformed packet. It holds the latest failure and is cleared by an accepted CONNACK.
Unacknowledged QoS 1 messages stay in memory and are re-sent first, in their original
order, with DUP=1 and the same packet id. QoS 0 messages not yet written when the
connection drops are discarded.

RAM: a 128-byte receive buffer for the control packets (and the head of a PUBLISH) while
connected; an inbound PUBLISH that does not fit is read into a bytearray of its own, freed
after it. One larger than rx_size, or one that finds no heap for it, is still read to its
end (discarded in pieces), acknowledged, and handed on as on_message(topic, None) - too large
- or on_message(topic, False) - within rx_size, but no heap for it just now. A payload is
bytes, or a memoryview of the packet's own buffer when it had one (no second copy of a
command of 2 KB: json.loads reads either). One
bytearray per queued message (at most `window` QoS 1 + `window` QoS 0), at most 8
inbound acknowledgements waiting; nothing grows with uptime. Three tasks while connected:
run() (which is also the watchdog), the reader and the writer; one Event for all waiting.

    c = MQTTClient("dev1", "192.168.1.10", will=("qterm/v1/h/dev1/status", b"offline", True, 1),
                   subs=[("qterm/v1/h/dev1/cmd", 1)], on_message=handle, on_ack=outbox.done)
    asyncio.create_task(c.run())
    pid = await c.publish("qterm/v1/h/dev1/evt/ticket.issued", body, qos=1)  # OSError if offline

TLS: pass an ssl.SSLContext with the CA loaded (this MicroPython build parses DER, not
PEM) and server_hostname for the name check.
"""
import sys

if sys.implementation.name != "micropython":
    # CPython (codec tests): copy() of an int is the int itself. MicroPython's compiler folds
    # const() with no import, so the device holds no `const` (nor a def of ours, unused).
    from copy import copy as const

# Packet types a broker sends (the fixed header's first byte, flags 0).
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBACK = const(0x90)
_UNSUBACK = const(0xB0)
_PINGRESP = const(0xD0)
_DUP = const(0x08)
_RX = const(128)          # the fixed receive buffer: see RAM above


def packet(first, rl):
    """A bytearray for a whole packet with remaining length rl, its fixed header filled in:
    (packet, offset after the header)."""
    if not 0 <= rl <= 268435455:  # four varint bytes
        raise ValueError("too large")
    pkt = bytearray(2 + (rl > 127) + (rl > 16383) + (rl > 2097151) + rl)
    pkt[0] = first
    off = 1
    while rl > 127:
        pkt[off] = rl & 0x7F | 0x80
        rl >>= 7
        off += 1
    pkt[off] = rl
    return pkt, off + 1


def encode_publish(topic, payload, qos=0, retain=False, pid=0, dup=False):
    """PUBLISH packet in one bytearray (kept as is for a later re-send)."""
    if isinstance(topic, str):
        topic = topic.encode()
    if isinstance(payload, str):
        try:    # MicroPython: its UTF-8 bytes where they are (no copy the size of a status)
            payload = memoryview(payload)
        except TypeError:   # CPython
            payload = payload.encode()
    n = len(topic)
    if not 0 <= qos <= 2 or not 0 < n < 65536 or b"+" in topic or b"#" in topic or b"\0" in topic:
        # A broker disconnects on these; a re-send would loop forever.
        raise ValueError("bad topic")
    if qos and not 0 < pid < 65536:
        raise ValueError("bad pid")
    pkt, off = packet(_PUBLISH | qos << 1 | (1 if retain else 0) | (_DUP if dup else 0),
                      2 + n + (2 if qos else 0) + len(payload))
    pkt[off] = n >> 8
    pkt[off + 1] = n & 0xFF
    off += 2 + n
    pkt[off - n:off] = topic
    if qos:
        pkt[off] = pid >> 8
        pkt[off + 1] = pid & 0xFF
        off += 2
    pkt[off:] = payload
    return pkt


def parse_header(buf, off, end):
    """Fixed header at buf[off:end] -> (first byte, header length, remaining length).

    None if the header is not complete yet. Raises ValueError when the packet is
    malformed or not one a broker may send to a client (reserved flags and lengths
    of 3.1.1).
    """
    rl = 0
    i = off + 1
    while True:
        if i >= end:
            return None
        b = buf[i]
        rl |= (b & 0x7F) << 7 * (i - off - 1)
        i += 1
        if b < 128:
            break
        if i - off > 4:
            raise ValueError("varint")  # longer than four bytes
    first = buf[off]
    if first & 0xF0 == _PUBLISH:
        if first & 6 == 6:
            raise ValueError("qos 3")
    elif first == _CONNACK or first == _PUBACK or first == _UNSUBACK:
        if rl != 2:
            raise ValueError("ack length")
    elif first == _SUBACK:
        if rl < 3:
            raise ValueError("suback len")
    elif first == _PINGRESP:
        if rl:
            raise ValueError("pingresp")
    else:
        raise ValueError("0x%02x" % first)
    return first, i - off, rl


def decode_publish(first, buf, off, end):
    """PUBLISH body buf[off:end] -> (topic str, qos, packet id or 0, payload offset)."""
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


def link(what, *args):
    """firmware.mqtt_link.<what>(*args), its code loaded for this call only (a coroutine it
    returns keeps what it runs alive until it ends)."""
    try:
        from firmware import mqtt_link
        return getattr(mqtt_link, what)(*args)
    finally:
        # By hand rather than firmware.release(): the MQTT tests and bench load this module
        # in a package of its own.
        mqtt_link = None
        sys.modules.pop(__name__ + "_link", None)
        try:
            delattr(sys.modules["firmware"], "mqtt_link")
        except (KeyError, AttributeError):
            pass


# --- client ----------------------------------------------------------------------------

import asyncio
import time     # not `from time import ...`: 12 globals fit one table size less (~96 B)
from os import urandom

_CONNECT_TIMEOUT_MS = const(10000)
_ACKS = const(8)          # inbound QoS 1 acknowledgements waiting for the writer
# MQTTClient.conf: configuration in one tuple (one slot on the instance, not eighteen).
# The first eleven are what mqtt_link.connect() reads, in this order.
_KEEPALIVE = const(3)
_WINDOW = const(11)
_BACKOFF_MIN = const(12)
_BACKOFF_MAX = const(13)
_RX_MAX = const(14)
_ON_MESSAGE = const(15)
_ON_ACK = const(16)
_ON_STATE = const(17)
# The lines of mqtt_link's table of failure words that the resident code names.
_LINK = const(0)
_TIMEOUT = const(3)
_SILENT = const(4)


class MQTTClient:
    """One broker connection, kept up by run(); publish() is safe from any task.

    Only the client's own tasks ever wait on the socket (session/reader and writer),
    so a drop can cancel them before closing it: closing a socket another task is
    polling leaves that task hanging on the unix port. The socket is created here,
    not by asyncio.open_connection, so that a connect cut short by a timeout or
    drop() is still closed (the unix port does not close lost sockets on GC).
    rx_size: the largest inbound packet received whole. subs: (topic filter, qos) pairs,
    kept as given (not copied).
    """

    def __init__(self, client_id, server, port=1883, keepalive=30, user=None, password=None,
                 ssl_context=None, server_hostname=None, will=None, clean_session=False,
                 window=16, subs=(), on_message=None, on_ack=None, on_state=None,
                 backoff_min_ms=500, backoff_max_ms=30000, rx_size=1024):
        self.conf = (client_id, server, port, keepalive, user, password, ssl_context,
                     server_hostname, will, clean_session, subs, window,
                     backoff_min_ms, backoff_max_ms, rx_size, on_message, on_ack, on_state)
        self.enabled = True       # False: stay offline (network link down), no reconnect
        # Words for why the latest attempt or connection failed (status "mqtt_error");
        # None once a CONNACK accepted us: connected and no error is the healthy state.
        self.last_error = None
        self.granted = b""        # SUBACK return codes of the last subscribe
        self.connects = 0
        self.connected = False    # a CONNACK accepted this connection (read only)
        self.inflight = []  # QoS 1 PUBLISH packets not yet acknowledged, oldest first; at most
        #                     window (read only: empty = everything published was acknowledged)
        self._sent = 0      # how many of them went out on this connection
        self._q0 = []       # QoS 0 packets not yet written; at most window
        self._acks = []     # for the writer: inbound packet ids to acknowledge, 0 = a PINGREQ
        self._pid = 0
        self._bye = 0       # disconnect(): 1 DISCONNECT requested (run() ends), 2 written
        self._gen = 0       # bumped on every teardown so stale tasks notice
        self._io = [None] * 4   # session/reader and writer tasks; TLS socket, socket
        self._last_rx = 0
        self._last_tx = 0
        # One Event for every waiter (writer: work to do; publish() and the reader: window or
        # acknowledgement space freed, or the connection lost). Each re-checks its own
        # condition when woken; one Event instead of two saves ~100 B for a few extra turns.
        self._wake = asyncio.Event()

    # --- public ---------------------------------------------------------------------------

    async def publish(self, topic, payload, qos=0, retain=False):
        """Queue a message; returns its packet id (QoS 1) or 0 (QoS 0).

        QoS 1 waits while `window` messages are unacknowledged. Raises OSError if the
        connection is down (before or while waiting); the message is then not queued.
        """
        if qos != 0 and qos != 1:
            raise ValueError("qos 0 or 1")
        q = self.inflight if qos else self._q0
        while True:
            if not self.connected:
                raise OSError(107)  # ENOTCONN
            if len(q) < self.conf[_WINDOW]:
                break
            self._wake.clear()
            await self._wake.wait()
        pid = 0
        if qos:
            # Ids in turn: at most `window` in flight, so the id coming round again is free.
            pid = self._pid = self._pid % 65535 + 1
        q.append(encode_publish(topic, payload, qos, retain, pid))
        self._wake.set()
        return pid

    def disconnect(self):
        """(A coroutine.) Flush queued packets, send DISCONNECT (the broker discards the
        will), stop run(). QoS 1 messages still unacknowledged stay in inflight."""
        return link("disconnect", self)

    def drop(self):
        """Close abruptly, no DISCONNECT, so the broker publishes the will."""
        self._end(self._gen, None if self.enabled else _LINK)

    async def run(self):
        """Connect and stay connected until disconnect(); never raises on network errors.

        While a connection stands this loop is also its watchdog (connect timeout, PINGREQ
        when idle, drop when the broker goes silent): a task of its own cost ~400 B of heap
        while connected. The price: the end of a connection is noticed up to a tick (at most
        1 s) later, well within the 1.5 x keepalive allowed to notice a silent broker.
        """
        self._bye = 0
        delay = self.conf[_BACKOFF_MIN]
        ka = self.conf[_KEEPALIVE] * 1000
        tick = min(ka // 4, 1000) if ka else 1000
        while not self._bye:
            if not self.enabled:
                if self.last_error is None:
                    self._end(self._gen, _LINK)  # down since boot
                await asyncio.sleep_ms(100)
                continue
            gen = self._gen
            n = self.connects
            t0 = self._last_rx = self._last_tx = time.ticks_ms()  # once connected: the last PINGREQ
            try:
                self._io[0] = asyncio.create_task(self._session(gen))
                while gen == self._gen:  # until _end() tore this connection down
                    # (a short tick while connecting: a refused attempt is retried promptly)
                    await asyncio.sleep_ms(tick if self.connected else 100)
                    now = time.ticks_ms()
                    if not self.connected:
                        if time.ticks_diff(now, t0) >= _CONNECT_TIMEOUT_MS:
                            self._end(gen, _TIMEOUT)
                    elif ka:
                        rx_idle = time.ticks_diff(now, self._last_rx)
                        if rx_idle >= ka * 3 // 2:
                            self._end(gen, _SILENT)
                        elif ((time.ticks_diff(now, self._last_tx) >= ka or rx_idle >= ka)
                                and time.ticks_diff(now, t0) >= ka // 2):
                            t0 = now
                            if 0 not in self._acks:
                                self._acks.append(0)
                            self._wake.set()
            except Exception as e:  # e.g. MemoryError: end this attempt, never the client
                self._end(gen, e)
            if self._bye:
                break
            if self.connects != n:  # this attempt was accepted: start the backoff again
                delay = self.conf[_BACKOFF_MIN]
            # Jitter spreads a hall's devices so they do not all return at once.
            j = int.from_bytes(urandom(2), "big") * delay >> 17
            t = time.ticks_ms()
            while not self._bye and time.ticks_diff(time.ticks_ms(), t) < delay // 2 + j:
                await asyncio.sleep_ms(50)
            delay = min(delay * 2, self.conf[_BACKOFF_MAX])

    # --- connection tasks -----------------------------------------------------------------

    def _end(self, gen, e):
        """End connection gen (a stale gen is ignored): say why in last_error (e: an exception,
        a line of mqtt_link's table, or words; None: no failure), cancel our tasks, close the
        socket, and keep unacknowledged messages for the re-send."""
        if gen != self._gen:
            return
        if e is not None and not self._bye:  # else disconnect() asked for the close: no failure
            try:
                self.last_error = e if isinstance(e, str) else link("why", self, e)
            except MemoryError:
                self.last_error = None
        self._gen += 1
        try:
            cur = asyncio.current_task()
        except RuntimeError:
            cur = None
        io = self._io
        for i in range(4):
            t = io[i]
            io[i] = None
            if t is None:
                continue
            if i > 1:
                # Closing the TLS object does not always close the socket under it (not
                # after a failed handshake), so both are closed.
                try:
                    t.close()
                except Exception:
                    pass
            elif t is not cur and not t.done():
                t.cancel()
        for i in range(self._sent):
            self.inflight[i][0] |= _DUP  # a re-delivery
        self._sent = 0
        del self._q0[:]
        del self._acks[:]
        was = self.connected
        self.connected = False
        self._wake.set()
        if was:
            fn = self.conf[_ON_STATE]
            try:
                fn and fn(False)
            except Exception as x:
                sys.print_exception(x)

    async def _session(self, gen):
        """Connect (mqtt_link.connect), then be the reader: packets are reassembled in a
        small fixed buffer; a PUBLISH too large for it gets a buffer of its own."""
        try:
            r = await link("connect", self, gen)
            if r is None:
                return
            self._io[1] = asyncio.create_task(self._writer(r, gen))
            self._wake.set()
            fn = self.conf[_ON_STATE]
            try:
                fn and fn(True)
            except Exception as x:  # a failing handler must not take the connection down
                sys.print_exception(x)
            buf = bytearray(_RX)
            mv = memoryview(buf)
            a = b = 0       # the bytes not yet parsed: buf[a:b]
            skip = 0        # bytes of a packet too large to receive still to discard
            short = False   # ... of one that fits the limit, but not the heap just now (set
            #                 each time skipping starts: the only way into it is that except)
            big = None      # the packet being read that buf cannot hold: its own bytearray,
            #                 or buf itself (its head only) when it is too large to receive
            while gen == self._gen:
                p = None
                if skip:
                    dst = mv[:min(skip, _RX)]
                elif big is not None:
                    if b < len(big):
                        dst = memoryview(big)[b:]
                    else:  # all of it, or the head of one too large
                        p, o, e = big, hl, b
                        skip = n - b
                        big = dst = None
                        b = 0
                else:
                    h = parse_header(buf, a, b)
                    if h is not None:
                        first, hl, n = h
                        n += hl     # the whole packet
                        if a + n <= b:
                            p, o, e = buf, a + hl, a + n
                            a += n
                    if p is None:
                        if a:       # move the partial packet to the front
                            buf[:b - a] = mv[a:b]
                            b -= a
                            a = 0
                        if h is not None and n > _RX:
                            try:
                                if n > self.conf[_RX_MAX]:
                                    raise MemoryError
                                big = bytearray(n)
                                big[:b] = mv[:b]
                            except MemoryError:
                                big = buf
                                short = n <= self.conf[_RX_MAX]
                            continue
                        dst = mv[b:]
                if p is None:
                    k = await r.readinto(dst)
                    if gen != self._gen:
                        return
                    if k is None:
                        continue  # TLS record not complete yet
                    if not k:
                        raise OSError(0)  # end of stream: the broker closed the connection
                    self._last_rx = time.ticks_ms()
                    if skip:
                        skip -= k
                    else:
                        b += k
                    continue
                if a == b:
                    a = b = 0
                # One whole packet p[o:e] (only the head of it when skip is set).
                kind = first & 0xF0
                if kind == _PUBLISH:
                    topic, qos, pid, o = decode_publish(first, p, o, e)
                    if qos == 2:
                        raise ValueError("qos 2")  # never subscribed with qos 2
                    fn = self.conf[_ON_MESSAGE]
                    if fn:
                        try:
                            try:
                                if skip:
                                    e = False if short else None
                                elif p is buf:  # (reused for the next packet: copied out)
                                    e = bytes(memoryview(p)[o:e])
                                else:           # its own buffer: handed on as it is, no copy
                                    e = memoryview(p)[o:e]
                            except MemoryError:
                                e = False
                            # None: too large to receive; False: not held, short of memory
                            # (the application answers the sender either way)
                            fn(topic, e)
                        except Exception as x:
                            sys.print_exception(x)
                    p = e = None
                    if qos:
                        while len(self._acks) >= _ACKS:
                            self._wake.clear()
                            await self._wake.wait()
                            if gen != self._gen:
                                return
                        self._acks.append(pid)
                        self._wake.set()
                elif kind == _PUBACK:
                    pid = p[o] << 8 | p[o + 1]
                    if not pid:
                        raise ValueError("pid 0")
                    fl = self.inflight
                    for i in range(min(self._sent, len(fl))):
                        q = fl[i]
                        j = 1
                        while q[j] > 127:       # the remaining length's last byte
                            j += 1
                        j += 3 + (q[j + 1] << 8 | q[j + 2])   # past the topic: the packet id
                        if q[j] << 8 | q[j + 1] == pid:
                            del fl[i]
                            self._sent -= 1
                            self._wake.set()
                            fn = self.conf[_ON_ACK]
                            try:
                                fn and fn(pid)
                            except Exception as x:
                                sys.print_exception(x)
                            break
                    # Not found: a late ack of a re-sent message. Ignore.
                elif kind == _SUBACK:
                    for i in range(o + 2, e):
                        if p[i] > 2 and p[i] != 0x80:
                            raise ValueError("suback rc")
                    self.granted = bytes(p[o + 2:e])
                elif kind == _CONNACK:
                    raise ValueError("connack x2")
                # PINGRESP and UNSUBACK only prove the broker is alive (_last_rx).
        except Exception as e:
            self._end(gen, e)

    async def _writer(self, w, gen):
        """The only task that writes after CONNECT: one packet, drained, at a time.

        Draining before the next write also keeps TLS correct: mbedtls wants a
        retried write to repeat the same bytes.
        """
        try:
            while gen == self._gen:
                acks = self._acks
                if acks:
                    pid = acks.pop(0)
                    self._wake.set()
                    pkt = bytes((_PUBACK, 2, pid >> 8, pid & 0xFF)) if pid else b"\xc0\x00"
                elif self._sent < len(self.inflight):
                    pkt = self.inflight[self._sent]
                    self._sent += 1
                elif self._q0:
                    pkt = self._q0.pop(0)
                    self._wake.set()
                elif self._bye == 1:
                    pkt = b"\xe0\x00"  # DISCONNECT, last: what publish() accepted goes out first
                else:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                w.write(pkt)
                await w.drain()
                self._last_tx = time.ticks_ms()
                if pkt[0] == 0xE0:
                    self._bye = 2
                    return
        except Exception as e:
            self._end(gen, e)
