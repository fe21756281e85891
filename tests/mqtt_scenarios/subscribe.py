"""Subscribe (subs re-sent after every CONNACK) and print every message: MSG <topic> <payload>
(None when it was too large to receive).

Prints SUBSCRIBED once the SUBACK arrived; exits after count= messages with BYE.
"""
import sys

sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else ".")
from _args import arg, ssl_context, say  # noqa: E402

import asyncio  # noqa: E402
from firmware import mqtt  # noqa: E402

COUNT = arg("count", 1)
got = [0]


def on_message(topic, payload):
    got[0] += 1
    say("MSG", topic, payload if not payload else bytes(payload).decode())  # (a memoryview, or bytes)


async def main():
    c = mqtt.MQTTClient(arg("id", "subdev"), "127.0.0.1", arg("port", 1883), keepalive=arg("ka", 30),
                        ssl_context=ssl_context(), server_hostname=arg("host"),
                        subs=[(arg("topic", "qterm/test/cmd"), 1)], on_message=on_message,
                        backoff_min_ms=200, clean_session=True)
    task = asyncio.create_task(c.run())
    while not c.granted:
        await asyncio.sleep_ms(10)
    say("SUBSCRIBED", c.granted[0])
    while got[0] < COUNT:
        await asyncio.sleep_ms(10)
    await c.disconnect()
    await task
    say("BYE")

asyncio.run(main())
