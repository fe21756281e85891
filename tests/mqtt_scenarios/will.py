"""Connect with a retained Last Will 'offline', publish retained 'online', then idle forever.

The test kills this process; the broker must then publish the will.
"""
import sys

sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else ".")
from _args import arg, say  # noqa: E402

import asyncio  # noqa: E402
from firmware import mqtt  # noqa: E402

STATUS = arg("topic", "qterm/v1/hall1/dev1/status")


async def main():
    c = mqtt.MQTTClient(arg("id", "willdev"), "127.0.0.1", arg("port", 1883), keepalive=arg("ka", 2),
                        will=(STATUS, b'{"online":false}', True, 1), backoff_min_ms=200)
    asyncio.create_task(c.run())
    while not c.connected:
        await asyncio.sleep_ms(10)
    await c.publish(STATUS, b'{"online":true}', 1, True)
    while c.inflight:
        await asyncio.sleep_ms(10)
    say("ONLINE")
    while True:
        await asyncio.sleep_ms(1000)

asyncio.run(main())
