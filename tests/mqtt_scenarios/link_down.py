"""The network link goes down and comes back: drop() + enabled, as the app does it.

Prints ONLINE, DROPPED, WHY <last_error>, STILL_DOWN (no reconnect while disabled),
UP <connects>, WHY_UP <last_error>, ONLINE2, BYE.
"""
import sys

sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else ".")
from _args import arg, say  # noqa: E402

import asyncio  # noqa: E402
from firmware import mqtt  # noqa: E402

STATUS = arg("topic", "qterm/v1/hall1/dev3/status")


async def online(c, text):
    await c.publish(STATUS, text, 1, True)
    while c.inflight:
        await asyncio.sleep_ms(10)


async def main():
    c = mqtt.MQTTClient("linkdev", "127.0.0.1", arg("port", 1883), keepalive=10,
                        will=(STATUS, b"offline", True, 1), backoff_min_ms=100, backoff_max_ms=200)
    task = asyncio.create_task(c.run())
    while not c.connected:
        await asyncio.sleep_ms(10)
    await online(c, b"online")
    say("ONLINE")
    c.enabled = False  # as the publisher does it: disable, then drop
    c.drop()
    say("DROPPED", c.connected)
    say("WHY", c.last_error)
    try:
        await c.publish(STATUS, b"lost", 1)
        say("PUBLISHED_WHILE_DOWN")
    except OSError:
        say("REFUSED_WHILE_DOWN")
    await asyncio.sleep_ms(1500)
    say("STILL_DOWN" if not c.connected else "RECONNECTED_WHILE_DISABLED", c.connects)
    c.enabled = True
    while not c.connected:
        await asyncio.sleep_ms(10)
    say("UP", c.connects)
    say("WHY_UP", c.last_error)
    await online(c, b"online again")
    say("ONLINE2")
    await c.disconnect()
    await task
    say("BYE")

asyncio.run(main())
