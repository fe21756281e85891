"""Outbox: journal + send queue on flash. Runs under CPython and MicroPython."""
import os

from _util import raises, rmtree, tmpdir

from firmware import outbox as outbox_mod
from firmware.outbox import Outbox, OutboxFull


def _payload(seq, size=40):
    body = '{"seq":%d,"type":"ticket.issued"}' % seq
    return (body + " " * size)[:size].encode()


def _segments(root):
    return sorted(n for n in os.listdir(root) if n.endswith(".seg"))


def _size(path):
    return os.stat(path)[6]


def _seqs(box, after=0):
    return [s for s, _ in box.records(after)]


def _fill(box, first, last, prio=1, size=40):
    for seq in range(first, last + 1):
        box.append(seq, _payload(seq, size), prio)


def _cut(path, keep):
    with open(path, "rb") as f:
        data = f.read(keep)
    with open(path, "wb") as f:
        f.write(data)


def test_append_and_read_back_in_order():
    root = tmpdir("ob")
    box = Outbox(root)
    assert box.last() is None
    assert _seqs(box) == []
    _fill(box, 1, 5)
    box.append(6, "text payload", 2)
    assert box.last() == (6, b"text payload")
    got = list(box.records(0))
    assert [s for s, _ in got] == [1, 2, 3, 4, 5, 6]
    assert got[0][1] == _payload(1)
    assert _seqs(box, 3) == [4, 5, 6]
    assert box.pending() == 6
    assert box.problems == []
    rmtree(root)


def test_seq_must_increase_and_prio_is_checked():
    root = tmpdir("ob")
    box = Outbox(root)
    box.append(10, b"x")
    raises(ValueError, box.append, 10, b"y")
    raises(ValueError, box.append, 9, b"y")
    raises(ValueError, box.append, 11, b"y", 3)
    raises(ValueError, box.append, 11, b"z" * 20000)
    box.append(11, b"y")
    assert _seqs(box) == [10, 11]
    rmtree(root)


def test_ack_counts_pending_and_survives_restart_lazily():
    root = tmpdir("ob")
    box = Outbox(root)
    _fill(box, 1, 40)
    box.ack(5)
    assert box.acked() == 5 and box.pending() == 35
    box.ack(3)                       # going back is ignored
    assert box.acked() == 5
    box.ack(1000)                    # never beyond the newest record
    assert box.acked() == 40 and box.pending() == 0
    box = Outbox(root)
    assert box.acked() < 40          # saved lazily: a few may be sent twice
    box.ack(20)
    box.flush_ack()
    box = Outbox(root)
    assert box.acked() == 20
    assert box.pending() == 20
    assert _seqs(box, box.acked())[0] == 21
    rmtree(root)


def test_release_needs_ack_and_floor_and_keeps_newest_segment():
    root = tmpdir("ob")
    box = Outbox(root, segment_bytes=512)
    _fill(box, 1, 60)
    segs = _segments(root)
    assert len(segs) > 4
    box.ack(60)
    assert _segments(root) == segs          # delivered but still needed for replay
    box.set_floor(30)
    left = _segments(root)
    assert len(left) < len(segs)
    first = _seqs(box)[0]
    assert first <= 31
    box.set_floor(60)
    assert len(_segments(root)) == 1         # the newest record's segment stays
    assert box.last()[0] == 60
    assert box.pending() == 0
    box = Outbox(root, segment_bytes=512)
    assert box.last()[0] == 60
    assert box.acked() == 60 or box.acked() >= _seqs(box)[0] - 1
    box.append(61, b"after restart")
    assert _seqs(box, 60) == [61]
    rmtree(root)


def test_floor_alone_does_not_release_unsent_records():
    root = tmpdir("ob")
    box = Outbox(root, segment_bytes=512)
    _fill(box, 1, 60)
    segs = _segments(root)
    box.set_floor(60)
    assert _segments(root) == segs
    assert box.pending() == 60
    box.ack(25)
    assert _seqs(box)[0] <= 26
    assert box._floor == 60
    box = Outbox(root, segment_bytes=512)
    assert box._floor == 60
    rmtree(root)


def test_restart_recovers_everything():
    root = tmpdir("ob")
    box = Outbox(root, segment_bytes=1024)
    _fill(box, 1, 100)
    box.ack(10)
    box.flush_ack()
    box2 = Outbox(root, segment_bytes=1024)
    assert box2.problems == []
    assert _seqs(box2) == list(range(1, 101))
    assert box2.last() == (100, _payload(100))
    assert box2.acked() == 10 and box2.pending() == 90
    assert box2.bytes_used() == box.bytes_used()
    box2.append(101, b"more")
    assert Outbox(root, segment_bytes=1024).last() == (101, b"more")
    rmtree(root)


def test_torn_tail_every_cut_point_is_dropped():
    root = tmpdir("ob")
    box = Outbox(root)
    _fill(box, 1, 3)
    seg = root + "/" + _segments(root)[0]
    full = _size(seg)
    rec = full // 3
    with open(seg, "rb") as f:
        original = f.read()
    for cut in range(1, rec):      # cutting a whole record leaves a valid file
        with open(seg, "wb") as f:
            f.write(original[:full - cut])
        box = Outbox(root)
        assert _seqs(box) == [1, 2], (cut, _seqs(box))
        assert box.last()[0] == 2
        assert len(box.problems) == 1 and "torn" in box.problems[0], box.problems
        assert _size(seg) == 2 * rec               # the tail was cut off on flash too
        box.append(3, _payload(3))                 # the same seq can be written again
        assert Outbox(root).problems == []
        assert _seqs(Outbox(root)) == [1, 2, 3]
    rmtree(root)


def test_garbage_after_last_record_is_dropped():
    root = tmpdir("ob")
    box = Outbox(root)
    _fill(box, 1, 5)
    seg = root + "/" + _segments(root)[0]
    for junk in (b"\x00", b"\xff" * 7, b"\x51\x01\x05", b"garbage garbage garbage", b"\xff" * 300):
        with open(seg, "ab") as f:
            f.write(junk)
        box = Outbox(root)
        assert _seqs(box) == [1, 2, 3, 4, 5]
        assert len(box.problems) == 1
    box.append(6, b"ok")
    assert _seqs(Outbox(root)) == [1, 2, 3, 4, 5, 6]
    rmtree(root)


def test_damage_in_the_newest_segment_names_the_highest_seq_it_cut():
    """Records cut off the newest segment may have been published: boot reports the highest
    seq still legible there, so the device never uses one of them again. Junk is not a seq."""
    root = tmpdir("ob")
    box = Outbox(root)
    _fill(box, 1, 10, size=120)      # no real event is smaller than ~120 bytes
    seg = root + "/" + _segments(root)[0]
    with open(seg, "rb") as f:
        data = bytearray(f.read())
    data[132 * 6 + 20] ^= 0x40       # record 7 of 10 (132 bytes each)
    with open(seg, "wb") as f:
        f.write(data)
    box = Outbox(root)
    assert _seqs(box) == [1, 2, 3, 4, 5, 6] and box.lost_seq == 10, (_seqs(box), box.lost_seq)
    assert Outbox(root).lost_seq == 0       # repaired: the next boot finds nothing more
    box.append(11, b"ok")
    with open(seg, "ab") as f:
        f.write(b"\x51\x01\x05\x00" + b"\xff" * 60)   # junk that starts like a header
    assert Outbox(root).lost_seq == 0
    rmtree(root)


def test_corrupt_crc_in_middle_stops_that_segment_only():
    root = tmpdir("ob")
    box = Outbox(root, segment_bytes=600)
    _fill(box, 1, 30)
    segs = _segments(root)
    assert len(segs) >= 3
    mid = root + "/" + segs[1]
    first_mid = Outbox(root, segment_bytes=600)._segs[1][1]
    with open(mid, "rb") as f:
        data = bytearray(f.read())
    rec = 52                                       # 12-byte header + 40-byte payload
    data[rec + 20] ^= 0x40                         # 2nd record of the middle segment
    with open(mid, "wb") as f:
        f.write(data)
    box = Outbox(root, segment_bytes=600)
    seqs = _seqs(box)
    lost = list(range(first_mid + 1, Outbox(root, segment_bytes=600)._segs[2][1]))
    # documented: the rest of that segment is gone, later segments are intact
    assert seqs == [s for s in range(1, 31) if s not in lost], seqs
    assert any("bad CRC" in p for p in box.problems), box.problems
    assert box.dropped == [(lost[0], lost[-1])]
    # the damaged segment was repaired, so the next boot is clean
    assert Outbox(root, segment_bytes=600).problems == []
    rmtree(root)


def test_unknown_files_are_ignored_and_reported():
    root = tmpdir("ob")
    box = Outbox(root)
    _fill(box, 1, 3)
    with open(root + "/notes.txt", "w") as f:
        f.write("hello")
    with open(root + "/00000099.seg.tmp", "wb") as f:
        f.write(b"half a rewrite")
    with open(root + "/ack", "wb") as f:
        f.write(b"bad")
    box = Outbox(root)
    assert _seqs(box) == [1, 2, 3]
    text = " ".join(box.problems)
    assert "notes.txt" in text and "00000099.seg.tmp" in text and "ack" in text
    assert "notes.txt" in os.listdir(root)
    assert "00000099.seg.tmp" not in os.listdir(root)
    rmtree(root)


def test_overflow_deletes_released_segments_first():
    root = tmpdir("ob")
    box = Outbox(root, max_bytes=2048, segment_bytes=512)
    _fill(box, 1, 36)                                 # 36 * 52 bytes: almost full
    box.ack(20)
    box.dropped = []
    box.set_floor(20)
    _fill(box, 37, 50)                                # fits only without the released ones
    assert box.dropped == []
    assert box.bytes_used() <= 2048
    assert _seqs(box)[-1] == 50
    rmtree(root)


def test_overflow_drops_heartbeats_never_tickets():
    root = tmpdir("ob")
    box = Outbox(root, max_bytes=4096, segment_bytes=1024)
    seq = 0
    prio_of = {}
    try:
        while True:
            seq += 1
            prio = (0, 1, 2)[seq % 3]
            box.append(seq, _payload(seq), prio)
            prio_of[seq] = prio
    except OutboxFull as e:
        assert e.args[0] == box.pending()      # what waits for the broker
    assert box.bytes_used() <= 4096
    kept = _seqs(box)
    must = [s for s in prio_of if prio_of[s] > 0]
    assert [s for s in kept if prio_of[s] > 0] == must    # nothing above prio 0 lost
    gone = [s for s in prio_of if s not in kept]
    assert gone and all(prio_of[s] == 0 for s in gone)
    for s in gone:
        assert any(a <= s <= b for a, b in box.dropped), (s, box.dropped)
    assert kept[-1] == seq - 1
    # what fits again after the broker acks and a snapshot is taken
    box.ack(seq - 1)
    box.set_floor(seq - 1)
    box.append(seq, b"ticket after outage", 2)
    assert box.last() == (seq, b"ticket after outage")
    # the rewritten files are consistent on the next boot
    again = Outbox(root, max_bytes=4096, segment_bytes=1024)
    assert again.problems == []
    assert _seqs(again) == _seqs(box)
    rmtree(root)


def test_acked_heartbeats_dropped_are_not_reported():
    root = tmpdir("ob")
    box = Outbox(root, max_bytes=3000, segment_bytes=1000)
    for seq in range(1, 40):
        box.append(seq, _payload(seq), 0 if seq % 2 else 1)
    box.ack(39)
    for seq in range(40, 70):
        box.append(seq, _payload(seq), 1)
    assert box.dropped == []              # only delivered heartbeats were dropped
    # 39 shares the segment that was newest at the time: that one is never rewritten
    assert [s for s in _seqs(box) if s < 40 and s % 2] == [39]
    rmtree(root)


def test_full_of_tickets_raises_outbox_full():
    root = tmpdir("ob")
    box = Outbox(root, max_bytes=1024, segment_bytes=512)
    n = 0
    try:
        for seq in range(1, 100):
            box.append(seq, _payload(seq), 2)
            n = seq
    except OutboxFull:
        pass
    assert 0 < n < 99
    assert _seqs(box) == list(range(1, n + 1))
    raises(OutboxFull, box.append, n + 1, _payload(n + 1), 0)
    box.ack(n)
    raises(OutboxFull, box.append, n + 1, _payload(n + 1), 2)   # no snapshot yet
    box.set_floor(n)
    box.append(n + 1, _payload(n + 1), 2)
    rmtree(root)


def test_segments_stay_bounded_under_long_outage():
    root = tmpdir("ob")
    box = Outbox(root, max_bytes=8192, segment_bytes=1024)
    seq = 0
    for _ in range(2000):
        seq += 1
        try:
            box.append(seq, _payload(seq), 1 if seq % 25 == 0 else 0)
        except OutboxFull:
            break
        assert len(box._segs) <= 2 * 8192 // 1024 + 2
    assert box.bytes_used() <= 8192
    assert len(box.dropped) <= 16
    rmtree(root)


def test_failed_write_keeps_stored_records():
    root = tmpdir("ob")
    box = Outbox(root)
    _fill(box, 1, 5)
    real_open = open

    class Torn:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:5])
            raise OSError(28)

    def failing_open(path, mode="r"):
        f = real_open(path, mode)
        return Torn(f) if "a" in mode else f

    outbox_mod.open = failing_open
    try:
        e = raises(OSError, box.append, 6, _payload(6))
        assert e.args[0] == 28
    finally:
        del outbox_mod.open
    assert _seqs(box) == [1, 2, 3, 4, 5]
    assert box.last()[0] == 5
    box.append(6, _payload(6))
    box = Outbox(root)
    assert box.problems == []
    assert _seqs(box) == [1, 2, 3, 4, 5, 6]
    rmtree(root)


def test_records_iterator_survives_appends_and_compaction():
    root = tmpdir("ob")
    box = Outbox(root, max_bytes=3000, segment_bytes=600)
    for seq in range(1, 30):
        box.append(seq, _payload(seq), 0 if seq % 2 else 1)
    it = box.records(0)
    assert next(it)[0] == 1
    assert next(it)[0] == 2
    box.append(30, b"new", 1)
    seen = [2]
    for seq, _ in it:
        seen.append(seq)
        if seq == 10:
            for s in range(31, 60):
                try:
                    box.append(s, _payload(s), 2)
                except OutboxFull:
                    break
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert seen[-1] == box.last()[0]
    rmtree(root)


def test_interrupted_merge_leftovers_are_skipped():
    root = tmpdir("ob")
    box = Outbox(root, segment_bytes=600)
    _fill(box, 1, 30)
    segs = _segments(root)
    # a merge renamed its result over the 1st segment but died before deleting the 2nd
    with open(root + "/" + segs[0], "rb") as f:
        a = f.read()
    with open(root + "/" + segs[1], "rb") as f:
        b = f.read()
    with open(root + "/" + segs[0], "wb") as f:
        f.write(a + b)
    box = Outbox(root, segment_bytes=600)
    assert _seqs(box) == list(range(1, 31))
    assert segs[1] not in _segments(root)
    assert Outbox(root, segment_bytes=600).problems == []
    rmtree(root)


def test_thousand_records_reopen():
    root = tmpdir("ob")
    box = Outbox(root)
    for seq in range(1, 1001):
        box.append(seq, _payload(seq, 200), seq % 3)
    used = box.bytes_used()
    assert used == 1000 * 212
    box = Outbox(root)
    assert box.problems == []
    assert box.pending() == 1000
    assert box.last() == (1000, _payload(1000, 200))
    assert box.bytes_used() == used
    assert len(box._segs) == len(_segments(root)) <= used // 16384 + 1
    n = 0
    for seq, payload in box.records(0):
        n += 1
        assert seq == n and payload == _payload(n, 200)
    assert n == 1000
    rmtree(root)


def test_directory_with_a_segment_name_does_not_stop_boot():
    root = tmpdir("ob")
    box = Outbox(root)
    _fill(box, 1, 3)
    os.mkdir(root + "/00000007.seg")
    box = Outbox(root)
    assert _seqs(box) == [1, 2, 3]
    assert any("00000007.seg" in p for p in box.problems)
    box.append(4, b"x")
    assert _seqs(Outbox(root)) == [1, 2, 3, 4]
    os.rmdir(root + "/00000007.seg")
    rmtree(root)


# -- the boot / overflow / failure code lives in firmware/outbox_repair.py ---------------

def _spy(box):
    """Record which outbox_repair routines the box loads."""
    calls = []
    real = box._fix

    def spy(what, *args):
        calls.append(what)
        return real(what, *args)

    box._fix = spy
    return calls


def _repair_loaded():
    import sys
    import firmware
    return "firmware.outbox_repair" in sys.modules or hasattr(firmware, "outbox_repair")


def _on_micropython():
    import sys
    return sys.implementation.name == "micropython"


def test_steady_state_never_loads_the_repair_code():
    root = tmpdir("ob")
    box = Outbox(root, max_bytes=2048, segment_bytes=512)
    if _on_micropython():          # CPython keeps it imported: RAM is not scarce there
        assert not _repair_loaded()
    calls = _spy(box)
    for seq in range(1, 200):
        box.append(seq, _payload(seq), seq % 3)
        box.ack(seq)
        if seq % 10 == 0:
            box.set_floor(seq)
        box.last()
        box.pending()
    assert _seqs(box, 190) == list(range(191, 200))
    box.flush_ack()
    assert calls == []             # released segments made room every time
    rmtree(root)


def test_full_of_tickets_refuses_without_loading_the_repair_code():
    root = tmpdir("ob")
    box = Outbox(root, max_bytes=1024, segment_bytes=512)
    calls = _spy(box)
    _fill(box, 1, 19, prio=2)
    e = raises(OutboxFull, box.append, 20, _payload(20), 2)
    assert e.args[0] == 19         # records not sent
    assert calls == []             # nothing to compact: no need to load it
    rmtree(root)


def test_compaction_loads_the_repair_code_for_the_call_only():
    root = tmpdir("ob")
    box = Outbox(root, max_bytes=3000, segment_bytes=600)
    calls = _spy(box)
    for seq in range(1, 80):
        box.append(seq, _payload(seq), 0 if seq % 2 else 2)
    assert "make_room" in calls
    assert box.dropped and box.bytes_used() <= 3000
    if _on_micropython():
        assert not _repair_loaded()
    assert [s for s in _seqs(box) if s % 2 == 0] == list(range(2, 80, 2))
    rmtree(root)


def test_repair_routines_work_on_a_box():
    from firmware import outbox_repair
    root = tmpdir("ob")
    box = Outbox(root, segment_bytes=4096)
    for seq in range(1, 11):
        box.append(seq, _payload(seq), 0 if seq in (3, 4, 5, 9) else 1)
    box.ack(3)
    seg = box._segs[0]
    outbox_repair.rewrite(box, [seg], True, 0)
    assert _seqs(box) == [1, 2, 6, 7, 8, 10]
    assert seg[3] == 6 and seg[5] == 0              # count, prio-0 bytes
    assert box.dropped == [(4, 5), (9, 9)]          # 3 was delivered: not a loss
    assert box.last() == (10, _payload(10))
    box.dropped = []
    again = Outbox(root, segment_bytes=4096)
    assert again.problems == [] and _seqs(again) == [1, 2, 6, 7, 8, 10]
    fresh = Outbox(root, segment_bytes=4096)
    fresh._segs = []
    outbox_repair.recover(fresh)
    assert [s[:6] for s in fresh._segs] == [s[:6] for s in again._segs]   # all but the gen
    assert fresh._last_seq == 10
    rmtree(root)


class _TornWrite:
    """A file whose write() stores 5 bytes, then fails like a full flash."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[:5])
        raise OSError(28)


def test_failed_write_when_clean_up_code_cannot_load():
    root = tmpdir("ob")
    box = Outbox(root)
    _fill(box, 1, 5)
    real_open = open

    def no_memory(what, *args):
        raise MemoryError("no room for the repair code")

    def failing_open(path, mode="r"):
        f = real_open(path, mode)
        return _TornWrite(f) if "a" in mode else f

    box._fix = no_memory
    outbox_mod.open = failing_open
    try:
        e = raises(OSError, box.append, 6, _payload(6))   # the caller still sees the write error
        assert e.args[0] == 28
    finally:
        del outbox_mod.open
    assert any(p.startswith("torn ") for p in box.problems), box.problems
    box.append(6, _payload(6))                          # goes to a new segment
    assert _seqs(box) == [1, 2, 3, 4, 5, 6]
    assert len(_segments(root)) == 2
    box = Outbox(root)                                  # boot cuts the 5 stray bytes off
    assert _seqs(box) == [1, 2, 3, 4, 5, 6]
    assert len(box.problems) == 1 and "torn" in box.problems[0], box.problems
    assert Outbox(root).problems == []
    rmtree(root)


def test_ack_file_layout():
    import binascii
    import struct
    root = tmpdir("ob")
    box = Outbox(root)
    _fill(box, 1, 30)
    box.ack(20)
    box.set_floor(7)
    with open(root + "/ack", "rb") as f:
        data = f.read()
    head = struct.pack("<II", 20, 7)
    assert data == head + struct.pack("<I", binascii.crc32(head) & 0xFFFFFFFF)
    box.append(31, b"after a save")                     # the shared header buffer is rewritten
    assert Outbox(root).last() == (31, b"after a save")
    rmtree(root)
