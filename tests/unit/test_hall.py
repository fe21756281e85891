"""Queue rules of the hall: numbering, serving order, recall/skip/transfer, pause/close, snapshots."""
import json

from _util import raises, tmpdir
from firmware import config
from firmware import desk, hall_setup
from firmware.hall import Refused, event_facts
from firmware.recovery import read_snapshot, save_hall

T0 = 1795618068  # 2026-11-25 22:47 Beijing time; business day 2026-11-25 (reset 03:00)


def _cfg(**over):
    c = {
        "version": 1, "site": "s", "device": "d", "key": "00" * 16,
        "hall": {"zh": "大厅", "en": "Hall"},
        "services": [
            {"code": "A", "prefix": "A", "name": {"zh": "甲", "en": "A"}, "daily_limit": 5},
            {"code": "B", "prefix": "B", "name": {"zh": "乙", "en": "B"}},
        ],
        "counters": [
            {"id": "1", "services": ["A", "B"], "staff": "S1"},
            {"id": "2", "services": ["B"], "staff": "S2"},
        ],
        "queue": {"max_recalls": 2, "priority_run": 2, "max_waiting": 50, "skipped_keep": 4, "next_guard_s": 0},
    }
    c.update(over)
    assert config.validate(c) == [], config.validate(c)
    return config.normalise(c)


def tmp_path(name):
    return tmpdir("hall") + "/" + name


class Rec:
    """A hall plus the event log it produced, applied the way the app does."""

    def __init__(self, cfg=None, now=T0):
        self.hall = hall_setup.build(cfg or _cfg())
        self.log = []
        self.now = now
        self.do(desk.decide_day(self.hall, now))

    def do(self, ev):
        if isinstance(ev, list):
            for e in ev:
                self.do(e)
            return ev
        etype, data = ev
        self.log.append((etype, json.loads(json.dumps(data)), self.now))
        self.hall.apply(etype, data, self.now)
        return ev

    def issue(self, code="A", kind="normal"):
        return self.do(self.hall.decide_issue(code, kind, self.now))

    def key(self, name, cid="1"):
        """A staff key, decided where the app decides it."""
        if name == "next":
            return self.do(self.hall.decide_next(cid, self.now))
        if name == "finish":
            return self.do(self.hall.decide_finish(cid, self.now))
        return self.do(desk.decide(self.hall, cid, name, self.now, {}))


def test_numbers_count_up_per_service_and_stop_at_the_limit():
    r = Rec()
    assert r.issue("A")[1]["ticket"] == "A001"
    assert r.issue("A")[1]["ticket"] == "A002"
    assert r.issue("B")[1]["ticket"] == "B001"
    for _ in range(3):
        r.issue("A")
    ev = r.issue("A")
    assert ev[0] == "ticket.refused" and ev[1]["reason"] == "limit"
    assert r.hall.by_code["A"].last == 5  # a refusal consumes no number


def test_unknown_service_and_closing_time_are_refused():
    r = Rec()
    assert r.issue("Z")[1]["reason"] == "unknown_service"
    cfg = _cfg()
    cfg["services"][0]["hours"] = ["08:00", "09:00"]
    r2 = Rec(cfg)
    ev = r2.issue("A")
    assert ev[0] == "ticket.refused" and ev[1]["reason"] == "closed"


def test_people_ahead_and_estimate():
    r = Rec()
    r.issue("A")
    r.issue("A")
    ev = r.issue("A")[1]
    assert ev["ahead"] == 2
    # 2 ahead x 300 s over the one counter serving A = 10 minutes
    assert ev["wait_min"] == 10


def test_next_calls_in_order_and_next_again_finishes_the_current():
    r = Rec()
    r.issue("A")
    r.issue("A")
    ev = r.key("next")
    assert [e[0] for e in ev] == ["ticket.called"]
    assert ev[0][1]["ticket"] == "A001" and ev[0][1]["counter"] == "1" and ev[0][1]["staff"] == "S1"
    ev = r.key("next")
    assert [e[0] for e in ev] == ["service.finished", "ticket.called"]
    assert ev[1][1]["ticket"] == "A002"
    raises(Refused, r.hall.decide_next, "2", r.now)  # counter 2 serves only B: nobody waiting


def test_counter_serves_its_services_in_its_order():
    r = Rec()
    r.issue("B")
    r.issue("A")
    assert r.key("next", "1")[0][1]["ticket"] == "A001"  # counter 1 lists A first
    assert r.key("next", "2")[0][1]["ticket"] == "B001"


def test_priority_first_but_normal_tickets_not_starved():
    r = Rec()
    r.issue("A")                 # A001 normal
    for _ in range(3):
        r.issue("A", "priority")  # A002..A004 priority
    called = []
    for _ in range(4):
        evs = r.key("next")
        called.append(evs[-1][1]["ticket"])
    # priority_run = 2: two priority calls, then the waiting normal ticket, then priority again
    assert called == ["A002", "A003", "A001", "A004"], called


def test_priority_ticket_counts_only_priority_ahead():
    r = Rec()
    r.issue("A")
    r.issue("A")
    assert r.issue("A", "priority")[1]["ahead"] == 0


def test_recall_then_automatic_skip_after_max_recalls():
    r = Rec()
    r.issue("A")
    r.key("next")
    assert r.key("recall")[0] == "ticket.recalled"
    assert r.key("recall")[1]["count"] == 2
    ev = r.key("recall")
    assert ev[0] == "ticket.skipped" and ev[1]["auto"] is True
    raises(Refused, r.hall.decide_finish, "1", r.now)


def test_skipped_ticket_requeued_once_to_the_front():
    r = Rec()
    r.issue("A")
    r.issue("A")
    r.key("next")
    r.key("skip")
    r.do(desk.requeue(r.hall, "A001", None))  # from a backend command: no counter
    assert r.key("next")[-1][1]["ticket"] == "A001"
    r.key("skip")
    e = raises(Refused, desk.requeue, r.hall, "A001", "1")
    assert e.reason == "already_requeued"
    assert raises(Refused, desk.requeue, r.hall, "A002", "1").reason == "not_skipped"


def test_transfer_to_service_goes_first_and_keeps_its_number():
    r = Rec()
    r.issue("B")
    r.issue("A")
    r.key("next", "1")  # A001
    r.do(desk.transfer(r.hall, "1", "B"))
    ev = r.key("next", "2")
    assert ev[0][1]["ticket"] == "A001" and ev[0][1]["service"] == "B"
    fin = r.key("finish", "2")
    assert fin[1]["ticket"] == "A001" and fin[1]["service"] == "B"


def test_transfer_to_counter():
    r = Rec()
    r.issue("B")
    r.issue("A")
    r.key("next", "1")
    r.do(desk.transfer(r.hall, "1", None, "2"))
    assert r.key("next", "2")[0][1]["ticket"] == "A001"


def test_finish_opens_rating_window_and_times():
    r = Rec()
    r.issue("A")
    r.now += 100
    r.key("next")
    r.now += 40
    ev = r.key("finish")
    assert ev[1]["waited_s"] == 100 and ev[1]["served_s"] == 40
    assert r.hall.counter("1").rating[0] == "A001"
    r.do(("rating.submitted", {"ticket": "A001", "counter": "1"}))
    assert r.hall.counter("1").rating is None


def test_a_kiosk_opens_no_rating_window_its_counters_own_them():
    # the counter device opens and closes the window: the kiosk never hears the rating, and a
    # window it kept would stay "open" in its retained state all day
    kiosk = _cfg(role="kiosk", hall_key="11" * 32, counters=[
        {"id": "1", "services": ["A", "B"], "staff": "S1", "device": "ctr1"},
        {"id": "2", "services": ["B"], "staff": "S2", "device": "ctr2"}])
    r = Rec(kiosk)
    r.issue("A")
    r.key("next")
    r.key("finish")
    assert r.hall.counter("1").rating is None
    assert "rating_open" not in r.hall.summary()["counters"]["1"]
    a = Rec()
    a.issue("A")
    a.key("next")
    a.key("finish")
    assert a.hall.summary()["counters"]["1"]["rating_open"] == "A001"


def test_pause_resume_and_close_rules():
    r = Rec()
    r.do(desk.pause(r.hall, "1", "lunch"))
    assert r.hall.counter("1").state == "paused"
    assert raises(Refused, r.hall.decide_next, "1", r.now).reason == "counter_paused"
    r.issue("A")  # tickets still issued while paused: people can wait
    r.do(desk.resume(r.hall, "1"))
    e = raises(Refused, desk.close, r.hall, "1")
    assert e.reason == "people_waiting" and e.detail == "1"
    r.key("next")
    assert raises(Refused, desk.close, r.hall, "1").reason == "serving"
    r.key("finish")
    r.do(desk.close(r.hall, "1"))
    assert r.hall.counter("1").state == "closed"
    # nobody left serving A: new A tickets are refused rather than waiting forever
    assert r.issue("A")[1]["reason"] == "no_counter"


def test_snapshot_restore_and_replay_give_the_same_hall():
    r = Rec()
    for code in "AABBA":
        r.issue(code, "priority" if code == "B" else "normal")
    r.key("next", "1")
    r.key("next", "2")
    r.key("skip", "2")
    r.key("finish", "1")
    path = tmp_path("hall.bin")
    save_hall(r.hall, path, 42, "ab" * 16, T0 + 5)
    twin = hall_setup.build(_cfg())
    assert read_snapshot(twin, path) == (42, "ab" * 16, T0 + 5)
    assert twin.summary() == r.hall.summary()
    assert _state(twin) == _state(r.hall)
    replayed = hall_setup.build(_cfg())
    for etype, data, ts in r.log:
        replayed.apply(etype, data, ts)
    assert _state(replayed) == _state(r.hall)


def _state(h):
    """Everything a snapshot keeps, as plain values."""
    out = [h.day, h.day_start, bytes(h.skipped.used())]
    for s in h.services:
        out += [s.last, s.avg_s, s.finished, bytes(s.waiting.used())]
    for c in h.counters:
        out += [c.state, c.reason, c.staff, c.priority_run, bytes(c.direct.used()),
                list(c.current) if c.current else None, list(c.rating) if c.rating else None]
    return out


def test_a_damaged_snapshot_is_refused_whole():
    r = Rec()
    for code in "AAB":
        r.issue(code)
    r.key("next", "1")
    path = tmp_path("hall.bin")
    save_hall(r.hall, path, 7, "00" * 16, T0)
    with open(path, "rb") as f:
        good = f.read()
    for cut in (0, 10, len(good) // 2, len(good) - 1):
        with open(path, "wb") as f:
            f.write(good[:cut])
        raises((ValueError, OSError), read_snapshot, hall_setup.build(_cfg()), path)
    for at in (5, 30, len(good) - 10):
        bad = bytearray(good)
        bad[at] ^= 0x40
        with open(path, "wb") as f:
            f.write(bad)
        raises(ValueError, read_snapshot, hall_setup.build(_cfg()), path)
    with open(path, "wb") as f:   # oversized: not even read
        f.write(good + bytes(100000))
    raises(ValueError, read_snapshot, hall_setup.build(_cfg()), path)
    other = _cfg()
    other["services"] = other["services"][:1]
    other["counters"] = [{"id": "1", "services": ["A"], "staff": "S1", "name": {"zh": "1"}}]
    with open(path, "wb") as f:
        f.write(good)
    assert raises(ValueError, read_snapshot, hall_setup.build(config.normalise(other)), path)


def test_numbers_survive_without_any_snapshot():
    from firmware.recovery import read_numbers, write_numbers
    r = Rec()
    for code in "AABBB":
        r.issue(code)
    path = tmp_path("numbers.bin")
    write_numbers(r.hall, path, 99)
    fresh = hall_setup.build(_cfg())
    problems = []
    assert read_numbers(fresh, path, problems) == 99
    assert fresh.day == r.hall.day and fresh.by_code["A"].last == 2 and fresh.by_code["B"].last == 3
    with open(path, "r+b") as f:
        f.seek(6)
        f.write(b"\xff")
    assert read_numbers(hall_setup.build(_cfg()), path, problems) == 0 and "numbers.bin damaged" in problems


def test_day_reset_starts_numbers_again():
    r = Rec()
    r.issue("A")
    later = T0 + 86400
    assert r.hall.is_new_day(later)
    assert not r.hall.is_new_day(T0 + 3600)
    r.now = later
    ev = r.do(desk.decide_day(r.hall, later))[-1]
    assert ev[1]["day"] == "2026-11-26" and ev[1]["prev_day"] == "2026-11-25" and ev[1]["dropped_waiting"] == 1
    assert r.issue("A")[1]["ticket"] == "A001"


def test_a_busy_day_keeps_memory_bounded():
    cfg = _cfg()
    cfg["services"][0]["daily_limit"] = 3000
    cfg["queue"]["next_guard_s"] = 0
    r = hall_setup.build(cfg)
    r.apply("day.reset", desk.decide_day(r, T0)[-1][1], T0)
    for i in range(3000):
        etype, data = r.decide_issue("A", "normal", T0 + i)
        assert etype == "ticket.issued", data
        r.apply(etype, data, T0 + i)
        for etype, data in r.decide_next("1", T0 + i):
            r.apply(etype, data, T0 + i)
    assert r.by_code["A"].last == 3000
    assert r.by_code["A"].label(3000) == "A3000"
    assert len(r.by_code["A"].waiting) == 0


def test_a_full_queue_refuses_instead_of_growing():
    r = Rec()
    cfg = _cfg()
    cfg["services"][0]["daily_limit"] = 999
    r = Rec(cfg)
    for _ in range(50):
        assert r.issue("A")[0] == "ticket.issued"
    ev = r.issue("A")
    assert ev[0] == "ticket.refused" and ev[1]["reason"] == "queue_full"
    assert r.hall.by_code["A"].last == 50


def test_desk_actions_check_their_arguments():
    r = Rec()
    assert raises(Refused, desk.decide, r.hall, "1", "signin", r.now, {}).reason == "bad_args"
    assert raises(Refused, desk.decide, r.hall, "1", "fly", r.now, {}).reason == "unknown_action"
    assert raises(Refused, desk.decide, r.hall, "9", "pause", r.now, {}).reason == "unknown_counter"
    ev = r.do(desk.decide(r.hall, "1", "signin", r.now, {"staff": "S9"}))
    assert ev[0] == "staff.signed_in" and r.hall.counter("1").staff == "S9"
    r.issue("A")
    r.key("next")
    assert r.key("finish")[1]["staff"] == "S9"


def test_a_second_next_right_after_a_call_does_not_serve_anyone():
    cfg = _cfg()
    cfg["queue"]["next_guard_s"] = 3
    r = Rec(cfg)
    for _ in range(3):
        r.issue("A")
    r.key("next")
    for dt in (0, 1, 2):
        r.now = T0 + dt
        e = raises(Refused, r.hall.decide_next, "1", r.now)
        assert e.reason == "too_soon"
    assert r.hall.summary()["counters"]["1"]["serving"] == "A001"
    r.now = T0 + 3
    evs = r.key("next")
    assert [e[0] for e in evs] == ["service.finished", "ticket.called"] and evs[1][1]["ticket"] == "A002"
    r.key("finish")
    r.now = T0 + 3                # finished: the next citizen may be called at once
    assert r.key("next")[-1][1]["ticket"] == "A003"


def test_a_clock_step_keeps_the_queue_and_only_moves_the_day_forward():
    r = Rec()
    r.issue("A")
    r.issue("A")
    day = r.hall.day
    # a step back over the reset hour: same day, nothing dropped, numbers go on
    back = T0 - 20 * 3600
    r.do(desk.decide_clock(r.hall, T0, back))
    r.now = back
    assert r.hall.day == day and not r.hall.is_new_day(back)
    assert r.issue("A")[1]["ticket"] == "A003"
    # time passing back to where it was is no new day either
    assert not r.hall.is_new_day(T0 + 3600)
    # a step forward to a later date names that day but keeps everyone and the numbers
    fwd = T0 + 3 * 86400
    r.do(desk.decide_clock(r.hall, back, fwd))
    r.now = fwd
    assert r.hall.day == "2026-11-28" and len(r.hall.by_code["A"].waiting) == 3
    assert r.issue("A")[1]["ticket"] == "A004"
    # waited time is real time, not the size of the steps
    r.now = fwd + 120
    called = r.key("next")[-1][1]
    assert called["ticket"] == "A001" and called["waited_s"] < 200, called
    # only time passing the reset hour starts a new day
    assert r.hall.is_new_day(fwd + 86400)


def test_a_new_day_ends_whoever_is_being_served_with_an_event():
    r = Rec()
    r.issue("A")
    r.key("next")
    evs = desk.decide_day(r.hall, T0 + 86400)
    assert [e[0] for e in evs] == ["service.ended", "day.reset"]
    assert evs[0][1]["ticket"] == "A001" and evs[0][1]["reason"] == "day_reset"
    r.now = T0 + 86400
    r.do(evs)
    assert r.hall.counter("1").current is None


def test_applying_an_event_allocates_nothing_for_rings():
    """Removing from a ring must not build a temporary slice (it runs after the event is durable)."""
    from firmware.ticketring import TicketRing
    ring = TicketRing(200)
    for i in range(200):
        ring.append(i + 1, 0, 0, i)
    ring.remove(0)
    ring.remove(100)
    ring.push_front(999, 4, 1, 7)
    assert ring.number(0) == 999 and ring.flags(0) == 4 and ring.service(0) == 1 and ring.issued(0) == 7
    assert ring.number(1) == 2 and ring.number(101) == 103 and len(ring) == 199
    try:
        import gc
        import micropython
    except ImportError:
        return      # CPython: the shifting is checked above, allocation only on MicroPython
    gc.collect()
    micropython.heap_lock()
    try:
        ring.remove(50)
        ring.push_front(5, 0, 0, 70000)
        ring.append(6, 0, 0, 1)
    finally:
        micropython.heap_unlock()
    assert ring.number(0) == 5 and ring.issued(0) == 70000


# (outbox priority, changes the hall) of every event type: 2 = never dropped (the citizen's record),
# 0 = dropped first when the outbox overflows; state-changing events are applied and replayed.
FACTS = {
    "ticket.issued": (2, True), "ticket.refused": (1, False), "ticket.called": (2, True),
    "ticket.recalled": (1, True), "ticket.skipped": (1, True), "ticket.requeued": (1, True),
    "ticket.transferred": (1, True), "ticket.parked": (1, True), "ticket.unparked": (1, True),
    "ticket.walkin": (2, True), "service.finished": (2, True), "service.ended": (2, True),
    "rating.submitted": (2, True), "rating.expired": (2, True), "counter.paused": (1, True),
    "counter.resumed": (1, True), "counter.closed": (1, True), "staff.signed_in": (1, True),
    "staff.signed_out": (1, True), "printer.status": (0, False), "device.boot": (1, False),
    "device.heartbeat": (0, False), "day.reset": (1, True), "config.applied": (1, False), "config.reverted": (1, False),
    "command.rejected": (1, False), "clock.set": (1, True), "outbox.dropped": (1, False),
    "storage.recovered": (1, False),
}


def _readme_event_types():
    """The event types of the README's events table (the MQTT contract); read line by line,
    the whole README does not fit a small heap."""
    root = __file__.rsplit("/tests/", 1)[0] if "/tests/" in __file__ else "."
    types = []
    section = False
    with open(root + "/README.md", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                section = line.startswith("### Events")
            elif section and line.startswith("| `"):
                types += [w for w in line.split("|")[1].split("`") if "." in w]
    return types


def test_every_event_type_has_its_facts():
    types = _readme_event_types()
    assert len(types) >= 25 and "ticket.transferred" in types and "storage.recovered" in types, types
    assert sorted(types) == sorted(FACTS), "README and FACTS differ"
    for etype in types:
        assert event_facts(etype) == FACTS[etype], etype


def test_each_event_type_has_a_word_of_its_own_after_the_dot():
    """Hall.apply goes by that word: two types sharing one would be applied alike."""
    words = [t[t.index(".") + 1:] for t in _readme_event_types()]
    for w in words:
        assert words.count(w) == 1, w


def test_events_that_only_report_change_nothing():
    r = Rec()
    r.issue("A")
    r.key("next")
    before = _state(r.hall), r.hall.summary()
    for etype, (_, stateful) in FACTS.items():
        if not stateful:
            r.hall.apply(etype, {"counter": "1", "service": "A", "ticket": "A001", "n": 1, "state": "ok"}, r.now)
    assert (_state(r.hall), r.hall.summary()) == before
