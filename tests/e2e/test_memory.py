"""Running short of memory is an expected event: refused clearly, the state equal to flash, never
a crash. The simulator's `squeeze` op holds heap until only `leave` bytes are free."""
import time

import pytest

from tests.e2e.harness import Sim, events, fast_config


def _state(sim):
    s = sim.status()
    return {k: s[k] for k in ("day", "waiting", "issued", "counters", "seq")}


def _release(sim):
    deadline = time.time() + 10
    while time.time() < deadline:
        r = sim.ask({"op": "squeeze", "leave": None})
        if r.get("ok"):
            return
        time.sleep(0.1)
    raise AssertionError("could not give the heap back: %r" % r)


@pytest.mark.parametrize("leave", [256, 1024, 3072, 6144])
def test_every_action_short_of_memory_is_refused_or_done_never_half(broker, sub, leave):
    sim = Sim(broker.port, fast_config()).start()
    try:
        for _ in range(3):
            assert sim.press("ticket:A")["ok"]
        assert sim.press("next")["ok"]
        sim.wait_drained()
        actions = ["ticket:A", "ticket:B", "next", "finish", "rate2", "rate4", "recall", "skip", "pause", "pause"]
        answers = []
        for button in actions:
            assert sim.ask({"op": "squeeze", "leave": leave})["ok"]
            r = sim.press(button)
            answers.append((button, r))
            # an answer always comes; a failure is a refusal in words, never an internal error
            assert r.get("ok") or r.get("refused") or r.get("error") in ("device out of memory", "storage"), r
            _release(sim)
        assert sim.status()["ok"], "device not answering after the squeeze"
        before = _state(sim)
        sim.kill()                       # what is on flash is what the device believed
        sim.start()
        after = _state(sim)
        after["seq"] = before["seq"]     # the new boot emits its own events
        assert after == before, (answers, before, after)
        assert any(r.get("refused") == "memory" for _, r in answers) or leave > 4096, answers
        # and it serves normally again
        assert sim.press("ticket:A")["ok"]
        sim.wait_drained()
        seqs = [e["seq"] for e in events(sub)]
        assert seqs == list(range(1, len(seqs) + 1)), "events lost or repeated under memory pressure"
    finally:
        sim.cleanup()


def test_a_ticket_short_of_memory_is_never_issued_without_paper(broker, sub):
    """Laying out the ticket needs the most heap: when it fails, the number was not given out
    (nothing durable), so no citizen is in the queue without a ticket in hand."""
    sim = Sim(broker.port, fast_config()).start()
    try:
        printed = len(sim.printer_bytes())
        assert sim.ask({"op": "squeeze", "leave": 512})["ok"]
        r = sim.press("ticket:A")
        shown = sim.ask({"op": "display"})     # at once: the refusal is shown for 4 s
        _release(sim)
        if not shown["ok"]:                     # too short of heap even to answer that
            shown = sim.ask({"op": "display"})
        assert r == {"ok": False, "refused": "memory"}, r
        assert "内存不足" in " ".join(shown["lines"]), shown
        s = sim.status()
        assert s["issued"]["A"] == 0 and s["waiting"]["A"] == 0 and len(sim.printer_bytes()) == printed
        assert sim.press("ticket:A")["ticket"] == "A001"
    finally:
        sim.cleanup()


def test_a_busy_connected_day_keeps_its_heap_flat(broker, sub):
    """Citizens served back to back with the broker up and time passing (10 s each): the heap in
    use after a collection must not creep up with the events published (it did by ~50 B an
    event: a task per held-back `state`, each sleeping out its second while the day went on
    at full speed, until tickets were refused for memory at 96K)."""
    cfg = fast_config()
    cfg["printer"]["settle_ms"] = 0     # citizens as fast as the keys go
    sim = Sim(broker.port, cfg).start()
    try:
        sim.wait_connected()

        def citizen(i):
            service, counter = ("A", "1") if i % 2 == 0 else ("B", "2")
            assert sim.press("ticket:" + service)["ok"]
            assert sim.press("next", counter)["ok"]
            assert sim.press("finish", counter)["ok"]
            assert sim.press("rate5", counter)["ok"]
            sim.ask({"op": "clock", "advance_s": 10})

        for i in range(20):      # past the first snapshot, loaded code settled
            citizen(i)
        sim.wait_drained()
        before = sim.status()["heap"]["free"]
        for i in range(20, 100):
            citizen(i)
        sim.wait_drained()
        after = sim.status()["heap"]["free"]
        # 80 citizens are ~330 events: creeping by 50 B each would be ~16 KiB
        assert after > before - 3072, (before, after)
    finally:
        sim.stop()
