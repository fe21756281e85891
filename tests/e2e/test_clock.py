"""Clock steps are not days: a step (NTP, time.set, an RTC that lost the time) never empties the
queue, never restarts the numbers and never runs a day reset again; only time passing the reset
hour starts a new business day. In the simulator `clock set` is a step, `clock advance_s` is time
passing."""
import calendar
import json
import os
import time

from tests.e2e.harness import Sim, events, fast_config, wait_event

Y2000 = 946684800


def _local(day, hhmm):
    """Epoch of local time hh:mm (UTC+8, the example hall) on date day ('YYYY-MM-DD')."""
    y, m, d = (int(x) for x in day.split("-"))
    return calendar.timegm((y, m, d, int(hhmm[:2]), int(hhmm[3:]), 0)) - 8 * 3600


def _issue(sim, n, code="A"):
    out = []
    for _ in range(n):
        r = sim.press("ticket:" + code)
        assert r["ok"], r
        out.append(r["ticket"])
    return out


def _set(sim, epoch):
    assert sim.ask({"op": "clock", "set": epoch})["ok"]


def test_tickets_before_the_first_sync_survive_it(broker, sub):
    """An ESP32 whose RTC restarted at 2000 serves citizens at once; when NTP (or time.set)
    brings the real date, nobody is dropped and the numbers go on."""
    sim = Sim(broker.port, fast_config())
    try:
        os.makedirs(sim.state, exist_ok=True)
        with open(os.path.join(sim.state, "clock.json"), "w") as f:
            json.dump({"offset": Y2000 + 9 * 3600 - int(time.time())}, f)   # 2000-01-01 17:00 local
        sim.start()
        first_day = sim.status()["day"]
        assert first_day == "2000-01-01", first_day
        assert _issue(sim, 3) == ["A001", "A002", "A003"]
        now = int(time.time())
        _set(sim, now)
        s = sim.status()
        assert s["waiting"]["A"] == 3 and s["issued"]["A"] == 3, s
        assert s["day"] > first_day          # the day got its real name ...
        assert _issue(sim, 1) == ["A004"]    # ... without starting the numbers again
        step = wait_event(sub, "clock.set", lambda e: e["data"]["to"] >= now)
        assert step["data"]["from"] < Y2000 + 86400 and step["data"]["day"] == s["day"], step
        resets = [e["data"]["day"] for e in events(sub, "day.reset")]
        assert resets == ["2000-01-01"], resets
        # waiting times are real time, not 26 years
        called = sim.press("next")
        assert called["ok"] and called["ticket"] == "A001"
        waited = wait_event(sub, "ticket.called")["data"]["waited_s"]
        assert 0 <= waited < 120, waited
    finally:
        sim.cleanup()


def test_a_step_back_over_the_reset_hour_reissues_nothing(broker, sub):
    sim = Sim(broker.port, fast_config()).start()
    try:
        day = sim.status()["day"]
        _set(sim, _local(day, "03:30"))                 # just after today's reset hour
        assert sim.status()["day"] == day
        assert _issue(sim, 2) == ["A001", "A002"]
        _set(sim, _local(day, "02:30"))                 # back over the reset hour: a step
        assert sim.status()["day"] == day
        assert sim.ask({"op": "clock", "advance_s": 3600})["ok"]   # time passes 03:00 again
        time.sleep(0.5)                                 # the timers look at the day 5x a second
        s = sim.status()
        assert s["day"] == day and s["waiting"]["A"] == 2, s
        assert _issue(sim, 1) == ["A003"]
        assert [e["data"]["day"] for e in events(sub, "day.reset")].count(day) <= 1
    finally:
        sim.cleanup()


def test_time_passing_the_reset_hour_starts_a_new_day_and_ends_the_service(broker, sub):
    sim = Sim(broker.port, fast_config()).start()
    try:
        day = sim.status()["day"]
        _set(sim, _local(day, "02:50") + 86400)          # a step to just before tomorrow's reset
        assert sim.status()["day"] == day
        assert _issue(sim, 2) == ["A001", "A002"]
        assert sim.press("next")["ticket"] == "A001"
        assert sim.ask({"op": "clock", "advance_s": 15 * 60})["ok"]   # 03:05: time passed
        reset = wait_event(sub, "day.reset", lambda e: e["data"]["prev_day"] == day, timeout=5)
        ended = wait_event(sub, "service.ended")
        assert ended["seq"] < reset["seq"] and ended["data"]["reason"] == "day_reset", ended
        s = sim.status()
        assert s["day"] == reset["data"]["day"] > day and s["waiting"]["A"] == 0
        assert s["counters"]["1"]["serving"] is None
        assert _issue(sim, 1) == ["A001"]
    finally:
        sim.cleanup()


def test_repeated_next_within_the_guard_calls_nobody_else(broker, sub):
    """A mashed 'next' (50 presses a second) does not serve the whole queue at 0 s each."""
    cfg = fast_config()
    cfg["queue"]["next_guard_s"] = 3
    sim = Sim(broker.port, cfg).start()
    try:
        _issue(sim, 5)
        line = json.dumps({"op": "press", "button": "next"}).encode() + b"\n"
        sim.file.write(line * 50)
        sim.file.flush()
        replies = [json.loads(sim.file.readline()) for _ in range(50)]
        assert replies[0]["ok"] and replies[0]["ticket"] == "A001"
        assert all(r.get("refused") == "too_soon" for r in replies[1:]), replies[1:4]
        s = sim.status()
        assert s["counters"]["1"]["serving"] == "A001" and s["waiting"]["A"] == 4
        assert "刚叫过号" in " ".join(sim.ask({"op": "display"})["lines"])
    finally:
        sim.cleanup()


def test_timed_messages_give_way_to_the_screen_under_them(broker):
    """'Your number B001' and refusals stay up for their hold time, then the display returns
    to what it showed before (the last call), not to the message."""
    sim = Sim(broker.port, fast_config()).start()
    try:
        _issue(sim, 1)
        assert sim.press("next")["ticket"] == "A001"
        call = sim.ask({"op": "display"})["lines"]
        assert any("A001" in ln for ln in call), call
        assert _issue(sim, 1, "B") == ["B001"]
        shown = " ".join(sim.ask({"op": "display"})["lines"])
        assert "B001" in shown and "A001" not in shown, shown
        time.sleep(5.6)                  # the ticket message holds 5 s
        assert sim.ask({"op": "display"})["lines"] == call
        assert sim.press("ticket:Z")["refused"] == "unknown_service"
        assert "无此业务" in " ".join(sim.ask({"op": "display"})["lines"])
        time.sleep(5.6)
        assert sim.ask({"op": "display"})["lines"] == call
    finally:
        sim.cleanup()
