"""A stop-and-wait QoS 1 MQTT publisher for MicroPython: the peer bench_mqtt.py compares with.

It models umqtt.simple's publish(qos=1) (micropython-lib; `pip download` of it does not
work here, so this is written for the bench, not copied): a blocking socket, each PUBLISH
written in four small writes (fixed header, topic, packet id, payload), then reading until
its PUBACK arrives before the next message. With nodelay=0 those small writes meet Nagle's
algorithm and the broker's delayed ACK (~20 msg/s on loopback); nodelay=1 sets TCP_NODELAY.

    micropython bench/stopwait_peer.py port=1883 n=2000 size=250 nodelay=1
Prints ACKED <n> <ms>.
"""
import socket
import sys
import time

ARGS = dict(a.split("=", 1) for a in sys.argv[1:])
PORT = int(ARGS.get("port", 1883))
N = int(ARGS.get("n", 1000))
SIZE = int(ARGS.get("size", 250))
TOPIC = ARGS.get("topic", "qterm/test/peer").encode()
_IPPROTO_TCP = 6    # Linux values; the unix port's socket module has no names for them
_TCP_NODELAY = 1


def exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.read(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def main():
    s = socket.socket()
    if ARGS.get("nodelay", "1") == "1":
        s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
    s.connect(socket.getaddrinfo("127.0.0.1", PORT)[0][-1])
    cid = ARGS.get("id", "stopwait").encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    s.write(b"\x10" + varint(len(body)) + body)
    ack = exact(s, 4)
    if ack[0] != 0x20 or ack[3] != 0:
        raise OSError("CONNACK %r" % ack)
    pad = b"x" * max(0, SIZE - 6)
    t0 = time.ticks_ms()
    for i in range(N):
        pid = i % 65535 + 1
        msg = b"m%05d" % i + pad
        s.write(b"\x32" + varint(2 + len(TOPIC) + 2 + len(msg)))
        s.write(len(TOPIC).to_bytes(2, "big") + TOPIC)
        s.write(pid.to_bytes(2, "big"))
        s.write(msg)
        while True:  # wait for this message's PUBACK
            first = exact(s, 1)[0]
            rl = exact(s, 1)[0]  # a broker sends this client only short packets
            rest = exact(s, rl)
            if first == 0x40 and rest == pid.to_bytes(2, "big"):
                break
    print("ACKED", N, time.ticks_diff(time.ticks_ms(), t0))
    s.write(b"\xe0\x00")
    s.close()


main()
