"""Hostile and broken backend commands: every one is refused for the right reason, answered
on cmd/reply and journalled as command.rejected, and the terminal keeps serving.

Cases are generated (a few hundred): broken JSON, non-objects, missing and extra fields,
wrong types, bad macs, stale and future timestamps, replays, unknown ops (including every
way to name "change a rating"), bad, missing, unexpected and float arguments, unicode
junk and binary garbage. They go out through mosquitto_pub in small batches (the device
queues at most four commands) and are matched to their replies and events in order.
"""
import binascii
import hashlib
import hmac
import json
import random
import subprocess
import sys
import time

from tests.e2e.harness import ROOT, command, events, example_config, send_raw_command, sign_command

KEY = example_config()["key"]
BASE = "qterm/v1/hall01/term01/"
_BATCH = 4   # App keeps at most four commands waiting


class Case:
    def __init__(self, name, raw, expect, cid=None):
        self.name = name
        self.raw = raw if isinstance(raw, bytes) else raw.encode()
        self.expect = expect          # a rejection reason, or "ok"
        self.cid = cid                # the id the reply must carry (None: none readable)


def _dump(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _mac(body, key_hex=KEY):
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return binascii.hexlify(hmac.new(binascii.unhexlify(key_hex), canon, hashlib.sha256).digest()).decode()[:32]


def readable_id(raw):
    """What the device can tell the sender: the id of anything that parses to an object."""
    try:
        obj = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)   # no BOM sniffing
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    cid = obj.get("id")
    return cid if isinstance(cid, str) and len(cid) <= 64 else None


def generate(now, rng):
    """The hostile cases, each with the reason the device must give."""
    cases = []
    n = [0]

    def uid(tag):
        n[0] += 1
        return "%s-%03d" % (tag, n[0])

    def signed(op, args=None, ts=None, cid=None, tag="c"):
        return sign_command(KEY, op, args if args is not None else {}, ts=now if ts is None else ts,
                            cid=cid or uid(tag))

    def add(name, obj_or_raw, expect, cid="auto"):
        raw = obj_or_raw if isinstance(obj_or_raw, (bytes, str)) else _dump(obj_or_raw)
        raw = raw if isinstance(raw, bytes) else raw.encode()
        cases.append(Case(name, raw, expect, readable_id(raw) if cid == "auto" else cid))

    # -- not JSON at all, or JSON that is not one object ---------------------------
    good = _dump(signed("ping", tag="trunc"))
    for cut in (1, 5, 12, 30, len(good) // 2, len(good) - 20, len(good) - 2, len(good) - 1):
        add("truncated at %d" % cut, good[:cut], "malformed")
    for junk in ("{", "}", "{{}", '{"id":', '{"id" "x"}', "{'id': 'x'}", "not json", "ping", "nul", "tru",
                 '{"a":NaN}', '{"a":Infinity}', '{"a":.5}', '{"a":-}', "[1,2", '{"a":1}{"b":2}',
                 good + " x", good + "}", "\ufeff" + good, '{"id":"a"  "op":"ping"}', "<xml/>", "ping\tping"):
        add("not JSON %r" % junk[:20], junk, "malformed")
    for value in ("[]", "1", "-1", "3.14", '"ping"', "null", "true", "false", '[{"id":"x"}]', '"{}"', "[" + good + "]"):
        add("not an object %s" % value[:20], value, "malformed")

    # -- the five fields, exactly ---------------------------------------------------
    for field in ("args", "id", "mac", "op", "ts"):
        c = signed("ping", tag="missing")
        del c[field]
        add("missing " + field, c, "malformed")
    for extra, value in (("extra", 1), ("MAC", "0" * 32), ("sig", "x"), ("v", 1), ("", None), ("rating", 5),
                         ("Id", "x"), ("args ", {})):
        c = signed("ping", tag="extra")
        c[extra] = value
        add("extra field %r" % extra, c, "malformed")
    add("empty object", {}, "malformed")

    # -- wrong field types ----------------------------------------------------------
    for field, values in (("id", [123, None, "", "x" * 65, [], {}, True]),
                          ("op", [1, None, [], {}, True]),
                          ("args", [[], "x", 1, None, True, [["counter", "1"]]]),
                          ("ts", [str(now), now + 0.5, True, None, [], "١٢٣"]),
                          ("mac", [123, None, [], "ab", "0" * 31, "0" * 33, "0" * 64, "", True])):
        for v in values:
            c = signed("ping", tag="type")
            c[field] = v
            add("%s = %r" % (field, v if not isinstance(v, str) else v[:12]), c, "malformed")

    # -- macs that do not match -----------------------------------------------------
    c = signed("ping", tag="mac")
    add("mac all zeros", dict(c, mac="0" * 32), "bad_mac")
    add("mac of the body without its id", dict(c, id=uid("mac"), mac=_mac({"args": {}, "op": "ping", "ts": now})),
        "bad_mac")
    c = signed("ping", tag="mac")
    add("mac in upper case", dict(c, mac=c["mac"].upper()), "bad_mac")
    for i in (0, 7, 15, 16, 31):
        c = signed("status", tag="flip")
        m = c["mac"]
        c["mac"] = m[:i] + ("0" if m[i] != "0" else "1") + m[i + 1:]
        add("mac digit %d flipped" % i, c, "bad_mac")
    for _ in range(4):
        c = signed("ping", tag="rand")
        c["mac"] = "%032x" % rng.getrandbits(128)
        add("random mac", c, "bad_mac")
    other_key = "%064x" % rng.getrandbits(256)
    for op, args in (("ping", {}), ("day.reset", {}), ("config.set", {"patch": {"heartbeat_s": 20}})):
        c = sign_command(other_key, op, args, ts=now, cid=uid("key"))
        add("signed with another key: " + op, c, "bad_mac")
    c = signed("ping", tag="askey")
    body = dict((k, c[k]) for k in ("args", "id", "op", "ts"))
    canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    c["mac"] = hmac.new(KEY.encode(), canon, hashlib.sha256).hexdigest()[:32]
    add("key used as text, not hex", c, "bad_mac")
    add("non-hex mac", dict(signed("ping", tag="nonhex"), mac="z" * 32), "bad_mac")
    for what, change in (("op", {"op": "day.reset"}), ("args", {"args": {"counter": "2"}}), ("ts", {"ts": now + 1}),
                         ("id", {"id": "tampered-id"}), ("op to rating", {"op": "rating.submit"}),
                         ("args to config", {"args": {"patch": {"rating": {"window_s": 600}}}})):
        c = signed("counter.resume" if what == "args" else ("config.set" if what == "args to config" else "ping"),
                   {"counter": "1"} if what == "args" else ({"patch": {"heartbeat_s": 30}} if what == "args to config" else {}),
                   tag="tamper")
        c.update(change)
        add("signed, then %s changed" % what, c, "bad_mac")

    # -- time window (window_s = 300) ----------------------------------------------
    for dt in (-330, -600, -3600, -86400, -now, -now - 1, -10 ** 9):
        add("ts %+d" % dt, signed("ping", ts=now + dt, tag="stale"), "stale")
    for dt in (330, 3600, 86400, 10 ** 9, 2 ** 40):
        add("ts %+d" % dt, signed("ping", ts=now + dt, tag="future"), "future")

    # -- replays: the first copy is fine, every later one is refused -----------------
    for op in ("ping", "status", "ping"):
        c = signed(op, tag="once")
        add("first " + op, c, "ok")
        add("replay of " + op, c, "replayed")
    c = signed("ping", tag="once")
    add("first ping (resigned later)", c, "ok")
    add("same id, new ts and op", signed("status", ts=now - 5, cid=c["id"]), "replayed")
    add("same id, unknown op", signed("rating.submit", {"score": 5}, cid=c["id"]), "replayed")

    # -- ops the device does not have: above all, none that reaches a rating ---------
    for op in ("rating.submit", "rating.delete", "rating.set", "rating.update", "ratings.clear", "rating.expire",
               "outbox.clear", "outbox.ack", "outbox.drop", "ticket.issue", "event.emit", "PING", "ping ", " ping",
               "", "config.get", "shell", "exec", "__import__", "day.reset.now", "counter.pause\u0000",
               "x" * 64, "评价.删除", "time.set;day.reset", "pi\u200bng", "../ping", "Ping"):
        add("unknown op %r" % op[:16], signed(op, tag="op"), "unknown_op")

    # -- arguments: wrong types, floats, missing, unexpected -----------------------
    for op, args in (("counter.pause", {"counter": 1}), ("counter.pause", {"counter": None}),
                     ("counter.pause", {"counter": True}), ("counter.pause", {"counter": ["1"]}),
                     ("counter.pause", {"counter": {}}), ("counter.pause", {"counter": ""}),
                     ("counter.pause", {"counter": "x" * 65}), ("counter.pause", {"counter": "1", "reason": 5}),
                     ("counter.resume", {"counter": 2}), ("counter.close", {"counter": False}),
                     ("staff.signin", {"counter": "1", "staff": 123}), ("staff.signin", {"counter": "1", "staff": None}),
                     ("staff.signout", {"counter": []}),
                     ("time.set", {"epoch": str(now)}), ("time.set", {"epoch": True}), ("time.set", {"epoch": None}),
                     ("time.set", {"epoch": [now]}), ("config.set", {"patch": []}), ("config.set", {"patch": "x"}),
                     ("config.set", {"patch": None}), ("ticket.appointment", {"service": "A", "appt": "Y1", "print": "yes"}),
                     ("ticket.appointment", {"service": "A", "appt": "Y1", "print": 1}),
                     ("ticket.appointment", {"service": "A", "appt": 12345}),
                     ("ticket.appointment", {"service": None, "appt": "Y1"}), ("ticket.requeue", {"ticket": 1}),
                     ("counter.transfer", {"counter": "1", "to_service": 2}),
                     ("counter.transfer", {"counter": "1", "to_counter": {"id": "2"}})):
        add("%s %s" % (op, _dump(args)[:30]), signed(op, args, tag="type"), "bad_args")
    for op, args in (("counter.pause", {}), ("counter.resume", {}), ("counter.close", {}),
                     ("staff.signin", {"counter": "1"}), ("staff.signin", {"staff": "S1"}), ("staff.signout", {}),
                     ("ticket.appointment", {"service": "A"}), ("ticket.appointment", {"appt": "Y1"}),
                     ("ticket.requeue", {}), ("time.set", {}), ("config.set", {}), ("counter.transfer", {})):
        add("%s missing args %s" % (op, _dump(args)), signed(op, args, tag="miss"), "bad_args")
    for op, args in (("ping", {"x": 1}), ("status", {"verbose": True}), ("day.reset", {"day": "2026-01-01"}),
                     ("counter.resume", {"counter": "1", "force": True}),
                     ("counter.pause", {"counter": "1", "score": 5}),
                     ("staff.signout", {"counter": "1", "rating": 5}),
                     ("ticket.appointment", {"service": "A", "appt": "Y1", "score": 5}),
                     ("time.set", {"epoch": now, "tz": 8}),
                     ("ping", {"rating": {"ticket": "A001", "score": 5}}),
                     ("staff.signin", {"counter": "1", "staff": "S9", "ratings": []}),
                     ("ticket.requeue", {"ticket": "A001", "rating": 1}),
                     ("day.reset", {"keep_ratings": False})):
        add("%s unexpected %s" % (op, _dump(args)[:30]), signed(op, args, tag="unexp"), "bad_args")
    for op, args in (("time.set", {"epoch": now + 0.5}), ("counter.pause", {"counter": 1.0}),
                     ("config.set", {"patch": {"heartbeat_s": 20.5}}), ("ping", {"f": 0.1}),
                     ("staff.signin", {"counter": "1", "staff": "S1", "x": 1e10}),
                     ("config.set", {"patch": {"rating": {"window_s": 30.0}}})):
        add("float in %s" % _dump(args)[:30], signed(op, args, tag="float"), "malformed")

    # -- config changes a command may not make -------------------------------------
    for k, v in (("key", "00" * 32), ("site", "other"), ("device", "term99"), ("role", "kiosk"), ("version", 2)):
        add("config.set %s" % k, signed("config.set", {"patch": {k: v}}, tag="prov"), "not_allowed")
    for patch in ({"heartbeat_s": "often"}, {"rating": {"window_s": 1}}, {"outbox": {"max_kb": 1}},
                  {"rating": {"reasons": []}}, {"commands": {"window_s": 99999}}):
        add("config.set %s" % _dump(patch)[:30], signed("config.set", {"patch": patch}, tag="cfg"), "bad_config")

    # -- unicode junk -----------------------------------------------------------------
    # not valid Unicode, so it cannot be signed: refused before the mac is even looked at
    c = signed("counter.pause", {"counter": "1", "reason": "@@"}, tag="uni")
    add("lone surrogate in args", _dump(c).replace("@@", "\\ud800"), "malformed")
    c = signed("ping", tag="uni")
    add("invalid UTF-8 in id", _dump(c).replace(c["id"], "\x00").encode().replace(b"\x00", b"\xff\xfe"), "malformed")
    add("unicode op", signed("评价.修改", {"ticket": "A001", "score": 5}, tag="uni"), "unknown_op")
    add("unicode arg name", signed("counter.resume", {"counter": "1", "评分": 5}, tag="uni"), "bad_args")
    add("emoji id, bad mac", dict(signed("ping", tag="uni"), id="票-🎫-" + uid("u"), mac="1" * 32), "bad_mac")
    # ids are copied into signed events: a control character makes the command malformed
    add("NUL in id, bad mac", dict(signed("ping", tag="uni"), id="a\u0000b" + uid("u"), mac="2" * 32), "malformed")
    add("RTL override op", signed("\u202egnip", tag="uni"), "unknown_op")

    # -- binary garbage ---------------------------------------------------------------
    for size in (1, 2, 3, 16, 64, 100, 255, 256, 500, 700, 900):
        add("%d random bytes" % size, bytes(rng.getrandbits(8) for _ in range(size)), "malformed", None)
    add("NUL bytes", b"\x00" * 100, "malformed", None)
    add("0xFF bytes", b"\xff" * 200, "malformed", None)
    add("MQTT packet as payload", b"\x30\x0f\x00\x0bqterm/v1/xx{}", "malformed", None)
    add("gzip magic", b"\x1f\x8b\x08\x00" + bytes(range(40)), "malformed", None)
    add("JSON then NUL garbage", b"{\x00\x01\x02}", "malformed", None)
    add("empty payload", b"", "malformed", None)
    return cases


def _publish_batch(port, raws):
    """One mosquitto_pub connection, the payloads in order (lines mode when possible)."""
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", BASE + "cmd"]
    if len(raws) == 1:
        if raws[0] == b"":
            subprocess.run(args + ["-n"], check=True, timeout=10)
        else:
            subprocess.run(args + ["-s"], input=raws[0], check=True, timeout=10)
    else:
        subprocess.run(args + ["-l"], input=b"\n".join(raws) + b"\n", check=True, timeout=10)


def _line_safe(raw):
    """Can go through `mosquitto_pub -l` unchanged (it splits on newlines and stops at NUL)."""
    try:
        raw.decode()
    except UnicodeError:
        return False
    return 0 < len(raw) < 1000 and b"\n" not in raw and b"\x00" not in raw and b"\r" not in raw


def _replies(sub):
    out = []
    for ln in sub.lines():
        if ln.startswith(BASE + "cmd/reply "):
            out.append(json.loads(ln.split(" ", 1)[1]))
    return out


def send_cases(sim, sub, cases, timeout=15.0):
    """Publish the cases in small batches; returns [(case, reply, rejected event or None)]."""
    results = []
    i = 0
    while i < len(cases):
        batch = [cases[i]]
        if _line_safe(cases[i].raw):
            while len(batch) < _BATCH and i + len(batch) < len(cases) and _line_safe(cases[i + len(batch)].raw):
                batch.append(cases[i + len(batch)])
        i += len(batch)
        replies_before = len(_replies(sub))
        rejected_before = len(events(sub, "command.rejected"))
        _publish_batch(sim.broker_port, [c.raw for c in batch])
        want_rejected = sum(1 for c in batch if c.expect != "ok")
        deadline = time.time() + timeout
        while time.time() < deadline:
            replies = _replies(sub)[replies_before:]
            rejected = events(sub, "command.rejected")[rejected_before:]
            if len(replies) >= len(batch) and len(rejected) >= want_rejected:
                break
            time.sleep(0.02)
        assert len(replies) == len(batch), "batch %s: %d replies for %d commands" % (
            [c.name for c in batch], len(replies), len(batch))
        assert len(rejected) == want_rejected, "batch %s: %d command.rejected for %d refusals" % (
            [c.name for c in batch], len(rejected), want_rejected)
        rejected = list(rejected)
        for case, reply in zip(batch, replies):
            ev = rejected.pop(0) if case.expect != "ok" else None
            results.append((case, reply, ev))
    return results


def _serves(sim, sub):
    """A citizen end to end and a backend ping: the terminal still works."""
    t = sim.press("ticket:B")
    assert t["ok"], t
    r = sim.press("next", "2")
    while r.get("ok") and r.get("ticket") != t["ticket"]:
        r = sim.press("next", "2")
    assert r["ok"] and r["ticket"] == t["ticket"], r
    assert sim.press("finish", "2")["ok"]
    r = sim.press("rate5", "2")
    assert r.get("event") == "rating.submitted", r
    assert sim.status()["connected"]
    assert command(sim, sub, KEY, "ping")["ok"]
    return r["ticket"]


def _signed_text(text):
    """What the device puts in a signed event for sender text that is not printable
    (the reply echoes it unchanged): printable ASCII, "?" for anything else."""
    if not isinstance(text, str):
        return text
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text[:64])


def test_generated_bad_commands_are_all_rejected_and_the_device_still_serves(sub, sim):
    sim.wait_drained()
    now = sim.ask({"op": "clock"})["time"]
    cases = generate(now, random.Random(606))
    bad = [c for c in cases if c.expect != "ok"]
    assert len(bad) >= 200, len(bad)
    results = send_cases(sim, sub, cases)
    wrong = []
    for case, reply, ev in results:
        if case.expect == "ok":
            if not reply.get("ok") or reply.get("id") != case.cid:
                wrong.append((case.name, "expected ok", reply))
            continue
        # no id to expect when strict JSON cannot read one (MicroPython's parser is laxer)
        same_id = case.cid is None or reply.get("id") == case.cid
        reasons = case.expect if isinstance(case.expect, tuple) else (case.expect,)
        if reply.get("ok") is not False or reply.get("error") not in reasons or not same_id:
            wrong.append((case.name, "reply", case.expect, case.cid, reply))
        elif ev["data"]["reason"] != reply["error"] or ev["data"]["id"] not in (reply.get("id"),
                                                                                 _signed_text(reply.get("id"))):
            wrong.append((case.name, "event", case.expect, ev["data"]))
    assert not wrong, "%d of %d cases handled wrongly:\n%s" % (
        len(wrong), len(results), "\n".join(repr(w) for w in wrong[:30]))

    rated = _serves(sim, sub)
    last = sim.wait_drained()["seq"]
    deadline = time.time() + 10
    while time.time() < deadline and len(events(sub)) < last:   # the capture complete, last line included
        time.sleep(0.05)
    ratings = events(sub, "rating.submitted")
    assert [e["data"]["ticket"] for e in ratings] == [rated], "a command reached the ratings"
    st = sim.status()
    assert st["fault"] is None and st["counters"]["1"]["state"] == "open"
    # the journal of the whole session still verifies
    r = subprocess.run([sys.executable, "-m", "tools.verify", "--key", "term01=" + KEY, sub.path],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout


def test_oversize_command_is_rejected_as_too_large(sim, sub):
    """More than commands.MAX_BYTES (2048): refused with too_large, answered, journalled."""
    sim.wait_drained()
    c = sign_command(KEY, "ping", {}, cid="oversize-1")
    raw = '{"id":"oversize-1","pad":"%s"}' % ("x" * 3000)
    publish = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(sim.broker_port), "-q", "1",
                              "-t", BASE + "cmd", "-m", raw], timeout=10)
    assert publish.returncode == 0
    deadline = time.time() + 5
    while time.time() < deadline and not [e for e in events(sub, "command.rejected")]:
        time.sleep(0.05)
    rejected = [e["data"] for e in events(sub, "command.rejected")]
    replies = _replies(sub)
    assert [r["reason"] for r in rejected] == ["too_large"], \
        "an oversize command must give command.rejected too_large; got %r, replies %r" % (rejected, replies)
    assert replies and replies[-1]["ok"] is False and replies[-1]["error"] == "too_large"
    assert replies[-1]["id"] in ("oversize-1", None)
    assert send_raw_command(sim, sub, c, c["id"])["ok"]


def test_command_below_the_size_limit_is_handled(sim, sub):
    """A valid command of 1.5 KB (under MAX_BYTES = 2048) is not silently dropped."""
    sim.wait_drained()
    c = sign_command(KEY, "counter.pause", {"counter": "2", "reason": "r" * 60})
    raw = _dump(c) + " " * (1500 - len(_dump(c)))
    r = send_raw_command(sim, sub, raw, c["id"])
    assert r["ok"], r


def test_every_command_of_a_burst_is_answered(sim, sub):
    """Ten commands at once: each gets a reply (done, or refused as busy) - none vanishes."""
    sim.wait_drained()
    cmds = [sign_command(KEY, "ping", cid="burst-%02d" % i) for i in range(10)]
    before = len(_replies(sub))
    _publish_batch(sim.broker_port, [_dump(c).encode() for c in cmds])
    deadline = time.time() + 10
    while time.time() < deadline and len(_replies(sub)) - before < 10:
        time.sleep(0.05)
    replies = _replies(sub)[before:]
    got = sorted(r["id"] for r in replies if r.get("id"))
    assert got == sorted(c["id"] for c in cmds), "unanswered: %s" % sorted(
        set(c["id"] for c in cmds) - set(got))
    for r in replies:
        assert r["ok"] or r["error"] == "busy", r


def test_replay_is_rejected_even_after_many_other_commands(sim, sub):
    """The replay cache must cover the whole time window, not only the last 64 ids."""
    sim.wait_drained()
    now = sim.ask({"op": "clock"})["time"]
    # recorded a minute ago, well inside the 300 s window
    first = sign_command(KEY, "ping", ts=now - 60, cid="first-of-many")
    assert send_raw_command(sim, sub, first, first["id"])["ok"]
    others = [Case("ping %d" % i, _dump(sign_command(KEY, "ping", ts=now, cid="many-%03d" % i)), "ok",
                   "many-%03d" % i) for i in range(70)]
    for case, reply, _ in send_cases(sim, sub, others):
        assert reply["ok"], (case.name, reply)
    r = send_raw_command(sim, sub, first, first["id"])
    assert r["ok"] is False and r["error"] == "replayed", \
        "a recorded command was accepted again %d commands later, inside the time window: %r" % (len(others), r)


def test_signed_command_in_broken_json_is_rejected(sim, sub):
    """JSON a strict parser refuses (missing comma or colon, doubled comma) is malformed even
    when the mac matches what a lax parser makes of it: a gateway that filters commands with
    a strict parser must not see something else than the terminal executes."""
    sim.wait_drained()
    answers = []
    for i, damage in enumerate(((',"mac"', ' "mac"'), (',"op"', ',,"op"'), ('"op":', '"op" '))):
        c = sign_command(KEY, "ping", cid="lax-%d" % i)
        raw = _dump(c).replace(*damage)
        assert readable_id(raw) is None   # CPython's json refuses it
        answers.append((raw, send_raw_command(sim, sub, raw, c["id"])))
    assert all(r["ok"] is False and r["error"] == "malformed" for _, r in answers), answers


def test_hostile_text_in_a_command_does_not_poison_the_journal(sub, sim):
    """Text the device copies from a refused command into command.rejected (id, op) must still
    make a valid, signed UTF-8 event: MicroPython lets an overlong UTF-8 sequence through
    json.loads, and a lone surrogate makes canonical JSON raise."""
    sim.wait_drained()
    cases = []
    for name, field, bad in (("overlong UTF-8 in op", "op", b"\xc0\xafping"),
                             ("overlong UTF-8 in id", "id", b"\xc0\xafid-1"),
                             ("lone surrogate in id", "id", b"\\ud800id-2"),
                             ("lone surrogate in op", "op", b"\\udfffping")):
        c = sign_command(KEY, "ping", cid="poison-%d" % len(cases))
        c[field] = "@@"
        raw = _dump(c).encode().replace(b"@@", bad)
        cases.append(Case(name, raw, ("malformed", "bad_mac")))
    results = send_cases(sim, sub, cases, timeout=5.0)
    for case, reply, ev in results:
        assert reply["ok"] is False and reply["error"] in case.expect, (case.name, reply)
    last = sim.wait_drained()["seq"]
    deadline = time.time() + 10
    while time.time() < deadline and len(events(sub)) < last:
        time.sleep(0.05)
    r = subprocess.run([sys.executable, "-m", "tools.verify", "--key", "term01=" + KEY, sub.path],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout
