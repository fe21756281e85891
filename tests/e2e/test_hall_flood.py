"""A hall's counters under an attack pass (floods, clock steps, a backend acting meanwhile,
memory squeezes): each test is a finding and failed before its fix."""
import time

from tests.e2e.harness import events
from tests.e2e.test_hall import SITE, _hall, check_hall_records, settle, wait_until


def _kcmd(hall, sub, op, args):
    from tests.e2e.harness import send_raw_command, sign_command
    cmd = sign_command(hall.cfgs["kiosk"]["key"], op, args)
    return send_raw_command(hall.kiosk, sub, cmd, cmd["id"], 10, site=SITE, dev="kiosk")


def test_a_pending_finish_finishes_whatever_the_kiosk_has_the_counter_serve_by_then(broker, sub, request):
    """Counter 1 serves A001 and is cut off; staff finish A001 (queued), the citizen rates it.
    Meanwhile the backend parks A001 at the kiosk and calls A002 to counter 1. When the link is
    back, the finish (it names no ticket) finishes A002 at the kiosk: A001's rating is bound
    to A002's service.finished, A002 was never served at all."""
    hall = _hall(broker, request, counters=1, screen=False)
    c = hall.counter("1")
    for _ in range(2):
        assert hall.kiosk.press("ticket:A")["ok"]
    assert c.press("next")["ticket"] == "A001"
    assert c.ask({"op": "net", "up": False})["ok"]
    r = c.press("finish")
    assert r["ok"] and r["queued"] and r["ticket"] == "A001", r
    assert c.press("rate5")["event"] == "rating.submitted"
    assert _kcmd(hall, sub, "ticket.park", {"counter": "1"})["ok"]
    assert _kcmd(hall, sub, "ticket.call", {"counter": "1", "ticket": "A002"})["ok"]
    assert c.ask({"op": "net", "up": True})["ok"]
    wait_until(lambda: not c.status()["hall"]["pending_finish"], 60, "the finish delivered")
    settle(hall, sub)
    fins = [e["data"]["ticket"] for e in events(sub, "service.finished", dev="kiosk")]
    assert "A002" not in fins, fins             # refused not_serving: A001 is not served there
    assert hall.kiosk.status()["counters"]["1"]["serving"] == "A002"
    wait_until(lambda: c.status()["hall"]["serving"] == "A002", 15, "the counter to take A002")
    # (A001's rating names a finish the kiosk refused: README, "Known limits" of the hall)


def test_a_finish_short_of_memory_half_way_never_finishes_a_service_nobody_can_rate(broker, sub, request):
    """Staff press finish while the counter's heap is short, for a range of squeezes around
    where a finish starts to fit. Whatever the answer, a service the kiosk finished must have
    its rating window open on the counter (before: short of memory after link.json was
    written, the press was tried again, delivered the pending finish and then refused itself
    'not_serving' - the kiosk's service.finished with no pad, no rating, no rating.expired)."""
    from tests.e2e.test_hall import _release
    hall = _hall(broker, request, counters=1, screen=False)
    for i in range(160):
        assert hall.kiosk.press("ticket:" + "AB"[i % 2])["ok"]
    c = hall.counter("1")

    def finish_with(leave):
        r = c.press("next")
        assert r["ok"], r
        t = r["ticket"]
        assert c.ask({"op": "squeeze", "leave": leave})["ok"]
        r = c.press("finish")
        _release(c)
        if hall.kiosk.status()["counters"]["1"]["serving"] != t:    # finished at the kiosk
            wait_until(lambda: c.status()["hall"]["serving"] is None, 10, "the counter to agree")
            rated = c.press("rate5")
            assert rated.get("event") == "rating.submitted" and rated["ticket"] == t, \
                "%s finished at the kiosk (leave %d, the finish press answered %s), its pad: %s" % (
                    t, leave, r.get("refused") or r.get("events"), rated.get("ignored") or rated)
        return r

    leave = 12000       # down to where a finish no longer fits ...
    while finish_with(leave).get("refused") != "memory":
        leave -= 256
        assert leave > 0
    for fine in range(leave + 256, leave - 64, -16):    # ... and finely across that edge
        finish_with(fine)
    settle(hall, sub)
    check_hall_records(hall, sub)


def test_a_counter_whose_clock_lost_the_time_can_still_call(broker, request):
    """A counter's RTC back at 2000 (a flat backup cell; `ntp` is optional, README
    Configuration): the kiosk, whose clock is set, refuses each of its requests `late`, for
    good - the screen says "request too late", and pressing again never helps. An unset clock
    cannot judge an age (the kiosk's own unset clock skips the check), and the kiosk's signed
    answers carry its time."""
    hall = _hall(broker, request, counters=1, screen=False)
    c = hall.counter("1")
    for _ in range(2):
        assert hall.kiosk.press("ticket:A")["ok"]
    assert c.ask({"op": "clock", "set": 946684800})["ok"]      # 2000-01-01
    time.sleep(1.0)
    for _ in range(3):
        r = c.press("next")
        if r["ok"]:
            break
        time.sleep(2.0)
    assert r["ok"] and r["ticket"] == "A001", r
