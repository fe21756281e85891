"""Ticket size and build time under the MicroPython unix port. Figures only, no asserts.

Usage: python3 bench/bench_ticket.py          (re-launches itself under .venv/bin/micropython)
       .venv/bin/micropython bench/bench_ticket.py
"""
import sys

_ROOT = __file__.rsplit("/bench/", 1)[0] if "/bench/" in __file__ else "."

if sys.implementation.name != "micropython":
    import os
    import subprocess
    mp = os.path.join(os.path.abspath(_ROOT), ".venv", "bin", "micropython")
    sys.exit(subprocess.call([mp, "-X", "heapsize=96K", os.path.abspath(__file__)]))

import gc
import time

sys.path.insert(0, _ROOT)
from firmware.gb2312 import Gb2312  # noqa: E402
from firmware.ticket import print_ticket  # noqa: E402

TICKET = {
    "hall": {"zh": "深圳市南山区政务服务中心", "en": "Nanshan District Government Service Center"},
    "service": {"zh": "社保业务", "en": "Social Insurance"},
    "number": "A001",
    "kind": "priority",
    "ahead": 3,
    "wait_min": 12,
    "time": "2026-11-25 14:50",
    "notice": {"zh": "请留意叫号，过号请重新取号。本票仅限当日使用。",
               "en": "Please listen for your number. If you miss it, take a new ticket."},
    "qr": "https://hall.example.gov.cn/q?t=A001&d=2026-11-25",
    "lang2": "en",
}
ROUNDS = 50


class Counter:
    """A printer port that only counts what it is sent."""

    def __init__(self):
        self.n = 0
        self.calls = 0

    def write(self, b):
        self.n += len(b)
        self.calls += 1


def run(cols, gb):
    c = Counter()
    print_ticket(c.write, TICKET, cols, gb)
    sink = Counter()
    gc.collect()
    gc.disable()  # one ticket with the collector off: what it allocates, all of it garbage afterwards
    before = gc.mem_alloc()
    print_ticket(sink.write, TICKET, cols, gb)
    garbage = gc.mem_alloc() - before
    gc.enable()
    gc.collect()
    t0 = time.ticks_us()
    for _ in range(ROUNDS):
        print_ticket(sink.write, TICKET, cols, gb)
    dt = time.ticks_diff(time.ticks_us(), t0)
    gc.collect()
    print("%d mm (%d cols): %d bytes/ticket incl. QR, %d write() calls, %.2f ms/ticket, %d bytes allocated/ticket"
          % (58 if cols == 32 else 80, cols, c.n, c.calls, dt / 1000 / ROUNDS, garbage))


def lookups(gb):
    text = "深圳市南山区政务服务中心社保业务前面还有人预计等候约分钟扫码查看排队进度"
    cold = Gb2312(cache=1)  # every lookup is a binary search on the file
    t0 = time.ticks_us()
    for _ in range(10):
        cold.encode_into(lambda b: None, text)
    cold_us = time.ticks_diff(time.ticks_us(), t0) / (10 * len(text))
    t0 = time.ticks_us()
    for _ in range(10):
        gb.encode_into(lambda b: None, text)
    warm_us = time.ticks_diff(time.ticks_us(), t0) / (10 * len(text))
    cold.close()
    print("GB2312 lookup: %.1f us/char uncached (binary search on flash file), %.1f us/char with cache"
          % (cold_us, warm_us))


def main():
    gc.collect()
    base = gc.mem_alloc()
    gb = Gb2312()
    gc.collect()
    print("MicroPython %s unix port, heap free %d bytes; the Gb2312 encoder holds %d bytes"
          % (".".join(str(v) for v in sys.implementation.version[:3]), gc.mem_free(), gc.mem_alloc() - base))
    for cols in (32, 48):
        run(cols, gb)
    lookups(gb)
    gc.collect()
    print("heap in use after %d tickets: %d bytes" % (4 * (ROUNDS + 2), gc.mem_alloc()))


main()
