"""Durable event outbox on flash: the device's journal and its send queue.

Every state change is one record appended here before the citizen is told "done".
Records are kept in segment files `<root>/NNNNNNNN.seg`, in seq order:

    magic u8 | prio u8 | payload length u16 | seq u32 | crc32 u32 | payload
    (little endian; the CRC covers the first 8 header bytes and the payload)

An append is one open("ab") + write + close of one small record: nothing is rewritten
per event. close() commits the record on littlefs; on the host the data is in the
kernel when append() returns, so a SIGKILL behaves like a power cut.

The ack pointer and the snapshot floor live in `<root>/ack` (written temp-then-rename).
ack() saves it only every 16 acks or on flush_ack(): after a power cut up to 16
delivered records are published again, which QoS 1 consumers dedupe on dev+seq.

Boot recovery checks every record (header and CRC, payloads are not parsed). The
first bad record of a segment ends it: everything after it in that segment is dropped
and reported in `problems` (a torn tail after a power cut is the usual case). A
corrupt record in an older segment loses the rest of that segment only; the lost seq
range (known from the next segment) is added to `dropped`. Records whose seq is not
above the ones before them (left over from an interrupted merge) are skipped. Unknown
files in root are left alone and reported.

Release: a segment file is deleted once all its records are <= min(acked, floor);
the segment holding the newest record is never deleted (seq and prev-hash recovery).

Overflow policy, when an append would take bytes_used() over max_bytes:
  1. delete released segments;
  2. drop prio-0 records (heartbeat, printer status) from the oldest segments, by
     rewriting them temp-then-rename (small neighbours are merged into the same file,
     so the number of segments stays bounded). Dropped seqs that were not yet
     delivered are noted in `dropped` as (first_seq, last_seq) ranges; the segment
     holding the newest record is never rewritten;
  3. otherwise raise OutboxFull. Prio 1 and 2 records (calls, tickets, ratings,
     service.finished) are never dropped: the app refuses new tickets instead.
A failed write (ENOSPC, ...) leaves the stored records intact: a partly written
record is cut off again (or its segment is closed for appends and boot drops the tail).

RAM: only the steady-state path (append, read, ack, release) lives here. Boot recovery,
segment rewriting (repair, compaction) and the clean-up after a failed write are in
firmware/outbox_repair.py, loaded for the one call that needs them and dropped again.
"""
import binascii
import os
import struct

from firmware import release

try:
    from micropython import const
except ImportError:  # CPython (unit tests): copy() of an int or str is itself. Not a def of
    from copy import copy as const  # our own: it would cost the device a raw code, unused.

# The record layout and the segment slots are repeated in outbox_repair.py: keep in step.
_MAGIC = const(0x51)
_HDR = const("<BBHII")
_HDR_LEN = const(12)
_MAX_PAYLOAD = const(0xFFFF)
_MAX_SEQ = const(0xFFFFFFFF)
_ACK_EVERY = const(16)        # acks between saves of the ack pointer
_RUN = const(8)               # records() reads up to this many records per file open,
_RUN_BYTES = const(1024)      # and at most this much payload (bounded RAM)
_MAX_PROBLEMS = const(16)
_META = const("ack")
_SUFFIX = const(".seg")

# Slots of the per-segment metadata list.
_NO = const(0)
_FIRST = const(1)
_LAST = const(2)
_COUNT = const(3)
_SIZE = const(4)
_B0 = const(5)      # bytes taken by prio-0 records (what compaction could free)
_GEN = const(6)     # bumped on rewrite so a running records() iterator re-finds its place


def _head(f, buf):
    """Read one record header from f into buf (12 bytes): (prio, length, seq, crc) or None."""
    if f.readinto(buf) != _HDR_LEN:
        return None
    magic, prio, n, seq, crc = struct.unpack(_HDR, buf)
    if magic != _MAGIC or prio > 2:
        return None
    return prio, n, seq, crc


class OutboxFull(Exception):
    """A record does not fit (overflow policy, step 3). args: the number of records not yet
    acknowledged (and the error that stopped compaction)."""


class Outbox:
    Full = OutboxFull   # raised by firmware/outbox_repair.py too, which imports nothing of this

    def __init__(self, root, max_bytes=262144, segment_bytes=16384):
        self.root = root.rstrip("/")
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.problems = []
        self.dropped = []
        self._hdr = bytearray(_HDR_LEN)
        self._h8 = memoryview(self._hdr)[:8]    # the header bytes the CRC covers
        self._segs = []
        self._next_no = 1
        self._acked = 0
        self._floor = 0
        self._unsaved = 0
        self._last_seq = 0
        self._roll = False      # True: the newest segment must not be appended to
        self.lost_seq = 0       # highest seq legible in records cut from the newest segment at boot
        self._gen = 0
        self._fix("recover")
        self._release()

    # -- public API --------------------------------------------------------

    def append(self, seq, payload, prio=1):
        """Store one record; durable when this returns."""
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload)
        size = _HDR_LEN + n
        if seq <= self._last_seq or seq > _MAX_SEQ:
            raise ValueError("seq %d" % seq)    # not after the newest: it would be used twice
        if prio < 0 or prio > 2:
            raise ValueError("prio %r" % (prio,))
        if n > _MAX_PAYLOAD or size > self.segment_bytes:
            raise ValueError("too big")
        segs = self._segs
        if self.bytes_used() + size > self.max_bytes:
            # The overflow policy: released segments go first; the compaction code is loaded
            # only when an older segment holds prio-0 records it could drop.
            self._release()
            if self.bytes_used() + size > self.max_bytes:
                for i in range(len(segs) - 1):
                    if segs[i][_B0]:
                        self._fix("make_room", size)
                        break
                else:
                    raise OutboxFull(self.pending())
        seg = segs[-1] if segs else None
        fresh = seg is None or self._roll or seg[_SIZE] + size > self.segment_bytes
        b0 = size if prio == 0 else 0
        if fresh:
            no = self._next_no
            off = 0
            # allocated (and the list grown) before the write: once the record is on flash
            # nothing may fail
            segs.append([no, seq, seq, 1, size, b0, self._gen + 1])
        else:
            no = seg[_NO]
            off = seg[_SIZE]
        hdr = self._hdr
        struct.pack_into("<BBHI", hdr, 0, _MAGIC, prio, n, seq)
        crc = binascii.crc32(payload, binascii.crc32(self._h8)) & 0xFFFFFFFF
        struct.pack_into("<I", hdr, 8, crc)
        path = self._path(no)
        try:
            with open(path, "ab") as f:
                f.write(hdr)
                f.write(payload)
        except MemoryError:     # open() found no heap: nothing was written
            if fresh:
                segs.pop()
            raise
        except OSError as err:
            if fresh:
                segs.pop()
                self._next_no = no + 1   # never append behind whatever is left there
            try:
                self._fix("undo", path, seg, off, fresh)
            except MemoryError:
                # the clean-up code could not even be loaded: a new segment is safe anyway
                self._roll = True
                self._problem("torn", path)    # a partial record stays; boot drops it
            raise err
        if fresh:
            self._next_no = no + 1
            self._roll = False
            self._gen += 1
        else:
            seg[_LAST] = seq
            seg[_COUNT] += 1
            seg[_SIZE] += size
            seg[_B0] += b0
        self._last_seq = seq

    def last(self):
        """(seq, payload) of the newest record, or None (at boot: the chain continues there)."""
        for rec in self.records(self._last_seq - 1):
            return rec
        return None

    def records(self, after_seq=0):
        """Yield (seq, payload) for records after after_seq, in order. Up to _RUN records
        (at most _RUN_BYTES of payload) are read per open of their segment: opening a file
        per record took as long as sending it."""
        done = after_seq
        no = -1
        gen = -1
        off = 0
        while True:
            seg = None
            for s in self._segs:    # still there, and not rewritten since?
                if s[_NO] == no:
                    seg = s
                    break
            if seg is None or seg[_GEN] != gen or off >= seg[_SIZE]:
                seg = None
                for s in self._segs:
                    if s[_LAST] > done:
                        seg = s
                        break
                if seg is None:
                    return
                no = seg[_NO]
                gen = seg[_GEN]
                off = 0 if seg[_FIRST] > done else self._skip(seg, done)
                if off is None:
                    return
            run = []
            try:
                with open(self._path(no), "rb") as f:
                    f.seek(off)
                    size = 0
                    while off < seg[_SIZE] and len(run) < _RUN and size < _RUN_BYTES:
                        h = self.head(f)     # (prio, length, seq, crc) or None
                        if h is None:
                            break
                        payload = f.read(h[1])
                        crc = binascii.crc32(payload, binascii.crc32(self._h8)) & 0xFFFFFFFF
                        if len(payload) != h[1] or crc != h[3]:
                            break
                        off += _HDR_LEN + h[1]
                        size += h[1]
                        run.append((h[2], payload))
            except OSError:
                pass
            if not run:
                self._problem("unreadable", self._path(no), off)
                return
            for rec in run:
                if rec[0] > done:
                    done = rec[0]
                    yield rec
            run = payload = rec = None

    def ack(self, seq):
        """Records <= seq are delivered; the pointer is saved lazily."""
        if seq > self._last_seq:
            seq = self._last_seq
        if seq <= self._acked:
            return
        self._acked = seq
        self._unsaved += 1
        if self._unsaved >= _ACK_EVERY:
            try:
                self.flush_ack()
            except OSError as e:
                self._problem("ack_lost", e)
        self._release()

    def flush_ack(self):
        """Save the ack pointer (and the floor) now: ack() saves it every _ACK_EVERY calls."""
        path = self.root + "/" + _META
        tmp = path + ".tmp"
        buf = self._hdr     # 12 bytes, free between records: acked, floor, CRC of both
        struct.pack_into("<II", buf, 0, self._acked, self._floor)
        struct.pack_into("<I", buf, 8, binascii.crc32(self._h8) & 0xFFFFFFFF)
        with open(tmp, "wb") as f:
            f.write(buf)
        try:
            os.rename(tmp, path)
        except OSError:
            # FAT will not rename over a file; littlefs and POSIX do it atomically
            os.remove(path)
            os.rename(tmp, path)
        self._unsaved = 0

    def acked(self):
        return self._acked

    def pending(self):
        """Number of records not yet acked."""
        after = self._acked
        total = 0
        for seg in self._segs:
            if seg[_FIRST] > after:
                total += seg[_COUNT]
            elif seg[_LAST] <= after:
                pass
            elif seg[_COUNT] == seg[_LAST] - seg[_FIRST] + 1:
                total += seg[_LAST] - after     # no gaps inside: plain arithmetic
            else:
                total += self._skip(seg, after, True)
        return total

    def set_floor(self, seq):
        """Records <= seq are covered by a saved state snapshot (the floor is _floor)."""
        if seq > self._last_seq:
            seq = self._last_seq
        if seq <= self._floor:
            return
        self._floor = seq
        self.flush_ack()    # the floor is kept in the same file
        self._release()

    def bytes_used(self):
        total = 0
        for seg in self._segs:
            total += seg[_SIZE]
        return total

    def head(self, f):
        """The next record header in f: (prio, length, seq, crc) or None."""
        return _head(f, self._hdr)

    # -- the rarely needed code --------------------------------------------

    def _fix(self, what, *args):
        """outbox_repair.<what>(self, *args): load that code for this call only."""
        try:
            from firmware import outbox_repair
            return getattr(outbox_repair, what)(self, *args)
        finally:
            outbox_repair = None
            release("outbox_repair")

    # -- files -------------------------------------------------------------

    def _path(self, no):
        return "%s/%08d%s" % (self.root, no, _SUFFIX)

    def _problem(self, text, *where):
        """Note a problem for the next device.boot report: words, then where (file, offset, error)."""
        if len(self.problems) < _MAX_PROBLEMS:
            for w in where:
                text += " %s" % (w,)
            self.problems.append(text)

    def _skip(self, seg, after, count=False):
        """Offset of the first record of seg with seq > after, or None (unreadable);
        count: how many records of seg are after it. Reads headers only."""
        off = n = 0
        try:
            with open(self._path(seg[_NO]), "rb") as f:
                while off < seg[_SIZE]:
                    f.seek(off)
                    h = self.head(f)
                    if h is None:
                        break
                    if h[2] > after:
                        if not count:
                            return off
                        n += 1
                    off += _HDR_LEN + h[1]
        except OSError:
            pass
        if count:
            return n
        self._problem("unreadable", self._path(seg[_NO]), off)
        return None

    def _release(self):
        """Delete segments whose records are all delivered and snapshotted."""
        limit = min(self._acked, self._floor)
        segs = self._segs
        while len(segs) > 1 and segs[0][_LAST] <= limit:
            path = self._path(segs[0][_NO])
            try:
                os.remove(path)
            except OSError as e:
                if e.args[0] != 2:      # ENOENT: already gone is fine
                    self._problem("undeleted", path, e)
                    return
            segs.pop(0)
