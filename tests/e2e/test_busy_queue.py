"""A long queue with a healthy broker: snapshots, outbox release and calls keep up; nothing is
called twice and storage never fills (it did once the snapshot of 140+ waiting ran out of heap)."""
import pytest

from tests.e2e.harness import Sim, events, fast_config


def _run(broker, sub, calls):
    cfg = fast_config()
    cfg["outbox"] = {"max_kb": 64}       # a small outbox: release must really work
    cfg["services"][0]["daily_limit"] = 9999
    sim = Sim(broker.port, cfg).start()
    try:
        for _ in range(200):
            r = sim.press("ticket:A")
            assert r["ok"], r
        assert sim.status()["waiting"]["A"] == 200
        called = []
        for i in range(calls):
            r = sim.press("next")
            assert r["ok"], (i, r)
            called.append(r["ticket"])
            r = sim.press("ticket:A")          # back to 200 waiting
            assert r["ok"], (i, r)
        s = sim.status()
        assert s["fault"] is None and s["stats"]["storage_errors"] == 0, s
        assert len(called) == len(set(called)), "a ticket was called twice"
        sim.wait_drained(timeout=30)
        got = [e["data"]["ticket"] for e in events(sub, "ticket.called")]
        assert got == called
    finally:
        sim.cleanup()


def test_two_hundred_waiting_and_a_hundred_calls(broker, sub):
    _run(broker, sub, 100)


@pytest.mark.long
def test_two_hundred_waiting_and_a_thousand_calls(broker, sub):
    _run(broker, sub, 1000)
