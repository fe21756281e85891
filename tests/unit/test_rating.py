"""The rating pad's state machine (firmware/rating.py), under CPython and MicroPython."""
import sys

from firmware.rating import IDLE, REASON, REASON_GUARD_MS, SCORE, RatingPad

REASONS = ("attitude", "wait", "slow", "unclear", "other")
TS = 1795618068          # wall clock at the finish (seconds)
T = 5000                 # monotonic ms at the finish


def _pad(window_s=30, reason_s=15, reasons=REASONS):
    return RatingPad("1", window_s, reason_s, reasons)


def _opened(**kw):
    pad = _pad(**kw)
    pad.open(["A001", "A", "S001", TS], T, TS)
    return pad


def test_no_window_ignores_every_button_and_counts_it():
    pad = _pad()
    for score in (5, 4, 3, 2, 1):
        assert pad.press(score, T + score) is None
    assert pad.ignored == 5
    assert pad.stage == IDLE
    assert pad.tick(T + 10 ** 6) is None


def test_finish_opens_a_window_bound_to_ticket_counter_and_staff():
    pad = _opened()
    assert pad.stage == SCORE
    kind, d = pad.press(4, T + 1234)
    assert kind == "submit"
    assert d == {"ticket": "A001", "service": "A", "counter": "1", "staff": "S001", "score": 4,
                 "reason": None, "followup": False, "ms": 1234}


def test_exactly_one_press_is_taken_once_the_caller_closes():
    pad = _opened()
    assert pad.press(5, T + 100)[0] == "submit"
    pad.close()
    assert pad.stage == IDLE and pad.ticket is None
    for score in (5, 1, 3):
        assert pad.press(score, T + 200) is None
    assert pad.ignored == 3


def test_window_ends_at_its_deadline():
    pad = _opened(window_s=5)
    assert pad.tick(T + 4999) is None
    assert pad.press(5, T + 5000) is None  # too late: counted, not taken
    assert pad.ignored == 1
    assert pad.tick(T + 5000) == ("expired", {"ticket": "A001", "service": "A", "counter": "1",
                                              "staff": "S001"})


def test_last_moment_press_still_counts():
    pad = _opened(window_s=5)
    kind, d = pad.press(3, T + 4999)
    assert kind == "submit" and d["score"] == 3 and d["ms"] == 4999


def test_scores_one_and_two_open_the_reason_step():
    for score in (1, 2):
        pad = _opened()
        assert pad.press(score, T + 800) == ("reason", None)
        assert pad.stage == REASON
        assert pad.tick(T + 800 + 14999) is None


def test_scores_three_to_five_need_no_reason():
    for score in (3, 4, 5):
        pad = _opened()
        kind, d = pad.press(score, T + 10)
        assert kind == "submit" and d["reason"] is None and d["followup"] is False


def test_reason_press_counts_only_after_the_guard():
    pad = _opened()
    pad.press(2, T + 1000)
    for dt in (0, 1, 300, REASON_GUARD_MS - 1):
        assert pad.press(4, T + 1000 + dt) is None
    assert pad.ignored == 4
    kind, d = pad.press(4, T + 1000 + REASON_GUARD_MS)
    assert kind == "submit"
    assert d["score"] == 2 and d["reason"] == "wait" and d["followup"] is True
    assert d["ms"] == 1000  # invitation to the score press, not to the reason press


def test_buttons_pick_reasons_top_down():
    # rate5 = first reason ... rate1 = fifth
    for button, code in ((5, "attitude"), (4, "wait"), (3, "slow"), (2, "unclear"), (1, "other")):
        pad = _opened()
        pad.press(1, T)
        kind, d = pad.press(button, T + 700)
        assert kind == "submit" and d["reason"] == code and d["score"] == 1


def test_buttons_beyond_a_short_reason_list_mean_other():
    pad = _opened(reasons=("attitude", "wait"))
    pad.press(2, T)
    assert pad.press(1, T + 700)[1]["reason"] == "other"
    pad = _opened(reasons=("attitude", "wait"))
    pad.press(2, T)
    assert pad.press(4, T + 700)[1]["reason"] == "wait"


def test_no_reason_within_the_step_keeps_the_score_with_reason_none():
    pad = _opened(reason_s=3)
    pad.press(1, T + 2000)
    assert pad.tick(T + 2000 + 2999) is None
    kind, d = pad.tick(T + 2000 + 3000)
    assert kind == "submit"
    assert d["score"] == 1 and d["reason"] == "none" and d["followup"] is True and d["ms"] == 2000
    # a reason press after the step ended is not taken
    pad2 = _opened(reason_s=3)
    pad2.press(2, T)
    assert pad2.press(5, T + 3000) is None


def test_reason_step_may_outlast_the_rating_window():
    pad = _opened(window_s=5, reason_s=15)
    pad.press(2, T + 4900)
    kind, d = pad.press(3, T + 9000)
    assert kind == "submit" and d["reason"] == "slow"


def test_reopened_window_keeps_its_original_opening_time():
    # after a power cut the window restored from flash does not start over
    pad = _pad(window_s=30)
    pad.open(["A001", "A", "S001", TS - 10], T, TS)
    assert pad.tick(T + 19999) is None
    assert pad.tick(T + 20000)[0] == "expired"
    pad = _pad(window_s=30)
    pad.open(["A001", "A", "S001", TS - 10], T, TS)
    kind, d = pad.press(5, T + 500)
    assert d["ms"] == 10500
    pad = _pad(window_s=30)
    pad.open(["A001", "A", "S001", TS - 40], T, TS)
    assert pad.press(5, T) is None
    assert pad.tick(T)[0] == "expired"


def test_clock_set_back_does_not_stretch_a_window():
    pad = _pad(window_s=30)
    pad.open(["A001", "A", "S001", TS + 100], T, TS)
    assert pad.tick(T + 29999) is None
    assert pad.tick(T + 30000)[0] == "expired"


def test_score_pressed_before_a_power_cut_is_kept():
    pad = _pad()
    pad.open(["A001", "A", "S001", TS - 5], T, TS)
    pad.restore_reason(2, 0, T)
    assert pad.stage == REASON
    kind, d = pad.tick(T)
    assert kind == "submit" and d["score"] == 2 and d["reason"] == "none" and d["followup"] is True
    assert d["ticket"] == "A001" and d["staff"] == "S001"


def test_expired_window_names_its_ticket_and_staff():
    pad = _pad(window_s=5)
    pad.open(["B007", "B", None, TS], T, TS)
    kind, d = pad.tick(T + 6000)
    assert kind == "expired" and d == {"ticket": "B007", "service": "B", "counter": "1", "staff": None}


def test_new_window_after_close_starts_fresh():
    pad = _opened()
    pad.press(2, T)
    pad.close()
    pad.open(["A002", "A", "S001", TS + 60], T + 60000, TS + 60)
    assert pad.stage == SCORE
    kind, d = pad.press(5, T + 60300)
    assert kind == "submit" and d["ticket"] == "A002" and d["score"] == 5 and d["ms"] == 300


def test_ms_survives_the_tick_counter_wrapping():
    # ticks_ms wraps (every ~12.4 days on the ESP32); only MicroPython has the wrap
    if sys.implementation.name != "micropython":
        return
    from time import ticks_add
    top = ticks_add(0, -1)          # the largest tick value before the wrap
    opened = ticks_add(top, -499)   # 500 ms before the wrap
    pad = _pad(window_s=30)
    pad.open(["A001", "A", "S001", TS], opened, TS)
    now = ticks_add(opened, 1500)   # 1.5 s later, past the wrap
    assert now < opened
    kind, d = pad.press(4, now)
    assert kind == "submit"
    assert d["ms"] == 1500, d["ms"]
    # and the window still closes 30 s after it opened
    pad = _pad(window_s=30)
    pad.open(["A001", "A", "S001", TS], opened, TS)
    assert pad.tick(ticks_add(opened, 29999)) is None
    assert pad.tick(ticks_add(opened, 30000))[0] == "expired"


def test_reason_step_across_the_tick_wrap():
    if sys.implementation.name != "micropython":
        return
    from time import ticks_add
    top = ticks_add(0, -1)
    pad = _pad(window_s=30, reason_s=3)
    pad.open(["A001", "A", "S001", TS], ticks_add(top, -2000), TS)
    pressed = ticks_add(top, -300)
    assert pad.press(2, pressed) == ("reason", None)
    assert pad.press(5, ticks_add(pressed, 599)) is None     # still inside the guard
    kind, d = pad.press(5, ticks_add(pressed, 600))
    assert kind == "submit" and d["reason"] == "attitude" and d["ms"] == 1700
    pad = _pad(window_s=30, reason_s=3)
    pad.open(["A001", "A", "S001", TS], ticks_add(top, -2000), TS)
    pad.press(1, pressed)
    assert pad.tick(ticks_add(pressed, 2999)) is None
    kind, d = pad.tick(ticks_add(pressed, 3000))
    assert kind == "submit" and d["reason"] == "none"


def test_long_unrated_window_restored_after_days_is_simply_over():
    # a device left off for a week: the offset must not overflow tick arithmetic
    pad = _pad(window_s=30)
    pad.open(["A001", "A", "S001", TS - 7 * 86400], T, TS)
    assert pad.press(5, T) is None
    assert pad.tick(T)[0] == "expired"
