"""The call screen's voice queue (runs under CPython and MicroPython)."""
from firmware.announcer import Announcer, phrase
from _util import raises

C3 = (("zh", "3号窗口"), ("en", "Counter 3"))
C5 = (("zh", "5号窗口"), ("en", "Counter 5"))


def _drain(a):
    out = []
    s = a.next_text()
    while s is not None:
        out.append(s)
        s = a.next_text()
    return out


def test_phrases_in_both_languages():
    assert phrase("zh", "A001", "3号窗口", False) == "请A001号到3号窗口"
    assert phrase("en", "A001", "Counter 3", False) == "Number A001, please go to Counter 3"
    assert phrase("zh", "A001", "3号窗口", True) == "再次呼叫，请A001号到3号窗口"
    assert phrase("en", "A001", "Counter 3", True) == "Again: Number A001, please go to Counter 3"
    assert phrase("ug", "A001", "x", False) is None


def test_a_call_is_its_languages_in_order_back_to_back():
    a = Announcer()
    assert a.next_text() is None
    a.add("A001", C3, False)
    a.add("B002", (("en", "Counter 5"), ("zh", "5号窗口")), False)
    assert len(a) == 2
    assert _drain(a) == ["请A001号到3号窗口", "Number A001, please go to Counter 3",
                         "Number B002, please go to Counter 5", "请B002号到5号窗口"]
    assert len(a) == 0 and a.dropped == 0


def test_only_given_languages_are_spoken():
    a = Announcer()
    a.add("A001", (("zh", "3号窗口"),), False)
    a.add("A002", (("ug", "x"), ("en", "Counter 1")), False)   # no phrase for ug: skipped
    a.add("A003", (("ug", "x"),), False)                       # nothing to say at all
    a.add("A004", (), False)
    assert _drain(a) == ["请A001号到3号窗口", "Number A002, please go to Counter 1"]


def test_recall_after_the_call_was_heard_is_said_again():
    a = Announcer()
    a.add("A001", C3, False)
    assert _drain(a)[0] == "请A001号到3号窗口"
    a.add("A001", C3, True)
    assert _drain(a) == ["再次呼叫，请A001号到3号窗口", "Again: Number A001, please go to Counter 3"]


def test_a_started_call_finishes_and_a_new_one_waits():
    a = Announcer(limit=1)
    a.add("A001", C3, False)
    assert a.next_text() == "请A001号到3号窗口"
    a.add("A001", C3, True)         # the same ticket again while it is being said: queued
    a.add("A002", C5, False)        # the ring is full: the waiting recall gives way
    assert a.dropped == 1
    assert _drain(a) == ["Number A001, please go to Counter 3",
                         "请A002号到5号窗口", "Number A002, please go to Counter 5"]


def test_when_full_the_oldest_waiting_call_is_dropped():
    a = Announcer(limit=3)
    a.add("A001", C3, False)
    assert a.next_text() == "请A001号到3号窗口"     # started: never dropped
    for t in ("A002", "A003", "A004", "A005", "A006"):
        a.add(t, (("zh", "3号窗口"),), False)
    assert a.dropped == 2
    assert len(a) == 4
    assert _drain(a) == ["Number A001, please go to Counter 3",
                         "请A004号到3号窗口", "请A005号到3号窗口", "请A006号到3号窗口"]
    a.add("A007", (("zh", "1号窗口"),), False)   # the ring wraps and keeps working
    assert _drain(a) == ["请A007号到1号窗口"]
    assert a.dropped == 2


def test_a_waiting_ticket_called_again_is_updated_in_place():
    a = Announcer()
    a.add("A001", C3, False)
    a.add("A002", (("zh", "1号窗口"),), False)
    a.add("A001", C3, True)         # recall before the call was heard: nothing more to say
    a.add("A002", (("zh", "5号窗口"),), False)   # transferred: only the new counter
    assert len(a) == 2 and a.dropped == 0
    assert _drain(a) == ["请A001号到3号窗口", "Number A001, please go to Counter 3",
                         "请A002号到5号窗口"]
    a.add("A009", (("zh", "1号窗口"),), True)
    a.add("A009", (("zh", "1号窗口"),), True)   # two recalls waiting: one, still a recall
    assert _drain(a) == ["再次呼叫，请A009号到1号窗口"]


def test_clear_and_limit():
    raises(ValueError, Announcer, 0)
    a = Announcer(limit=2)
    a.add("A001", C3, False)
    a.next_text()
    a.add("A002", C3, False)
    a.clear()
    assert len(a) == 0 and a.next_text() is None
    a.add("A003", (("en", "Counter 3"),), False)
    assert _drain(a) == ["Number A003, please go to Counter 3"]


def test_a_busy_hall_holds_no_more_than_the_ring():
    a = Announcer(limit=6)
    for i in range(200):
        a.add("A%03d" % i, C3, i % 3 == 0)
        if i % 10 == 0:
            a.next_text()
        assert len(a) <= 7
    assert a.dropped > 0
    assert len(_drain(a)) <= 2 * 7


def test_tickets_are_the_calls_not_said_in_full():
    """What the call screen keeps on flash across a power cut (firmware/role_screen.py)."""
    a = Announcer(limit=3)
    assert a.tickets() == []
    a.add("A001", C3, False)
    a.add("A002", C3, False)
    assert a.tickets() == ["A001", "A002"]
    a.next_text()                       # A001's first language is being said
    assert a.tickets() == ["A001", "A002"]
    a.next_text()                       # its last language is being said: not yet in full
    assert a.tickets() == ["A001", "A002"]
    a.next_text()                       # A001 said in full, A002 begins
    assert a.tickets() == ["A002"]
    _drain(a)
    assert a.tickets() == []
