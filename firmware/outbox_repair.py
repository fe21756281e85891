"""The outbox code that runs only at boot, on overflow or after a failed write.

Outbox._fix() in firmware/outbox.py imports this module for one call and drops it
again, so boot recovery, segment rewriting (repair, compaction) and the clean-up after a
failed append hold no RAM while the terminal serves. The record format, the boot
checks and the overflow policy are described in firmware/outbox.py.

Each function takes the Outbox as `box` and updates it in place:
    recover(box)                            at boot: ack pointer, every segment checked
    make_room(box, need)                    overflow step 2: drop prio-0 records
    rewrite(box, group, drop0, min_seq)     copy segments' good records into the first one
    undo(box, path, seg, off, fresh)        cut a partial record off after a failed append
"""
import binascii
import os
import struct


try:
    from micropython import const
except ImportError:  # CPython (unit tests)
    from copy import copy as const

# Must match firmware/outbox.py (record layout, file names, segment slots).
_HDR_LEN = const(12)
_CHUNK = const(256)
_MAX_DROPPED = const(16)      # ranges kept in `dropped` before the last one is widened
_META = const("ack")
_SUFFIX = const(".seg")
_NO = const(0)
_FIRST = const(1)
_LAST = const(2)
_COUNT = const(3)
_SIZE = const(4)
_B0 = const(5)
_GEN = const(6)

# Payloads are checked in chunks; the buffer lives only as long as this module is loaded.
_buf = bytearray(_CHUNK)
_mv = memoryview(_buf)


class _Bad(Exception):
    pass


def _makedirs(path):
    part = "/" if path.startswith("/") else ""
    for name in path.split("/"):
        if not name:
            continue
        part = part + name
        try:
            os.stat(part)
        except OSError:
            os.mkdir(part)
        part += "/"


def _remove(path):
    try:
        os.remove(path)
    except OSError as e:
        if e.args[0] != 2:   # ENOENT: already gone is fine
            raise


def _size(path):
    return os.stat(path)[6]


def _name(no):
    return "%08d%s" % (no, _SUFFIX)


def _rename(tmp, path):
    try:
        os.rename(tmp, path)
    except OSError:
        # FAT will not rename over a file; littlefs and POSIX do it atomically
        _remove(path)
        os.rename(tmp, path)


def _note_range(ranges, a, b):
    if ranges and ranges[-1][1] + 1 >= a:
        ranges[-1] = (ranges[-1][0], b)
    elif len(ranges) >= _MAX_DROPPED:
        # bounded: widen the last range; seqs inside it that were delivered are not losses
        ranges[-1] = (ranges[-1][0], b)
    else:
        ranges.append((a, b))


def _stream(box, f, n, crc, out):
    """Pass n payload bytes through the CRC (and into out); True if it matches."""
    c = binascii.crc32(box._h8)
    while n > 0:
        got = f.readinto(_buf if n >= _CHUNK else _mv[:n])
        if not got:
            return False
        c = binascii.crc32(_mv[:got], c)
        if out is not None:
            out.write(_mv[:got])
        n -= got
    return c & 0xFFFFFFFF == crc


# -- boot recovery ---------------------------------------------------------

def recover(box):
    """Read the ack pointer and check every segment; fills box._segs."""
    _makedirs(box.root)
    _load_meta(box)
    root = box.root
    nums = []
    for name in os.listdir(root):
        if len(name) >= 12 and name.endswith(_SUFFIX) and name[:-4].isdigit():
            nums.append(int(name[:-4]))  # 8 digits, more once numbering passes 99999999
        elif name == _META:
            pass
        elif name == _META + ".tmp" or (name.endswith(_SUFFIX + ".tmp") and name[:8].isdigit()):
            # an interrupted rewrite: the original is still in place
            _remove(root + "/" + name)
            box._problem("%s: unfinished rewrite removed" % name)
        else:
            box._problem("%s: unknown file ignored" % name)
    nums.sort()
    prev = 0
    stuck = 0           # highest number of a file that could not be removed
    lost_after = None
    for no in nums:
        name = _name(no)
        try:
            seg, note, size, dups = _scan(box, no, prev)
        except OSError as e:
            box._problem("%s: unreadable, ignored: %r" % (name, e))
            continue
        if note:
            box._problem("%s: %s at offset %d, %d bytes dropped"
                         % (name, note, seg[_SIZE], size - seg[_SIZE]))
        # Only the newest segment can end in a torn write (the power cut came mid-append);
        # anything cut from an older one is a loss and is reported as dropped.
        lost = note and not (note == "torn tail" and no == nums[-1])
        if lost and no == nums[-1]:
            # Records cut from the newest segment may have been published already: the app
            # continues after the highest seq still legible there, so none is used twice.
            box.lost_seq = _seq_in_ruins(box, no, seg[_SIZE], size, seg[_LAST] if seg[_COUNT] else prev)
        if lost_after is not None and seg[_COUNT] and seg[_FIRST] > lost_after + 1:
            _note_range(box.dropped, lost_after + 1, seg[_FIRST] - 1)
        if seg[_COUNT] == 0:
            try:
                _remove(box._path(no))
            except OSError:
                box._problem("%s: cannot remove" % name)
                stuck = no
            if lost:
                lost_after = prev
            continue
        lost_after = seg[_LAST] if lost else None
        if note or dups:
            _repair(box, seg, prev, no == nums[-1])
        box._segs.append(seg)
        prev = seg[_LAST]
    box._last_seq = prev
    # Next segment number from what survived: a stray high-numbered file that was dropped
    # must not push the numbering on.
    box._next_no = max(box._segs[-1][_NO] if box._segs else 0, stuck) + 1
    if box._segs:
        before = box._segs[0][_FIRST] - 1
        box._acked = max(box._acked, before)
        box._floor = max(box._floor, before)


def _seq_in_ruins(box, no, start, size, last):
    """Highest seq of a plausible record header in bytes start..size of segment no (the part
    cut off as damaged); 0 when it is only junk. Plausible: magic, prio <= 2, a length that
    fits, and a seq after `last` but no further than those bytes could have held."""
    limit = last + (size - start) // 100 + 1
    best = 0
    keep = _HDR_LEN - 1     # carried over between chunks, so no header is split
    try:
        with open(box._path(no), "rb") as f:
            f.seek(start)
            pos = start     # file offset of _buf[0]
            have = 0
            while True:
                got = f.readinto(_mv[have:])
                have += got or 0
                for i in range(have - _HDR_LEN + 1):
                    if _buf[i] == 0x51 and _buf[i + 1] <= 2:
                        n, seq = struct.unpack_from("<HI", _buf, i + 2)
                        if best < seq <= limit and seq > last and pos + i + _HDR_LEN + n <= size:
                            best = seq
                if not got or have < keep:
                    return best
                _buf[0:keep] = _buf[have - keep:have]
                pos += have - keep
                have = keep
    except OSError:
        return best


def _load_meta(box):
    try:
        with open(box.root + "/" + _META, "rb") as f:
            data = f.read(16)
    except OSError:
        return
    if len(data) == 12:
        acked, floor, crc = struct.unpack("<III", data)
        if binascii.crc32(data[:8]) & 0xFFFFFFFF == crc:
            box._acked = acked
            box._floor = floor
            return
    box._problem("ack: unreadable, starting from the oldest record")


def _scan(box, no, prev):
    """Verify one segment; returns (meta, note, file size, dups)."""
    path = box._path(no)
    size = _size(path)
    first = None
    count = b0 = off = dups = 0
    note = None
    with open(path, "rb") as f:
        while off < size:
            h = box.head(f)
            if h is None:
                note = "torn tail" if size - off < _HDR_LEN else "bad header"
                break
            prio, n, seq, crc = h
            end = off + _HDR_LEN + n
            if end > size:
                note = "torn tail"
                break
            if not _stream(box, f, n, crc, None):
                note = "torn tail" if end == size else "bad CRC"
                break
            if seq <= prev:
                dups += 1
            else:
                if first is None:
                    first = seq
                prev = seq
                count += 1
                if prio == 0:
                    b0 += end - off
            off = end
    box._gen += 1
    return [no, first, prev, count, off, b0, box._gen], note, size, dups


def _repair(box, seg, prev, newest):
    """Rewrite seg without its bad tail and skipped records."""
    try:
        rewrite(box, [seg], False, prev)
    except (OSError, _Bad) as e:
        box._problem("%s: repair failed: %r" % (_name(seg[_NO]), e))
        if newest:
            box._roll = True


# -- rewriting -------------------------------------------------------------

def rewrite(box, group, drop0, min_seq):
    """Copy the records of segments `group` worth keeping into the first one's file
    (temp-then-rename), then delete the others. Updates group[0] in place;
    group[0][_COUNT] == 0 means it was removed too."""
    seg = group[0]
    path = box._path(seg[_NO])
    tmp = path + ".tmp"
    first = None
    last = min_seq
    count = size = b0 = 0
    drops = []
    run = None
    acked = box._acked
    hdr = box._hdr
    try:
        with open(tmp, "wb") as out:
            for src in group:
                off = 0
                with open(box._path(src[_NO]), "rb") as f:
                    while off < src[_SIZE]:
                        f.seek(off)
                        h = box.head(f)
                        if h is None:
                            raise _Bad("bad header in %s at %d" % (_name(src[_NO]), off))
                        prio, n, seq, crc = h
                        off += _HDR_LEN + n
                        if seq <= last:
                            continue
                        if drop0 and prio == 0:
                            if seq > acked:
                                if run is None:
                                    run = [seq, seq]
                                run[1] = seq
                            continue
                        if run is not None:
                            _note_range(drops, run[0], run[1])
                            run = None
                        out.write(hdr)
                        if not _stream(box, f, n, crc, out):
                            raise _Bad("bad CRC in %s" % _name(src[_NO]))
                        if first is None:
                            first = seq
                        last = seq
                        count += 1
                        size += _HDR_LEN + n
                        if prio == 0:
                            b0 += _HDR_LEN + n
        if count:
            _rename(tmp, path)
        else:
            _remove(tmp)
            _remove(path)
    except Exception:
        try:
            _remove(tmp)
        except OSError:
            pass
        raise
    if run is not None:
        _note_range(drops, run[0], run[1])
    for other in group[1:]:
        try:
            _remove(box._path(other[_NO]))
        except OSError as e:
            # harmless: its records are in the merged file, boot skips them as repeats
            box._problem("%s: cannot delete: %r" % (_name(other[_NO]), e))
    for a, b in drops:
        _note_range(box.dropped, a, b)
    box._gen += 1
    seg[_FIRST] = first
    seg[_LAST] = last
    seg[_COUNT] = count
    seg[_SIZE] = size
    seg[_B0] = b0
    seg[_GEN] = box._gen


def undo(box, path, seg, off, fresh):
    """After a failed append: make sure no partial record is left where the next goes."""
    try:
        size = _size(path)
    except OSError:
        return
    if size == off and not fresh:
        return
    try:
        if fresh:
            _remove(path)
        else:
            rewrite(box, [seg], False, 0)
    except Exception as e:
        box._roll = True
        box._problem("%s: partial record left after failed append: %r" % (path, e))


def make_room(box, need):
    """Overflow step 2: rewrite the oldest segments without their prio-0 records until
    `need` more bytes fit; raises OutboxFull when that is not enough (step 3)."""
    segs = box._segs
    i = 0
    while box.bytes_used() + need > box.max_bytes:
        if i >= len(segs) - 1:
            raise box.Full(box.pending())
        if segs[i][_B0] == 0:
            i += 1
            continue
        # merge small neighbours into the same file so segments do not multiply
        keep = segs[i][_SIZE] - segs[i][_B0]
        start = i
        while start > 0 and keep + segs[start - 1][_SIZE] <= box.segment_bytes:
            start -= 1
            keep += segs[start][_SIZE]
        end = i
        while end + 1 < len(segs) - 1 and \
                keep + segs[end + 1][_SIZE] - segs[end + 1][_B0] <= box.segment_bytes:
            end += 1
            keep += segs[end][_SIZE] - segs[end][_B0]
        try:
            rewrite(box, segs[start:end + 1], True, 0)
        except (OSError, _Bad) as e:
            box._problem("compaction failed: %r" % (e,))
            raise box.Full(box.pending(), e)
        del segs[start + 1:end + 1]
        if segs[start][_COUNT] == 0:
            del segs[start]
            i = start
        else:
            i = start + 1
