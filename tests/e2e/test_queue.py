"""The hall's queue through the simulator, as the hall and its backend see it: numbers per
service, people ahead and waits, priority and appointments, counter operations, refusals,
the daily reset and reboots. Everything is checked at the control port, on the display,
on the printed ticket and in the events at a real broker.
"""
import math
import time


from tests.e2e.harness import Sim, command, events, example_config, fast_config, wait_event
from tests.escpos_decode import decode

KEY = example_config()["key"]
TZ_S = 480 * 60
RESET_S = 3 * 3600




def wait_count(sub, etype, n, timeout=10.0):
    """The first n events of etype at the broker (waits until there are n)."""
    deadline = time.time() + timeout
    while True:
        got = events(sub, etype)
        if len(got) >= n or time.time() > deadline:
            assert len(got) >= n, "%d %s events, expected %d; seen %s" % (
                len(got), etype, n, [e["type"] for e in events(sub)][-20:])
            return got[:n]
        time.sleep(0.05)


def screen(sim):
    return " | ".join(sim.ask({"op": "display"})["lines"])


def device_time(sim):
    return sim.ask({"op": "clock", "advance_s": 0})["time"]


def business_day(epoch):
    """(day 'YYYY-MM-DD', start epoch) with the example's +08:00 and 03:00 reset, by CPython's calendar."""
    days = (epoch + TZ_S - RESET_S) // 86400
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86400)), days * 86400 + RESET_S - TZ_S


def expected_wait(ahead, avg_s, counters):
    """Minutes: people ahead x average service time / open counters, rounded up."""
    return math.ceil(ahead * avg_s / (60.0 * counters))


def staff_events(sub, types):
    return [e for e in events(sub) if e["type"] in types]


# ---- numbers, people ahead, estimated wait -------------------------------------------------

def test_numbers_per_service_and_what_ticket_issued_says(hall, sub):
    pressed = ["A", "A", "B", "A", "B", "A"]
    replies = [hall.press("ticket:" + code) for code in pressed]
    assert [r["ticket"] for r in replies] == ["A001", "A002", "B001", "A003", "B002", "A004"], replies
    day = hall.status()["day"]

    issued = wait_count(sub, "ticket.issued", 6)
    assert [e["data"]["ticket"] for e in issued] == ["A001", "A002", "B001", "A003", "B002", "A004"]
    seqs = [e["seq"] for e in issued]
    assert seqs == sorted(seqs), "ticket.issued must reach the broker in issue order"
    aheads = {"A": 0, "B": 0}
    for e, code in zip(issued, pressed):
        d = e["data"]
        assert {"ticket", "service", "kind", "ahead", "wait_min", "day"} <= set(d), d
        assert d["service"] == code and d["kind"] == "normal" and d["day"] == day
        # A: 300 s seeded average, B: 420 s; both counters serve both services
        avg = 300 if code == "A" else 420
        assert d["ahead"] == aheads[code], d
        assert d["wait_min"] == expected_wait(aheads[code], avg, 2), d
        aheads[code] += 1
    assert [e["data"]["ahead"] for e in issued if e["data"]["service"] == "A"] == [0, 1, 2, 3]
    waits = [e["data"]["wait_min"] for e in issued if e["data"]["service"] == "A"]
    assert waits == sorted(waits) and waits[-1] > waits[1] > 0

    # the ticket in the citizen's hand says the same
    for t, e in zip(decode(hall.printer_bytes()), issued):
        d = e["data"]
        assert t.big_lines() == [d["ticket"]]
        assert "前面还有 %d 人 / %d ahead" % (d["ahead"], d["ahead"]) in t.lines, t.lines
        assert "预计等候 约 %d 分钟 / about %d min" % (d["wait_min"], d["wait_min"]) in t.lines, t.lines
    s = hall.status()
    assert s["issued"] == {"A": 4, "B": 2} and s["waiting"] == {"A": 4, "B": 2}


def test_estimate_follows_measured_service_time_and_open_counters(hall, sub):
    hall.press("ticket:A")
    assert hall.press("next")["ticket"] == "A001"
    hall.ask({"op": "clock", "advance_s": 620})   # a 620 s service
    assert hall.press("finish")["ok"]
    fin = wait_event(sub, "service.finished")["data"]
    assert 620 <= fin["served_s"] <= 700, fin
    avg = (300 * 7 + fin["served_s"]) // 8   # the documented rolling average, weight 1/8

    for ahead in range(3):
        r = hall.press("ticket:A")
        assert r["ahead"] == ahead and r["wait_min"] == expected_wait(ahead, avg, 2), (r, avg)
    # one of the two counters pauses: the same queue now takes twice as long
    assert hall.staff("pause", counter="2", reason="meeting")["ok"]
    r = hall.press("ticket:A")
    assert r["ahead"] == 3 and r["wait_min"] == expected_wait(3, avg, 1), (r, avg)
    assert r["wait_min"] > expected_wait(3, avg, 2)


# ---- priority and appointments -------------------------------------------------------------

def test_priority_tickets_first_with_the_fairness_rule(hall, sub):
    assert hall.press("ticket:A")["ticket"] == "A001"
    assert hall.press("ticket:A")["ticket"] == "A002"
    pri = [hall.press("ticket:A:priority") for _ in range(4)]
    assert [r["ticket"] for r in pri] == ["A003", "A004", "A005", "A006"]
    assert [r["ahead"] for r in pri] == [0, 1, 2, 3], "a priority ticket counts only priority tickets ahead"

    called = []
    for _ in range(6):
        r = hall.press("next")
        assert r["ok"], r
        called.append(r["ticket"])
    # priority_run 3: three priority calls in a row, then the longest-waiting normal ticket
    assert called == ["A003", "A004", "A005", "A001", "A006", "A002"], called
    calls = wait_count(sub, "ticket.called", 6)
    assert [e["data"]["kind"] for e in calls] == ["priority"] * 3 + ["normal", "priority", "normal"]
    kinds = [e["data"]["kind"] for e in wait_count(sub, "ticket.issued", 6)]
    assert kinds == ["normal", "normal"] + ["priority"] * 4


def test_appointment_ticket_by_command_is_served_first(hall, sub):
    hall.wait_drained()
    assert hall.press("ticket:B")["ticket"] == "B001"
    assert hall.press("ticket:B")["ticket"] == "B002"
    before = len(hall.printer_bytes())
    r = command(hall, sub, KEY, "ticket.appointment", {"service": "B", "appt": "YY-20261125-007"})
    assert r["ok"] and r["result"]["ticket"] == "B003", r
    assert len(hall.printer_bytes()) == before, "print defaults to false: an appointment check-in prints nothing"
    issued = wait_event(sub, "ticket.issued", lambda e: e["data"]["ticket"] == "B003")["data"]
    assert issued["kind"] == "appointment" and issued["appt"] == "YY-20261125-007"
    assert issued["service"] == "B" and issued["day"] == hall.status()["day"]
    # it will be called before both normal tickets: nobody is ahead of it
    assert issued["ahead"] == 0 and issued["wait_min"] == 0, issued

    r = command(hall, sub, KEY, "ticket.appointment", {"service": "B", "appt": "YY-20261125-008", "print": True})
    assert r["ok"] and r["result"]["ticket"] == "B004", r
    assert r["result"]["ahead"] == 1, "one appointment is ahead of this one"
    printed = decode(hall.printer_bytes()[before:])
    assert len(printed) == 1 and printed[0].big_lines() == ["B004"] and printed[0].cut

    # counter 2 serves B first: the appointments come before the normal tickets, in order
    called = [hall.press("next", counter="2")["ticket"] for _ in range(4)]
    assert called == ["B003", "B004", "B001", "B002"], called
    r = command(hall, sub, KEY, "ticket.appointment", {"service": "Z", "appt": "x"})
    assert r["ok"] is False and r["error"] == "unknown_service", r


# ---- counter operations ---------------------------------------------------------------------

def test_recall_auto_skips_after_max_recalls_and_requeue_once(hall, sub):
    hall.press("ticket:A")
    hall.press("ticket:A")
    assert hall.press("next")["ticket"] == "A001"
    for n in (1, 2, 3):
        r = hall.press("recall")
        assert r["ok"] and r["events"] == ["ticket.recalled"], r
        shown = screen(hall)
        assert "A001" in shown and "1号窗口" in shown and "Counter 1" in shown, shown
    r = hall.press("recall")   # max_recalls 3: the fourth recall gives up on the citizen
    assert r["ok"] and r["events"] == ["ticket.skipped"], r
    assert hall.status()["counters"]["1"]["serving"] is None

    recalled = wait_count(sub, "ticket.recalled", 3)
    assert [e["data"]["count"] for e in recalled] == [1, 2, 3]
    skipped = wait_event(sub, "ticket.skipped")["data"]
    assert skipped["ticket"] == "A001" and skipped["auto"] is True
    for d in [e["data"] for e in recalled] + [skipped]:
        assert d["counter"] == "1" and d["staff"] == "S001" and d["service"] == "A", d

    assert hall.press("next")["ticket"] == "A002"
    # the citizen of A001 comes back: staff put the ticket back, first in line
    r = hall.staff("requeue", ticket="A001")
    assert r["ok"] and r["events"] == ["ticket.requeued"], r
    hall.press("ticket:A")   # A003 arrives after the requeue and waits behind A001
    assert hall.status()["waiting"]["A"] == 2
    r = hall.press("next")
    assert r["events"] == ["service.finished", "ticket.called"] and r["ticket"] == "A001", r
    r = hall.press("skip")
    assert r["ok"] and r["events"] == ["ticket.skipped"]
    # requeued once already: a second return is refused, clearly
    r = hall.staff("requeue", ticket="A001")
    assert r["ok"] is False and r["refused"] == "already_requeued", r
    shown = screen(hall)
    assert "该号已重排过一次" in shown and "already requeued" in shown, shown
    r = hall.staff("requeue", ticket="A003")
    assert r["ok"] is False and r["refused"] == "not_skipped", r
    assert hall.press("next")["ticket"] == "A003"

    requeued = wait_event(sub, "ticket.requeued")["data"]
    assert requeued["ticket"] == "A001" and requeued["service"] == "A" and requeued["counter"] == "1"
    assert requeued["staff"] == "S001", requeued
    manual = wait_event(sub, "ticket.skipped", lambda e: e["data"]["auto"] is False)["data"]
    assert manual["ticket"] == "A001" and manual["counter"] == "1" and manual["staff"] == "S001"


def test_transfer_to_service_and_to_counter_keeps_the_number_and_goes_first(hall, sub):
    for code in ("A", "B", "B", "A"):
        hall.press("ticket:" + code)          # A001 B001 B002 A002
    assert hall.press("next")["ticket"] == "A001"   # counter 1 serves A first
    r = hall.staff("transfer", to_service="B")
    assert r["ok"] and r["events"] == ["ticket.transferred"], r
    assert hall.status()["waiting"] == {"A": 1, "B": 3}

    # counter 2 serves B first: the transferred citizen goes before B001, with the same number
    r = hall.press("next", counter="2")
    assert r["ticket"] == "A001", r
    called = wait_event(sub, "ticket.called", lambda e: e["data"]["counter"] == "2")["data"]
    assert called["ticket"] == "A001" and called["service"] == "B" and called["origin"] == "A"
    assert called["staff"] == "S002"

    # and on to counter 1 by name: first there, before A002 waiting in its own queue
    r = hall.staff("transfer", counter="2", to_counter="1")
    assert r["ok"], r
    assert hall.press("next", counter="1")["ticket"] == "A001"
    r = hall.staff("transfer", to_counter="1")
    assert r["ok"] is False and r["refused"] == "same_counter", r
    assert hall.press("finish")["ok"]
    assert hall.press("next")["ticket"] == "A002"

    moves = wait_count(sub, "ticket.transferred", 2)
    assert moves[0]["data"]["ticket"] == "A001" and moves[0]["data"]["to_service"] == "B"
    assert moves[0]["data"]["counter"] == "1" and moves[0]["data"]["staff"] == "S001"
    assert moves[1]["data"]["ticket"] == "A001" and moves[1]["data"]["to_counter"] == "1"
    assert moves[1]["data"]["counter"] == "2" and moves[1]["data"]["staff"] == "S002"
    fin = wait_event(sub, "service.finished", lambda e: e["data"]["ticket"] == "A001")["data"]
    assert fin["counter"] == "1" and fin["staff"] == "S001"
    assert [e["data"]["ticket"] for e in events(sub, "ticket.issued")] == ["A001", "B001", "B002", "A002"]


def test_pause_resume_and_close_only_when_nobody_waits(hall, sub):
    hall.press("ticket:A")
    hall.press("next")
    r = hall.staff("pause", reason="meeting")
    assert r["ok"] is False and r["refused"] == "serving", "no pause with a citizen at the counter"
    hall.press("finish")
    r = hall.staff("pause", reason="meeting")
    assert r["ok"] and r["events"] == ["counter.paused"], r
    shown = screen(hall)
    assert "暂停服务" in shown and "meeting" in shown and "Service paused" in shown, shown
    c1 = hall.status()["counters"]["1"]
    assert c1["state"] == "paused" and c1["reason"] == "meeting", c1
    hall.press("ticket:B")
    r = hall.press("next")
    assert r["ok"] is False and r["refused"] == "counter_paused", r
    r = hall.press("pause")         # the pause key toggles back
    assert r["ok"] and r["events"] == ["counter.resumed"], r
    assert "暂停服务" not in screen(hall)

    # 窗口有群众不下班: B001 waits for both counters' services
    r = hall.staff("close")
    assert r["ok"] is False and r["refused"] == "people_waiting" and r["detail"] == "1", r
    shown = screen(hall)
    assert "仍有 1 人等候 不能关闭" in shown and "1 still waiting - cannot close" in shown, shown
    assert hall.status()["counters"]["1"]["state"] == "open"
    assert hall.press("next", counter="2")["ticket"] == "B001"
    r = hall.staff("close", counter="2")
    assert r["ok"] is False and r["refused"] == "serving", r
    hall.press("finish", counter="2")
    assert hall.staff("close")["events"] == ["counter.closed"]
    assert "本窗口已停止服务" in screen(hall)
    assert hall.press("next")["refused"] == "counter_closed"
    assert hall.staff("close", counter="2")["ok"]
    # every counter closed: no ticket can be served today, so none is issued
    r = hall.press("ticket:A")
    assert r["ok"] is False and r["refused"] == "no_counter", r
    assert hall.staff("resume")["events"] == ["counter.resumed"]
    assert hall.press("ticket:A")["ticket"] == "A002"
    # nobody is sent to a closed counter: they would wait there all day
    assert hall.press("next")["ticket"] == "A002"
    r = hall.staff("transfer", to_counter="2")
    assert r["ok"] is False and r["refused"] == "counter_closed", r
    assert hall.status()["counters"]["1"]["serving"] == "A002"

    evs = staff_events(sub, ("counter.paused", "counter.resumed", "counter.closed"))
    deadline = time.time() + 5
    while len(evs) < 5 and time.time() < deadline:
        time.sleep(0.05)
        evs = staff_events(sub, ("counter.paused", "counter.resumed", "counter.closed"))
    assert [(e["type"], e["data"]["counter"], e["data"]["staff"]) for e in evs] == [
        ("counter.paused", "1", "S001"), ("counter.resumed", "1", "S001"),
        ("counter.closed", "1", "S001"), ("counter.closed", "2", "S002"),
        ("counter.resumed", "1", "S001")]
    assert evs[0]["data"]["reason"] == "meeting"


# ---- refusals ------------------------------------------------------------------------------

def _hours_excluding_now():
    hour = time.gmtime(time.time() + TZ_S).tm_hour
    return ["13:00", "23:00"] if hour < 12 else ["01:00", "11:00"]


def test_refusals_say_why_and_consume_no_number(broker, sub):
    cfg = fast_config()
    cfg["services"][0]["daily_limit"] = 2
    cfg["services"][1]["hours"] = _hours_excluding_now()
    sim = Sim(broker.port, cfg).start()
    try:
        assert [sim.press("ticket:A")["ticket"] for _ in range(2)] == ["A001", "A002"]
        printed = len(sim.printer_bytes())
        cases = [("ticket:A", "A", "limit", "今日号已取完", "No more tickets today"),
                 ("ticket:B", "B", "closed", "不在办理时间", "Outside opening hours"),
                 ("ticket:Z", "Z", "unknown_service", "无此业务", "Unknown service")]
        for button, code, reason, zh, en in cases:
            r = sim.press(button)
            assert r["ok"] is False and r["refused"] == reason, r
            shown = screen(sim)
            assert zh in shown and en in shown, (reason, shown)
            assert "ticket" not in r
        r = sim.press("ticket:A")
        assert r["refused"] == "limit", "a refusal must not free or consume a number"
        day = sim.status()["day"]
        refused = wait_count(sub, "ticket.refused", 4)
        assert [(e["data"]["service"], e["data"]["reason"]) for e in refused] == [
            ("A", "limit"), ("B", "closed"), ("Z", "unknown_service"), ("A", "limit")]
        assert all(e["data"]["day"] == day for e in refused)
        s = sim.status()
        assert s["issued"] == {"A": 2, "B": 0} and s["waiting"] == {"A": 2, "B": 0}, s
        assert len(sim.printer_bytes()) == printed, "nothing printed for a refusal"
        sim.wait_drained()
        assert [e["data"]["ticket"] for e in events(sub, "ticket.issued")] == ["A001", "A002"]
    finally:
        sim.cleanup()


# ---- business day ---------------------------------------------------------------------------

def test_daily_reset_at_the_reset_hour_restarts_numbering(hall, sub):
    for code in ("A", "A", "B"):
        hall.press("ticket:" + code)
    now = device_time(hall)
    day, start = business_day(now)
    next_day, _ = business_day(start + 86400)
    assert hall.status()["day"] == day
    hall.ask({"op": "clock", "advance_s": start + 86400 + 30 - now})   # 03:00:30 the next morning

    reset = wait_event(sub, "day.reset", lambda e: e["data"]["day"] == next_day, timeout=10)["data"]
    assert reset["prev_day"] == day and reset["dropped_waiting"] == 3, reset
    s = hall.status()
    assert s["day"] == next_day and s["issued"] == {"A": 0, "B": 0} and s["waiting"] == {"A": 0, "B": 0}
    r = hall.press("ticket:A")
    assert r["ticket"] == "A001" and r["ahead"] == 0, r
    assert hall.press("ticket:B")["ticket"] == "B001"
    issued = wait_event(sub, "ticket.issued", lambda e: e["data"]["day"] == next_day)["data"]
    assert issued["ticket"] == "A001"
    assert decode(hall.printer_bytes())[-2].qr[0].endswith("/%s/A001" % next_day)


def test_reboot_mid_day_keeps_numbering_and_queue(hall, sub):
    for code in ("A", "A", "B"):
        hall.press("ticket:" + code)
    assert hall.press("next")["ticket"] == "A001"
    hall.ask({"op": "clock", "advance_s": 600})  # later the same business day
    day = hall.status()["day"]
    hall.kill()
    hall.start()
    s = hall.status()
    assert s["boot"] == 2 and s["day"] == day
    assert s["issued"] == {"A": 2, "B": 1} and s["waiting"] == {"A": 1, "B": 1}, s
    assert s["counters"]["1"]["serving"] == "A001"
    assert hall.press("ticket:A")["ticket"] == "A003"
    assert hall.press("next")["ticket"] == "A002"
    hall.wait_drained()
    assert [e["data"]["day"] for e in events(sub, "day.reset")] == [day], "no reset on a reboot mid-day"
    assert [e["data"]["ticket"] for e in events(sub, "ticket.issued")] == ["A001", "A002", "B001", "A003"]


def test_power_off_across_the_reset_hour_resets_at_boot(hall, sub):
    hall.press("ticket:A")
    now = device_time(hall)
    day, start = business_day(now)
    next_day, _ = business_day(start + 86400)
    hall.ask({"op": "clock", "advance_s": start + 86400 - 4 - now})   # 02:59:56
    hall.kill()
    time.sleep(5)                                                      # dark over 03:00
    hall.start()
    reset = wait_event(sub, "day.reset", lambda e: e["data"]["day"] == next_day, timeout=10)
    assert reset["boot"] == 2 and reset["data"]["prev_day"] == day and reset["data"]["dropped_waiting"] == 1
    assert hall.press("ticket:A")["ticket"] == "A001"
