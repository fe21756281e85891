"""Outbox figures: flash bytes written per event, boot time with 1000 queued events,
append rate -- on plain files and on a littlefs image, under the MicroPython unix port.

    python3 bench/bench_outbox.py [--events N]

The host script starts `.venv/bin/micropython bench/bench_outbox.py --child ...` once per
backend (the child part uses only what MicroPython has). Times are host times, not
ESP32 times; byte counts are exact. "file bytes" counts what the outbox hands to
write() (records, ack pointer, rewrites); "flash programmed/erased" is what littlefs
sends to the block device, i.e. what the flash chip really sees.

The last part measures heap as on the device: the firmware's .mpy bytecode runs in place
from a memory-mapped ROMFS image (as sim/launch.py does), so only objects and interned
names cost RAM: importing firmware.outbox, an Outbox holding N queued records after
boot recovery (firmware/outbox_repair.py is loaded for it and dropped again).
"""
import os
import sys
import time


_TYPES = (("ticket.issued", 2), ("ticket.called", 1), ("service.finished", 2),
          ("rating.submitted", 2), ("device.heartbeat", 0))


def _event(seq):
    kind, prio = _TYPES[seq % len(_TYPES)]
    body = ('{"v":1,"dev":"hall1-kiosk","boot":7,"seq":%d,"ts":1732500000,"type":"%s",'
            '"data":{"ticket":"A%03d","service":"A","kind":"normal","ahead":5,"wait_min":12,'
            '"day":"2024-11-25"},"prev":"9f2c4a1b7d3e8f60","mac":"0a1b2c3d4e5f60718293a4b5c6d7e8f9"}'
            % (seq, kind, seq % 1000))
    return body.encode(), prio


class _Counted:
    """File wrapper that counts the bytes written through it."""
    total = [0]

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        _Counted.total[0] += len(data)
        return self.f.write(data)

    def read(self, *a):
        return self.f.read(*a)

    def readinto(self, buf):
        return self.f.readinto(buf)

    def seek(self, *a):
        return self.f.seek(*a)

    def close(self):
        self.f.close()


def _ms(t0):
    try:
        return time.ticks_diff(time.ticks_ms(), t0)
    except AttributeError:
        return (time.time() - t0) * 1000


def _now():
    try:
        return time.ticks_ms()
    except AttributeError:
        return time.time()


def _wipe(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        os.remove(path + "/" + name)
    os.rmdir(path)


def _clear(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)


def child(backend, workdir, events, root_dir):
    sys.path.insert(0, root_dir)
    from firmware import outbox as outbox_mod
    from firmware.outbox import Outbox
    dev = None
    if backend == "lfs":
        from sim.flash import mount_image
        image = workdir + ".img"
        try:
            os.remove(image)
        except OSError:
            pass
        dev = mount_image(image, "/flash", size_kb=1024)
        root = "/flash/outbox"
    else:
        root = workdir
        _wipe(root)

    def flash():
        return (dev.programmed, dev.erased) if dev else (0, 0)

    # 1. steady state, broker up: each event acked right after it is stored,
    #    a state snapshot every 100 events releases old segments.
    real_open = open
    outbox_mod.open = lambda p, m="r": _Counted(real_open(p, m))
    box = Outbox(root)
    _Counted.total[0] = 0
    p0, e0 = flash()
    for seq in range(1, events + 1):
        payload, prio = _event(seq)
        box.append(seq, payload, prio)
        box.ack(seq)
        if seq % 100 == 0:
            box.set_floor(seq)
    p1, e1 = flash()
    del outbox_mod.open
    rec = sum(len(_event(s)[0]) + 12 for s in range(1, events + 1)) / events
    print("  record size (header+payload)  %7.0f B" % rec)
    print("  file bytes written per event  %7.0f B   (records + ack pointer, broker up)"
          % (_Counted.total[0] / events))
    if dev:
        print("  flash programmed per event    %7.0f B   (littlefs copies the last block per commit)"
              % ((p1 - p0) / events))
        print("  flash erases per event        %7.2f blocks of 4096 B" % ((e1 - e0) / events))
    _clear(root)

    # 2. append rate with the broker down (nothing acked, room for all of them)
    big = events * 400
    box = Outbox(root, max_bytes=big)
    t0 = _now()
    for seq in range(1, events + 1):
        payload, prio = _event(seq)
        box.append(seq, payload, prio)
    dt = _ms(t0)
    print("  append rate                   %7.0f events/s  (%.2f ms each)" % (events * 1000 / dt, dt / events))

    # 3. boot with `events` queued records
    runs = 5
    t0 = _now()
    for _ in range(runs):
        box = Outbox(root, max_bytes=big)
    dt = _ms(t0) / runs
    segs = len([n for n in os.listdir(root) if n.endswith(".seg")])
    print("  boot (open + recover)         %7.1f ms with %d queued, %d segments, %d B"
          % (dt, box.pending(), segs, box.bytes_used()))
    import gc
    if hasattr(gc, "mem_alloc"):
        box = None
        gc.collect()
        before = gc.mem_alloc()
        box = Outbox(root, max_bytes=big)
        gc.collect()
        print("  heap held by the Outbox       %7d B  (64-bit unix port)" % (gc.mem_alloc() - before))
    t0 = _now()
    n = 0
    for _ in box.records(box.acked()):
        n += 1
    dt = _ms(t0)
    print("  read back (records())         %7.0f records/s" % (n * 1000 / dt))
    if dev:
        gc.collect()
        st = os.statvfs("/flash")
        print("  littlefs blocks in use        %7d of %d" % (st[2] - st[3], st[2]))
        os.umount("/flash")
        dev.close()
        os.remove(workdir + ".img")
    else:
        _wipe(root)


def host(events):
    import subprocess
    script = os.path.abspath(__file__)
    root_dir = os.path.dirname(os.path.dirname(script))
    mp = os.path.join(root_dir, ".venv", "bin", "micropython")
    work = "/tmp/qterm-bench-%d" % os.getpid()
    for backend, title in (("plain", "plain files (VfsPosix)"), ("lfs", "littlefs image (VfsLfs2, 4 KiB blocks)")):
        print("MicroPython unix port, %s, %d events:" % (title, events))
        sys.stdout.flush()
        r = subprocess.run([mp, "-X", "heapsize=4M", script, "--child", backend, work, str(events), root_dir])
        if r.returncode:
            sys.exit(r.returncode)
    print("CPython %s, plain files:" % sys.version.split()[0])
    sys.stdout.flush()
    child("plain", work, events, root_dir)
    print("MicroPython unix port, firmware from a ROMFS image, heap after gc.collect():")
    sys.stdout.flush()
    r = subprocess.run([os.path.join(root_dir, ".venv", "bin", "python"), script, "--romfs-host",
                        work, str(events), root_dir])
    if r.returncode:
        sys.exit(r.returncode)


def romfs_host(workdir, events, root_dir):
    """Build the simulator's ROMFS image, map it and run the heap child in this process."""
    os.environ["QTERM_BUILD"] = workdir + "-build"
    sys.path.insert(0, root_dir)
    from sim import launch
    import micropython_run
    launch.build_image()
    addr, size = launch.map_image()
    sys.stdout.flush()
    rc = micropython_run.run_main(["micropython", "-X", "heapsize=400K", os.path.abspath(__file__),
                                   "--romfs-child", "%d:%d" % (addr, size), workdir, str(events)])
    import shutil
    shutil.rmtree(workdir + "-build", ignore_errors=True)
    sys.exit(rc)


def romfs_child(rom, workdir, events):
    """Runs under MicroPython: heap taken by the outbox code and an Outbox, 64-bit port."""
    import gc
    import uctypes
    import vfs
    addr, size = [int(x) for x in rom.split(":")]
    vfs.mount(vfs.VfsRom(uctypes.bytearray_at(addr, size)), "/rom")
    sys.path.insert(0, "/rom")
    _wipe(workdir)
    gc.collect()
    base = gc.mem_alloc()
    from firmware.outbox import Outbox, OutboxFull
    gc.collect()
    code = gc.mem_alloc() - base
    print("  import firmware.outbox        %7d B" % code)
    box = Outbox(workdir, max_bytes=events * 400)
    for seq in range(1, events + 1):
        payload, prio = _event(seq)
        box.append(seq, payload, prio)
    box = None
    gc.collect()
    base = gc.mem_alloc()
    box = Outbox(workdir, max_bytes=events * 400)
    gc.collect()
    held = gc.mem_alloc() - base
    loaded = "firmware.outbox_repair" in sys.modules
    print("  Outbox after boot recovery    %7d B  (%d queued, %d segments; repair code %s)"
          % (held, box.pending(), len(box._segs), "still loaded" if loaded else "dropped"))
    box = None
    _wipe(workdir)
    gc.collect()
    base = gc.mem_alloc()
    box = Outbox(workdir, max_bytes=8192, segment_bytes=1024)
    seq = 0
    try:
        for seq in range(1, events + 1):
            payload, prio = _event(seq)
            box.append(seq, payload[:60], 2 if seq % 25 == 0 else 0)
    except OutboxFull:
        pass
    gc.collect()
    print("  Outbox after a long outage    %7d B  (8 KiB outbox, %d segments, heartbeats compacted, "
          "%d dropped ranges)" % (gc.mem_alloc() - base, len(box._segs), len(box.dropped)))
    box = None
    _wipe(workdir)


def main(argv):
    if len(argv) > 1 and argv[1] == "--child":
        child(argv[2], argv[3], int(argv[4]), argv[5])
        return
    if len(argv) > 1 and argv[1] == "--romfs-host":
        romfs_host(argv[2], int(argv[3]), argv[4])
    if len(argv) > 1 and argv[1] == "--romfs-child":
        romfs_child(argv[2], argv[3], int(argv[4]))
        return
    events = 1000
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return
    if "--events" in argv:
        events = int(argv[argv.index("--events") + 1])
    host(events)


main(sys.argv)
