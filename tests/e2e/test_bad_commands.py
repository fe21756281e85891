"""Hostile and broken backend commands: every one is refused for the right reason and
answered on cmd/reply, the journal (command.rejected) accounts for every refusal without
letting junk wear the flash, and the terminal keeps serving.

Cases are generated (a few hundred): broken JSON, non-objects, missing and extra fields,
wrong types, bad macs, stale and future timestamps, replays, unknown ops (including every
way to name "change a rating"), bad, missing, unexpected and float arguments, unicode
junk and binary garbage. They go out through mosquitto_pub in small batches (the device
keeps a small fixed queue) and are matched to their replies in order. Refusals by a
sender with the key are journalled one by one; refusals anyone can provoke (QUIET) at most
once per quiet period, the rest summed up in a "suppressed" command.rejected.

A flood (1000 junk messages/s for 10 s from a bare MQTT client) must leave the terminal
serving presses, the flash writes bounded and the journal verifiable.
"""
import binascii
import hashlib
import hmac
import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter

from tests.broker import Subscriber
from tests.e2e.harness import (ok, ROOT, command, events, example_config, send_raw_command, sign_command,
                                  wait_event)

KEY = example_config()["key"]
BASE = "qterm/v1/hall01/term01/"
_BATCH = 4   # well inside the device's command queue (8 messages, 4 KiB)
QUIET = ("malformed", "too_large", "bad_mac", "stale", "future", "replayed", "low_memory")
QUIET_S = 60  # commands.QUIET_MS


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


def _restarts(case):
    """A config.set that passes the first checks is applied (or refused) by a restart."""
    raw = case.raw if isinstance(case.raw, bytes) else case.raw.encode()
    return b'"config.set"' in raw and case.expect in ("ok", "bad_config")


def send_cases(sim, sub, cases, timeout=15.0):
    """Publish the cases in small batches; returns [(case, reply)] in order. A config change
    goes alone (the terminal restarts for it); the control connection is opened again after."""
    results = []
    i = 0
    while i < len(cases):
        batch = [cases[i]]
        if _line_safe(cases[i].raw) and not _restarts(cases[i]):
            while len(batch) < _BATCH and i + len(batch) < len(cases) and _line_safe(cases[i + len(batch)].raw) \
                    and not _restarts(cases[i + len(batch)]):
                batch.append(cases[i + len(batch)])
        i += len(batch)
        replies_before = len(_replies(sub))
        _publish_batch(sim.broker_port, [c.raw for c in batch])
        deadline = time.time() + timeout
        while time.time() < deadline and len(_replies(sub)) - replies_before < len(batch):
            time.sleep(0.02)
        replies = _replies(sub)[replies_before:]
        assert len(replies) == len(batch), "batch %s: %d replies for %d commands" % (
            [c.name for c in batch], len(replies), len(batch))
        results.extend(zip(batch, replies))
        if _restarts(batch[0]):
            sim.reconnect()
    return results


def settle_journal(sim, sub, quiet_refusals=None, timeout=10.0):
    """End the quiet period (the sim's ticks move with its clock) and wait until the journal
    accounts for every QUIET refusal: each one journalled alone or counted in a summary
    (without a list of them: until a summary arrives). Returns (journalled one by one,
    summaries)."""
    before = len([e for e in events(sub, "command.rejected") if e["data"]["reason"] == "suppressed"])
    sim.ask({"op": "clock", "advance_s": QUIET_S + 1})
    want = Counter(quiet_refusals or ())
    deadline = time.time() + timeout
    while True:
        rejected = [e["data"] for e in events(sub, "command.rejected")]
        alone = [d for d in rejected if d["reason"] in QUIET]
        summaries = [d for d in rejected if d["reason"] == "suppressed"]
        got = Counter(d["reason"] for d in alone)
        for d in summaries:
            got.update(d["reasons"])
        done = got == want if quiet_refusals is not None else len(summaries) > before
        if done or time.time() > deadline:
            break
        time.sleep(0.05)
    if quiet_refusals is not None:
        assert got == want, "journal %r, refusals %r" % (dict(got), dict(want))
    else:
        assert len(summaries) > before, "no summary of the suppressed refusals"
    for d in summaries:
        assert d["count"] == sum(d["reasons"].values()) and d["id"] is None, d
    return alone, summaries


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
    ok(command(sim, sub, KEY, "ping"))
    return r["ticket"]


def _allowed(ch):
    """firmware/text.py's rule, written again from the README."""
    cp = ord(ch)
    return not (cp < 0x20 or 0x7F <= cp < 0xA0 or cp in (0x061C, 0xFEFF) or 0x200B <= cp <= 0x200F
                or 0x2028 <= cp <= 0x202E or 0x2060 <= cp <= 0x206F or 0xD800 <= cp <= 0xDFFF
                or 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE or 0xE0000 <= cp <= 0xE007F)


def clean(text):
    """What the device may put in a signed event (and in the reply) for sender text."""
    if not isinstance(text, str):
        return text
    out = []
    for ch in text:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("???")   # held as 3 bytes (ED xx xx) on MicroPython, each refused
        else:
            out.append(ch if _allowed(ch) else "?")
    return "".join(out)[:64]


def verify_capture(path):
    r = subprocess.run([sys.executable, "-m", "tools.verify", "--key", "term01=" + KEY, path],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def wait_capture_complete(sim, sub):
    last = sim.wait_drained()["seq"]
    deadline = time.time() + 10
    while time.time() < deadline and len(events(sub)) < last:   # the capture complete, last line included
        time.sleep(0.05)


def test_generated_bad_commands_are_all_rejected_and_the_device_still_serves(sub, sim):
    sim.wait_drained()
    now = sim.ask({"op": "clock"})["time"]
    cases = generate(now, random.Random(606))
    bad = [c for c in cases if c.expect != "ok"]
    assert len(bad) >= 200, len(bad)
    results = send_cases(sim, sub, cases)
    wrong = []
    for case, reply in results:
        if case.expect == "ok":
            if not reply.get("ok") or reply.get("id") != case.cid:
                wrong.append((case.name, "expected ok", reply))
            continue
        # no id to expect when strict JSON cannot read one (MicroPython's parser is laxer)
        same_id = case.cid is None or reply.get("id") == clean(case.cid)
        reasons = case.expect if isinstance(case.expect, tuple) else (case.expect,)
        if reply.get("ok") is not False or reply.get("error") not in reasons or not same_id:
            wrong.append((case.name, "reply", case.expect, case.cid, reply))
    assert not wrong, "%d of %d cases handled wrongly:\n%s" % (
        len(wrong), len(results), "\n".join(repr(w) for w in wrong[:30]))

    # the journal: every refusal of a signed command in order, the rest accounted for
    quiet = [r.get("error") for c, r in results if r.get("error") in QUIET]
    signed_refusals = [r for c, r in results if not r.get("ok") and r.get("error") not in QUIET]
    alone, summaries = settle_journal(sim, sub, quiet)
    assert len(alone) <= 2 and summaries, (alone, summaries)  # a few hundred refusals, a couple of writes
    journal = [d for d in (e["data"] for e in events(sub, "command.rejected"))
               if d["reason"] not in QUIET and d["reason"] != "suppressed"]
    assert [(d["id"], d["reason"]) for d in journal] == [(r["id"], r["error"]) for r in signed_refusals]
    for d in alone:
        assert any(r.get("id") == d["id"] and r["error"] == d["reason"] for _, r in results), d

    rated = _serves(sim, sub)
    wait_capture_complete(sim, sub)
    ratings = events(sub, "rating.submitted")
    assert [e["data"]["ticket"] for e in ratings] == [rated], "a command reached the ratings"
    st = sim.status()
    assert st["fault"] is None and st["counters"]["1"]["state"] == "open"
    verify_capture(sub.path)   # the journal of the whole session still verifies


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


def test_a_burst_beyond_the_queue_is_dropped_and_counted(sim, sub):
    """Twenty commands at once: the queue (8) takes what fits, the rest are dropped
    unanswered and counted in stats.cmd_dropped - nothing is answered twice or lost
    without a trace, and the next command is served."""
    sim.wait_drained()
    dropped_before = sim.status()["stats"]["cmd_dropped"]
    cmds = [sign_command(KEY, "ping", cid="burst-%02d" % i) for i in range(20)]
    before = len(_replies(sub))
    _publish_batch(sim.broker_port, [_dump(c).encode() for c in cmds])
    deadline = time.time() + 10
    while time.time() < deadline:
        replies = _replies(sub)[before:]
        dropped = sim.status()["stats"]["cmd_dropped"] - dropped_before
        if len(replies) + dropped >= 20:
            break
        time.sleep(0.05)
    got = [r["id"] for r in replies]
    assert len(got) == len(set(got)) and all(r["ok"] for r in replies), replies
    assert set(got) <= set(c["id"] for c in cmds)
    assert len(got) + dropped == 20 and len(got) >= 8, (len(got), dropped)
    ok(command(sim, sub, KEY, "ping"))


def test_replay_is_rejected_even_after_many_other_commands(sim, sub):
    """The replay cache must cover the whole time window, not only the last 64 ids."""
    sim.wait_drained()
    now = sim.ask({"op": "clock"})["time"]
    # recorded a minute ago, well inside the 300 s window
    first = sign_command(KEY, "ping", ts=now - 60, cid="first-of-many")
    assert send_raw_command(sim, sub, first, first["id"])["ok"]
    others = [Case("ping %d" % i, _dump(sign_command(KEY, "ping", ts=now, cid="many-%03d" % i)), "ok",
                   "many-%03d" % i) for i in range(70)]
    for case, reply in send_cases(sim, sub, others):
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


def _poison(field, cid, bad):
    c = sign_command(KEY, "ping", cid=cid)
    c[field] = "@@"
    return _dump(c).encode().replace(b"@@", bad)


def test_hostile_text_in_a_command_does_not_poison_the_journal(sub, sim):
    """Text the device copies from a refused command into command.rejected (id, op) must still
    make a valid, signed UTF-8 event: MicroPython lets invalid UTF-8 (a code point above
    U+10FFFF, an overlong form) through json.loads, and a lone surrogate makes canonical
    JSON raise. Bidi overrides and zero-width characters are replaced too."""
    sim.wait_drained()
    cases = [Case("U+110000 in id", _poison("id", "p0", b"\xf4\x90\x80\x80-poison-0"), ("malformed",))]
    for name, field, bad in (("overlong UTF-8 in op", "op", b"\xc0\xafping"),
                             ("overlong UTF-8 in id", "id", b"\xc0\xafid-1"),
                             ("lone surrogate in id", "id", b"\\ud800id-2"),
                             ("lone surrogate in op", "op", b"\\udfffping"),
                             ("RTL override in id", "id", "\u202eid-5".encode()),
                             ("zero width in op", "op", "pi\u200bng".encode()),
                             ("C1 control in id", "id", "\u0085id-7".encode())):
        cases.append(Case(name, _poison(field, "poison-%d" % len(cases), bad), ("malformed", "bad_mac")))
    results = send_cases(sim, sub, cases, timeout=5.0)
    for case, reply in results:
        assert reply["ok"] is False and reply["error"] in case.expect, (case.name, reply)
        json.dumps(reply, ensure_ascii=False).encode("utf-8")   # the reply is valid text too
    # the first refusal is journalled in full: the id above U+10FFFF, made printable
    first = wait_event(sub, "command.rejected")
    assert first["data"]["id"] == "????-poison-0" and first["data"]["reason"] == "malformed", first["data"]
    assert results[0][1]["id"] == "????-poison-0"
    settle_journal(sim, sub, [r["error"] for _, r in results])
    # keypad text is copied into signed events too
    for action, field, bad in (("signin", "staff", "S\u202e01"), ("signin", "staff", "S\u200b1"),
                               ("pause", "reason", "lunch\u2066"), ("pause", "reason", "\x85")):
        r = sim.staff(action, counter="1", **{field: bad})
        assert r["ok"] is False and r["refused"] == "bad_args", (action, bad, r)
    assert sim.staff("signin", counter="1", staff="王小明")["ok"]
    wait_capture_complete(sim, sub)
    verify_capture(sub.path)


# --- a flood -----------------------------------------------------------------------

def _remaining_length(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first, body):
    return bytes([first]) + _remaining_length(len(body)) + body


def _mqtt_connect(port, client_id):
    """A bare MQTT 3.1.1 client connection (the flood must not wait for mosquitto_pub)."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid
    s.sendall(_packet(0x10, body))
    ack = s.recv(4)
    assert ack[:1] == b"\x20" and ack[3:4] == b"\x00", ack
    return s


def _publish0(topic, payload):
    t = topic.encode()
    return _packet(0x30, struct.pack(">H", len(t)) + t + payload)


def _junk(now, rng):
    """Every kind of message that fails before the key, in one pool."""
    pool = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 600))) for _ in range(40)]
    pool += [b"not json", b"{", b"[1,2]", b'{"id":"x"}', b"", b"\xff" * 300, b"{" * 500]
    for i in range(40):
        c = sign_command(KEY, "day.reset", cid="flood-%d" % i, ts=now)
        c["mac"] = "%032x" % rng.getrandbits(128)
        pool.append(_dump(c).encode())
        pool.append(_dump(sign_command("%064x" % rng.getrandbits(256), "config.set",
                                       {"patch": {"heartbeat_s": 10}}, ts=now)).encode())
        pool.append(_dump(sign_command(KEY, "ping", ts=now - 3600 - i)).encode())      # stale
        pool.append(_dump(sign_command(KEY, "ping", ts=now + 3600 + i)).encode())      # future
    pool.append(b"x" * 3000)   # larger than the device's receive buffer: too_large
    pool.append(_poison("id", "f", b"\xf4\x90\x80\x80-flood"))
    return pool


def _flood(port, pool, rate, seconds, sent, stop):
    s = _mqtt_connect(port, "flood")
    packets = [_publish0(BASE + "cmd", p) for p in pool]
    t0 = time.time()
    i = 0
    try:
        while not stop.is_set():
            due = int((time.time() - t0) * rate)
            if due >= rate * seconds:
                break
            if i < due:
                chunk = b"".join(packets[(i + k) % len(packets)] for k in range(due - i))
                s.sendall(chunk)
                i = due
            time.sleep(0.01)
    finally:
        sent.append(i)
        s.close()


def test_a_flood_of_junk_commands_leaves_the_terminal_serving(broker, hall):
    """1000 junk messages/s for 10 s on cmd: presses keep working, the device stays up with
    bounded memory, the flood costs a handful of outbox records, and the capture verifies."""
    sim = hall
    evt = Subscriber(broker.port, BASE + "evt/#")     # the journal, for tools.verify
    rep = Subscriber(broker.port, BASE + "cmd/reply")  # not the junk itself: megabytes
    try:
        sim.wait_drained()
        now = sim.ask({"op": "clock"})["time"]
        # the first refusal of a quiet period is journalled in full: the id above U+10FFFF
        r = send_raw_command(sim, rep, _poison("id", "x", b"\xf4\x90\x80\x80-first"), "????-first")
        assert r["error"] == "malformed"
        seq0 = sim.status()["seq"]
        pool = _junk(now, random.Random(7))
        sent, stop = [], threading.Event()
        flood = threading.Thread(target=_flood, args=(broker.port, pool, 1000, 10, sent, stop))
        flood.start()
        served, slowest = [], 0.0
        try:
            while flood.is_alive():
                for button, counter in (("ticket:A", None), ("next", "1"), ("finish", "1"), ("rate5", "1")):
                    t0 = time.time()
                    r = sim.press(button, counter)
                    slowest = max(slowest, time.time() - t0)
                    assert r.get("ok") and not r.get("ignored"), (button, r)
                served.append(r["ticket"])
        finally:
            stop.set()
            flood.join(30)
        assert sent and sent[0] >= 9000, sent
        st = sim.status()
        assert sim.proc.poll() is None and st["connected"], st
        assert len(served) >= 5 and slowest < 3.0, (len(served), slowest)
        # flash: the citizens' events, and at most a few for the whole flood
        wait_capture_complete(sim, evt)
        flood_events = [e for e in events(evt) if e["seq"] > seq0 and e["type"] not in (
            "ticket.issued", "ticket.called", "service.finished", "rating.submitted")]
        assert len(flood_events) <= 4, [(e["type"], e["data"].get("reason")) for e in flood_events]
        assert sim.status()["seq"] - seq0 <= 4 * len(served) + 4
        first = events(evt, "command.rejected")[0]["data"]
        assert first["id"] == "????-first" and first["reason"] == "malformed", first
        # once messages had to be dropped, junk is no longer answered either
        replies = [r for r in _replies(rep) if r.get("error") in QUIET]
        assert len(replies) < 0.05 * sent[0], len(replies)
        # every message was refused (and counted in the summary) or dropped and counted
        # (the broker may shed a few itself); the heartbeat reports the drops
        dropped = sim.status()["stats"]["cmd_dropped"]
        alone, summaries = settle_journal(sim, evt)
        refused = len(alone) + sum(d["count"] for d in summaries)
        assert 0.9 * sent[0] <= refused + dropped <= sent[0] + 1 and dropped > 0, (refused, dropped, sent)
        wait_event(evt, "device.heartbeat", lambda e: e["data"].get("cmd_dropped") == dropped)
        ok(command(sim, rep, KEY, "ping"))
        assert sim.press("ticket:B")["ok"]
        wait_capture_complete(sim, evt)
        assert "RESULT: clean" in verify_capture(evt.path)
        print("flood: sent %d, refused %d, dropped %d, %d citizens served, slowest press %.2fs, "
              "%d outbox records for the flood, heap %s" % (sent[0], refused, dropped, len(served), slowest,
                                                             len(flood_events), sim.status()["heap"]))
    finally:
        evt.stop()
        rep.stop()
