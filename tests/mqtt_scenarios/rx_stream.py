"""The client's reader on a scripted stream, cut into reads of every size: packets that fit
its 128-byte buffer, ones read into a buffer of their own, one larger than rx_size (read to
its end and handed on as None), TLS reads that return None; the stream must stay in step.
Then again with no heap for a packet's own buffer (above 300 bytes), and with none for the
copy of a payload out of the 128-byte buffer (above 100 bytes; a packet with a buffer of its
own is handed on without a copy): those messages arrive as False, acknowledged.

mqtt_link.connect is replaced by one that hands over the scripted stream, so the rest of
the client (reader, writer, acks) runs as it does against a broker. Prints
CASE <mode> <chunk> <verdict>, then DONE.
"""
import sys

sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else ".")
from _args import say  # noqa: E402

import asyncio  # noqa: E402
from firmware import mqtt  # noqa: E402

RX_SIZE = 600


def pub(topic, payload, qos=0, pid=0):
    return bytes(mqtt.encode_publish(topic, payload, qos, False, pid))


# (bytes from the broker, what on_message must see, PUBACK packet id the client must send)
SCRIPT = [
    (pub("a/b", b"x" * 150, 1, 3), ("a/b", b"x" * 150), 3),      # larger than the buffer
    (b"\x40\x02\x00\x01", None, None),                            # PUBACK of our message 1
    (b"\xd0\x00", None, None),                                     # PINGRESP
    (pub("c", b""), ("c", b""), None),
    (b"\x90\x03\x00\x02\x01", None, None),                        # SUBACK: granted QoS 1
    (pub("t", b"z" * 3000, 1, 9), ("t", None), 9),                 # larger than rx_size
    (pub("t", b"ok", 1, 10), ("t", b"ok"), 10),
    (pub("e", b"q" * 123), ("e", b"q" * 123), None),               # exactly 128 bytes
    (pub("e", b"r" * 124), ("e", b"r" * 124), None),               # 129 bytes
    (pub("f", b"s" * (RX_SIZE - 8), 1, 11), ("f", b"s" * (RX_SIZE - 8)), 11),  # rx_size exactly
    (pub("f", b"u" * (RX_SIZE - 7), 1, 12), ("f", None), 12),      # one byte more
    (b"\x40\x02\x00\x02", None, None),                            # PUBACK of our message 2
    (pub("g", b"end", 1, 13), ("g", b"end"), 13),
]
assert len(SCRIPT[7][0]) == 128 and len(SCRIPT[8][0]) == 129 and len(SCRIPT[9][0]) == RX_SIZE


class Stream:
    """The broker's side: serves DATA chunk bytes per read (None on every third read, as
    a TLS socket does with a record not complete yet); keeps what the client writes."""

    def __init__(self, data, chunk):
        self.data = data
        self.i = 0
        self.chunk = chunk
        self.reads = 0
        self.out = bytearray()
        self.go = asyncio.Event()
        self.never = asyncio.Event()

    async def readinto(self, buf):
        await self.go.wait()
        self.reads += 1
        if self.reads % 3 == 0:
            return None
        if self.i >= len(self.data):
            await self.never.wait()  # the broker says nothing more
        n = min(self.chunk, len(buf), len(self.data) - self.i)
        buf[:n] = self.data[self.i:self.i + n]
        self.i += n
        return n

    def write(self, b):
        self.out += b

    async def drain(self):
        pass


_bytearray = bytearray
_bytes = bytes


def no_big_buffer(n=0):
    if isinstance(n, int) and n > 300:
        raise MemoryError
    return _bytearray(n)


def no_big_copy(x=b""):
    if not isinstance(x, int) and len(x) > 100:
        raise MemoryError
    return _bytes(x)


def expected(mode):
    """What on_message must see: payloads the mode finds no heap for become False."""
    out = []
    for data, msg, _ in SCRIPT:
        if msg:
            t, p = msg
            if p is not None and (mode == "nobuf" and len(data) > 300 or
                                  mode == "nocopy" and len(p) > 100 and len(data) <= 128):
                p = False
            out.append((t, p))
    return out


async def one(chunk, mode):
    data = b"".join(s[0] for s in SCRIPT)
    stream = Stream(data, chunk)
    real = mqtt.link

    def link(what, c, *args):
        if what != "connect":
            return real(what, c, *args)

        async def connect():
            c.connects += 1
            c.connected = True
            return stream
        return connect()

    got = []
    acked = []
    mqtt.link = link
    if mode == "nobuf":
        mqtt.bytearray = no_big_buffer  # the module's globals come before the builtins
    elif mode == "nocopy":
        mqtt.bytes = no_big_copy
    try:
        c = mqtt.MQTTClient("rx", "127.0.0.1", rx_size=RX_SIZE, window=4,
                            on_message=lambda t, p: got.append((t, bytes(p) if p else p)),
                            on_ack=acked.append)
        task = asyncio.create_task(c.run())
        while not c.connected:
            await asyncio.sleep_ms(1)
        await c.publish("o/1", b"one", 1)
        await c.publish("o/2", b"two", 1)
        while len(stream.out) < 2 * 10:
            await asyncio.sleep_ms(1)
        sent = len(stream.out)
        stream.go.set()
        want = expected(mode)
        for _ in range(2000):
            if stream.i == len(data) and len(got) == len(want) and len(acked) == 2:
                break
            await asyncio.sleep_ms(1)
        await asyncio.sleep_ms(20)
        pids = [s[2] for s in SCRIPT if s[2]]
        out = bytes(stream.out[sent:])
        problems = []
        if got != want:
            problems.append("messages %r" % [(t, p if not p else len(p)) for t, p in got])
        if out != b"".join(bytes((0x40, 2, 0, p)) for p in pids):
            problems.append("acks %r" % out)
        if acked != [1, 2] or c.inflight:
            problems.append("own acks %r" % acked)
        if c.granted != b"\x01":
            problems.append("granted %r" % c.granted)
        if not c.connected or c.last_error is not None or c.connects != 1:
            problems.append("connection %r %r" % (c.connected, c.last_error))
        await c.disconnect()
        await task
        if not bytes(stream.out).endswith(b"\xe0\x00"):
            problems.append("no DISCONNECT")
        say("CASE", mode, chunk, "; ".join(problems) or "ok")
    finally:
        mqtt.link = real
        for name in ("bytearray", "bytes"):
            try:
                delattr(mqtt, name)
            except (AttributeError, KeyError):
                pass


async def main():
    for chunk in (1, 2, 3, 5, 7, 64, 127, 128, 129, 1000, 5000):
        await one(chunk, "heap")
    for chunk in (1, 7, 128, 5000):
        await one(chunk, "nobuf")
        await one(chunk, "nocopy")
    say("DONE")

asyncio.run(main())
