"""One citizen end to end: ticket -> call -> finish -> rate, seen at a real broker."""
import json
import time

from tests.e2e.harness import Sim, events, example_config, wait_event
from tests.escpos_decode import decode


def test_status_answers_with_role_queue_connection_and_outbox(sim):
    s = sim.status()
    assert s["ok"] and s["role"] == "all" and s["device"] == "term01"
    assert set(s["waiting"]) == {"A", "B"}
    assert "outbox" in s and "connected" in s


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
    sim.press("ticket:B")
    sim.press("next")
    d = sim.ask({"op": "display"})
    assert d["ok"]
    assert "B001" in d["lines"][0] and "1" in d["lines"][0]
    assert any("B001" in ln and "1号窗口" in ln for ln in d["lines"])


def test_control_port_rejects_junk_without_harm(sim):
    assert sim.ask(b"this is not json")["ok"] is False
    assert sim.ask({"op": "launch_missiles"})["ok"] is False
    assert "unknown op" in sim.ask({"op": "launch_missiles"})["error"]
    assert sim.ask({"no": "op"})["ok"] is False
    assert sim.ask({"op": "press"})["ok"] is False
    assert sim.ask({"op": "paper", "state": "wet"})["ok"] is False
    assert sim.ask({"op": "press", "button": "self_destruct"})["ok"] is False
    assert sim.status()["ok"]


def test_ticket_and_rating_work_while_the_broker_is_down(broker, sub):
    sim = Sim(broker.port, example_config()).start()
    try:
        sim.wait_drained()
        broker.stop()
        assert sim.press("ticket:A")["ok"]
        assert sim.press("next")["ok"] and sim.press("finish")["ok"]
        assert sim.press("rate4")["ok"]
        assert sim.status()["outbox"] >= 4
        broker.start()
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
        issued = [e["data"]["ticket"] for e in events(sub, "ticket.issued")]
        sim.wait_drained()
        issued = [e["data"]["ticket"] for e in events(sub, "ticket.issued")]
        assert sorted(issued) == ["A001", "A002", "A003"]
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
        assert "services[0].daily_limit" in sim.output()
    finally:
        sim.cleanup()


def test_bad_config_with_no_good_one_exits_non_zero(broker):
    bad = example_config()
    del bad["key"]
    sim = Sim(broker.port, bad)
    sim.start(wait=False)
    rc = sim.proc.wait(30)
    assert rc != 0
    assert "key" in sim.output() and "missing" in sim.output()
    sim.cleanup()
