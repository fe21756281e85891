"""MQTT 3.1.1 codec of firmware/mqtt.py and firmware/mqtt_link.py: bytes checked against
the spec, no socket. (Reassembly of the inbound stream is the client's reader:
tests/mqtt_scenarios/rx_stream.py, run by tests/test_mqtt_client.py.)

Runs under CPython (pytest) and MicroPython (tests/mp_runner.py).
"""
import sys

from _util import raises

from firmware import mqtt, mqtt_link


# --- remaining length --------------------------------------------------------------------

def test_remaining_length_boundaries():
    cases = [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
             (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"),
             (2097152, b"\x80\x80\x80\x01"), (268435455, b"\xff\xff\xff\x7f")]
    for n, enc in cases:
        head = b"\x30" + enc
        assert mqtt.parse_header(head, 0, len(head)) == (0x30, 1 + len(enc), n), n
        if n > 16384 and sys.implementation.name == "micropython":
            continue  # a packet that long does not fit the test's heap
        pkt, off = mqtt.packet(0x30, n)
        assert bytes(pkt[:off]) == head and len(pkt) == off + n, n


def test_remaining_length_limits():
    raises(ValueError, mqtt.packet, 0x30, 268435456)  # refused before anything is allocated
    raises(ValueError, mqtt.packet, 0x30, -1)
    raises(ValueError, mqtt.parse_header, b"\x30\xff\xff\xff\xff\x01", 0, 6)
    raises(ValueError, mqtt.parse_header, b"\x30\xff\xff\xff\xff", 0, 5)  # known already


def test_remaining_length_incomplete_waits():
    assert mqtt.parse_header(b"", 0, 0) is None
    assert mqtt.parse_header(b"\x30", 0, 1) is None
    assert mqtt.parse_header(b"\x30\x80", 0, 2) is None
    assert mqtt.parse_header(b"\x30\xff\xff\xff", 0, 4) is None
    assert mqtt.parse_header(b"\x30\xff\xff\x7f", 0, 3) is None  # end honoured


# --- encoders ----------------------------------------------------------------------------

def test_connect_minimal_persistent_session():
    pkt = mqtt_link.encode_connect("dev1", 30, clean_session=False)
    assert bytes(pkt) == b"\x10\x10\x00\x04MQTT\x04\x00\x00\x1e\x00\x04dev1"


def test_connect_with_will_user_password():
    pkt = mqtt_link.encode_connect("k1", 60, True, "hall", b"pw",
                              ("qterm/v1/s/k1/status", b'{"online":false}', True, 1))
    body = (b"\x00\x04MQTT\x04" + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02]) + b"\x00\x3c"
            + b"\x00\x02k1" + b"\x00\x14qterm/v1/s/k1/status" + b"\x00\x10" + b'{"online":false}'
            + b"\x00\x04hall" + b"\x00\x02pw")
    assert bytes(pkt) == b"\x10" + bytes([len(body)]) + body


def test_connect_will_qos0_not_retained():
    pkt = mqtt_link.encode_connect("a", 10, False, will=("t", b"x", False, 0))
    assert pkt[9] == 0x04


def test_connect_rejects_password_without_user():
    raises(ValueError, mqtt_link.encode_connect, "a", 30, True, None, "secret")
    raises(ValueError, mqtt_link.encode_connect, "a", 70000)


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
    pkt = mqtt_link.encode_subscribe(1, [("a/#", 1), ("b", 0)])
    assert bytes(pkt) == b"\x82\x0c\x00\x01\x00\x03a/#\x01\x00\x01b\x00"
    raises(ValueError, mqtt_link.encode_subscribe, 1, [])
    raises(ValueError, mqtt_link.encode_subscribe, 1, [("a", 3)])


def test_fixed_packets_and_connack_code():
    assert mqtt_link.DISCONNECT_PACKET == b"\xe0\x00"
    assert mqtt_link.CONNACK == 0x20


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


def test_connack():
    assert mqtt_link.decode_connack(b"\x20\x02\x01\x00", 2, 4) == (True, 0)
    assert mqtt_link.decode_connack(b"\x00\x05", 0, 2) == (False, 5)
    raises(ValueError, mqtt_link.decode_connack, b"\x02\x00", 0, 2)  # reserved bits set
    raises(ValueError, mqtt_link.decode_connack, b"\x00\x00\x00", 0, 3)


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
