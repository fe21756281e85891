"""Queue operations of a service hall beyond next/finish: park and unpark (挂起), call a chosen
number (特呼), serve a walk-in without a ticket, transfer to a counter keeping the number (一票到底);
and that all of it survives a restart (snapshot + replay)."""
import binascii
import json
import struct

from _util import raises, tmpdir
from firmware import config
from firmware import desk, hall_setup
from firmware.hall import Refused, PARK_MAX
from firmware.recovery import read_snapshot, save_hall

T0 = 1795618068  # 2026-11-25 22:47 Beijing time; business day 2026-11-25 (reset 03:00)


def _cfg(limit=50):
    c = {
        "version": 1, "site": "s", "device": "d", "key": "00" * 16,
        "hall": {"zh": "大厅", "en": "Hall"},
        "services": [
            {"code": "A", "prefix": "A", "name": {"zh": "甲", "en": "A"}, "daily_limit": limit},
            {"code": "B", "prefix": "B", "name": {"zh": "乙", "en": "B"}},
        ],
        "counters": [
            {"id": "1", "services": ["A", "B"], "staff": "S1"},
            {"id": "2", "services": ["B"], "staff": "S2"},
        ],
        "queue": {"max_recalls": 2, "priority_run": 2, "max_waiting": 50, "skipped_keep": 4, "next_guard_s": 0},
    }
    assert config.validate(c) == [], config.validate(c)
    return config.normalise(c)


class Rec:
    """A hall plus the event log it produced, applied the way the app does."""

    def __init__(self, cfg=None):
        self.hall = hall_setup.build(cfg or _cfg())
        self.log = []
        self.now = T0
        self.do(desk.decide_day(self.hall, T0))

    def do(self, ev):
        if isinstance(ev, list):
            for e in ev:
                self.do(e)
            return ev
        etype, data = ev
        self.log.append((etype, json.loads(json.dumps(data)), self.now))   # as stored and replayed
        self.hall.apply(etype, data, self.now)
        return ev

    def issue(self, code="A"):
        return self.do(self.hall.decide_issue(code, "normal", self.now))

    def next(self, cid="1"):
        return self.do(self.hall.decide_next(cid, self.now))

    def finish(self, cid="1"):
        return self.do(self.hall.decide_finish(cid, self.now))

    def act(self, action, cid="1", **args):
        """A desk action the way App.staff_key asks for it."""
        return self.do(desk.decide(self.hall, cid, action, self.now, args))

    def refused(self, action, cid="1", **args):
        return raises(Refused, desk.decide, self.hall, cid, action, self.now, args)

    def serving(self, cid="1"):
        return self.hall.summary()["counters"][cid]["serving"]


def _state(h):
    """Everything a snapshot keeps, as plain values."""
    out = [h.day, h.day_start, bytes(h.skipped.used()), bytes(h.parked.used())]
    for s in h.services:
        out += [s.last, s.avg_s, s.finished, bytes(s.waiting.used())]
    for c in h.counters:
        out += [c.state, c.reason, c.staff, c.priority_run, bytes(c.direct.used()),
                list(c.current) if c.current else None, list(c.rating) if c.rating else None]
    return out


# ---- park / unpark (挂起) ----------------------------------------------------------------------

def test_park_frees_the_counter_and_unpark_gives_the_ticket_back_its_own_times():
    r = Rec()
    r.issue("A")
    r.issue("A")
    r.now += 100
    r.next()                                  # A001 waited 100 s
    r.now += 30
    ev = r.act("park")
    assert ev[0] == "ticket.parked" and ev[1]["ticket"] == "A001" and ev[1]["counter"] == "1"
    assert r.serving() is None and r.hall.summary()["parked"] == ["A001"]
    assert r.next()[-1][1]["ticket"] == "A002"   # the counter goes on with the queue
    r.now += 60
    r.finish()
    r.now += 600                                 # the citizen fetches a document
    ev = r.act("unpark", ticket="A001")
    assert ev[0] == "ticket.unparked" and ev[1]["service"] == "A" and ev[1]["origin"] == "A"
    assert ev[1]["kind"] == "normal" and ev[1]["staff"] == "S1"
    assert r.serving() == "A001" and r.hall.summary()["parked"] == []
    r.now += 20
    fin = r.finish()[1]
    # the first wait, and the time at the counter before and after: not the errand
    assert fin["ticket"] == "A001" and fin["waited_s"] == 100 and fin["served_s"] == 50, fin
    assert r.hall.counter("1").rating[0] == "A001"    # rated like any service


def test_park_and_unpark_rules():
    r = Rec()
    assert r.refused("park").reason == "not_serving"
    for _ in range(PARK_MAX + 1):
        r.issue("A")
    for _ in range(PARK_MAX):
        r.next()
        r.act("park")
    r.next()
    e = r.refused("park")
    assert e.reason == "parked_full" and e.detail == str(PARK_MAX)
    assert r.refused("unpark", ticket="A001").reason == "serving"        # finish or park first
    r.finish()
    assert r.refused("unpark", ticket="A009").reason == "not_parked"     # finished, not parked
    assert r.refused("unpark", ticket="A077").reason == "not_issued"
    assert r.refused("unpark", ticket="A1").reason == "bad_args"
    assert r.refused("unpark", ticket="x\x00").reason == "bad_args"
    assert r.refused("unpark").reason == "bad_args"
    # counter 2 serves only B: it may not take back an A citizen parked at counter 1
    assert r.refused("unpark", "2", ticket="A003").detail == "A"
    r.do(desk.pause(r.hall, "1", "lunch"))
    assert r.refused("unpark", ticket="A003").reason == "counter_paused"


def test_any_counter_serving_the_service_may_unpark_and_the_parking_counter_may_not_close():
    r = Rec()
    r.issue("B")
    r.next("1")                     # counter 1 serves B001 as B
    r.act("park", "1")
    e = raises(Refused, desk.close, r.hall, "1")
    assert e.reason == "people_waiting" and e.detail == "1"   # its citizen comes back to it
    ev = r.act("unpark", "2", ticket="B001")
    assert ev[1]["counter"] == "2" and r.serving("2") == "B001"
    r.do(desk.close(r.hall, "1"))


def test_a_new_day_clears_parked_tickets():
    r = Rec()
    r.issue("A")
    r.next()
    r.act("park")
    r.now = T0 + 86400
    evs = r.do(desk.decide_day(r.hall, r.now))
    assert evs[-1][0] == "day.reset" and evs[-1][1]["dropped_parked"] == 1
    assert r.hall.summary()["parked"] == [] and len(r.hall.parked) == 0
    assert r.issue("A")[1]["ticket"] == "A001"
    assert r.refused("unpark", ticket="A001").reason == "not_parked"


# ---- call a chosen number (特呼) ------------------------------------------------------------------

def test_call_a_chosen_waiting_number_out_of_order():
    r = Rec()
    for _ in range(3):
        r.issue("A")
    r.now += 50
    ev = r.act("call", ticket="A003")
    assert ev[0] == "ticket.called" and ev[1]["chosen"] is True
    assert ev[1]["ticket"] == "A003" and ev[1]["service"] == "A" and ev[1]["waited_s"] == 50
    assert r.hall.summary()["waiting"]["A"] == 2
    r.finish()
    assert [r.next()[-1][1]["ticket"] for _ in range(2)] == ["A001", "A002"]   # the rest in order


def test_a_chosen_number_that_is_not_waiting_here_says_why():
    r = Rec()
    for code in "AAAAB":
        r.issue(code)
    assert r.refused("call", ticket="A099").reason == "not_issued"
    assert r.refused("call", ticket="C001").reason == "bad_args"
    e = r.refused("call", "2", ticket="A001")       # counter 2 does not serve A
    assert e.reason == "other_service" and e.detail == "A"
    r.next()                                         # A001 called at counter 1
    assert r.refused("call", "2", ticket="A001").reason == "already_called"
    assert r.refused("call", ticket="A002").reason == "serving"   # finish or park first
    r.act("skip")                                    # A001 a no-show
    assert r.refused("call", ticket="A001").reason == "skipped"
    r.next()                                         # A002
    r.act("park")
    assert r.refused("call", ticket="A002").reason == "parked"
    r.next()                                         # A003
    r.finish()
    assert r.refused("call", ticket="A003").reason == "already_called"
    r.next()                                         # A004
    r.act("transfer", to_counter="2")
    e = r.refused("call", ticket="A004")
    assert e.reason == "other_counter" and e.detail == "2"
    ev = r.act("call", "2", ticket="A004")           # where it was sent, it may be called
    assert ev[1]["counter"] == "2" and ev[1]["ticket"] == "A004" and ev[1]["service"] == "A"
    r.do(desk.pause(r.hall, "1", None))
    assert r.refused("call", ticket="B001").reason == "counter_paused"


# ---- walk-in ---------------------------------------------------------------------------------------

def test_walkin_takes_the_next_number_and_is_served_and_rated_like_any_other():
    r = Rec()
    r.issue("A")
    ev = r.act("walkin", service="A")
    assert ev[0] == "ticket.walkin" and ev[1]["ticket"] == "A002" and ev[1]["n"] == 2
    assert ev[1]["counter"] == "1" and ev[1]["kind"] == "normal"
    assert r.serving() == "A002" and r.hall.summary()["waiting"]["A"] == 1   # A001 still waits
    assert r.issue("A")[1]["ticket"] == "A003"       # no number used twice
    r.now += 90
    fin = r.finish()[1]
    assert fin["ticket"] == "A002" and fin["waited_s"] == 0 and fin["served_s"] == 90
    assert r.hall.counter("1").rating[0] == "A002" and r.hall.by_code["A"].finished == 1
    ev = r.act("walkin", service="A", kind="priority")
    assert ev[1]["ticket"] == "A004" and r.finish()[1]["kind"] == "priority"


def test_walkin_rules_and_the_daily_limit():
    r = Rec(_cfg(limit=3))
    r.issue("A")
    r.issue("A")
    assert r.refused("walkin", "2", service="A").reason == "other_service"
    assert r.refused("walkin", service="Z").reason == "unknown_service"
    assert r.refused("walkin").reason == "unknown_service"
    assert r.refused("walkin", service="A", kind="vip").reason == "bad_args"
    assert r.act("walkin", service="A")[1]["ticket"] == "A003"
    assert r.refused("walkin", service="B").reason == "serving"
    r.finish()
    assert r.refused("walkin", service="A").reason == "limit"
    assert r.issue("A")[1]["reason"] == "limit"


# ---- transfer to a counter keeps the number (一票到底) -------------------------------------------------

def test_transfer_to_a_counter_keeps_the_number_to_the_end():
    r = Rec()
    r.issue("A")
    r.issue("B")
    r.now += 40
    r.next("1")                                      # A001
    r.act("transfer", to_counter="2")
    ev = r.next("2")[-1][1]
    assert ev["ticket"] == "A001" and ev["n"] == 1 and ev["origin"] == "A"   # before B001
    r.now += 10
    fin = r.finish("2")[1]
    assert fin["ticket"] == "A001" and fin["counter"] == "2" and fin["waited_s"] == 40
    assert r.hall.by_code["A"].last == 1             # no new number was made for it


# ---- across a restart -------------------------------------------------------------------------------

def _busy_day(r, upto=None):
    """A day with every new operation; returns the index into r.log where it stood at `upto`."""
    mark = 0
    steps = [
        lambda: [r.issue(c) for c in "AAABB"],
        lambda: r.next("1"),                          # A001
        lambda: r.act("park", "1"),
        lambda: r.act("call", "1", ticket="A003"),
        lambda: r.next("2"),                          # B001
        lambda: r.act("park", "2"),
        lambda: r.act("transfer", "1", to_counter="2"),   # A003 to counter 2
        lambda: r.act("walkin", "1", service="A"),    # A004
    ]
    for k, step in enumerate(steps):
        r.now += 30
        step()
        if k == upto:
            mark = len(r.log)
    return mark


def test_snapshot_round_trip_keeps_parked_walkin_and_chosen_calls():
    r = Rec()
    _busy_day(r)
    path = tmpdir("ops") + "/hall.bin"
    save_hall(r.hall, path, 42, "ab" * 16, r.now)
    twin = hall_setup.build(_cfg())
    assert read_snapshot(twin, path) == (42, "ab" * 16, r.now)
    assert _state(twin) == _state(r.hall) and twin.summary() == r.hall.summary()
    assert twin.summary()["parked"] == ["A001", "B001"]
    # the restored hall goes on exactly like the original
    now = r.now + 100
    for h in (r.hall, twin):
        h.apply(*h.decide_finish("1", now), ts=now)           # the walk-in
        h.apply(*desk.unpark(h, "1", "A001"), ts=now + 10)
    assert _state(twin) == _state(r.hall)
    assert twin.decide_finish("1", now + 15) == r.hall.decide_finish("1", now + 15)


def test_a_power_cut_rebuilds_the_same_hall_from_snapshot_plus_replay():
    r = Rec()
    mark = _busy_day(r, upto=3)
    # the snapshot as it was written mid-day, after event number `mark`...
    early = Rec()
    for etype, data, ts in r.log[1:mark]:      # [0] is the day.reset Rec() already applied
        early.hall.apply(etype, data, ts)
    path = tmpdir("ops") + "/hall.bin"
    save_hall(early.hall, path, mark, "00" * 16, T0)
    # ...then the boot: restore it and replay what the outbox holds after it
    booted = hall_setup.build(_cfg())
    read_snapshot(booted, path)
    for etype, data, ts in r.log[mark:]:
        booted.apply(etype, data, ts)
    assert _state(booted) == _state(r.hall)
    # and without any snapshot, the whole outbox replayed
    replayed = hall_setup.build(_cfg())
    for etype, data, ts in r.log:
        replayed.apply(etype, data, ts)
    assert _state(replayed) == _state(r.hall)


def test_a_snapshot_from_before_parking_is_still_read():
    """b"QTH2" has no parked ring: a firmware update mid-day keeps the queue."""
    r = Rec()
    r.issue("A")
    r.issue("B")
    r.next("1")
    path = tmpdir("ops") + "/hall.bin"
    save_hall(r.hall, path, 7, "00" * 16, T0)
    with open(path, "rb") as f:
        new = f.read()
    # the parked ring (u16 count 0) follows the skipped ring (empty) after the services
    at = 4 + 4 + 16 + 8 + 8 + 4 + 1 + len(r.hall.day)
    for s in r.hall.services:
        at += 8 + 2 + 8 * len(s.waiting)
    at += 2
    assert new[at:at + 2] == b"\x00\x00"
    # ... and the counters' last hall requests (u32 each) follow the parked ring
    old = b"QTH2" + new[4:at] + new[at + 2 + 4 * len(r.hall.counters):-4]
    old += struct.pack("<I", binascii.crc32(old) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(old)
    twin = hall_setup.build(_cfg())
    twin.parked.append(9, 0, 0, 1)              # whatever was there before goes
    assert read_snapshot(twin, path)[0] == 7
    assert _state(twin) == _state(r.hall)


def test_parking_allocates_nothing_once_decided():
    """The ring operations behind ticket.parked/unparked run after the event is durable."""
    r = Rec()
    for _ in range(PARK_MAX + 1):
        r.issue("A")
    for _ in range(PARK_MAX - 1):
        r.next()
        r.do(desk.decide(r.hall, "1", "park", r.now, {}))
    r.next()       # A008 at the counter
    h = r.hall
    # apply() allocates only before its first change (the event's word); the ring operations
    # behind parked/unparked - on a ring of 16-byte entries - allocate nothing
    from firmware.ticketring import TicketRing
    ring = TicketRing(PARK_MAX, 16)
    for i in range(PARK_MAX):
        ring.append(i + 1, 0, 0, 100 + i)
    try:
        import gc
        import micropython
    except ImportError:
        micropython = None
    if micropython:
        gc.collect()
        micropython.heap_lock()
    try:
        i = ring.find(3, 0)
        ring.buf[i * 16 + 8] = ring.number(i) + ring.issued(i)
        ring.remove(i)
        ring.append(300, 2, 1, 5)
    finally:
        if micropython:
            micropython.heap_unlock()
    assert [ring.number(k) for k in range(PARK_MAX)] == [1, 2, 4, 5, 6, 7, 8, 300]
    r.do(desk.decide(h, "1", "park", r.now, {}))
    r.now += 30
    r.do(desk.decide(h, "1", "unpark", r.now, {"ticket": "A003"}))
    p = h.parked
    assert len(p) == PARK_MAX - 1 and r.serving() == "A003"
    assert [h.services[p.service(i)].label(p.number(i)) for i in range(len(p))] == \
        ["A001", "A002", "A004", "A005", "A006", "A007", "A008"]
