"""The publisher's drain in a plain MicroPython process: firmware/publisher.py and
firmware/outbox.py as on the device, an app reduced to what the publisher asks of it.

    micropython drain_probe.py FW_DIR PORT N WORK_DIR

FW_DIR holds firmware/{mqtt,outbox,outbox_repair,publisher}.mpy. The outbox in WORK_DIR
gets N events of ~220 B (as the simulator's staff keys make them); the publisher then
connects and drains them. Prints DRAIN <n> <ms>: from connected to the last PUBACK, what
tests/mqtt_scenarios/publish_n.py prints as ACKED for the same client publishing alone.
"""
import os
import sys
import time

sys.path.insert(0, sys.argv[1])
PORT = int(sys.argv[2])
N = int(sys.argv[3])
WORK = sys.argv[4]

import asyncio  # noqa: E402


class _Box:
    pass


_app_mod = _Box()
_app_mod.FIRMWARE = "bench"
sys.modules["firmware.app"] = _app_mod  # the publisher's announce reads the version there

from firmware.outbox import Outbox  # noqa: E402
from firmware.publisher import Publisher  # noqa: E402

_EVENT = (b'{"boot":1,"data":{"counter":"1","reason":"","staff":"S001"},"dev":"term01",'
          b'"mac":"0123456789abcdef0123456789abcdef","prev":"0123456789abcdef0123456789abcdef",'
          b'"seq":%d,"ts":1795618068,"type":"counter.%s","v":1}')


class _Net:
    def up(self):
        return True


class _Clock:
    def ticks_ms(self):
        return time.ticks_ms()


class _Hall:
    def summary(self):
        return {"waiting": {}}


class _App:
    boot_no = 1

    def __init__(self, box):
        self.cfg = {"site": "hall01", "device": "term01",
                    "broker": {"host": "127.0.0.1", "port": PORT, "keepalive": 30}}
        self.root = WORK
        self.outbox = box
        self.hal = _Box()
        self.hal.net = _Net()
        self.hal.clock = _Clock()
        self.hall = _Hall()

    def command(self, payload):
        pass

    def fault_seen(self, where, e):
        print("FAULT", where, repr(e))

    def now(self):
        return 1795618068


def main():
    try:
        for name in os.listdir(WORK):
            os.remove(WORK + "/" + name)
    except OSError:
        os.mkdir(WORK)
    box = Outbox(WORK, max_bytes=N * 300 + 65536)
    for seq in range(1, N + 1):
        box.append(seq, _EVENT % (seq, b"paused" if seq % 2 else b"resumed"), 1)
    app = _App(box)
    pub = Publisher(app)

    async def run():
        asyncio.create_task(pub.run())
        while not pub.connected():
            await asyncio.sleep_ms(1)
        t0 = time.ticks_ms()
        while box.acked() < N:
            await asyncio.sleep_ms(1)
        print("DRAIN", N, time.ticks_diff(time.ticks_ms(), t0))

    asyncio.run(run())
    for name in os.listdir(WORK):
        os.remove(WORK + "/" + name)
    os.rmdir(WORK)


main()
