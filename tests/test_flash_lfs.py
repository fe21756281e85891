"""Power cuts on simulated flash: SIGKILL micropython while the outbox appends to littlefs.

Each child prints "OK <seq>" (one write, unbuffered) after append() returns; after the
kill a fresh child remounts the image and lists what the outbox recovered.
"""
import json
import os
import random
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")

_PRELUDE = """
import sys
sys.path.insert(0, %(root)r)
from sim.flash import mount_image
from firmware.outbox import Outbox, OutboxFull
image = %(image)r
if image.endswith(".img"):
    dev = mount_image(image, "/flash", size_kb=%(size_kb)d)
    box = Outbox("/flash/outbox", max_bytes=%(max_bytes)d, segment_bytes=%(segment_bytes)d)
else:
    box = Outbox(image, max_bytes=%(max_bytes)d, segment_bytes=%(segment_bytes)d)
"""

# Broker up: acks trail the appends, a snapshot every 50 events releases old segments.
_WRITER = """
last = box.last()
seq = last[0] if last else 0
while True:
    seq += 1
    box.append(seq, b'{"seq":%d,"type":"ticket.issued","data":{"ticket":"A%03d"}}' % (seq, seq % 1000) + b"." * (seq % 97), 2)
    if seq % 7 == 0:
        box.ack(seq - 3)
    if seq % 50 == 0:
        box.set_floor(seq - 20)
    sys.stdout.write("OK %d\\n" % seq)
"""

# Broker down: heartbeats (prio 0) get compacted away; when full, the broker "comes back".
_OUTAGE_WRITER = """
last = box.last()
seq = last[0] if last else 0
while True:
    seq += 1
    prio = 0 if seq % 3 else 2
    try:
        box.append(seq, b'{"seq":%d,"type":"device.heartbeat"}' % seq + b"-" * 60, prio)
    except OutboxFull:
        box.ack(seq - 1)
        box.set_floor(seq - 1)
        box.flush_ack()
        sys.stdout.write("FULL %d\\n" % seq)
        box.append(seq, b'{"seq":%d}' % seq, prio)
    sys.stdout.write("OK %d %d\\n" % (seq, prio))
"""

_CHECK = """
import json
seqs = [s for s, p in box.records(0)]
print(json.dumps({"seqs": seqs, "acked": box.acked(), "floor": box._floor, "problems": box.problems,
                  "pending": box.pending(), "last": box.last()[0] if box.last() else 0}))
"""

_FILL = """
seq = 0
try:
    while True:
        seq += 1
        box.append(seq, b"r" * 200, 2)
        sys.stdout.write("OK %d\\n" % seq)
except OSError as e:
    print("ERR", e.args[0])
box.ack(seq - 1)
box.set_floor(seq - 1)
box.flush_ack()
for s in range(seq, seq + 20):
    box.append(s, b"after", 2)
print("AGAIN", seq + 19)
"""


def _script(body, image, size_kb=1024, max_bytes=65536, segment_bytes=4096):
    return _PRELUDE % {"root": ROOT, "image": image, "size_kb": size_kb, "max_bytes": max_bytes,
                       "segment_bytes": segment_bytes} + body


def _run_and_kill(code, delay):
    p = subprocess.Popen([MICROPYTHON, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    out, err = p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL, err.decode()
    text = out.decode()
    # only whole lines: the kill may land in the middle of a write
    lines = text.split("\n")[:-1]
    return [line.split() for line in lines]


def _check(image, **kw):
    r = subprocess.run([MICROPYTHON, "-c", _script(_CHECK, image, **kw)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _image(tag):
    path = "/tmp/qterm-lfs-%s-%d-%d.img" % (tag, os.getpid(), random.randrange(1 << 30))
    if os.path.exists(path):
        os.remove(path)
    return path


def _power_cuts(image, rnd):
    code = _script(_WRITER, image)
    for _ in range(10):
        before = _check(image)
        lines = _run_and_kill(code, rnd.uniform(0.15, 0.8))
        done = [int(w[1]) for w in lines if w[0] == "OK"]
        assert done, "writer never got going"
        assert done[0] == before["last"] + 1
        state = _check(image)
        seqs = state["seqs"]
        assert seqs == list(range(seqs[0], seqs[-1] + 1))          # contiguous
        # every append that returned is there; the one cut mid-way may or may not be
        assert done[-1] <= state["last"] <= done[-1] + 1
        assert state["last"] == seqs[-1]
        # nothing went missing at the head that was not both acked and snapshotted
        snapshot = (state["last"] // 50) * 50 - 20
        assert seqs[0] - 1 <= max(snapshot, before["seqs"][0] - 1 if before["seqs"] else 0)
        assert [s for s in done if s >= seqs[0]] == [s for s in seqs if done[0] <= s <= done[-1]]
        # a power cut may leave a torn record or a half-written temp file, nothing else
        assert not [p for p in state["problems"] if "torn" not in p and "unfinished" not in p], \
            state["problems"]


def test_power_cut_keeps_every_returned_append():
    image = _image("cut")
    try:
        _power_cuts(image, random.Random(1234))
    finally:
        os.remove(image)


def test_kill_on_plain_files_keeps_every_returned_append():
    # the simulator may also keep its state directory on the host filesystem
    root = _image("dir")[:-4]
    try:
        _power_cuts(root, random.Random(4321))
    finally:
        for name in os.listdir(root):
            os.remove(os.path.join(root, name))
        os.rmdir(root)


def test_power_cut_during_heartbeat_compaction():
    image = _image("outage")
    rnd = random.Random(99)
    kw = {"max_bytes": 6000, "segment_bytes": 1024}
    code = _script(_OUTAGE_WRITER, image, **kw)
    prio_of = {}
    try:
        for _ in range(8):
            lines = _run_and_kill(code, rnd.uniform(0.1, 0.5))
            for w in lines:
                if w[0] == "OK":
                    prio_of[int(w[1])] = int(w[2])
            state = _check(image, **kw)
            seqs = state["seqs"]
            assert seqs == sorted(set(seqs))
            top = max(prio_of)
            assert top <= state["last"] <= top + 1
            # tickets after the last release point are all there; only heartbeats may go
            kept = set(seqs)
            for s, prio in prio_of.items():
                if prio and s > state["floor"] and s > state["acked"]:
                    assert s in kept, (s, state)
            for s in seqs:
                assert s > top or s in prio_of
    finally:
        os.remove(image)


def test_filesystem_full_keeps_stored_records():
    image = _image("full")
    try:
        code = _script(_FILL, image, size_kb=64, max_bytes=1 << 20, segment_bytes=4096)
        r = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout[-500:] + r.stderr
        words = [line.split() for line in r.stdout.splitlines()]
        done = [int(w[1]) for w in words if w[0] == "OK"]
        assert ["ERR", "28"] in words                     # ENOSPC from littlefs
        again = [int(w[1]) for w in words if w[0] == "AGAIN"][0]
        state = _check(image, size_kb=64, max_bytes=1 << 20, segment_bytes=4096)
        assert state["last"] == again
        assert state["problems"] == []
        assert done[-1] + 1 in state["seqs"] or state["seqs"][0] > done[-1]
        assert state["seqs"] == list(range(state["seqs"][0], again + 1))
    finally:
        os.remove(image)
