"""Queue rules of the hall: numbering, serving order, recall/skip/transfer, pause/close, snapshots."""
import json

from _util import raises
from firmware import config
from firmware import desk
from firmware.hall import Hall, Refused
from firmware.recovery import restore, snapshot

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
        "queue": {"max_recalls": 2, "priority_run": 2, "max_waiting": 50, "skipped_keep": 4},
    }
    c.update(over)
    assert config.validate(c) == [], config.validate(c)
    return config.normalise(c)


class Rec:
    """A hall plus the event log it produced, applied the way the app does."""

    def __init__(self, cfg=None, now=T0):
        self.hall = Hall(cfg or _cfg())
        self.log = []
        self.now = now
        self.do(self.hall.decide_day(now))

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

    def key(self, name, cid="1", *args):
        return self.do(getattr(self.hall, "decide_" + name)(cid, self.now, *args))


def test_numbers_count_up_per_service_and_stop_at_the_limit():
    r = Rec()
    assert r.issue("A")[1]["ticket"] == "A001"
    assert r.issue("A")[1]["ticket"] == "A002"
    assert r.issue("B")[1]["ticket"] == "B001"
    for _ in range(3):
        r.issue("A")
    ev = r.issue("A")
    assert ev[0] == "ticket.refused" and ev[1]["reason"] == "limit"
    assert r.hall.service("A").last == 5  # a refusal consumes no number


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
    twin = Hall(_cfg())
    restore(twin, json.loads(json.dumps(snapshot(r.hall))))
    assert twin.summary() == r.hall.summary()
    replayed = Hall(_cfg())
    for etype, data, ts in r.log:
        replayed.apply(etype, data, ts)
    assert snapshot(replayed) == snapshot(r.hall)


def test_day_reset_starts_numbers_again():
    r = Rec()
    r.issue("A")
    later = T0 + 86400
    assert r.hall.is_new_day(later)
    assert not r.hall.is_new_day(T0 + 3600)
    r.now = later
    ev = r.do(r.hall.decide_day(later))
    assert ev[1]["day"] == "2026-11-26" and ev[1]["prev_day"] == "2026-11-25" and ev[1]["dropped_waiting"] == 1
    assert r.issue("A")[1]["ticket"] == "A001"


def test_a_busy_day_keeps_memory_bounded():
    cfg = _cfg()
    cfg["services"][0]["daily_limit"] = 3000
    r = Hall(cfg)
    r.apply("day.reset", r.decide_day(T0)[1], T0)
    for i in range(3000):
        etype, data = r.decide_issue("A", "normal", T0 + i)
        assert etype == "ticket.issued", data
        r.apply(etype, data, T0 + i)
        for etype, data in r.decide_next("1", T0 + i):
            r.apply(etype, data, T0 + i)
    assert r.service("A").last == 3000
    assert r.service("A").label(3000) == "A3000"
    assert len(r.service("A").waiting) == 0


def test_a_full_queue_refuses_instead_of_growing():
    r = Rec()
    cfg = _cfg()
    cfg["services"][0]["daily_limit"] = 999
    r = Rec(cfg)
    for _ in range(50):
        assert r.issue("A")[0] == "ticket.issued"
    ev = r.issue("A")
    assert ev[0] == "ticket.refused" and ev[1]["reason"] == "queue_full"
    assert r.hall.service("A").last == 50


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
