"""Ratings can't be falsified, and a captured event stream shows any tampering.

No backend command, control op or config change creates, changes or deletes a rating;
tools/verify proves a real capture intact and catches each kind of alteration.
"""
import binascii
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time

from tests.e2e.harness import (ok, ROOT, Sim, command, events, example_config, publish, send_raw_command,
                               sign_command, wait_event)

KEY = example_config()["key"]
BASE = "qterm/v1/hall01/term01/"


def _serve(sim, service="A", counter=None):
    ticket = sim.press("ticket:" + service)["ticket"]
    assert sim.press("next", counter)["ticket"] == ticket
    assert sim.press("finish", counter)["events"] == ["service.finished"]
    return ticket


def _canon(obj):
    """Canonical JSON, computed independently of firmware/canonical.py (fine for our data)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _mac(key_hex, env):
    body = dict((k, v) for k, v in env.items() if k != "mac")
    return hmac.new(binascii.unhexlify(key_hex), _canon(body), hashlib.sha256).hexdigest()[:32]


def _verify(lines, *args):
    """Run python -m tools.verify on lines written to a file: (exit code, stdout, json report)."""
    fd, path = tempfile.mkstemp(prefix="qterm-capture-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    try:
        base = [sys.executable, "-m", "tools.verify", "--key", "term01=" + KEY] + list(args) + [path]
        text = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=60)
        js = subprocess.run(base[:-1] + ["--json", path], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert js.returncode == text.returncode, (text.stdout, js.stdout)
        return text.returncode, text.stdout + text.stderr, json.loads(js.stdout)
    finally:
        os.remove(path)


def _device(rep):
    assert len(rep["devices"]) == 1, rep["devices"]
    return rep["devices"][0]


def _evt_lines(lines):
    """[(index, envelope, raw payload)] of the event lines of a mosquitto_sub -v capture."""
    out = []
    for i, ln in enumerate(lines):
        topic, _, payload = ln.partition(" ")
        if topic.startswith(BASE + "evt/"):
            out.append((i, json.loads(payload), payload))
    return out


def _rating_seq(lines, ticket):
    seqs = set(env["seq"] for _, env, _ in _evt_lines(lines)
               if env["type"] == "rating.submitted" and env["data"]["ticket"] == ticket)
    assert len(seqs) == 1, (ticket, seqs)
    return seqs.pop()


# ---- nothing but the pad makes a rating ------------------------------------------------

FORGERIES = (
    # (op, args, reason the device must give)
    ("rating.submit", {"ticket": "A001", "score": 5}, "unknown_op"),
    ("rating.set", {"ticket": "A001", "score": 1}, "unknown_op"),
    ("rating.delete", {"ticket": "A001"}, "unknown_op"),
    ("rating.expire", {"counter": "1"}, "unknown_op"),
    ("rating.submitted", {"ticket": "A001", "score": 5, "counter": "1"}, "unknown_op"),
    ("event.emit", {"type": "rating.submitted", "data": {"ticket": "A001", "score": 5}}, "unknown_op"),
    ("outbox.delete", {"seq": 5}, "unknown_op"),
    ("RATING.SUBMIT", {"score": 5}, "unknown_op"),
    ("press", {"button": "rate5"}, "unknown_op"),
    ("staff.signin", {"counter": "1", "staff": "S001", "score": 5}, "bad_args"),
    ("staff.signout", {"counter": "1", "ticket": "A001"}, "bad_args"),
    ("counter.pause", {"counter": "1", "rating": {"score": 5}}, "bad_args"),
    ("counter.transfer", {"counter": "1", "to_counter": "2", "score": 1}, "bad_args"),
    ("ticket.requeue", {"ticket": "A001", "score": 1}, "bad_args"),
    ("ticket.appointment", {"service": "A", "appt": "X1", "rating": 5}, "bad_args"),
    ("day.reset", {"keep_ratings": False}, "bad_args"),
    ("ping", {"score": 5}, "bad_args"),
    ("status", {"rating": "A001"}, "bad_args"),
    ("time.set", {"epoch": 1, "rating": 1}, "bad_args"),
    ("config.set", {"patch": {}, "score": 5}, "bad_args"),
    ("config.set", {"patch": {"rating": {"window_s": 0}}}, "bad_config"),
    ("config.set", {"patch": {"rating": {"reasons": []}}}, "bad_config"),
    ("config.set", {"patch": {"rating": "5"}}, "bad_config"),
    ("config.set", {"patch": {"key": "00" * 32}}, "not_allowed"),
    ("config.set", {"patch": {"device": "term02"}}, "not_allowed"),
)


def test_no_backend_command_can_create_change_or_delete_a_rating(sim, sub):
    sim.wait_drained()
    ticket = _serve(sim)
    tried = []
    for op, args, reason in FORGERIES:
        r = command(sim, sub, KEY, op, args, timeout=15)
        assert r["ok"] is False and r["error"] == reason, (op, args, r)
        tried.append((r["id"], reason))
        if reason == "bad_config" and "unknown key" not in r["detail"]:
            sim.reconnect()     # a config change is validated by a restart
    # the window the citizen is looking at is untouched
    s = sim.status()
    assert s["rating"]["1"] == "score" and s["counters"]["1"]["rating_open"] == ticket, s
    # legitimate commands while the window is open don't touch it either
    ok(command(sim, sub, KEY, "counter.close", {"counter": "1"}))
    ok(command(sim, sub, KEY, "config.set", {"patch": {"heartbeat_s": 30}}, timeout=15))
    sim.reconnect()
    assert sim.status()["counters"]["1"]["rating_open"] == ticket   # the window outlives the restart

    assert sim.press("rate2")["stage"] == "reason"
    time.sleep(0.7)
    assert sim.press("rate3")["reason"] == "slow"
    # after the rating: still nothing can undo or redo it
    for op, args, reason in FORGERIES[:6]:
        r = command(sim, sub, KEY, op, args)
        assert r["error"] == reason
        tried.append((r["id"], reason))
    sim.wait_drained(sub=sub)

    # every attempt is on the record: one command.rejected each, with its id and reason
    rejected = [(e["data"]["id"], e["data"]["reason"]) for e in events(sub, "command.rejected")]
    assert rejected == tried, rejected
    rated = [e["data"] for e in events(sub, "rating.submitted")]
    assert [(d["ticket"], d["score"], d["reason"]) for d in rated] == [(ticket, 2, "slow")], rated
    assert events(sub, "rating.expired") == []

    # an attacker with broker access publishes a "better" rating under the device's name:
    # the capture shows it as forged and the figures ignore it
    real = events(sub, "rating.submitted")[0]
    fake = dict(real, data=dict(real["data"], score=5, reason=None, followup=False), mac="0" * 32)
    publish(sim.broker_port, BASE + "evt/rating.submitted", _canon(fake).decode())
    sub.wait_for(lambda ln: '"score":5' in ln)
    code, out, rep = _verify(sub.lines(), "--metrics")
    d = _device(rep)
    assert code == 1 and "forged/inserted seq %d" % real["seq"] in out, out
    assert [f["seq"] for f in d["forged"]] == [real["seq"]]
    assert d["gaps"] == [] and d["altered"] == [] and d["chain_breaks"] == []
    total = rep["metrics"]["total"]
    assert total["ratings"] == 1 and total["scores"]["2"] == 1 and total["scores"]["5"] == 0


def test_config_set_with_rating_looking_keys_is_rejected(sim, sub):
    """Unknown keys are no way to slip a rating in (refused at once: no restart)."""
    sim.wait_drained()
    ticket = _serve(sim)
    patches = ({"rating": {"score": 5}},
               {"rating": {"submitted": [{"ticket": ticket, "score": 5}]}},
               {"ratings": [{"ticket": ticket, "score": 5}]},
               {"rating.submitted": {"ticket": ticket, "score": 5}})
    replies = []
    for patch in patches:
        try:
            replies.append(command(sim, sub, KEY, "config.set", {"patch": patch}, timeout=8))
        except AssertionError:
            replies.append("no reply (device gone: %s)" % sim.output()[-300:])
    assert all(isinstance(r, dict) and r["ok"] is False and r["error"] == "bad_config" for r in replies), replies
    assert sim.status()["boot"] == 1
    assert len(events(sub, "command.rejected")) == len(patches)
    assert events(sub, "config.applied") == []
    assert sim.status()["counters"]["1"]["rating_open"] == ticket
    assert sim.press("rate4")["event"] == "rating.submitted"
    sim.wait_drained(sub=sub)
    assert [(e["data"]["ticket"], e["data"]["score"]) for e in events(sub, "rating.submitted")] == [(ticket, 4)]


def test_no_control_op_can_create_change_or_delete_a_rating(sim, sub):
    ticket = _serve(sim)
    odd = ["rate6", "rate0", "rate", "rate55", "rate-1", "RATE5", "rate5 ", " rate5", "rating:5", "score:5",
           "rate5@9", "rate5@", "rate5@1@1", "rate\u0665", "rate5\u0000", "ticket:rate5", "5"]
    for name in odd:
        r = sim.press(name)
        assert r.get("event") is None and r.get("stage") is None, (name, r)
    assert sim.press("rate5", "2") == {"ok": True, "ignored": "no rating window"}  # counter 2: no window
    for req in ({"op": "press", "button": 5}, {"op": "press", "button": ["rate5"]},
                {"op": "rate", "score": 5}, {"op": "rating", "ticket": ticket, "score": 5},
                {"op": "emit", "type": "rating.submitted", "data": {"ticket": ticket, "score": 5}},
                {"op": "submit"}, {"op": "outbox", "delete": 1}, {"op": "_client"}, {"op": "handle"}):
        r = sim.ask(req)
        assert r["ok"] is False, (req, r)
    for action in ("rate", "rating", "submit", "expire", "delete", "rate5", "rating.submitted"):
        r = sim.staff(action, ticket=ticket, score=5)
        assert r["ok"] is False and r.get("refused") == "unknown_action", (action, r)
    for key in ("finish", "skip", "recall"):  # nobody is being served: nothing to finish twice
        assert sim.press(key)["refused"] == "not_serving"
    assert sim.staff("signin", staff="S777", score=5)["ok"]  # a sign-in, nothing more
    s = sim.status()
    assert s["rating"]["1"] == "score" and s["counters"]["1"]["rating_open"] == ticket, s

    assert sim.press("rate4")["event"] == "rating.submitted"
    sim.wait_drained(sub=sub)
    rated = [e["data"] for e in events(sub, "rating.submitted")]
    assert [(d["ticket"], d["score"], d["staff"]) for d in rated] == [(ticket, 4, "S001")], rated
    assert events(sub, "rating.expired") == []


def test_config_change_that_restarts_the_device_keeps_the_open_window(sim, sub):
    sim.wait_drained()
    ticket = _serve(sim)
    r = command(sim, sub, KEY, "config.set", {"patch": {"broker": {"keepalive": 20}}})
    assert r["ok"] and r["result"]["restart"] is True, r
    deadline = time.time() + 20
    while time.time() < deadline and not any(e["data"]["boot"] == 2 for e in events(sub, "device.boot")):
        assert sim.proc.poll() is None, "the device did not come back from its restart:\n" + sim.output()
        time.sleep(0.1)
    sim.connect()
    s = sim.status()
    assert s["boot"] == 2 and s["counters"]["1"]["rating_open"] == ticket, s
    assert sim.press("rate5")["event"] == "rating.submitted"
    sim.wait_drained(sub=sub)
    assert [(e["data"]["ticket"], e["data"]["score"]) for e in events(sub, "rating.submitted")] == [(ticket, 5)]


def test_replayed_command_cannot_repeat_a_signin_around_a_rating(sim, sub):
    sim.wait_drained()
    cmd = sign_command(KEY, "staff.signin", {"counter": "1", "staff": "S555"})
    assert send_raw_command(sim, sub, cmd, cmd["id"])["ok"]
    ticket = _serve(sim)
    assert sim.staff("signin", staff="S001")["ok"]
    r = send_raw_command(sim, sub, cmd, cmd["id"])
    assert r["ok"] is False and r["error"] == "replayed"
    assert sim.press("rate5")["ok"]
    sim.wait_drained(sub=sub)
    rated = [e["data"] for e in events(sub, "rating.submitted")]
    assert [(d["ticket"], d["staff"]) for d in rated] == [(ticket, "S555")]


# ---- tamper evidence on a real capture -----------------------------------------------------

def test_captured_hall_session_verifies_and_every_tampering_is_caught(broker, sub):
    cfg = example_config()
    cfg["rating"] = dict(cfg["rating"], window_s=5, reason_window_s=3)
    sim = Sim(broker.port, cfg).start()
    try:
        a1 = _serve(sim)
        assert sim.press("rate5")["ok"]
        b1 = _serve(sim, "B", "2")
        assert sim.press("rate4", "2")["ok"]
        a2 = _serve(sim)
        assert sim.press("rate2")["stage"] == "reason"
        time.sleep(0.7)
        assert sim.press("rate4")["reason"] == "wait"
        sim.kill()                                   # power cut mid-session
        sim.start()
        a3 = _serve(sim)
        assert sim.press("rate1")["stage"] == "reason"          # no reason given: "none"
        b2 = _serve(sim, "B", "2")                              # nobody rates: expires
        wait_event(sub, "rating.submitted", lambda e: e["data"]["ticket"] == a3, timeout=15)
        a4 = _serve(sim)
        assert sim.press("rate3")["ok"]
        wait_event(sub, "rating.expired", lambda e: e["data"]["ticket"] == b2, timeout=15)
        sim.wait_drained()
    finally:
        sim.cleanup()
    lines = sub.lines()

    # the device's own bytes check out with CPython's hmac and hashlib alone
    firsts = {}
    for _, env, raw in _evt_lines(lines):
        assert raw.encode() == _canon(env), raw
        assert env["mac"] == _mac(KEY, env), env["seq"]
        firsts.setdefault(env["seq"], (env, raw))
    seqs = sorted(firsts)
    assert seqs == list(range(1, len(seqs) + 1))
    for s in seqs[1:]:
        assert firsts[s][0]["prev"] == hashlib.sha256(firsts[s - 1][1].encode()).hexdigest()[:32]
    assert firsts[1][0]["prev"] == "0" * 32

    code, out, rep = _verify(lines, "--metrics")
    d = _device(rep)
    assert code == 0 and "RESULT: clean" in out, out
    assert d["chain_intact"] and d["clean"] and d["gaps"] == [] and d["altered"] == [] and d["forged"] == []
    assert d["reordered"] == [] and d["chain_breaks"] == []
    assert (d["first_seq"], d["last_seq"], d["events"]) == (1, seqs[-1], len(seqs))
    assert d["boots"] == [1, 2]
    dups = d["duplicates"]

    m = rep["metrics"]
    t = m["total"]
    assert (t["ratings"], t["satisfied"], t["satisfaction_rate"]) == (5, 3, 0.6), t
    assert t["scores"] == {"5": 1, "4": 1, "3": 1, "2": 1, "1": 1}
    assert (t["bad"], t["bad_reasons"], t["followups"]) == (2, {"none": 1, "wait": 1}, 2), t
    assert (t["expired"], t["finished"], t["rated_share"]) == (1, 6, 0.8333), t
    c1, c2 = m["by"]["counter"]["1"], m["by"]["counter"]["2"]
    assert (c1["ratings"], c1["satisfaction_rate"], c1["finished"], c1["rated_share"]) == (4, 0.5, 4, 1.0), c1
    assert (c2["ratings"], c2["satisfaction_rate"], c2["expired"], c2["rated_share"]) == (1, 1.0, 1, 0.5), c2
    assert m["by"]["staff"]["S001"]["ratings"] == 4 and m["by"]["staff"]["S002"]["expired"] == 1
    sa, sb = m["by"]["service"]["A"], m["by"]["service"]["B"]
    assert (sa["ratings"], sa["bad"], sb["ratings"], sb["expired"]) == (4, 2, 1, 1)
    assert sorted(f["ticket"] for f in m["followup_list"]) == sorted([a2, a3])
    assert sum(g["ratings"] for g in m["by"]["day"].values()) == 5

    # a keystore file gives the same verdict
    fd, keys = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({"hall01/term01": {"key": KEY}}, f)
    fd, cap = tempfile.mkstemp(suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    try:
        r = subprocess.run([sys.executable, "-m", "tools.verify", "--keys", keys, "--metrics", cap], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "RESULT: clean" in r.stdout and "60.0%" in r.stdout, r.stdout + r.stderr
    finally:
        os.remove(keys)
        os.remove(cap)

    # 1. a score changed (a 5 turned into a 1) in every copy of the event
    s1 = _rating_seq(lines, a1)
    bad = [ln.replace('"score":5', '"score":1') if ('"seq":%d,' % s1) in ln and "evt/rating.submitted" in ln
           else ln for ln in lines]
    assert bad != lines
    code, out, rep = _verify(bad)
    assert code == 1 and _device(rep)["altered"] == [s1] and "altered seq %d" % s1 in out, out

    # 2. a bad rating deleted
    s2 = _rating_seq(lines, a2)
    cut = [ln for ln in lines if not (('"seq":%d,' % s2) in ln and "/evt/" in ln)]
    code, out, rep = _verify(cut)
    assert code == 1 and _device(rep)["gaps"] == [[s2, s2]] and "missing seq %d" % s2 in out, out

    # 3. forged events inserted: a new one after the last (chained, but no key) and one
    #    claiming a seq that is taken, signed with a wrong key
    last_env, last_raw = firsts[seqs[-1]]
    new = dict(last_env, seq=seqs[-1] + 1, type="rating.submitted",
               prev=hashlib.sha256(last_raw.encode()).hexdigest()[:32],
               data={"ticket": a4, "service": "A", "counter": "1", "staff": "S001", "score": 5, "reason": None,
                     "followup": False, "ms": 4000, "day": last_env["data"].get("day", "")})
    new["mac"] = _mac("11" * 32, new)
    mid_env = firsts[s2][0]
    mid = dict(mid_env, data=dict(mid_env["data"], score=5, reason=None, followup=False))
    mid["mac"] = _mac("22" * 32, mid)
    for forged in (new, mid):
        extra = lines + [BASE + "evt/rating.submitted " + _canon(forged).decode()]
        code, out, rep = _verify(extra)
        assert code == 1 and [f["seq"] for f in _device(rep)["forged"]] == [forged["seq"]], out
        assert "forged/inserted seq %d" % forged["seq"] in out, out
    # a forged event placed before the real one with that seq: still only the forgery is flagged
    at = min(i for i, env, _ in _evt_lines(lines) if env["seq"] == s2)
    code, out, rep = _verify(lines[:at] + [BASE + "evt/rating.submitted " + _canon(mid).decode()] + lines[at:])
    assert code == 1 and [f["seq"] for f in _device(rep)["forged"]] == [s2], out

    # 4. two events swapped
    ev = _evt_lines(lines)
    first_at = {}
    for i, env, _ in ev:
        first_at.setdefault(env["seq"], i)
    s3 = _rating_seq(lines, a3)
    i, j = first_at[s3 - 1], first_at[s3]
    swapped = list(lines)
    swapped[i], swapped[j] = lines[j], lines[i]
    code, out, rep = _verify(swapped)
    assert code == 1 and s3 - 1 in _device(rep)["reordered"] and "out of order" in out, out

    # 5. one event sent twice: harmless, reported as a duplicate
    k = first_at[s1]
    twice = lines[:k + 1] + [lines[k]] + lines[k + 1:]
    code, out, rep = _verify(twice)
    assert code == 0 and _device(rep)["duplicates"] == dups + 1 and "duplicate re-send" in out, out


def test_day_reset_command_cannot_drop_an_open_rating(sim, sub):
    """A backend day.reset while the citizen rates must not lose the score (even over a power cut)."""
    sim.wait_drained()
    ticket = _serve(sim)
    ok(command(sim, sub, KEY, "day.reset", {}))
    s = sim.status()
    assert s["rating"]["1"] == "score" and s["counters"]["1"]["rating_open"] == ticket, s
    assert sim.press("rate2")["stage"] == "reason"
    sim.kill()
    sim.start()
    env = wait_event(sub, "rating.submitted", timeout=15)
    assert (env["data"]["ticket"], env["data"]["score"], env["data"]["reason"]) == (ticket, 2, "none")
    sim.wait_drained(sub=sub)
    assert len(events(sub, "rating.submitted")) == 1 and events(sub, "rating.expired") == []
