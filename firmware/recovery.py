"""Bringing the terminal back after power-on: boot counter, outbox, hall snapshot, replay.

Boot-time code lives here, apart from firmware.app, so its bytecode is released once the
device is serving (the app imports it at boot and for each periodic snapshot only).

Snapshots are binary and streamed: the waiting rings go from their preallocated buffers
to flash and back without a copy, so reading or writing one needs a few hundred bytes of
heap whatever the queue length. A snapshot names the hall structure it was made for
(services, counters, ring sizes); after a structural config change it is not used.

    hall.bin      b"QTH3" | seq u32 | prev 16 | ts i64 | day_start i64 | shape u32 | day text
                  | per service: last u16, avg_s u32, finished u16, ring
                  | skipped ring | parked ring | per counter req u32 | per counter: state u8, priority_run u8, reason, staff,
                    current (flag + 7 fields), rating (flag + ticket, service, staff, ts), ring
                  | crc32 of everything before
    numbers.bin   b"QTN1" | seq u32 | day_start i64 | day text | per service: code, last u16 | crc32

text = u8 length (255: None) + UTF-8; ring = u16 count + 8 bytes an entry (parked ring: 16).
A b"QTH2" snapshot (before parking and hall requests existed) is the same without the parked
ring and the counters' req (the last hall request applied: firmware/role_kiosk.py); still read,
so a firmware update in the middle of a day keeps the queue.
numbers.bin is written with every snapshot and keeps the business day and each service's
last number even if both snapshots are lost: no number is handed out twice in a day.
"""
import binascii
import json
import os
import struct

from firmware import store
from firmware.envelope import Stamper, chain_hash, ZERO_PREV
from firmware.outbox import Outbox

_STATES = ("open", "paused", "closed")


def recover(app):
    """Open the outbox, restore the last snapshot and replay every event after it."""
    root = app.root
    meta = _read_json(root + "/meta.json") or {}
    app.boot_no = meta.get("boot", 0) + 1
    store.write_json(root + "/meta.json", {"boot": app.boot_no})
    max_bytes = app.cfg["outbox"]["max_kb"] * 1024
    # At least four segments, so that releasing old ones can always make room.
    box = app.outbox = Outbox(root + "/outbox", max_bytes, min(16384, max_bytes // 4))
    seq, prev, applied, last_ts = 0, ZERO_PREV, 0, 0
    for name in ("hall.bin", "hall.prev.bin"):
        path = root + "/" + name
        if not store.exists(path):
            continue
        try:
            seq, prev, last_ts = read_snapshot(app.hall, path)
            applied = seq
            app.snapshot_seq = seq
            break
        except (OSError, ValueError, KeyError, IndexError, MemoryError) as e:
            app.problems.append("%s unusable: %s" % (name, e))
            _fresh(app.hall, app.cfg)
    else:
        numbers = read_numbers(app.hall, root + "/numbers.bin", app.problems)
        seq = max(seq, numbers)
        if app.problems:
            app.problems.append("state rebuilt from the outbox")
    # Never reuse a seq: not one the outbox still holds, nor one the broker acknowledged,
    # nor one that may have gone out from records damaged since.
    last = box.last()
    if last is not None and last[0] >= seq:
        seq, prev = last[0], chain_hash(last[1])
        try:
            last_ts = json.loads(last[1])["ts"]
        except (ValueError, KeyError, TypeError):
            pass
    floor = max(seq, box.acked(), box.lost_seq)
    if floor > seq:
        # The chain cannot continue from an event we no longer have: skip one more seq so
        # the break follows an announced gap (outbox.dropped), never a silent one.
        start = max(seq, box.acked()) + 1
        seq = floor + 1
        box.dropped.append((start, seq))
        app.problems.append("events up to seq %d lost from flash; continuing at %d" % (floor, seq + 1))
    app.last_ts = last_ts
    app.stamper = Stamper(app.cfg["device"], app.boot_no, binascii.unhexlify(app.cfg["key"]), seq, prev)
    replayed = skipped = 0
    for _, payload in box.records(applied):
        try:
            env = json.loads(payload)
            app.hall.apply(env["type"], env["data"], env["ts"])
            replayed += 1
        except (ValueError, KeyError, TypeError, IndexError):
            skipped += 1    # an event of a service or counter the config no longer has
    if skipped:
        app.problems.append("%d events not replayed (config changed)" % skipped)
    now = app.now()
    now_ms = app.hal.clock.ticks_ms()
    for c in app.hall.counters:
        pad = app.pads.get(c.id)    # (a kiosk keeps windows its counters' pads hold: none here)
        if c.rating and pad is not None:
            pad.open(c.rating, now_ms, now)
    pending = _read_json(root + "/rating.pending")
    if pending:
        pad = app.pads.get(pending.get("counter"))
        if pad and pad.stage and pad.ticket == pending.get("ticket"):
            # The score was pressed before the power cut: keep it; the reason step is over.
            pad.restore_reason(pending["score"], pending.get("ms", 0), now_ms)
    return replayed


def _fresh(hall, cfg):
    """The hall as it was built, again, in the same objects: a half-read snapshot may have
    filled some of it, and a second set of rings would not fit next to the first."""
    for s in hall.services:
        s.waiting.clear()
        s.last = s.finished = 0
        s.avg_s = s.default_avg
    for c, k in zip(hall.counters, cfg["counters"]):
        c.state, c.reason, c.staff = "open", "", k.get("staff")
        c.direct.clear()
        c.current = c.rating = None
        c.priority_run = c.req = 0
    hall.skipped.clear()
    hall.parked.clear()
    hall.day = ""
    hall.day_start = 0


def config_outcome(app):
    """After a config.set was applied or refused at this boot (firmware/config.py): announce it
    (config.applied or command.rejected) once, and return the reply the backend still waits for."""
    path = app.root + "/config.result.json"
    res = _read_json(path)
    if not isinstance(res, dict):
        return None
    cid = res.get("id")
    if not res.get("announced"):
        if res.get("ok"):
            app.emit("config.applied", {"keys": res.get("keys") or [], "restart": True})
        else:
            from firmware import text
            app.emit("command.rejected", {"id": text.clean(cid, 64) if isinstance(cid, str) else None,
                                          "op": "config.set", "reason": res.get("error") or "bad_config",
                                          "detail": text.clean(res.get("detail") or "", 200)})
        res["announced"] = True
        store.write_json(path, res)     # a power cut now must not announce it twice
    if res.get("ok"):
        return {"id": cid, "ok": True, "result": {"applied": res.get("keys"), "restart": True}}
    return {"id": cid, "ok": False, "error": res.get("error"), "detail": res.get("detail")}


def _read_json(path):
    try:
        return store.read_json(path)
    except ValueError:
        return None


def shape(hall):
    """A fingerprint of the hall's structure: a snapshot only fits the structure it was made for."""
    c = 0
    for s in hall.services:
        c = binascii.crc32(s.code.encode(), c)
        c = binascii.crc32(s.waiting.capacity.to_bytes(2, "little"), c)
    for k in hall.counters:
        c = binascii.crc32(k.id.encode(), c)
        c = binascii.crc32(bytes(k.services), c)
    c = binascii.crc32(hall.skipped.capacity.to_bytes(2, "little"), c)
    return c & 0xFFFFFFFF


class _Out:
    """Writes to a file while keeping the CRC of everything written."""

    def __init__(self, f):
        self.f = f
        self.crc = 0

    def put(self, data):
        self.f.write(data)
        self.crc = binascii.crc32(data, self.crc)

    def pack(self, fmt, *values):
        self.put(struct.pack(fmt, *values))

    def text(self, s):
        if s is None:
            return self.put(b"\xff")
        b = s.encode()[:254]
        self.put(bytes((len(b),)))
        self.put(b)

    def ring(self, r):
        self.pack("<H", len(r))
        self.put(r.used())


class _In:
    """Reads a snapshot back, checking sizes as it goes; the CRC is checked at the end."""

    def __init__(self, f, size):
        self.f = f
        self.left = size - 4
        self.crc = 0

    def get(self, n):
        if n > self.left:
            raise ValueError("truncated")
        b = self.f.read(n)
        if len(b) != n:
            raise ValueError("truncated")
        self.left -= n
        self.crc = binascii.crc32(b, self.crc)
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.get(struct.calcsize(fmt)))

    def text(self):
        n = self.get(1)[0]
        return None if n == 255 else self.get(n).decode()

    def ring(self, r):
        n = self.unpack("<H")[0]
        size = n * r.size
        if n > r.capacity or size > self.left:
            raise ValueError("ring of %d" % n)
        mv = memoryview(r.buf)[:size]
        if self.f.readinto(mv) != size:
            raise ValueError("truncated")
        self.crc = binascii.crc32(mv, self.crc)
        self.left -= size
        r.n = n


def write_snapshot(app):
    """hall.bin = state after event `seq`, the one before kept as hall.prev.bin.

    The outbox may release only what the *older* snapshot covers, so if the newer one is
    ever damaged the device falls back to the older one and still replays every event.
    """
    root = app.root
    seq = app.stamper.seq
    write_numbers(app.hall, root + "/numbers.bin", seq)
    tmp = root + "/hall.bin.new"
    save_hall(app.hall, tmp, seq, app.stamper.prev, app.last_ts)
    if store.exists(root + "/hall.bin"):
        os.rename(root + "/hall.bin", root + "/hall.prev.bin")
    os.rename(tmp, root + "/hall.bin")
    app.outbox.set_floor(app.snapshot_seq)
    app.snapshot_seq = seq


def save_hall(hall, path, seq, prev, ts):
    """Write the hall as it is after event seq (chain hash prev, wall time ts) to path."""
    with open(path, "wb") as f:
        o = _Out(f)
        o.put(b"QTH3")
        o.pack("<I", seq)
        o.put(binascii.unhexlify(prev))
        o.pack("<qqI", ts, hall.day_start, shape(hall))
        o.text(hall.day)
        for s in hall.services:
            o.pack("<HIH", s.last, s.avg_s, s.finished)
            o.ring(s.waiting)
        o.ring(hall.skipped)
        o.ring(hall.parked)
        for c in hall.counters:
            o.pack("<I", c.req)
        for c in hall.counters:
            o.pack("<BB", _STATES.index(c.state), min(255, c.priority_run))
            o.text(c.reason)
            o.text(c.staff)
            cur = c.current
            if cur is None:
                o.put(b"\x00")
            else:
                o.pack("<BBHBBIIB", 1, cur[0], cur[1], cur[2], cur[3], cur[4], cur[5], min(255, cur[6]))
            r = c.rating
            if r is None:
                o.put(b"\x00")
            else:
                o.put(b"\x01")
                o.text(r[0])
                o.text(r[1])
                o.text(r[2])
                o.pack("<q", r[3])
            o.ring(c.direct)
        f.write(struct.pack("<I", o.crc & 0xFFFFFFFF))


def max_snapshot_bytes(hall):
    """The largest hall.bin this hall can produce: anything bigger is not read at all."""
    n = 64 + 8 * hall.skipped.capacity + 2 + hall.parked.size * hall.parked.capacity
    for s in hall.services:
        n += 12 + 8 * s.waiting.capacity
    for c in hall.counters:
        n += 1400 + 8 * c.direct.capacity   # five texts of at most 255 bytes and fixed fields
    return n


def read_snapshot(hall, path):
    """Load hall.bin into hall; (seq, prev, ts) or ValueError when damaged or not this hall's."""
    size = os.stat(path)[6]
    if size > max_snapshot_bytes(hall) or size < 48:
        raise ValueError("size %d" % size)
    with open(path, "rb") as f:
        i = _In(f, size)
        magic = i.get(4)
        if magic != b"QTH3" and magic != b"QTH2":
            raise ValueError("not a snapshot")
        seq = i.unpack("<I")[0]
        prev = binascii.hexlify(i.get(16)).decode()
        ts, day_start, fp = i.unpack("<qqI")
        if fp != shape(hall):
            raise ValueError("made for another hall structure")
        hall.day = i.text()
        hall.day_start = day_start
        for s in hall.services:
            s.last, s.avg_s, s.finished = i.unpack("<HIH")
            i.ring(s.waiting)
        i.ring(hall.skipped)
        if magic == b"QTH3":
            i.ring(hall.parked)
            for c in hall.counters:
                c.req = i.unpack("<I")[0]
        else:
            hall.parked.clear()
            for c in hall.counters:
                c.req = 0
        for c in hall.counters:
            state, c.priority_run = i.unpack("<BB")
            c.state = _STATES[state]
            c.reason = i.text() or ""
            c.staff = i.text()
            if i.get(1)[0]:
                cur = c.cur
                v = i.unpack("<BHBBIIB")
                for k in range(7):
                    cur[k] = v[k]
                c.current = cur
            else:
                c.current = None
            if i.get(1)[0]:
                r = c.rate
                r[0] = i.text()
                r[1] = i.text()
                r[2] = i.text()
                r[3] = i.unpack("<q")[0]
                c.rating = r
            else:
                c.rating = None
            i.ring(c.direct)
        crc = i.crc & 0xFFFFFFFF
        if i.left != 0 or struct.unpack("<I", f.read(4))[0] != crc:
            raise ValueError("checksum")
    return seq, prev, ts


def write_numbers(hall, path, seq):
    buf = bytearray(b"QTN1")
    buf += struct.pack("<Iq", seq, hall.day_start)
    for text in [hall.day] + [s.code for s in hall.services]:
        b = text.encode()
        buf.append(len(b))
        buf += b
        if text is not hall.day:
            buf += struct.pack("<H", hall.by_code[text].last)
    buf += struct.pack("<I", binascii.crc32(buf) & 0xFFFFFFFF)
    store.write_atomic(path, bytes(buf))


def read_numbers(hall, path, problems):
    """Business day and last numbers from numbers.bin (when no snapshot could be used);
    returns the seq it was written at (0 if missing or damaged)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(1024)
    except OSError:
        return 0
    if len(raw) < 21 or raw[:4] != b"QTN1" or \
            struct.unpack("<I", raw[-4:])[0] != binascii.crc32(raw[:-4]) & 0xFFFFFFFF:
        problems.append("numbers.bin damaged")
        return 0
    # The checksum held, so the layout is the one written above.
    seq, day_start = struct.unpack("<Iq", raw[4:16])
    n = raw[16]
    hall.day = raw[17:17 + n].decode()
    hall.day_start = day_start
    at = 17 + n
    while at < len(raw) - 4:
        n = raw[at]
        s = hall.by_code.get(raw[at + 1:at + 1 + n].decode())
        if s is not None:
            s.last = raw[at + 1 + n] | raw[at + 2 + n] << 8
        at += 3 + n
    problems.append("numbers kept from numbers.bin (day %s)" % hall.day)
    return seq
