"""Bringing the terminal back after power-on: boot counter, outbox, hall snapshot, replay.

Boot-time code lives here, apart from firmware.app, so its bytecode is released once the
device is serving (the app imports it at boot and for each periodic snapshot only).
"""
import binascii
import json
import os

from firmware import store
from firmware.envelope import Stamper, chain_hash, ZERO_PREV
from firmware.hall import Hall
from firmware.outbox import Outbox


def recover(app):
    """Open the outbox, restore the last snapshot and replay every event after it."""
    root = app.root
    meta = _read_or_none(root + "/meta.json") or {}
    app.boot_no = meta.get("boot", 0) + 1
    store.write_json(root + "/meta.json", {"boot": app.boot_no})
    max_bytes = app.cfg["outbox"]["max_kb"] * 1024
    # At least four segments, so that releasing old ones can always make room.
    app.outbox = Outbox(root + "/outbox", max_bytes, min(16384, max_bytes // 4))
    seq, prev, applied = 0, ZERO_PREV, 0
    for name in ("hall.json", "hall.prev.json"):
        snap = _read_or_none(root + "/" + name)
        if snap is None:
            if store.exists(root + "/" + name):
                app.problems.append(name + " damaged")
            continue
        try:
            restore(app.hall, snap["hall"])
            seq, prev, applied = snap["seq"], snap["prev"], snap["seq"]
            app.snapshot_seq = applied
            break
        except (KeyError, ValueError, TypeError, IndexError):
            app.problems.append(name + " unusable")
            app.hall = Hall(app.cfg)
    else:
        if app.problems:
            app.problems.append("state rebuilt from the outbox")
    last = app.outbox.last()
    if last is not None and last[0] > seq:
        seq, prev = last[0], chain_hash(last[1])
    app.stamper = Stamper(app.cfg["device"], app.boot_no, binascii.unhexlify(app.cfg["key"]), seq, prev)
    replayed = 0
    for _, payload in app.outbox.records(applied):
        env = json.loads(payload)
        app.hall.apply(env["type"], env["data"], env["ts"])
        replayed += 1
    now = app.now()
    now_ms = app.hal.clock.ticks_ms()
    for c in app.hall.counters:
        if c.rating:
            app.pads[c.id].open(c.rating, now_ms, now)
    pending = _read_or_none(root + "/rating.pending")
    if pending:
        pad = app.pads.get(pending.get("counter"))
        if pad and pad.window and pad.window[0] == pending.get("ticket"):
            # The score was pressed before the power cut: keep it; the reason step is over.
            pad.restore_reason(pending["score"], pending.get("ms", 0), now_ms)
    return replayed


def write_snapshot(app):
    """hall.json = state after event `seq`, the one before kept as hall.prev.json.

    The outbox may release only what the *older* snapshot covers, so if the newer one is
    ever damaged the device falls back to the older one and still replays every event.
    """
    root = app.root
    seq = app.stamper.seq
    store.write_json(root + "/hall.json.new", {"seq": seq, "prev": app.stamper.prev,
                                               "hall": snapshot(app.hall)})
    if store.exists(root + "/hall.json"):
        os.rename(root + "/hall.json", root + "/hall.prev.json")
    os.rename(root + "/hall.json.new", root + "/hall.json")
    app.outbox.set_floor(app.snapshot_seq)
    app.snapshot_seq = seq


def _read_or_none(path):
    try:
        return store.read_json(path)
    except ValueError:
        return None


def snapshot(hall):
    """JSON-able state of the hall, written temp-then-rename every so many events."""
    def hexed(ring):
        return binascii.hexlify(ring.dump()).decode()
    return {
        "day": hall.day, "day_start": hall.day_start,
        "services": [[s.last, s.avg_s, s.finished, hexed(s.waiting)] for s in hall.services],
        "counters": [[c.state, c.reason, c.staff, c.current, c.priority_run, c.rating, hexed(c.direct)]
                     for c in hall.counters],
        "skipped": hexed(hall.skipped),
    }


def restore(hall, snap):
    """Load a snapshot made by snapshot(); raises KeyError/ValueError/TypeError when damaged."""
    hall.day = snap["day"]
    hall.day_start = snap["day_start"]
    for s, row in zip(hall.services, snap["services"]):
        s.last, s.avg_s, s.finished = row[0], row[1], row[2]
        s.waiting.load(binascii.unhexlify(row[3]))
    for c, row in zip(hall.counters, snap["counters"]):
        c.state, c.reason, c.staff, c.current, c.priority_run, c.rating = row[:6]
        c.direct.load(binascii.unhexlify(row[6]))
    hall.skipped.load(binascii.unhexlify(snap["skipped"]))
