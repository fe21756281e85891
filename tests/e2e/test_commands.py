"""Backend commands: authenticated, answered, and never able to touch a rating."""
import time

from tests.e2e.harness import ok, command, events, example_config, send_raw_command, sign_command, wait_event

KEY = example_config()["key"]


def test_ping_and_status(sim, sub):
    sim.wait_drained()
    r = command(sim, sub, KEY, "ping")
    assert r["ok"] and abs(r["result"]["pong"] - time.time()) < 5
    r = command(sim, sub, KEY, "status")
    assert r["ok"] and r["result"]["device"] == "term01"


def test_wrong_mac_stale_replayed_and_unknown_are_rejected(sim, sub):
    sim.wait_drained()
    bad = sign_command(KEY, "ping")
    bad["mac"] = "0" * 32
    assert send_raw_command(sim, sub, bad, bad["id"])["error"] == "bad_mac"
    old = sign_command(KEY, "ping", ts=int(time.time()) - 3600)
    assert send_raw_command(sim, sub, old, old["id"])["error"] == "stale"
    once = sign_command(KEY, "ping")
    assert send_raw_command(sim, sub, once, once["id"])["ok"]
    assert send_raw_command(sim, sub, once, once["id"])["error"] == "replayed"
    r = command(sim, sub, KEY, "rating.submit", {"score": 5})
    assert r["ok"] is False and r["error"] == "unknown_op"
    # refusals anyone can provoke are journalled once per quiet period, the rest summed up
    # when it ends; a refusal of a signed command is journalled each time
    sim.ask({"op": "clock", "advance_s": 61})
    summary = wait_event(sub, "command.rejected", lambda e: e["data"]["reason"] == "suppressed")
    assert summary["data"]["count"] == 2 and summary["data"]["reasons"] == {"stale": 1, "replayed": 1}
    sim.wait_drained()
    rejected = [e["data"]["reason"] for e in events(sub, "command.rejected")]
    assert rejected == ["bad_mac", "unknown_op", "suppressed"], rejected
    assert events(sub, "rating.submitted") == []


def test_replay_is_rejected_even_after_a_reboot(sim, sub):
    cmd = sign_command(KEY, "ping")
    assert send_raw_command(sim, sub, cmd, cmd["id"])["ok"]
    sim.kill()
    sim.start()
    sim.wait_drained()
    r = send_raw_command(sim, sub, cmd, cmd["id"])
    assert r["ok"] is False and r["error"] == "replayed"


def test_appointment_signin_and_pause_by_command(sim, sub):
    sim.wait_drained()
    r = command(sim, sub, KEY, "ticket.appointment", {"service": "B", "appt": "YY-2026-0001"})
    assert r["ok"] and r["result"]["ticket"] == "B001"
    issued = wait_event(sub, "ticket.issued")
    assert issued["data"]["kind"] == "appointment" and issued["data"]["appt"] == "YY-2026-0001"
    ok(command(sim, sub, KEY, "staff.signin", {"counter": "1", "staff": "S777"}))
    assert sim.press("next")["ok"] and sim.press("finish")["ok"] and sim.press("rate4")["ok"]
    rated = wait_event(sub, "rating.submitted")
    assert rated["data"]["staff"] == "S777"
    r = command(sim, sub, KEY, "counter.pause", {"counter": "1", "reason": "meeting"})
    assert r["ok"]
    assert "暂停服务" in " ".join(sim.ask({"op": "display"})["lines"])
    ok(command(sim, sub, KEY, "counter.resume", {"counter": "1"}))


def test_config_set_is_validated_and_applied_by_a_restart(sim, sub):
    """A config change is merged and validated at the next boot, in a fresh heap; the reply
    comes once the terminal is back, with the validator's words when it is refused."""
    sim.wait_drained()
    assert sim.press("ticket:A")["ok"]          # nobody is lost by the restart
    boot = sim.status()["boot"]
    r = command(sim, sub, KEY, "config.set", {"patch": {"heartbeat_s": 10}}, timeout=15)
    assert r["ok"] and r["result"] == {"applied": ["heartbeat_s"], "restart": True}, r
    s = sim.reconnect()
    assert s["boot"] == boot + 1 and s["waiting"]["A"] == 1, s
    applied = wait_event(sub, "config.applied")
    assert applied["data"] == {"keys": ["heartbeat_s"], "restart": True}
    r = command(sim, sub, KEY, "config.set", {"patch": {"heartbeat_s": "often"}}, timeout=15)
    assert r["ok"] is False and r["error"] == "bad_config" and "heartbeat_s" in r["detail"], r
    sim.reconnect()
    rejected = wait_event(sub, "command.rejected", lambda e: e["data"]["op"] == "config.set")
    assert rejected["data"]["reason"] == "bad_config" and rejected["data"]["id"] == r["id"]
    r = command(sim, sub, KEY, "config.set", {"patch": {"key": "00" * 32}})
    assert r["ok"] is False and r["error"] == "not_allowed"
    # what was applied stays applied, the refused change left no trace
    sim.kill()
    sim.start()
    hb = wait_event(sub, "device.heartbeat", timeout=20)
    assert hb["data"]["uptime_s"] <= 15, hb        # every 10 s now
    assert len(events(sub, "config.applied")) == 1



def test_config_set_pointing_at_a_ca_the_device_cannot_load_is_refused(sim, sub):
    """A remote change must not lock the terminal out: broker.tls with a CA file that is not on
    the flash is refused at the restart that would apply it; the terminal stays online as it was."""
    sim.wait_drained()
    r = command(sim, sub, KEY, "config.set", {"patch": {"broker": {"tls": True, "ca": "nope.der"}}},
                timeout=15)
    assert r["ok"] is False and r["error"] == "bad_config" and "nope.der" in r["detail"], r
    s = sim.reconnect()
    rejected = wait_event(sub, "command.rejected", lambda e: e["data"]["op"] == "config.set")
    assert rejected["data"]["reason"] == "bad_config"
    assert sim.press("ticket:A")["ok"]
    s = sim.wait_drained()
    assert s["connected"] and s["mqtt_error"] is None, s


Y2000 = 946684800


def test_time_set_corrects_a_clock_lost_to_2000_and_is_range_checked(sim, sub):
    sim.wait_drained()
    sim.ask({"op": "clock", "set": Y2000})   # the RTC restarted at 2000 after a power loss
    r = command(sim, sub, KEY, "ping")
    assert r["ok"] is False and r["error"] == "future", r   # other ops need the device clock
    now = int(time.time())
    r = command(sim, sub, KEY, "time.set", {"epoch": now}, ts=now)
    assert r["ok"], r
    assert abs(sim.ask({"op": "clock"})["time"] - now) < 5
    stepped = wait_event(sub, "clock.set", lambda e: e["data"].get("source") == "command")
    assert stepped["data"]["to"] == now
    ok(command(sim, sub, KEY, "ping"))
    for epoch in (-1000, 10 ** 20, Y2000):
        r = command(sim, sub, KEY, "time.set", {"epoch": epoch})
        assert r["ok"] is False and r["error"] == "bad_args", (epoch, r)
    assert abs(sim.ask({"op": "clock"})["time"] - time.time()) < 5
    assert sim.press("ticket:A")["ok"]


def test_a_clock_advance_beyond_the_rtc_is_refused_and_the_device_goes_on(sim):
    for adv in (10 ** 30, -(10 ** 12), 1 << 32):
        r = sim.ask({"op": "clock", "advance_s": adv})
        assert r["ok"] is False and "outside" in r["error"], (adv, r)
    assert sim.press("ticket:A")["ok"]


def test_captured_command_replayed_after_the_clock_moved_back_is_refused(sim, sub):
    sim.wait_drained()
    captured = sign_command(KEY, "day.reset")
    assert send_raw_command(sim, sub, captured, captured["id"])["ok"]
    sim.ask({"op": "clock", "advance_s": -600})
    r = send_raw_command(sim, sub, captured, captured["id"])
    assert r["ok"] is False and r["error"] == "replayed", r
    sim.kill()
    sim.start()
    sim.ask({"op": "clock", "advance_s": -3000})
    r = send_raw_command(sim, sub, captured, captured["id"])
    assert r["ok"] is False and r["error"] == "replayed", r
    sim.wait_drained()
    assert len(events(sub, "day.reset")) == 1, [e["data"] for e in events(sub, "day.reset")]
