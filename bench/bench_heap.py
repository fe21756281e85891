"""Smallest -X heapsize with which a scripted 200-citizen session completes, and the heap figures.

Runs the real simulator (sim/run) against a throw-away mosquitto for each heap size, from
large to small, and drives 200 citizens through ticket -> next -> finish -> rating.
Prints figures; asserts nothing.   usage: .venv/bin/python bench/bench_heap.py [--citizens N]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ["PATH"] = "/usr/sbin:" + os.environ.get("PATH", "")

from tests.broker import Broker  # noqa: E402
from tests.e2e.harness import Sim, example_config  # noqa: E402


def session(port, heap, citizens):
    """(completed, status before, status after, error text)."""
    cfg = example_config()
    cfg["heartbeat_s"] = 10
    sim = Sim(port, cfg, heap=heap)
    try:
        sim.start()
        before = sim.status()
        for i in range(citizens):
            svc = "AB"[i % 2]
            r = sim.press("ticket:" + svc)
            if not r.get("ok"):
                return False, before, None, "ticket %d: %r" % (i, r)
            for key in ("next", "finish"):
                r = sim.press(key)
                if not r.get("ok"):
                    return False, before, None, "%s %d: %r" % (key, i, r)
            sim.press("rate%d" % (1 + i % 5))
            if i % 5 == 0:
                sim.press("rate3")  # reason step for scores 1-2 (or an ignored extra press)
        time.sleep(0.5)
        after = sim.status()
        return True, before, after, ""
    except Exception as e:  # the sim died: MemoryError shows in its output
        out = sim.output()
        return False, None, None, (out.strip().splitlines() or [repr(e)])[-1]
    finally:
        sim.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--citizens", type=int, default=200)
    ap.add_argument("--heaps", default="256,192,160,128,112,96,88,80,72,64")
    a = ap.parse_args()
    with Broker() as b:
        smallest = None
        for kb in [int(x) for x in a.heaps.split(",")]:
            t = time.time()
            ok, before, after, err = session(b.port, "%dK" % kb, a.citizens)
            if ok:
                smallest = kb
                print("heap %4d KiB: ok   %5.1fs  free before %6d  after %6d  (alloc %d -> %d)" % (
                    kb, time.time() - t, before["heap"]["free"], after["heap"]["free"],
                    before["heap"]["alloc"], after["heap"]["alloc"]))
            else:
                print("heap %4d KiB: FAIL %5.1fs  %s" % (kb, time.time() - t, err[:150]))
        print("smallest heap that completed %d citizens: %s" % (
            a.citizens, "%d KiB" % smallest if smallest else "none tried"))


if __name__ == "__main__":
    main()
