"""Publish n QoS 1 (or qos=0) messages in order, retrying while offline, then wait for every PUBACK.

Prints UP <k> on every connect, DOWN on every loss, WHY <last_error> whenever the
client's last_error changes (polled every 5 ms), ACKED <n> <ms> when all are acknowledged,
heap figures, then (after hold= ms) disconnects cleanly and prints DONE.
With expect_fail=1 it only reports whether a connection came up within 3 s, and the
client's last_error (the words `status` shows as mqtt_error).
FDS <n> counts open file descriptors at the end (leaked sockets show up there).
"""
import gc
import sys

sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else ".")
from _args import arg, open_fds, ssl_context, say  # noqa: E402

import asyncio  # noqa: E402
import time  # noqa: E402

gc.collect()
FREE0 = gc.mem_free()
from firmware import mqtt  # noqa: E402

N = arg("n", 100)
SIZE = arg("size", 6)
PACE = arg("pace", 0)      # ms to sleep after every 10 messages
TOPIC = arg("topic", "qterm/test/seq")
QOS = arg("qos", 1)
acks = [0]
ups = [0]


def on_state(up):
    if up:
        ups[0] += 1
        say("UP", ups[0])
    else:
        say("DOWN")


async def watch(c):
    seen = None
    while True:
        if c.last_error != seen:
            seen = c.last_error
            say("WHY", seen)
        await asyncio.sleep_ms(5)


def on_ack(pid):
    acks[0] += 1


async def main():
    ctx = ssl_context()
    gc.collect()
    free1 = gc.mem_free()
    c = mqtt.MQTTClient(arg("id", "pubn"), arg("server", "127.0.0.1"), arg("port", 1883),
                        keepalive=arg("ka", 30), ssl_context=ctx, server_hostname=arg("host"),
                        user=arg("user"), password=arg("password"),
                        window=arg("window", 16), on_ack=on_ack, on_state=on_state,
                        backoff_min_ms=arg("bmin", 200), backoff_max_ms=arg("bmax", 1000))
    asyncio.create_task(watch(c))
    task = asyncio.create_task(c.run())
    if arg("expect_fail", 0):
        await asyncio.sleep_ms(3000)
        say("CONNECTED" if ups[0] else "NOTCONNECTED", repr(c.last_error))
        await c.disconnect()
        await task
        say("FDS", open_fds())
        return
    while not c.connected:
        await asyncio.sleep_ms(10)
    pad = b"x" * max(0, SIZE - 6)
    peak = 0
    t0 = time.ticks_ms()
    i = 0
    while i < N:
        try:
            await c.publish(TOPIC, b"m%05d" % i + pad, QOS)
        except OSError:
            await asyncio.sleep_ms(20)
            continue
        i += 1
        if PACE and i % 10 == 0:
            await asyncio.sleep_ms(PACE)
        if i == N // 2:
            gc.collect()
            peak = free1 - gc.mem_free()
    while QOS and (acks[0] < N or c.inflight):
        await asyncio.sleep_ms(2)
    ms = time.ticks_diff(time.ticks_ms(), t0)
    say("ACKED", acks[0], ms)
    gc.collect()
    # import: the module's code; idle: client connected, nothing in flight;
    # streaming: mid-run with the window full of queued messages.
    say("HEAP import=%d idle=%d streaming=%d free=%d" % (
        FREE0 - free1, free1 - gc.mem_free(), peak, gc.mem_free()))
    if arg("hold", 0):
        await asyncio.sleep_ms(arg("hold", 0))
    await c.disconnect()
    await task
    say("FDS", open_fds())
    say("DONE")

asyncio.run(main())
