"""A whole hall over a real mosquitto: one kiosk, counters, one call screen, each its own
sim/run process (its own PID = power cut), observed with mosquitto_sub as a backend would.

What is checked is what the hall standards and the backend rely on: every ticket called at most
once, at one counter; every finished service rated at most once, each rating bound to the
kiosk's finished service (kiosk, counter, request number, the finish event's seq); all events
of all devices verify (tools.verify); nothing lost or doubled across power cuts of the kiosk or
a counter; the kiosk's absence does not stop a served citizen from rating.
"""
import binascii
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from sim.hallconf import make_hall, keystore
from tests.broker import Subscriber
from tests.e2e.harness import EXAMPLE, Sim, events, publish

SITE = "hall01"


class Hall:
    def __init__(self, broker, counters=3, screen=True, tweak=None):
        self.broker = broker
        self.dir = tempfile.mkdtemp(prefix="qterm-hall-")
        self.cfgs = make_hall(EXAMPLE, counters)
        for cfg in self.cfgs.values():
            cfg["printer"] = dict(cfg["printer"], settle_ms=30)
            cfg["queue"] = dict(cfg["queue"], next_guard_s=0)
            if tweak:
                tweak(cfg)
        self.keys = os.path.join(self.dir, "keystore.json")
        with open(self.keys, "w") as f:
            json.dump(keystore(self.cfgs), f)
        self.sims = {}
        for name, cfg in self.cfgs.items():
            if name == "screen" and not screen:
                continue
            self.sims[name] = Sim(broker.port, cfg, state=os.path.join(self.dir, name),
                                  config_path=os.path.join(self.dir, name + ".json"))
        try:
            for s in self.sims.values():
                s.start(wait=False)
            for s in self.sims.values():
                s.connect(timeout=40)
            for s in self.sims.values():
                s.wait_connected(timeout=30)
        except BaseException:
            self.cleanup()      # a hall that did not come up leaves no device running
            raise

    @property
    def kiosk(self):
        return self.sims["kiosk"]

    def counter(self, cid):
        return self.sims["ctr" + cid]

    def cleanup(self):
        for s in self.sims.values():
            s.cleanup()


def _hall(broker, request, **kw):
    h = Hall(broker, **kw)
    request.addfinalizer(h.cleanup)
    return h


def wait_until(fn, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def settle(hall, sub=None):
    """Every device's outbox delivered (and, with sub, every event of it seen by the backend)."""
    for name, s in hall.sims.items():
        st = s.wait_drained(timeout=30)
        if sub is not None:
            wait_until(lambda: any(e["seq"] >= st["seq"] for e in events(sub, dev=name)),
                       10, "%s's events at the backend" % name)


def check_hall_records(hall, sub):
    """The backend's checks over everything the devices published."""
    kiosk = events(sub, dev="kiosk")
    issued = [e["data"]["ticket"] for e in kiosk if e["type"] == "ticket.issued"]
    assert len(issued) == len(set(issued)), "a number issued twice"
    called = [e["data"]["ticket"] for e in kiosk if e["type"] == "ticket.called"]
    # a ticket is called again only after staff sent it on (transfer, requeue after a no-show)
    again = [e["data"]["ticket"] for e in kiosk if e["type"] in ("ticket.transferred", "ticket.requeued")]
    for t in set(called):
        assert called.count(t) <= 1 + again.count(t), "%s called twice: %r" % (t, called)
    assert set(called) <= set(issued)
    finished = {}
    for e in kiosk:
        if e["type"] == "service.finished":
            d = e["data"]
            key = (d["counter"], d["req"])
            assert key not in finished, "a finish applied twice: %r" % (key,)
            finished[key] = (d["ticket"], e["seq"], d["day"])
    tickets_finished = [v[0] for v in finished.values()]
    assert len(tickets_finished) == len(set(tickets_finished)), "a ticket finished twice"
    rated = set()
    for name, s in hall.sims.items():
        if not name.startswith("ctr"):
            continue
        cid = name[3:]
        for e in events(sub, dev=name):
            if e["type"] not in ("rating.submitted", "rating.expired"):
                continue
            d = e["data"]
            assert d["kiosk"] == "kiosk" and d["counter"] == cid
            key = (cid, d["req"])
            assert key in finished, "a rating for no finished service: %r" % (d,)
            assert key not in rated, "two ratings for one service: %r" % (key,)
            rated.add(key)
            ticket, seq, day = finished[key]
            assert d["ticket"] == ticket and d["day"] == day
            assert d["fin_seq"] in (seq, None)
    r = subprocess.run([sys.executable, "-m", "tools.verify", "--keys", hall.keys, sub.path],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return issued, called, finished, rated


def test_a_hall_of_three_counters_serves_300_citizens(broker, sub, request):
    """300 citizens across 2 services, three counters calling, finishing and rating at once."""
    hall = _hall(broker, request, screen=False)
    for i in range(300):
        r = hall.kiosk.press("ticket:" + "AB"[i % 2])
        assert r["ok"], r
    served = {}
    errors = []

    def window(cid):
        sim = hall.counter(cid)
        mine = served.setdefault(cid, [])
        k = 0
        try:
            while True:
                r = sim.press("next")
                if not r["ok"]:
                    assert r["refused"] == "nobody_waiting", r
                    break
                mine.append(r["ticket"])
                assert sim.press("finish")["ok"]
                k += 1
                score = 5 - k % 4      # 5, 4, 3, 2 (a 2 asks for a reason)
                r = sim.press("rate%d" % score)
                assert r["ok"], r
                if score <= 2:
                    time.sleep(0.65)    # the pad takes a reason only after its guard time
                    assert sim.press("rate5")["event"] == "rating.submitted"
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append((cid, e))

    threads = [threading.Thread(target=window, args=(c,)) for c in "123"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert all(len(served[c]) > 30 for c in "123"), dict((c, len(v)) for c, v in served.items())
    everyone = served["1"] + served["2"] + served["3"]
    assert sorted(everyone) == sorted(set(everyone)) and len(everyone) == 300
    settle(hall, sub)
    issued, called, finished, rated = wait_until(
        lambda: (lambda r: r if len(r[3]) == 300 else None)(check_hall_records(hall, sub)),
        timeout=30, what="300 ratings at the backend")
    assert len(issued) == 300 and len(called) == len(set(called)) == 300 and len(finished) == 300


def test_three_counters_pressing_next_at_once_never_share_a_ticket(broker, sub, request):
    hall = _hall(broker, request, screen=False)
    for i in range(150):
        r = hall.kiosk.press("ticket:" + "AB"[i % 2])
        assert r["ok"], r
    barrier = threading.Barrier(3)
    got = {"1": [], "2": [], "3": []}
    errors = []

    def window(cid):
        sim = hall.counter(cid)
        try:
            for _ in range(50):    # 50 rounds of three at once (the 300-citizen test serves more)
                barrier.wait(30)
                r = sim.press("next")
                assert r["ok"], r
                got[cid].append(r["ticket"])
        except Exception as e:  # noqa: BLE001
            errors.append((cid, e))
            barrier.abort()

    threads = [threading.Thread(target=window, args=(c,)) for c in "123"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    every = got["1"] + got["2"] + got["3"]
    assert len(every) == 150 and len(set(every)) == 150, "a ticket at two counters"
    settle(hall, sub)
    check_hall_records(hall, sub)


def test_each_role_shows_its_own_screen(broker, request):
    """What citizens read (issue 14): a counter's face says who is on duty, with the name the
    hall gave, and offers the five choices when asking for a rating; the kiosk shows each
    service's waiting count; the call screen the newest call and the earlier ones by name."""
    def names(cfg):
        cfg["staff"] = {"S001": {"zh": "王小明", "en": "Wang Xiaoming"}}
    hall = _hall(broker, request, counters=2, tweak=names)
    k, c1, c2, screen = hall.kiosk, hall.counter("1"), hall.counter("2"), hall.sims["screen"]
    for t in ("ticket:A", "ticket:A", "ticket:B"):
        assert k.press(t)["ok"]

    def shown(sim, *parts):
        return wait_until(lambda: (lambda ls: ls if all(p in ls for p in parts) else None)(
            sim.ask({"op": "display"})["lines"]), 15, "%s on %s" % (parts, sim.state))
    shown(c1, "1号窗口 工号 S001 王小明", "Counter 1 - staff no. S001 Wang Xiaoming")
    assert c2.press("next")["ticket"] == "B001"     # counter 2 serves B first
    assert c1.press("next")["ticket"] == "A001"
    lines = shown(screen, "最近叫号 Recent calls", "B001 2号窗口 Counter 2")
    # the newest call above them (its lines go dark and light again while it flashes)
    assert lines.index("最近叫号 Recent calls") == 3 and lines[1] in ("请 A001 号到 1号窗口 办理", ""), lines
    shown(k, "各业务等候人数 Waiting now", "社保业务 Social Insurance 1", "医保业务 Medical Insurance 0")
    assert c1.press("finish")["ok"]
    lines = shown(c1, "5 非常满意 Very satisfied", "1 非常不满意 Very dissatisfied", "1号窗口 工号 S001 王小明")
    assert lines.index("5 非常满意 Very satisfied") < lines.index("1 非常不满意 Very dissatisfied")


def test_kiosk_power_cut_and_absence(broker, sub, request):
    """Kiosk SIGKILL mid-day: counters say so and keep rating; the finish made meanwhile reaches
    the kiosk once when it is back; nothing called twice or lost."""
    hall = _hall(broker, request, counters=2, screen=False)
    for i in range(6):
        assert hall.kiosk.press("ticket:A")["ok"]
    c1, c2 = hall.counter("1"), hall.counter("2")
    t1 = c1.press("next")["ticket"]
    t2 = c2.press("next")["ticket"]
    hall.kiosk.kill()
    r = c2.press("next")
    assert r == {"ok": False, "refused": "not_sent", "detail": ""}
    assert "Not sent" in " ".join(c2.ask({"op": "display"})["lines"])
    lines = wait_until(lambda: (lambda t: t if "叫号暂停" in t else None)(" ".join(c2.ask({"op": "display"})["lines"])),
                       timeout=8, what="the home screen to say the kiosk is away")
    assert "Calling paused" in lines
    r = c1.press("finish")           # the citizen was served: the pad opens all the same
    assert r["ok"] and r["queued"] and r["ticket"] == t1
    r = c1.press("rate4")
    assert r["event"] == "rating.submitted"
    rating = wait_until(lambda: [e for e in events(sub, "rating.submitted", dev="ctr1")], what="rating")[0]
    assert rating["data"]["ticket"] == t1 and rating["data"]["fin_seq"] is None
    assert c1.status()["hall"]["pending_finish"] is True
    hall.kiosk.start()               # power back: from its own state
    hall.kiosk.wait_connected(30)
    wait_until(lambda: not c1.status()["hall"]["pending_finish"], 60, "the finish delivered")
    r = wait_until(lambda: (lambda r: r if r["ok"] else None)(c2.press("next")), 60, "counter 2 resumes")
    assert r["ticket"] not in (t1, t2)
    assert c1.press("next")["ok"]
    settle(hall, sub)
    issued, called, finished, rated = check_hall_records(hall, sub)
    fins = [e for e in events(sub, "service.finished", dev="kiosk") if e["data"]["ticket"] == t1]
    assert len(fins) == 1 and fins[0]["data"]["req"] == rating["data"]["req"]


def test_counter_power_cut_mid_service_shows_its_ticket_again(broker, sub, request):
    hall = _hall(broker, request, counters=1, screen=False)
    hall.kiosk.press("ticket:A")
    hall.kiosk.press("ticket:A")
    c = hall.counter("1")
    t = c.press("next")["ticket"]
    c.kill()
    c.start()
    c.wait_connected(30)
    assert t in c.ask({"op": "display"})["lines"][0]
    assert c.press("finish")["ticket"] == t
    assert c.press("rate5")["ok"]
    c.kill()                         # again, with the finish made: nothing doubles
    c.start()
    c.wait_connected(30)
    r = c.press("next")
    assert r["ok"] and r["ticket"] != t
    settle(hall, sub)
    _, called, finished, rated = check_hall_records(hall, sub)
    assert len(finished) == 1 and len(rated) == 1 and called == ["A001", "A002"]


def _request(cfg, op, n, ts=None, cid="1", dev=None, key=None, args=None):
    """A hall request signed as a counter would, with CPython's own json + hmac."""
    body = {"a": args or {}, "c": cid, "dev": dev or "ctr" + cid, "n": n, "op": op,
            "ts": int(time.time()) if ts is None else ts}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    k = binascii.unhexlify(key or cfg["link"]["request_key"])
    body["mac"] = hmac.new(k, canon, hashlib.sha256).hexdigest()[:32]
    return body


def test_requests_are_authenticated_applied_once_and_never_late(broker, sub, request):
    hall = _hall(broker, request, counters=2, screen=False)
    for _ in range(4):
        hall.kiosk.press("ticket:A")
    base = "qterm/v1/%s/kiosk/hall/" % SITE
    c1cfg, c2cfg = hall.cfgs["ctr1"], hall.cfgs["ctr2"]
    ans = Subscriber(broker.port, base + "ans/#")
    request.addfinalizer(ans.stop)

    def answers(cid, n):
        out = []
        for ln in ans.lines():
            topic, _, payload = ln.partition(" ")
            m = json.loads(payload)
            if topic.endswith("/" + cid) and m["n"] == n:
                out.append(m)
        return out

    n0 = c1cfg and 1000
    # counter 2's key used on counter 1's topic, and a tampered mac: ignored, no answer, no event
    publish(broker.port, base + "req/1", _request(c1cfg, "next", n0, key=c2cfg["link"]["request_key"]), qos=0)
    forged = _request(c1cfg, "next", n0 + 1)
    forged["a"] = {"x": 1}
    publish(broker.port, base + "req/1", forged, qos=0)
    publish(broker.port, base + "req/2", _request(c2cfg, "next", n0 + 2, cid="2", dev="ctr1"), qos=0)
    time.sleep(1.0)
    assert answers("1", n0) == [] and answers("1", n0 + 1) == [] and answers("2", n0 + 2) == []
    st = hall.kiosk.status()
    assert st["hall"]["bad"] == 3 and st["counters"]["1"]["serving"] is None
    # a genuine request, sent three times (a lost answer): applied once, answered the same
    good = _request(c1cfg, "next", n0 + 3)
    for _ in range(3):
        publish(broker.port, base + "req/1", good, qos=0)
    a = wait_until(lambda: len(answers("1", n0 + 3)) >= 3 and answers("1", n0 + 3), what="answers")
    assert a[0] == a[1] == a[2] and a[0]["ok"] and a[0]["r"]["serving"][0] == "A001"
    # the kiosk loses power; the same request again is not applied again
    hall.kiosk.kill()
    hall.kiosk.start()
    hall.kiosk.wait_connected(30)
    publish(broker.port, base + "req/1", good, qos=0)
    a = wait_until(lambda: len(answers("1", n0 + 3)) >= 4 and answers("1", n0 + 3), what="a repeat's answer")
    assert a[3]["ok"] and a[3]["r"].get("repeat") and a[3]["r"]["serving"][0] == "A001"
    # a `next` that arrives 60 s after it was pressed is not executed
    publish(broker.port, base + "req/1", _request(c1cfg, "next", n0 + 4, ts=int(time.time()) - 60), qos=0)
    a = wait_until(lambda: answers("1", n0 + 4), what="the late answer")
    assert not a[0]["ok"] and a[0]["r"]["refused"] == "late"
    settle(hall, sub)
    called = [e["data"]["ticket"] for e in events(sub, "ticket.called", dev="kiosk")]
    assert called == ["A001"]
    assert hall.kiosk.status()["counters"]["1"]["serving"] == "A001"


def test_the_counter_keypad_reaches_every_staff_operation(broker, sub, request):
    """The 4x4 呼叫器 (firmware/keyentry.py key map) through the counter, asked of the kiosk."""
    hall = _hall(broker, request, counters=2, screen=False)
    for code in "AAAB":
        assert hall.kiosk.press("ticket:" + code)["ok"]
    c = hall.counter("1")

    def keys(k):
        r = c.ask({"op": "keys", "keys": k})
        print("keys %r -> %r" % (k, r))     # shown when an assertion below fails
        return r
    assert keys("A")["ticket"] == "A001"                # A = next
    assert keys("*5")["typing"]                          # typing shows on the display
    assert "挂起" in c.ask({"op": "display"})["lines"][1]
    assert keys("#")["events"] == ["ticket.parked"]      # *5# park
    assert keys("*3 3#")["ticket"] == "A003"             # *3 3# call A003 out of turn (特呼)
    r = keys("*6 1#")                                    # take A001 back: refused, serving
    assert r["refused"] == "serving"
    assert keys("D")["events"] == ["service.finished"]   # D = finish: the pad opens
    assert c.press("rate5")["ok"]
    assert keys("*6 1#")["events"] == ["ticket.unparked"]
    assert c.status()["hall"]["serving"] == "A001"
    assert keys("*2 2#")["events"] == ["ticket.transferred"]   # to counter 2, same number
    assert hall.counter("2").press("next")["ticket"] == "A001"
    assert keys("*8 7#")["events"] == ["staff.signed_in"]      # staff S + 7 digits typed
    assert keys("*7 1#")["events"] == ["counter.paused"]       # pause, reason 1 (meal)
    assert keys("#")["events"] == ["counter.resumed"]
    assert keys("*9 1#")["refused"] == "bad_args"              # *9 takes nothing: an error (# unused)
    assert keys("*A#")["events"] == ["ticket.walkin"]          # a citizen without a ticket
    settle(hall, sub)
    kiosk = events(sub, dev="kiosk")
    types = [e["type"] for e in kiosk]
    for t in ("ticket.parked", "ticket.unparked", "ticket.transferred", "staff.signed_in", "ticket.walkin"):
        assert t in types, t
    signin = [e for e in kiosk if e["type"] == "staff.signed_in"][0]
    assert signin["data"]["staff"] == "S7" and signin["data"]["counter"] == "1"
    check_hall_records(hall, sub)


def test_every_role_keeps_its_heap_flat_through_a_busy_day(broker, sub, request):
    """The budget of DESIGN.md for every role at the default 96K: the kiosk with 200 waiting per
    service, counters serving and rating back to back, the screen announcing: the heap in use
    after a collection does not creep up, and every device still answers."""
    hall = _hall(broker, request, counters=2)
    for i in range(400):
        r = hall.kiosk.press("ticket:" + "AB"[i % 2])
        assert r["ok"], (i, r)
    st = hall.kiosk.status()
    assert st["waiting"] == {"A": 200, "B": 200}

    def citizens(n):
        for _ in range(n):
            for cid in "12":
                c = hall.counter(cid)
                assert c.press("next")["ok"]
                assert c.press("finish")["ok"]
                assert c.press("rate4")["ok"]

    citizens(15)                # loaded code settles, the first snapshots are written
    settle(hall, sub)
    before = dict((n, s.status()["heap"]["free"]) for n, s in hall.sims.items())
    citizens(45)
    settle(hall, sub)
    after = dict((n, s.status()["heap"]["free"]) for n, s in hall.sims.items())
    for n in hall.sims:
        assert after[n] > before[n] - 3072, (n, before, after)
    check_hall_records(hall, sub)


def _release(sim):
    deadline = time.time() + 10
    while time.time() < deadline:
        if sim.ask({"op": "squeeze", "leave": None}).get("ok"):
            return
        time.sleep(0.1)
    raise AssertionError("could not give the heap back")


@pytest.mark.parametrize("leave", [512, 2048, 4096])
def test_a_counter_short_of_memory_refuses_clearly_and_loses_nothing(broker, sub, request, leave):
    hall = _hall(broker, request, counters=1, screen=False)
    for _ in range(5):
        assert hall.kiosk.press("ticket:A")["ok"]
    c = hall.counter("1")
    answers = []
    for button in ("next", "finish", "rate5", "next", "recall", "skip", "next", "finish", "rate1", "rate3"):
        assert c.ask({"op": "squeeze", "leave": leave})["ok"]
        r = c.press(button)
        answers.append((button, r))
        assert r.get("ok") or r.get("refused") or r.get("error") in ("device out of memory", "storage"), r
        _release(c)
    assert any(r.get("refused") == "memory" or r.get("error") == "device out of memory"
               for _, r in answers) or leave > 3000, answers
    c.kill()                     # what is on flash is what the counter believed
    c.start()
    c.wait_connected(30)
    wait_until(lambda: (lambda s: not s["pending_finish"] and s["reached"]
                        and s["serving"] == hall.kiosk.status()["counters"]["1"]["serving"])(c.status()["hall"]),
               30, "counter and kiosk agreeing")
    assert c.press("next")["ok"] or c.press("next")["refused"] == "nobody_waiting"
    settle(hall, sub)
    check_hall_records(hall, sub)
    seqs = [e["seq"] for e in events(sub, dev="ctr1")]
    assert seqs == list(range(1, len(seqs) + 1)), "events lost or repeated under memory pressure"
