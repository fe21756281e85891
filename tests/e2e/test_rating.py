"""The rating pad through the simulator: one rating per finished service (一事一评).

Invitation, exactly one press, thanks; ignored presses counted; expiry; the reason step for
bad ratings; staff named; button mash; power cuts between press and publish.
"""
import json
import time

from tests.broker import Subscriber
from tests.e2e.harness import ok, Sim, command, events, example_config, wait_event

KEY = example_config()["key"]
REASONS = ["attitude", "wait", "slow", "unclear", "other"]  # rate5 .. rate1 in the reason step


def _cfg(window_s=30, reason_window_s=15, **over):
    cfg = example_config(**over)
    cfg["rating"] = dict(cfg["rating"], window_s=window_s, reason_window_s=reason_window_s)
    return cfg


def _serve(sim, service="A", counter=None):
    """A citizen takes a ticket, is called and served; returns (ticket, time just before finish)."""
    ticket = sim.press("ticket:" + service)["ticket"]
    r = sim.press("next", counter)
    assert r["ok"] and r["ticket"] == ticket, r
    t = time.time()
    r = sim.press("finish", counter)
    assert r["ok"] and r["events"] == ["service.finished"], r
    return ticket, t


def _ratings(*subs, ticket=None):
    """rating.submitted envelopes seen by any of the subscribers, one per seq."""
    seen = {}
    for sub in subs:
        for env in events(sub, "rating.submitted"):
            seen.setdefault(env["seq"], env)
    out = [seen[s] for s in sorted(seen)]
    return [e for e in out if ticket is None or e["data"]["ticket"] == ticket]


def _copies(*subs):
    """{seq: set of raw payloads} over every event message the subscribers received."""
    out = {}
    for sub in subs:
        for line in sub.lines():
            topic, _, payload = line.partition(" ")
            if "/evt/" in topic:
                out.setdefault(json.loads(payload)["seq"], set()).add(payload)
    return out


def _burst(sim, button, n):
    """n presses written back to back on the control port (faster than any finger)."""
    line = json.dumps({"op": "press", "button": button}).encode() + b"\n"
    sim.file.write(line * n)
    sim.file.flush()
    return [json.loads(sim.file.readline()) for _ in range(n)]


def _burst2(sim, a, b):
    """Two different presses written back to back (the second lands within milliseconds)."""
    sim.file.write(b"".join(json.dumps({"op": "press", "button": x}).encode() + b"\n" for x in (a, b)))
    sim.file.flush()
    return [json.loads(sim.file.readline()) for _ in range(2)]


def _ms_ok(ms, max_ms):
    """ms is invitation -> score press. The window's opening time is kept in whole wall-clock
    seconds (so it survives a reboot): allow that one second of rounding."""
    return isinstance(ms, int) and 0 <= ms <= max_ms + 1000


def _display(sim):
    return sim.ask({"op": "display"})


def test_finish_invites_one_press_is_the_rating_and_thanks_follow(sim, sub):
    ticket, t_finish = _serve(sim)
    d = _display(sim)
    assert "请对本次服务评价 %s" % ticket in d["lines"], d
    assert "Please rate this service %s" % ticket in d["lines"], d
    assert d["indicator"].get("rate") is True
    assert "评价" in d["voice"][-1], d["voice"]  # the example config has voice: true
    s = sim.status()
    assert s["rating"]["1"] == "score" and s["counters"]["1"]["rating_open"] == ticket
    assert s["rating"]["2"] == "idle"

    r = sim.press("rate4")
    t_rated = time.time()
    assert r == {"ok": True, "event": "rating.submitted", "ticket": ticket, "score": 4, "reason": None}, r
    d = _display(sim)
    assert "谢谢您的评价" in d["lines"] and "Thank you for your rating" in d["lines"], d
    assert d["indicator"].get("thanks") is True and d["indicator"].get("rate") is False
    assert d["voice"][-1] == "谢谢您的评价"

    ignored = sim.status()["stats"]["ignored"]
    for b in ("rate5", "rate1", "rate4"):
        assert sim.press(b) == {"ok": True, "ignored": "no rating window"}
    assert sim.status()["stats"]["ignored"] == ignored + 3

    sim.wait_drained()
    rated = _ratings(sub)
    assert len(rated) == 1, rated
    finished = wait_event(sub, "service.finished")
    d = rated[0]["data"]
    assert d["ticket"] == ticket and d["service"] == "A" and d["counter"] == "1" and d["staff"] == "S001"
    assert d["score"] == 4 and d["reason"] is None and d["followup"] is False
    assert _ms_ok(d["ms"], int((t_rated - t_finish) * 1000) + 1), d
    assert d["day"] == finished["data"]["day"]
    assert sorted(d) == ["counter", "day", "followup", "ms", "reason", "score", "service", "staff", "ticket"]
    assert rated[0]["seq"] > finished["seq"]


def test_presses_outside_a_window_are_counted_in_heartbeats_never_rated(broker, sub):
    sim = Sim(broker.port, _cfg(heartbeat_s=10)).start()
    try:
        for b in ("rate1", "rate2", "rate3", "rate4", "rate5"):
            assert sim.press(b) == {"ok": True, "ignored": "no rating window"}
        ticket, _ = _serve(sim)
        # counter 2 has no window of its own: its pad ignores the press
        assert sim.press("rate5", "2") == {"ok": True, "ignored": "no rating window"}
        assert sim.press("rate3")["event"] == "rating.submitted"
        assert sim.press("rate3")["ignored"] == "no rating window"
        assert sim.status()["stats"]["ignored"] == 7
        # the clock op moves the device's clock (and its ticks): the heartbeat is due at once
        assert sim.ask({"op": "clock", "advance_s": 11})["ok"]
        hb = wait_event(sub, "device.heartbeat", lambda e: e["data"]["ignored"] >= 7, timeout=10)
        assert hb["data"]["ignored"] == 7, hb
        rated = _ratings(sub)
        assert [(e["data"]["ticket"], e["data"]["score"]) for e in rated] == [(ticket, 3)]
    finally:
        sim.cleanup()


def test_window_closing_without_a_press_gives_rating_expired(broker, sub):
    sim = Sim(broker.port, _cfg(window_s=5)).start()
    try:
        ticket, _ = _serve(sim, "B")
        exp = wait_event(sub, "rating.expired", timeout=20)
        assert exp["data"] == {"ticket": ticket, "service": "B", "counter": "1", "staff": "S001",
                               "day": exp["data"]["day"]}, exp
        assert len(exp["data"]["day"]) == 10
        assert sim.press("rate5") == {"ok": True, "ignored": "no rating window"}
        s = sim.status()
        assert s["rating"]["1"] == "idle" and s["counters"]["1"]["rating_open"] is None
        assert _display(sim)["indicator"].get("rate") is False
        sim.wait_drained()
        assert _ratings(sub) == []
        assert len(events(sub, "rating.expired")) == 1
    finally:
        sim.cleanup()


def test_bad_scores_open_the_reason_step(broker, sub):
    sim = Sim(broker.port, _cfg(reason_window_s=3)).start()
    try:
        want = {}
        # score, reason button, reason code: rate5 picks the first reason ... rate1 the fifth
        for score, button, code in ((2, "rate4", "wait"), (1, "rate5", "attitude"), (1, "rate1", "other"),
                                    (2, "rate3", "slow")):
            ticket, t_finish = _serve(sim)
            # the score and, at once, the reason button (back to back, well inside the 600 ms
            # guard): the second press is the mash guard's job, not a reason yet
            first, second = _burst2(sim, "rate%d" % score, button)
            t_score = time.time()
            assert first == {"ok": True, "stage": "reason"}, first
            assert second == {"ok": True, "ignored": "already rated"}, second
            d = _display(sim)
            assert "请选择不满意原因" in d["lines"] and "Why were you not satisfied?" in d["lines"], d
            shown = " ".join(d["lines"])
            at = [shown.find(w) for w in ("态度不好", "等待太久", "效率低", "告知不清", "其他")]
            assert -1 not in at and at == sorted(at), d  # the reasons, in button order
            time.sleep(0.7)
            r = sim.press(button)
            assert r == {"ok": True, "event": "rating.submitted", "ticket": ticket, "score": score,
                         "reason": code}, r
            want[ticket] = (score, code, int((t_score - t_finish) * 1000) + 1)

        # no second press: the score stands with reason "none"
        ticket, t_finish = _serve(sim)
        assert sim.press("rate1")["stage"] == "reason"
        want[ticket] = (1, "none", int((time.time() - t_finish) * 1000) + 1)
        env = wait_event(sub, "rating.submitted", lambda e: e["data"]["ticket"] == ticket, timeout=15)
        assert "谢谢您的评价" in _display(sim)["lines"]
        assert sim.press("rate5")["ignored"] == "no rating window"

        sim.wait_drained()
        rated = _ratings(sub)
        assert len(rated) == len(want)
        for env in rated:
            d = env["data"]
            score, code, max_ms = want[d["ticket"]]
            assert (d["score"], d["reason"], d["followup"]) == (score, code, True), d
            assert d["staff"] == "S001" and d["counter"] == "1"
            assert _ms_ok(d["ms"], max_ms), (d, max_ms)  # invitation to the score press
    finally:
        sim.cleanup()


def test_rating_names_the_staff_signed_in_when_the_service_finished(sim, sub):
    sim.wait_drained()
    ok(command(sim, sub, KEY, "staff.signin", {"counter": "1", "staff": "S777"}))
    a1, _ = _serve(sim)
    # sign-in is refused while someone is being served, allowed while the pad waits
    sim.press("ticket:A")
    assert sim.press("next")["ok"]
    r = sim.staff("signin", staff="S888")
    assert r["ok"] is False and r["refused"] == "serving", r
    assert sim.press("finish")["ok"]
    a2 = sim.status()["counters"]["1"]["rating_open"]
    assert sim.staff("signin", staff="S888")["ok"]
    assert sim.press("rate5")["ticket"] == a2           # finished under S777
    a3, _ = _serve(sim)
    assert sim.press("rate4")["ticket"] == a3           # finished under S888
    ok(command(sim, sub, KEY, "staff.signout", {"counter": "1"}))
    a4, _ = _serve(sim)
    assert sim.press("rate3")["ticket"] == a4           # nobody signed in
    assert sim.staff("signin", staff="S999", counter="2")["ok"]
    b1, _ = _serve(sim, "B", counter="2")
    assert sim.press("rate2", "2")["stage"] == "reason"
    time.sleep(0.7)
    assert sim.press("rate5", "2")["reason"] == "attitude"
    assert sim.press("rate4")["ignored"] == "no rating window"
    assert sim.staff("signout", counter="2")["ok"]

    sim.wait_drained()
    got = dict((e["data"]["ticket"], (e["data"]["counter"], e["data"]["staff"])) for e in _ratings(sub))
    assert got == {a2: ("1", "S777"), a3: ("1", "S888"), a4: ("1", None), b1: ("2", "S999")}, got
    # a1's window was replaced by a2's finish: it expired, naming S777
    exp = events(sub, "rating.expired")
    assert [(e["data"]["ticket"], e["data"]["staff"]) for e in exp] == [(a1, "S777")]
    signed = [(e["type"], e["data"]["counter"], e["data"]["staff"]) for e in events(sub)
              if e["type"].startswith("staff.")]
    assert signed == [("staff.signed_in", "1", "S777"), ("staff.signed_in", "1", "S888"),
                      ("staff.signed_out", "1", "S888"), ("staff.signed_in", "2", "S999"),
                      ("staff.signed_out", "2", "S999")], signed


def test_button_mash_gives_exactly_one_rating(broker, sub):
    sim = Sim(broker.port, _cfg(reason_window_s=3)).start()
    try:
        # 20 presses of rate5 spread over about a second
        t5, _ = _serve(sim)
        replies = []
        for _ in range(20):
            replies.append(sim.press("rate5"))
            time.sleep(0.05)
        assert [r.get("event") for r in replies].count("rating.submitted") == 1
        assert replies[0]["event"] == "rating.submitted"
        assert all(r == {"ok": True, "ignored": "no rating window"} for r in replies[1:]), replies

        # 20 presses of rate1 over about a second: the score, then (past the 600 ms guard)
        # the same button picks the fifth reason, and nothing more
        t1, _ = _serve(sim)
        replies = []
        for _ in range(20):
            replies.append(sim.press("rate1"))
            time.sleep(0.05)
        assert replies[0] == {"ok": True, "stage": "reason"}
        taken = [r for r in replies if r.get("event") == "rating.submitted"]
        assert len(taken) == 1 and taken[0]["score"] == 1 and taken[0]["reason"] == "other", replies

        # 20 presses of rate1 faster than the guard: no reason, the step times out with "none"
        tb, _ = _serve(sim)
        replies = _burst(sim, "rate1", 20)
        assert replies[0] == {"ok": True, "stage": "reason"}, replies
        assert all(r.get("ignored") for r in replies[1:]), replies
        wait_event(sub, "rating.submitted", lambda e: e["data"]["ticket"] == tb, timeout=15)

        # and a burst of rate5 (all within milliseconds)
        tf, _ = _serve(sim)
        replies = _burst(sim, "rate5", 20)
        assert [r.get("event") for r in replies].count("rating.submitted") == 1, replies

        sim.wait_drained()
        got = [(e["data"]["ticket"], e["data"]["score"], e["data"]["reason"]) for e in _ratings(sub)]
        assert got == [(t5, 5, None), (t1, 1, "other"), (tb, 1, "none"), (tf, 5, None)], got
        assert sim.status()["stats"]["ignored"] == 19 + 18 + 19 + 19
    finally:
        sim.cleanup()


def test_power_cut_between_press_and_publish_with_the_broker_down(broker, sub):
    sim = Sim(broker.port, example_config()).start()
    sub2 = None
    try:
        ticket, _ = _serve(sim)
        wait_event(sub, "service.finished")
        broker.stop()
        r = sim.press("rate5")
        assert r["event"] == "rating.submitted" and r["ticket"] == ticket
        assert sim.status()["outbox"] >= 1
        sim.kill()
        broker.start()
        sub2 = Subscriber(broker.port, "qterm/#")
        sim.start()
        wait_event(sub2, "rating.submitted", timeout=20)
        # the window closed with the rating: the same citizen cannot rate again after the reboot
        assert sim.press("rate1") == {"ok": True, "ignored": "no rating window"}
        assert sim.status()["rating"]["1"] == "idle"
        other, _ = _serve(sim)
        assert sim.press("rate3")["ok"]
        sim.wait_drained(20)
        sim.kill()                                  # and once more: nothing is re-rated
        sim.start()
        sim.wait_drained(20)

        rated = _ratings(sub, sub2)
        assert [(e["data"]["ticket"], e["data"]["score"]) for e in rated] == [(ticket, 5), (other, 3)], rated
        copies = _copies(sub, sub2)
        assert all(len(p) == 1 for p in copies.values()), "a seq with two different payloads"
        seqs = sorted(copies)
        assert seqs == list(range(1, seqs[-1] + 1)), seqs
        # (acked events may be sent again after a power cut: same seq, same bytes, deduped above)
        assert {2, 3} <= set(e["data"]["boot"] for e in events(sub2, "device.boot"))
    finally:
        if sub2:
            sub2.stop()
        sim.cleanup()


def test_power_cut_between_press_and_publish_with_the_network_down(sim, sub):
    ticket, _ = _serve(sim)
    sim.wait_drained()
    assert sim.ask({"op": "net", "up": False})["ok"]
    assert sim.press("rate4")["event"] == "rating.submitted"
    sim.kill()                                     # power back with the network up
    sim.start()
    sim.wait_drained(20)
    # and a cut right after a press with everything up: published before or after, never twice
    other, _ = _serve(sim)
    assert sim.press("rate5")["ok"]
    sim.kill()
    sim.start()
    sim.wait_drained(20)
    assert sim.press("rate5")["ignored"] == "no rating window"
    rated = _ratings(sub)
    assert [(e["data"]["ticket"], e["data"]["score"]) for e in rated] == [(ticket, 4), (other, 5)], rated
    assert all(len(p) == 1 for p in _copies(sub).values())


def test_power_cut_before_any_press_keeps_the_window_open(sim, sub):
    ticket, t_finish = _serve(sim)
    time.sleep(1.0)
    sim.kill()
    sim.start()
    s = sim.status()
    assert s["rating"]["1"] == "score" and s["counters"]["1"]["rating_open"] == ticket
    r = sim.press("rate3")
    t_rated = time.time()
    assert r["event"] == "rating.submitted" and r["ticket"] == ticket
    sim.wait_drained()
    rated = _ratings(sub)
    assert len(rated) == 1
    # the window kept its opening time (whole seconds survive a reboot)
    assert _ms_ok(rated[0]["data"]["ms"], int((t_rated - t_finish) * 1000) + 1)


def test_power_cut_during_the_reason_step_keeps_the_score(sim, sub):
    ticket, _ = _serve(sim)
    assert sim.press("rate2")["stage"] == "reason"
    sim.kill()
    sim.start()
    env = wait_event(sub, "rating.submitted", timeout=15)
    d = env["data"]
    assert (d["ticket"], d["score"], d["reason"], d["followup"]) == (ticket, 2, "none", True), d
    assert sim.press("rate5") == {"ok": True, "ignored": "no rating window"}
    sim.wait_drained()
    assert len(_ratings(sub)) == 1
    assert events(sub, "rating.expired") == []


def test_score_kept_over_a_power_cut_reports_the_time_to_the_original_press(sim, sub):
    """ms is invitation -> score press; a reboot in between must not add its downtime."""
    ticket, t_finish = _serve(sim)
    assert sim.press("rate1")["stage"] == "reason"
    max_ms = int((time.time() - t_finish) * 1000) + 1
    sim.kill()
    time.sleep(2.5)
    sim.start()
    env = wait_event(sub, "rating.submitted", timeout=15)
    assert env["data"]["score"] == 1
    assert _ms_ok(env["data"]["ms"], max_ms), "ms %d includes the power cut (pressed within %d ms)" % (
        env["data"]["ms"], max_ms)


def test_rating_config_applies_to_the_next_window(sim, sub):
    """config.set of "rating" (applied by a restart): the next window must follow it."""
    sim.wait_drained()
    reasons = [{"code": "queue", "zh": "排队久", "en": "Long queue"},
               {"code": "rude", "zh": "态度差", "en": "Rude"}]
    r = command(sim, sub, KEY, "config.set", {"patch": {"rating": {"window_s": 5, "reasons": reasons}}}, timeout=15)
    assert r["ok"] and r["result"]["restart"] is True, r
    sim.reconnect()
    ticket, _ = _serve(sim)
    assert sim.press("rate2")["stage"] == "reason"
    shown = " ".join(_display(sim)["lines"])
    assert "排队久" in shown and "态度差" in shown and "态度不好" not in shown, shown
    time.sleep(0.7)
    r = sim.press("rate4")  # second reason of the new list
    assert r.get("reason") == "rude", r
    ticket, _ = _serve(sim)
    exp = wait_event(sub, "rating.expired", timeout=12)
    assert exp["data"]["ticket"] == ticket
