"""A whole business day through the simulator: N tickets issued, called and finished on two
counters, a rating now and then. Prints bytes per ticket, time per ticket and the device
heap (status op, after a collection) at the start, every 500 tickets and at the end.
Figures only, no asserts.

usage: .venv/bin/python bench/bench_day.py [--tickets 3000] [--settle-ms 0] [--every 500]
The heap is QTERM_HEAP (default 96K), as for the simulator itself.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ["PATH"] = "/usr/sbin:" + os.environ.get("PATH", "")

from tests.broker import Broker  # noqa: E402
from tests.e2e.harness import Sim, example_config  # noqa: E402
from tests.escpos_decode import decode  # noqa: E402


def day_config(settle_ms):
    cfg = example_config()
    for s in cfg["services"]:
        s["daily_limit"] = 9999      # a busy hall: 3 000 tickets a day need four digits
    cfg["printer"] = dict(cfg["printer"], settle_ms=settle_ms)
    return cfg


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100.0))] if v else 0.0


def heap_line(label, st, t0):
    h = st["heap"]
    return "%-14s heap free %7d  alloc %7d   outbox %4d  seq %6d  issued %s  %6.1fs" % (
        label, h["free"], h["alloc"], st["outbox"], st["seq"],
        "/".join("%s%d" % kv for kv in sorted(st["issued"].items())), time.time() - t0)


def run_day(sim, n, every):
    """Drive n citizens; returns (ticket press times s, cycle times s, heap samples, problems)."""
    press_s, cycle_s, samples, problems = [], [], [], []
    t0 = time.time()
    st = sim.status()
    samples.append(st["heap"])
    print(heap_line("start", st, t0))
    for i in range(n):
        code = "AB"[i % 2]
        counter = "1" if i % 2 == 0 else "2"   # each counter mostly serves its first service
        c0 = time.time()
        r = sim.press("ticket:" + code)
        press_s.append(time.time() - c0)
        if not r.get("ok"):
            problems.append("ticket %d: %r" % (i, r))
            continue
        for key in ("next", "finish"):
            r = sim.press(key, counter=counter)
            if not r.get("ok"):
                problems.append("%s %d: %r" % (key, i, r))
        if i % 7 == 0:
            sim.press("rate%d" % (3 + i % 3), counter=counter)   # 3..5; the other windows expire
        elif i % 97 == 0:
            sim.press("rate2", counter=counter)                  # unhappy: the reason step times out
        cycle_s.append(time.time() - c0)
        if (i + 1) % every == 0 or i + 1 == n:
            st = sim.status()
            samples.append(st["heap"])
            print(heap_line("%d tickets" % (i + 1), st, t0))
    return press_s, cycle_s, samples, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=3000, help="tickets in the day (default 3000)")
    ap.add_argument("--settle-ms", type=int, default=0,
                    help="printer.settle_ms: the pause after each ticket (device default 800; 0 here "
                         "so the figures show the firmware, not the paper)")
    ap.add_argument("--every", type=int, default=500, help="heap sample interval in tickets (default 500)")
    a = ap.parse_args()
    heap = os.environ.get("QTERM_HEAP", "96K")
    print("bench_day: %d tickets, two counters, heap %s, printer.settle_ms %d" % (a.tickets, heap, a.settle_ms))
    with Broker() as b:
        sim = Sim(b.port, day_config(a.settle_ms), heap=heap)   # the heap printed above is the one used
        try:
            sim.start()
            t0 = time.time()
            try:
                press_s, cycle_s, samples, problems = run_day(sim, a.tickets, a.every)
            except Exception as e:  # the device died: show why (MemoryError appears in its output)
                print("device stopped: %r\n%s" % (e, sim.output()[-1500:]))
                return 1
            wall = time.time() - t0
            try:
                drained = sim.wait_drained(timeout=60)
                print(heap_line("drained", drained, t0))
            except AssertionError as e:
                print("outbox did not drain: %s" % e)
            data = sim.printer_bytes()
        finally:
            sim.cleanup()
    tickets = decode(data)
    sizes = [t.nbytes for t in tickets]
    print("")
    print("tickets printed       %d (cut: %d)" % (len(tickets), sum(1 for t in tickets if t.cut)))
    if sizes:
        print("bytes per ticket      mean %.0f  min %d  max %d  (printer.bin %d bytes)" % (
            sum(sizes) / float(len(sizes)), min(sizes), max(sizes), len(data)))
    if press_s:
        print("ticket press -> reply mean %.1f ms  p50 %.1f  p95 %.1f  max %.1f ms" % (
            1000 * sum(press_s) / len(press_s), 1000 * pct(press_s, 50), 1000 * pct(press_s, 95),
            1000 * max(press_s)))
    if cycle_s:
        print("citizen cycle         mean %.1f ms (ticket, next, finish, sometimes a rating)" % (
            1000 * sum(cycle_s) / len(cycle_s)))
    print("whole day             %.1f s wall, %.1f tickets/s" % (wall, a.tickets / wall if wall else 0))
    free = [h["free"] for h in samples]
    alloc = [h["alloc"] for h in samples]
    print("heap after gc         free start %d  min %d  end %d;  alloc start %d  max %d  end %d" % (
        free[0], min(free), free[-1], alloc[0], max(alloc), alloc[-1]))
    print("problems              %d%s" % (len(problems), "" if not problems else ": " + "; ".join(problems[:5])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
