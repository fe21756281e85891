"""A hall (kiosk / counter / screen over MQTT) under faults found by an attack pass: each test
failed before its fix."""
import json
import os
import time

from tests.broker import Subscriber
from tests.e2e.harness import events, publish
from tests.e2e.test_hall import SITE, _hall, _request, settle, wait_until


def _lines(sim):
    return " ".join(sim.ask({"op": "display"})["lines"])


def test_calling_paused_goes_away_when_the_kiosk_is_back(broker, request):
    """A counter whose home screen was redrawn while the kiosk was away (here: the thanks after
    a rating) says 叫号暂停 - and stops saying it once the kiosk's status is online again
    (before: until something else redrew the screen)."""
    hall = _hall(broker, request, counters=1, screen=False)
    c = hall.counter("1")
    assert hall.kiosk.press("ticket:A")["ok"]
    assert c.press("next")["ticket"] == "A001"
    assert c.press("finish")["events"] == ["service.finished"]     # delivered: the pad opens
    hall.kiosk.kill()
    wait_until(lambda: c.status()["hall"]["kiosk_online"] is False, 15, "the kiosk's will")
    assert c.press("rate5")["event"] == "rating.submitted"
    wait_until(lambda: "叫号暂停" in _lines(c), 10, "叫号暂停 after the thanks")
    hall.kiosk.start()
    hall.kiosk.wait_connected(30)
    wait_until(lambda: c.status()["hall"]["kiosk_online"] is True, 15, "the kiosk online again")
    wait_until(lambda: "叫号暂停" not in _lines(c), 10, "叫号暂停 gone with the kiosk back")


def test_a_counter_whose_link_file_was_lost_goes_on_above_the_kiosks_numbers(broker, request):
    """A counter board swapped, or its link.json damaged ("asking the kiosk"), has no request
    number: it asks the kiosk as number 0 and goes on above the kiosk's (before: numbers from
    1 again, taken by the kiosk for repeats - `next` answered ok with nothing called)."""
    hall = _hall(broker, request, counters=1, screen=False)
    c = hall.counter("1")
    for _ in range(4):
        assert hall.kiosk.press("ticket:A")["ok"]
    for _ in range(2):
        assert c.press("next")["ok"]
        assert c.press("finish")["ok"]
        assert c.press("rate5")["ok"]
    used = c.status()["hall"]["request"]
    c.kill()
    with open(os.path.join(c.state, "flash", "link.json"), "w") as f:
        f.write("{damaged")
    c.start()
    c.wait_connected(30)
    r = c.press("next")
    assert r["ok"] and r.get("ticket") == "A003" and "ticket.called" in r["events"], r
    assert hall.kiosk.status()["counters"]["1"]["serving"] == "A003"
    assert c.status()["hall"]["request"] > used
    r = c.press("finish")
    assert r["ok"] and r["events"] == ["service.finished"], r
    assert c.press("rate4")["event"] == "rating.submitted"


def _said(sim):
    try:
        with open(os.path.join(sim.state, "voice.log"), encoding="utf-8") as f:
            return [ln.split("\t")[2] for ln in f.read().splitlines() if "\tSAY\t" in ln]
    except OSError:
        return []


def test_calls_not_yet_said_survive_a_screen_power_cut(broker, request):
    """Three calls in a row; the screen loses power while saying the first. Back on, every call
    is said in full (before: the waiting calls lived in RAM only, and a call received within
    100 ms of the cut was not even on flash)."""
    hall = _hall(broker, request, counters=3)
    scr = hall.sims["screen"]
    for _ in range(3):
        assert hall.kiosk.press("ticket:A")["ok"]
    tickets = [hall.counter(cid).press("next")["ticket"] for cid in "123"]
    assert sorted(tickets) == ["A001", "A002", "A003"]
    wait_until(lambda: _said(scr), 10, "the first call said")
    scr.kill()
    scr.start()
    scr.wait_connected(30)

    def all_said():
        said = _said(scr)
        return all(any(("请%s号" % t) in x for x in said) and any(("Number %s," % t) in x for x in said)
                   for t in tickets)
    wait_until(all_said, 45, "every call said in both languages after the power cut")
    assert scr.status()["hall"]["voice_dropped"] == 0


def test_a_screen_json_with_hostile_calls_to_say_still_boots(broker, request):
    """screen.json's calls to say are read at boot: whatever is there, the screen comes up."""
    hall = _hall(broker, request, counters=1)
    scr = hall.sims["screen"]
    path = os.path.join(scr.state, "flash", "screen.json")
    for say in (5, {"A001": 1}, [[1, 2, 3, 4], "x", [], ["A" * 100, "1" * 100, 1, "late"], None]):
        scr.kill()
        with open(path, "w") as f:
            json.dump({"seq": 0, "calls": [], "say": say}, f)
        scr.start()
        scr.wait_connected(30)
        assert scr.status()["hall"]["calls"] == 0, say
    assert hall.kiosk.press("ticket:A")["ok"]
    assert hall.counter("1").press("next")["ticket"] == "A001"
    wait_until(lambda: any("请A001号" in x for x in _said(scr)), 15, "the call said")


def test_next_from_a_counter_that_does_not_know_it_serves_finishes_nobody(broker, sub, request):
    """A `next` whose answer was lost left the counter not knowing it serves A001; its next
    `next` must not finish A001 at the kiosk (a finished service nobody could rate): it is
    refused `serving` with the ticket, and the counter takes A001 back."""
    hall = _hall(broker, request, counters=1, screen=False)
    for _ in range(2):
        assert hall.kiosk.press("ticket:A")["ok"]
    base = "qterm/v1/%s/kiosk/hall/" % SITE
    cfg = hall.cfgs["ctr1"]
    ans = Subscriber(broker.port, base + "ans/#")
    request.addfinalizer(ans.stop)

    def answer(n):
        for ln in ans.lines():
            m = json.loads(ln.partition(" ")[2])
            if m["n"] == n:
                return m
        return None
    publish(broker.port, base + "req/1", _request(cfg, "next", 500), qos=0)     # its answer "lost"
    assert wait_until(lambda: answer(500), what="the call's answer")["r"]["serving"][0] == "A001"
    time.sleep(3.5)       # past the kiosk's next guard: not a bounce
    publish(broker.port, base + "req/1", _request(cfg, "next", 501), qos=0)
    a = wait_until(lambda: answer(501), what="the second next's answer")
    assert not a["ok"] and a["r"]["refused"] == "serving" and a["r"]["detail"] == "A001", a
    assert a["r"]["serving"][0] == "A001"
    settle(hall, sub)
    assert events(sub, "service.finished", dev="kiosk") == []
    assert [e["data"]["ticket"] for e in events(sub, "ticket.called", dev="kiosk")] == ["A001"]
