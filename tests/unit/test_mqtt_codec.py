"""MQTT 3.1.1 codec of firmware/mqtt.py: bytes checked against the spec, no socket.

Runs under CPython (pytest) and MicroPython (tests/mp_runner.py).
"""
from _util import raises

from firmware import mqtt


def feed(rx, data, chunk):
    """Push data through an RxBuffer chunk bytes at a time; return the packets seen."""
    out = []
    i = 0
    while i < len(data):
        sp = rx.space()
        n = min(chunk, len(sp), len(data) - i)
        sp[0:n] = data[i:i + n]
        rx.got(n)
        i += n
        while True:
            p = rx.next()
            if p is None:
                break
            first, a, b, complete = p
            out.append((first, bytes(rx.buf[a:b]), complete))
    return out


# --- remaining length --------------------------------------------------------------------

def test_remaining_length_boundaries():
    cases = [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
             (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"),
             (2097152, b"\x80\x80\x80\x01"), (268435455, b"\xff\xff\xff\x7f")]
    for n, enc in cases:
        buf = bytearray(6)
        end = mqtt.encode_remaining_length(buf, 1, n)
        assert bytes(buf[1:end]) == enc, n
        assert mqtt.remaining_length_size(n) == len(enc)
        assert mqtt.decode_remaining_length(buf, 1, end) == (n, end)


def test_remaining_length_limits():
    raises(ValueError, mqtt.remaining_length_size, 268435456)
    raises(ValueError, mqtt.remaining_length_size, -1)
    raises(ValueError, mqtt.decode_remaining_length, b"\xff\xff\xff\xff\x01", 0, 5)


def test_remaining_length_incomplete_waits():
    assert mqtt.decode_remaining_length(b"", 0, 0) is None
    assert mqtt.decode_remaining_length(b"\x80", 0, 1) is None
    assert mqtt.decode_remaining_length(b"\xff\xff\xff", 0, 3) is None
    assert mqtt.decode_remaining_length(b"\xff\xff\x7f", 0, 2) is None  # end honoured


# --- encoders ----------------------------------------------------------------------------

def test_connect_minimal_persistent_session():
    pkt = mqtt.encode_connect("dev1", 30, clean_session=False)
    assert bytes(pkt) == b"\x10\x10\x00\x04MQTT\x04\x00\x00\x1e\x00\x04dev1"


def test_connect_with_will_user_password():
    pkt = mqtt.encode_connect("k1", 60, True, "hall", b"pw",
                              ("qterm/v1/s/k1/status", b'{"online":false}', True, 1))
    body = (b"\x00\x04MQTT\x04" + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02]) + b"\x00\x3c"
            + b"\x00\x02k1" + b"\x00\x14qterm/v1/s/k1/status" + b"\x00\x10" + b'{"online":false}'
            + b"\x00\x04hall" + b"\x00\x02pw")
    assert bytes(pkt) == b"\x10" + bytes([len(body)]) + body


def test_connect_will_qos0_not_retained():
    pkt = mqtt.encode_connect("a", 10, False, will=("t", b"x", False, 0))
    assert pkt[9] == 0x04


def test_connect_rejects_password_without_user():
    raises(ValueError, mqtt.encode_connect, "a", 30, True, None, "secret")
    raises(ValueError, mqtt.encode_connect, "a", 70000)


def test_publish_qos0():
    assert bytes(mqtt.encode_publish("a/b", "hi")) == b"\x30\x07\x00\x03a/bhi"


def test_publish_qos1_retain_dup():
    pkt = mqtt.encode_publish("a/b", b"hi", 1, True, 10)
    assert bytes(pkt) == b"\x33\x09\x00\x03a/b\x00\x0ahi"
    assert mqtt.encode_publish("a/b", b"hi", 1, True, 10, dup=True)[0] == 0x3B
    assert mqtt.encode_publish("a/b", b"hi", 1, False, 65535, dup=True)[0] == 0x3A


def test_publish_two_byte_length_and_utf8_topic():
    topic = "qterm/大厅"
    pkt = mqtt.encode_publish(topic, b"x" * 200, 1, False, 258)
    t = topic.encode()
    rl = 2 + len(t) + 2 + 200
    assert bytes(pkt[:3]) == bytes([0x32, (rl & 0x7F) | 0x80, rl >> 7])
    assert bytes(pkt[3:5]) == bytes([0, len(t)])
    assert bytes(pkt[5 + len(t):7 + len(t)]) == b"\x01\x02"
    assert len(pkt) == 3 + rl


def test_publish_rejects_bad_arguments():
    raises(ValueError, mqtt.encode_publish, "t", b"", 1, False, 0)       # QoS 1 needs an id
    raises(ValueError, mqtt.encode_publish, "t", b"", 1, False, 65536)
    raises(ValueError, mqtt.encode_publish, "t", b"", 3)
    raises(ValueError, mqtt.encode_publish, "", b"x")
    raises(ValueError, mqtt.encode_publish, "a/+/b", b"x")  # wildcards only in filters
    raises(ValueError, mqtt.encode_publish, "a/#", b"x")


def test_subscribe():
    pkt = mqtt.encode_subscribe(1, [("a/#", 1), ("b", 0)])
    assert bytes(pkt) == b"\x82\x0c\x00\x01\x00\x03a/#\x01\x00\x01b\x00"
    raises(ValueError, mqtt.encode_subscribe, 1, [])
    raises(ValueError, mqtt.encode_subscribe, 1, [("a", 3)])


def test_puback_reuses_buffer_and_fixed_packets():
    buf = bytearray(4)
    assert mqtt.encode_puback(0x1234, buf) is buf
    assert bytes(buf) == b"\x40\x02\x12\x34"
    assert bytes(mqtt.encode_puback(1)) == b"\x40\x02\x00\x01"
    assert mqtt.PINGREQ_PACKET == b"\xc0\x00"
    assert mqtt.DISCONNECT_PACKET == b"\xe0\x00"


# --- decoders ----------------------------------------------------------------------------

def test_parse_header():
    assert mqtt.parse_header(b"\x20", 0, 1) is None
    assert mqtt.parse_header(b"\x30\x80", 0, 2) is None
    assert mqtt.parse_header(b"\x20\x02\x00\x00", 0, 4) == (0x20, 2, 2)
    assert mqtt.parse_header(b"xx\x30\xc8\x01", 2, 5) == (0x30, 3, 200)
    assert mqtt.parse_header(b"\xd0\x00", 0, 2) == (0xD0, 2, 0)


def test_parse_header_rejects_what_a_broker_must_not_send():
    for bad in (b"\x10\x00", b"\x82\x00", b"\xc0\x00", b"\xf0\x00", b"\x00\x00",
                b"\x41\x02", b"\x40\x03", b"\x20\x03", b"\xd0\x01", b"\x90\x02", b"\x36\x00",
                b"\x50\x02", b"\x30\xff\xff\xff\xff\x01"):
        raises(ValueError, mqtt.parse_header, bad, 0, len(bad))


def test_connack_ack_suback():
    assert mqtt.decode_connack(b"\x20\x02\x01\x00", 2, 4) == (True, 0)
    assert mqtt.decode_connack(b"\x00\x05", 0, 2) == (False, 5)
    raises(ValueError, mqtt.decode_connack, b"\x02\x00", 0, 2)  # reserved bits set
    assert mqtt.decode_ack(b"\xab\xcd", 0, 2) == 0xABCD
    raises(ValueError, mqtt.decode_ack, b"\x00\x00", 0, 2)
    assert mqtt.decode_suback(b"\x00\x07\x01\x80", 0, 4) == (7, 2)
    raises(ValueError, mqtt.decode_suback, b"\x00\x07\x05", 0, 3)


def test_decode_publish():
    pkt = mqtt.encode_publish("qterm/v1/s/d/cmd", b'{"op":"x"}', 1, False, 77)
    first, hl, rl = mqtt.parse_header(pkt, 0, len(pkt))
    topic, qos, pid, off = mqtt.decode_publish(first, pkt, hl, hl + rl)
    assert (topic, qos, pid) == ("qterm/v1/s/d/cmd", 1, 77)
    assert bytes(pkt[off:]) == b'{"op":"x"}'
    pkt = mqtt.encode_publish("大厅", b"", 0)
    assert mqtt.decode_publish(pkt[0], pkt, 2, len(pkt)) == ("大厅", 0, 0, len(pkt))


def test_decode_publish_rejects_malformed():
    raises(ValueError, mqtt.decode_publish, 0x30, b"\x00\x09ab", 0, 4)      # topic too long
    raises(ValueError, mqtt.decode_publish, 0x30, b"\x00\x00ab", 0, 4)      # empty topic
    raises(ValueError, mqtt.decode_publish, 0x30, b"\x00\x02\xff\xfe", 0, 4)  # not UTF-8
    raises(ValueError, mqtt.decode_publish, 0x32, b"\x00\x01a\x00\x00", 0, 5)  # id 0
    raises(ValueError, mqtt.decode_publish, 0x32, b"\x00\x01a\x00", 0, 4)   # id cut off
    raises(ValueError, mqtt.decode_publish, 0x30, b"\x00", 0, 1)


# --- stream reassembly ---------------------------------------------------------------------

def _stream():
    pkts = [b"\x20\x02\x00\x00",
            bytes(mqtt.encode_publish("a/b", b"x" * 150, 1, False, 3)),
            b"\x40\x02\x00\x03",
            b"\xd0\x00",
            bytes(mqtt.encode_publish("c", b"", 0)),
            b"\x90\x03\x00\x01\x01"]
    return pkts, b"".join(pkts)


def test_rxbuffer_any_chunking():
    pkts, data = _stream()
    expect = []
    for p in pkts:
        first, hl, rl = mqtt.parse_header(p, 0, len(p))
        expect.append((first, p[hl:]))
    for chunk in (1, 2, 3, 5, 7, 64, 1000):
        rx = mqtt.RxBuffer(256)
        got = feed(rx, data, chunk)
        assert [(f, b) for f, b, _ in got] == expect, chunk
        assert all(c for _, _, c in got)
        assert rx.start == rx.end == 0


def test_rxbuffer_skips_oversized_packet():
    big = bytes(mqtt.encode_publish("t", b"z" * 500, 1, False, 9))
    small = bytes(mqtt.encode_publish("t", b"ok", 1, False, 10))
    for chunk in (1, 13, 100, 2000):
        rx = mqtt.RxBuffer(128)
        got = feed(rx, big + small + b"\xd0\x00", chunk)
        assert len(got) == 3, chunk
        first, part, complete = got[0]
        assert first == 0x32 and not complete
        topic, qos, pid, off = mqtt.decode_publish(first, part, 0, len(part))
        assert (topic, pid) == ("t", 9)  # enough to acknowledge it
        assert got[1] == (0x32, small[2:], True)
        assert got[2] == (0xD0, b"", True)


def test_rxbuffer_malformed_raises():
    rx = mqtt.RxBuffer(64)
    raises(ValueError, feed, rx, b"\xf0\x00", 2)


def test_rxbuffer_space_never_empty_after_compaction():
    rx = mqtt.RxBuffer(16)
    sp = rx.space()
    sp[0:14] = b"\x40\x02\x00\x01" * 3 + b"\x40\x02"
    rx.got(14)
    for _ in range(3):
        assert rx.next()[0] == 0x40
    assert rx.next() is None
    assert len(rx.space()) == 14  # the partial ack moved to the front
    assert bytes(rx.buf[0:2]) == b"\x40\x02"
