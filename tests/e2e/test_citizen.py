"""One citizen end to end: ticket -> call -> finish -> rate, seen at a real broker."""
import json
import time

from tests.e2e.harness import Sim, events, example_config, wait_event
from tests.escpos_decode import decode


def test_status_answers_with_role_queue_connection_and_outbox(sim):
    s = sim.wait_drained()  # booted and connected: its boot events are at the broker
    assert s["ok"] and s["role"] == "all" and s["device"] == "term01"
    assert s["waiting"] == {"A": 0, "B": 0} and s["issued"] == {"A": 0, "B": 0}
    assert s["outbox"] == 0 and s["connected"] is True
    assert sim.press("ticket:B")["ticket"] == "B001"
    s = sim.status()
    assert s["waiting"] == {"A": 0, "B": 1} and s["issued"] == {"A": 0, "B": 1}


def test_one_citizen_from_ticket_to_rating(sim, sub):
    t0 = time.time()
    r = sim.press("ticket:A")
    assert r["ok"] and r["ticket"] == "A001", r
    issued = wait_event(sub, "ticket.issued", timeout=1.0 + (time.time() - t0))
    assert issued["data"]["ticket"] == "A001" and issued["data"]["service"] == "A"
    assert issued["data"]["ahead"] == 0

    tickets = decode(sim.printer_bytes())
    assert len(tickets) == 1 and tickets[0].cut
    assert any("A001" in ln for ln in tickets[0].big_lines())

    assert sim.press("next")["ok"]
    assert sim.press("finish")["ok"]
    r = sim.press("rate5")
    assert r["ok"] and r["score"] == 5 and r["ticket"] == "A001"

    rated = wait_event(sub, "rating.submitted")
    assert rated["data"]["score"] == 5 and rated["data"]["ticket"] == "A001"
    assert rated["data"]["counter"] == "1" and rated["data"]["staff"] == "S001"
    kinds = [e["type"] for e in events(sub) if e["type"] not in ("device.boot", "day.reset", "device.heartbeat")]
    assert kinds == ["ticket.issued", "ticket.called", "service.finished", "rating.submitted"], kinds
    seqs = [e["seq"] for e in events(sub)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    status = sub.wait_for(lambda ln: ln.startswith("qterm/v1/hall01/term01/status "))
    assert json.loads(status.split(" ", 1)[1])["state"] == "online"


def test_display_shows_called_number_and_counter(sim):
    assert sim.press("ticket:B")["ticket"] == "B001" and sim.press("ticket:A")["ticket"] == "A001"
    # counter 2 serves B first: the counter shown must be the caller's, not a digit of the number
    assert sim.press("next", counter="2")["ticket"] == "B001"
    d = sim.ask({"op": "display"})
    assert d["ok"]
    assert d["lines"][0].split() == ["B001", "2"], d  # the number and the counter, nothing else
    assert any("B001" in ln and "2号窗口" in ln for ln in d["lines"]), d
    assert sim.press("next")["ticket"] == "A001"
    d = sim.ask({"op": "display"})
    assert d["lines"][0].split() == ["A001", "1"], d
    assert any("A001" in ln and "1号窗口" in ln for ln in d["lines"]), d


def test_control_port_rejects_junk_without_harm(sim):
    assert sim.ask(b"this is not json")["ok"] is False
    assert sim.ask({"op": "launch_missiles"})["ok"] is False
    assert "unknown op" in sim.ask({"op": "launch_missiles"})["error"]
    assert sim.ask({"no": "op"})["ok"] is False
    assert sim.ask({"op": "press"})["ok"] is False
    assert sim.ask({"op": "paper", "state": "wet"})["ok"] is False
    assert sim.ask({"op": "press", "button": "self_destruct"})["ok"] is False
    assert sim.status()["ok"]
    long_line = sim.ask({"op": "press", "button": "x" * 2000})
    assert long_line["ok"] is False and "longer than" in long_line["error"], long_line
    assert sim.ask({"op": "display"})["ok"]       # still one reply per request


def _evt_seqs(sub, after):
    """Seqs of every event delivery the backend received (duplicates kept), in arrival order."""
    out = []
    for ln in sub.lines():
        topic, _, payload = ln.partition(" ")
        if "/term01/evt/" in topic:
            seq = json.loads(payload)["seq"]
            if seq > after:
                out.append(seq)
    return out


def test_ticket_and_rating_work_while_the_broker_is_down(broker, sub):
    sim = Sim(broker.port, example_config()).start()
    try:
        before = sim.wait_drained()["seq"]
        broker.stop()
        assert sim.press("ticket:A")["ticket"] == "A001"
        assert sim.press("next")["ok"] and sim.press("finish")["ok"]
        r = sim.press("rate4")
        assert r["ok"] and r["score"] == 4 and r["ticket"] == "A001", r
        during = sim.status()
        assert during["seq"] >= before + 4 and during["outbox"] >= 4, during
        # The broker returns. The device's link is held down until the backend has subscribed
        # again, so what it sends next cannot race the backend's own reconnect.
        assert sim.ask({"op": "net", "up": False})["ok"]
        broker.start()
        sub.wait_ready()
        assert sim.ask({"op": "net", "up": True})["ok"]
        after = sim.wait_drained(timeout=30)
        wanted = list(range(before + 1, after["seq"] + 1))
        deadline = time.time() + 10
        while sorted(set(_evt_seqs(sub, before))) != wanted and time.time() < deadline:
            time.sleep(0.05)
        # every event issued during the outage arrived, in seq order, exactly once
        assert _evt_seqs(sub, before) == wanted, (_evt_seqs(sub, before), wanted)
        late = [e for e in events(sub) if e["seq"] > before]
        kinds = [e["type"] for e in late if e["type"] != "device.heartbeat"]
        assert kinds == ["ticket.issued", "ticket.called", "service.finished", "rating.submitted"], kinds
        rated = late[[e["type"] for e in late].index("rating.submitted")]["data"]
        assert (rated["ticket"], rated["score"], rated["counter"]) == ("A001", 4, "1"), rated
        for prev, env in zip([None] + late, late):
            if prev is not None:
                assert env["seq"] == prev["seq"] + 1
    finally:
        sim.cleanup()


def test_power_cut_gives_offline_and_numbers_never_repeat(broker, sub):
    cfg = example_config()
    cfg["broker"] = dict(cfg["broker"], keepalive=5)
    sim = Sim(broker.port, cfg).start()
    try:
        assert sim.press("ticket:A")["ticket"] == "A001"
        assert sim.press("ticket:A")["ticket"] == "A002"
        sub.wait_for(lambda ln: '"state": "online"' in ln or '"state":"online"' in ln)
        t_kill = time.time()
        sim.kill()
        line = sub.wait_for(lambda ln: ln.startswith("qterm/v1/hall01/term01/status ") and "offline" in ln,
                            timeout=1.5 * 5 + 1)
        assert time.time() - t_kill <= 1.5 * 5 + 1
        assert json.loads(line.split(" ", 1)[1])["state"] == "offline"
        sim.start()
        assert sim.press("ticket:A")["ticket"] == "A003"
        last = sim.wait_drained()["seq"]
        wait_event(sub, "ticket.issued", lambda e: e["seq"] <= last and e["data"]["ticket"] == "A003")
        # each number once, in the order issued, numbered on from before the cut
        issued = [(e["data"]["ticket"], e["data"]["n"]) for e in events(sub, "ticket.issued")]
        assert issued == [("A001", 1), ("A002", 2), ("A003", 3)], issued
        assert sim.status()["issued"]["A"] == 3
    finally:
        sim.cleanup()


def test_bad_config_names_the_key_and_keeps_the_last_good(broker):
    sim = Sim(broker.port, example_config()).start()
    try:
        sim.stop()
        bad = example_config()
        bad["services"][0]["daily_limit"] = "lots"
        sim.write_config(bad)
        sim.start()
        assert sim.status()["ok"]
        assert "services[0].daily_limit: expected int" in sim.output(), sim.output()
        assert sim.press("ticket:A")["ticket"] == "A001"  # still serving with the good config
    finally:
        sim.cleanup()


def test_bad_config_with_no_good_one_exits_non_zero(broker):
    bad = example_config()
    del bad["key"]
    sim = Sim(broker.port, bad)
    sim.start(wait=False)
    rc = sim.proc.wait(30)
    assert rc == 2, (rc, sim.output())
    assert "no usable configuration" in sim.output() and ": key: missing" in sim.output(), sim.output()
    sim.cleanup()
