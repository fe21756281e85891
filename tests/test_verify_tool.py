"""tools/verify on a generated capture: clean, each kind of tampering, and the satisfaction figures."""
import json
import os
import subprocess
import sys
import tempfile

from firmware.envelope import Stamper, chain_hash
from tools.verify import Metrics, Verifier, default_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = bytes(range(32))
KEY2 = b"counter-two-key!" * 2
OTHER = b"not the device key at all......."
D1, D2 = "2024-05-06", "2024-05-07"

# ticket, service, counter, staff, waited_s, served_s, score (None = expired), reason, followup, day
VISITS = (
    ("A001", "A", "1", "S01", 120, 300, 5, None, False, D1),
    ("A002", "A", "2", "S02", 180, 240, 4, None, False, D1),
    ("B001", "B", "1", "S01", 60, 600, 3, None, False, D1),
    ("A003", "A", "2", "S02", 300, 120, 2, "slow", True, D1),
    ("B002", "B", "1", "S01", 90, 200, None, None, False, D1),
    ("A004", "A", "1", "S01", 240, 360, 5, None, False, D1),
    ("A005", "A", "2", "S02", 30, 90, 1, "attitude", False, D1),
    ("B003", "B", "2", "S02", 150, 450, 5, None, False, D1),
    ("A001", "A", "1", "S01", 100, 100, 4, None, False, D2),
    ("A002", "A", "2", "S02", 200, 300, None, None, False, D2),
    ("B001", "B", "1", "S01", 50, 250, 2, "slow", False, D2),
    ("A003", "A", "1", "S01", 400, 150, 5, None, False, D2),
    ("B002", "B", "2", "S02", 80, 500, 3, None, False, D2),
    ("A004", "A", "2", "S02", 120, 180, 1, "unresolved", True, D2),
    ("A005", "A", "1", "S01", 60, 60, 4, None, False, D2),
    ("B003", "B", "2", "S02", 20, 40, 5, None, False, D2),
)


def _topic(dev, etype):
    return "qterm/v1/hall1/%s/evt/%s" % (dev, etype)


def make_stream():
    """50 signed events of kiosk k1 (with a reboot after the first day) as (topic, payload)."""
    out = []
    s = Stamper("k1", 1, KEY)
    ts = 1714960000

    def emit(etype, data):
        out.append((_topic("k1", etype), s.stamp(etype, data, ts)))

    emit("device.boot", {"reason": "power"})
    for i, (ticket, svc, counter, staff, waited, served, score, reason, followup, day) in enumerate(VISITS):
        if i == 8:  # overnight power cut: a new boot continues the same seq and chain
            s = Stamper("k1", 2, KEY, s.seq, s.prev)
            emit("device.boot", {"reason": "power"})
        ts += 60
        emit("ticket.issued", {"ticket": ticket, "service": svc, "kind": "normal", "ahead": 0,
                               "wait_min": 2, "day": day})
        ts += waited + served
        who = {"ticket": ticket, "service": svc, "counter": counter, "staff": staff, "day": day}
        emit("service.finished", dict(who, waited_s=waited, served_s=served))
        ts += 10
        if score is None:
            emit("rating.expired", who)
        else:
            emit("rating.submitted", dict(who, score=score, reason=reason, followup=followup, ms=2500))
    assert len(out) == 50
    return out


def other_device():
    s = Stamper("c2", 1, KEY2)
    return [(_topic("c2", "device.heartbeat"), s.stamp("device.heartbeat", {"n": i}, 1714960000 + i))
            for i in range(3)]


def _lines(events):
    return [t + " " + p.decode() for t, p in events]


def _noise():
    return ["qterm/v1/hall1/k1/status {\"state\":\"online\"}",
            "qterm/v1/hall1/k1/state {\"waiting\":{\"A\":2}}",
            "qterm/v1/hall1/k1/cmd {\"id\":1,\"op\":\"pause\"}",
            "qterm/v1/hall1/k1/cmd/reply {\"id\":1,\"ok\":true}",
            "garbage line without topic",
            "some/other/topic hello"]


def run_tool(lines, *args, keys=None, stdin=False, keystore_env=None):
    """Run python -m tools.verify on lines; returns (exit code, stdout, stderr). The
    default key store is $QTERM_KEYSTORE (keystore_env; by default a file that does not
    exist, so the machine's own ~/.qterm is never read)."""
    d = tempfile.mkdtemp(prefix="qterm-verify-")
    cap = os.path.join(d, "capture.txt")
    with open(cap, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    argv = [sys.executable, "-m", "tools.verify"]
    if keys is not False:
        store = os.path.join(d, "keys.json")
        with open(store, "w") as f:
            json.dump(keys or {"k1": {"key": KEY.hex(), "note": "kiosk"},
                               "hall1/c2": {"key": KEY2.hex()}}, f)
        argv += ["--keys", store]
    argv += list(args) + (["-"] if stdin else [cap])
    env = dict(os.environ, QTERM_KEYSTORE=keystore_env or os.path.join(d, "no-such-keystore.json"))
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
                       input="\n".join(lines) + "\n" if stdin else None)
    return r.returncode, r.stdout, r.stderr


def run_json(lines, *args, **kw):
    code, out, err = run_tool(lines, "--json", *args, **kw)
    assert code in (0, 1), err
    return code, json.loads(out)


def _dev(rep, name="hall1/k1"):
    for d in rep["devices"]:
        if d["device"] == name:
            return d
    raise AssertionError("no device %s in %s" % (name, [d["device"] for d in rep["devices"]]))


def _seq_of(line):
    return json.loads(line.split(" ", 1)[1])["seq"]


def test_clean_capture_exit_0_with_noise_skipped():
    lines = _noise()[:3] + _lines(make_stream()) + _noise()[3:] + _lines(other_device())
    code, out, err = run_tool(lines)
    assert code == 0, out + err
    assert "RESULT: clean" in out
    assert "hall1/k1" in out and "hall1/c2" in out
    code, rep = run_json(lines)
    assert code == 0 and rep["clean"]
    k1 = _dev(rep)
    assert k1["events"] == 50 and k1["first_seq"] == 1 and k1["last_seq"] == 50
    assert k1["chain_intact"] and k1["boots"] == [1, 2]
    assert k1["gaps"] == [] and k1["altered"] == [] and k1["forged"] == [] and k1["reordered"] == []
    assert _dev(rep, "hall1/c2")["events"] == 3
    assert rep["skipped"] == {"cmd": 2, "junk": 1, "other topic": 1, "state": 1, "status": 1}


def test_altered_data_detected():
    lines = _lines(make_stream())
    i = next(n for n, l in enumerate(lines) if '"score":2' in l)
    lines[i] = lines[i].replace('"score":2', '"score":5')
    code, out, _ = run_tool(lines)
    assert code == 1 and "altered seq %d" % _seq_of(lines[i]) in out
    code, rep = run_json(lines)
    k1 = _dev(rep)
    assert code == 1 and k1["altered"] == [_seq_of(lines[i])]
    assert not k1["chain_intact"] and k1["forged"] == [] and k1["gaps"] == []


def test_deleted_event_is_a_gap():
    lines = _lines(make_stream())
    del lines[20]  # seq 21
    code, out, _ = run_tool(lines)
    assert code == 1 and "missing seq 21 (lost or deleted)" in out
    code, rep = run_json(lines)
    assert _dev(rep)["gaps"] == [[21, 21]] and _dev(rep)["missing"] == 1
    del lines[30:33]  # seq 32..34 (index 30 is seq 32 now)
    code, rep = run_json(lines)
    assert _dev(rep)["gaps"] == [[21, 21], [32, 34]] and _dev(rep)["missing"] == 4


def test_inserted_forged_events_detected():
    lines = _lines(make_stream())
    # A fake 非常满意 squeezed in under an existing seq, with a made-up mac.
    fake = json.loads(lines[10].split(" ", 1)[1])
    fake.update(type="rating.submitted", mac="ab" * 16,
                data={"ticket": "A099", "service": "A", "counter": "2", "staff": "S02", "score": 5,
                      "reason": None, "followup": False, "ms": 900, "day": D1})
    lines.insert(11, _topic("k1", "rating.submitted") + " " + json.dumps(fake, separators=(",", ":")))
    code, out, _ = run_tool(lines)
    assert code == 1 and "forged/inserted seq %d" % fake["seq"] in out
    # A whole event signed with another key, appended and linked to the real last event.
    forger = Stamper("k1", 2, OTHER, 50, chain_hash(make_stream()[-1][1]))
    lines.append(_topic("k1", "rating.submitted") + " " +
                 forger.stamp("rating.submitted", {"score": 5, "day": D2}, 1714990000).decode())
    code, rep = run_json(lines)
    k1 = _dev(rep)
    assert code == 1 and [f["seq"] for f in k1["forged"]] == [fake["seq"], 51]
    assert "already taken" in k1["forged"][0]["reason"] and k1["altered"] == []


def test_reordered_detected():
    lines = _lines(make_stream())
    lines[30], lines[31] = lines[31], lines[30]
    code, out, _ = run_tool(lines)
    assert code == 1 and "arrived out of order: seq 31" in out
    code, rep = run_json(lines)
    k1 = _dev(rep)
    assert k1["reordered"] == [31] and k1["chain_intact"] and not k1["clean"] and k1["gaps"] == []


def test_duplicates_are_harmless():
    lines = _lines(make_stream())
    lines = lines[:25] + lines[20:25] + lines[25:] + [lines[-1]]
    code, out, _ = run_tool(lines, "--metrics")
    assert code == 0 and "6 duplicate re-send(s), ignored" in out
    code, rep = run_json(lines, "--metrics")
    assert _dev(rep)["duplicates"] == 6 and _dev(rep)["reordered"] == [] and rep["clean"]
    assert rep["metrics"]["total"]["ratings"] == 14  # re-sends are not counted twice


def test_mac_stripped_detected():
    lines = _lines(make_stream())
    topic, payload = lines[7].split(" ", 1)
    env = json.loads(payload)
    del env["mac"]
    lines[7] = topic + " " + json.dumps(env, separators=(",", ":"))
    code, out, _ = run_tool(lines)
    assert code == 1 and "forged/inserted seq 8: no mac" in out
    code, rep = run_json(lines)
    assert _dev(rep)["forged"] == [{"seq": 8, "reason": "no mac"}]


def test_wrong_key_detected():
    lines = _lines(make_stream())
    code, out, _ = run_tool(lines, "--key", "k1=" + OTHER.hex(), keys=False)
    assert code == 1 and "no event verifies with the given key" in out
    code, rep = run_json(lines, "--key", "k1=" + OTHER.hex(), keys=False)
    k1 = _dev(rep)
    assert k1["wrong_key"] and len(k1["forged"]) == 50 and k1["altered"] == []


def test_unknown_device_and_chain_only():
    lines = _lines(make_stream()) + _lines(other_device())
    code, rep = run_json(lines, keys={"k1": {"key": KEY.hex()}})
    assert code == 1 and _dev(rep)["clean"] and not _dev(rep, "hall1/c2")["clean"]
    assert "no key" in _dev(rep, "hall1/c2")["notes"][0]
    code, out, _ = run_tool(lines, "--chain-only", keys=False)
    assert code == 0, out
    code, out, _ = run_tool(lines, keys=False)
    assert code == 1


def test_chain_break_from_a_rolled_back_device():
    # Signed by the real key but prev not linking: only the device itself can do this.
    events = make_stream()[:10]
    s = Stamper("k1", 3, KEY, 10, "0123456789abcdef" * 2)
    events.append((_topic("k1", "device.boot"), s.stamp("device.boot", {}, 1714999999)))
    code, rep = run_json(_lines(events))
    assert code == 1 and _dev(rep)["chain_breaks"] == [11] and not _dev(rep)["chain_intact"]


def test_plain_json_lines_and_stdin():
    lines = [p.decode() for _, p in make_stream()] + ['{"hello":"world"}']
    code, out, _ = run_tool(lines, "--metrics", stdin=True)
    assert code == 0 and "standard input" in out and "k1" in out
    assert "other json 1" in out


def test_usage_errors_exit_2_naming_the_file():
    code, _, err = run_tool(["x"], "--key", "k1=zz", keys=False)
    assert code == 2 and "k1" in err
    r = subprocess.run([sys.executable, "-m", "tools.verify", "--key", "k1=00", "/nonexistent/cap.txt"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "/nonexistent/cap.txt" in r.stderr
    d = tempfile.mkdtemp(prefix="qterm-verify-")
    bad = os.path.join(d, "keys.json")
    with open(bad, "w") as f:
        f.write("{not json")
    r = subprocess.run([sys.executable, "-m", "tools.verify", "--keys", bad, bad], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and bad in r.stderr
    r = subprocess.run([sys.executable, "-m", "tools.verify", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "--metrics" in r.stdout and "--keys" in r.stdout


def test_no_events_is_not_clean():
    code, _, err = run_tool(_noise())
    assert code == 1 and "no qterm events" in err


def test_metrics_match_hand_computed_figures():
    code, rep = run_json(_lines(make_stream()) + _lines(other_device()), "--metrics")
    assert code == 0
    m = rep["metrics"]
    t = m["total"]
    assert t["ratings"] == 14 and t["satisfied"] == 10 and t["satisfaction_rate"] == round(10 / 14, 4)
    assert t["scores"] == {"5": 5, "4": 3, "3": 2, "2": 2, "1": 2}
    assert t["bad"] == 4 and t["bad_reasons"] == {"attitude": 1, "slow": 2, "unresolved": 1}
    assert t["followups"] == 2 and t["expired"] == 2 and t["finished"] == 16
    assert t["rated_share"] == 0.875 and t["avg_waited_s"] == 137.5 and t["avg_served_s"] == 246.2
    c1, c2 = m["by"]["counter"]["1"], m["by"]["counter"]["2"]
    assert (c1["ratings"], c1["satisfied"], c1["bad"], c1["expired"], c1["finished"]) == (7, 6, 1, 1, 8)
    assert c1["satisfaction_rate"] == round(6 / 7, 4) and c1["avg_waited_s"] == 140 and c1["avg_served_s"] == 252.5
    assert (c2["ratings"], c2["satisfied"], c2["bad"], c2["followups"]) == (7, 4, 3, 2)
    assert c2["avg_waited_s"] == 135 and c2["avg_served_s"] == 240
    assert m["by"]["staff"]["S01"]["satisfied"] == 6 and m["by"]["staff"]["S02"]["satisfied"] == 4
    a, b = m["by"]["service"]["A"], m["by"]["service"]["B"]
    assert (a["ratings"], a["satisfied"], a["bad"], a["finished"], a["expired"]) == (9, 6, 3, 10, 1)
    assert (b["ratings"], b["satisfied"], b["bad"], b["finished"], b["expired"]) == (5, 4, 1, 6, 1)
    for day in (D1, D2):
        d = m["by"]["day"][day]
        assert (d["ratings"], d["satisfied"], d["bad"], d["finished"], d["expired"]) == (7, 5, 2, 8, 1)
    assert [(f["day"], f["ticket"], f["reason"]) for f in m["followup_list"]] == \
        [(D1, "A003", "slow"), (D2, "A004", "unresolved")]
    code, out, _ = run_tool(_lines(make_stream()), "--metrics")
    assert "71.4%" in out and "87.5%" in out and "follow up: %s A003" % D1 in out


def test_forged_ratings_are_not_counted():
    lines = _lines(make_stream())
    i = next(n for n, l in enumerate(lines) if '"score":1' in l)
    lines[i] = lines[i].replace('"score":1', '"score":5')
    code, rep = run_json(lines, "--metrics")
    assert code == 1 and rep["metrics"]["total"]["ratings"] == 13


def test_verifier_api_for_live_monitoring():
    m = Metrics()
    v = Verifier({"hall1/k1": KEY}, metrics=m)
    events = make_stream()
    verdicts = [v.feed(t, p)[0] for t, p in events[:5]]
    assert verdicts == ["ok"] * 5 and v.clean
    assert v.feed(*events[4]) == ("duplicate", json.loads(events[4][1]))
    assert v.feed("qterm/v1/hall1/k1/status", b'{"state":"online"}') == ("skipped", None)
    assert v.feed(events[6][0], events[6][1])[0] == "ok"  # seq 6 never came: a gap
    assert not v.clean and v.report()["devices"][0]["gaps"] == [[6, 6]]
    assert v.feed_line(events[5][0] + " " + events[5][1].decode())[0] == "ok"
    rep = v.report()["devices"][0]
    assert rep["gaps"] == [] and rep["reordered"] == [6]
    assert m.report()["total"]["finished"] == 2


def _with_drop_announced(ranges, drop, relink=None, key=KEY):
    """The k1 stream with the seqs in drop missing from the capture and a signed
    outbox.dropped {ranges} after them; relink=(seq, prev_seq): the device stamped seq
    with prev linking to prev_seq (what a recovery from a damaged segment does)."""
    events = make_stream()
    if relink is not None:
        seq, to = relink
        s = Stamper("k1", 2, KEY, seq - 1, chain_hash(events[to - 1][1]))
        events[seq - 1] = (_topic("k1", "device.boot"), s.stamp("device.boot", {"reason": "recovered"}, 1714970000))
        for i in range(seq, len(events)):   # the rest of the chain follows the new link
            t, p = events[i]
            env = json.loads(p)
            events[i] = (t, s.stamp(env["type"], env["data"], env["ts"]))
    s = Stamper("k1", 2, key, 50, chain_hash(events[-1][1]))
    events.append((_topic("k1", "outbox.dropped"), s.stamp("outbox.dropped", {"ranges": ranges}, 1714990000)))
    return [ln for ln in _lines(events) if _seq_of(ln) not in drop]


def test_announced_drops_are_not_tampering():
    lines = _with_drop_announced([[21, 23]], {21, 22, 23})
    code, out, _ = run_tool(lines)
    assert code == 0, out
    assert "seq 21-23 dropped by the device, as announced by outbox.dropped" in out and "RESULT: clean" in out
    code, rep = run_json(lines)
    k1 = _dev(rep)
    assert code == 0 and k1["gaps"] == [] and k1["missing"] == 0 and k1["dropped"] == [[21, 23]]
    assert k1["dropped_count"] == 3 and k1["chain_intact"] and k1["clean"]
    # the same gap without the announcement is loss
    code, out, _ = run_tool([ln for ln in lines if "outbox.dropped" not in ln])
    assert code == 1 and "missing seq 21-23 (lost or deleted)" in out


def test_only_the_announced_part_of_a_gap_is_excused():
    lines = _with_drop_announced([[21, 22], [30, 31]], {21, 22, 23, 24})
    code, rep = run_json(lines)
    k1 = _dev(rep)
    assert code == 1 and k1["dropped"] == [[21, 22]] and k1["gaps"] == [[23, 24]] and k1["missing"] == 2


def test_a_forged_announcement_excuses_nothing():
    lines = _with_drop_announced([[21, 23]], {21, 22, 23}, key=OTHER)
    code, rep = run_json(lines)
    k1 = _dev(rep)
    assert code == 1 and k1["gaps"] == [[21, 23]] and k1["dropped"] == [] and k1["forged"]


def test_a_chain_break_right_after_an_announced_range_is_expected():
    # 21-23 were lost from a damaged segment after 23 was published; the device stamped 24
    # linking to 20, the newest event it still had
    lines = _with_drop_announced([[21, 23]], {21, 22}, relink=(24, 20))
    code, out, _ = run_tool(lines)
    assert code == 0, out
    code, rep = run_json(lines)
    assert _dev(rep)["chain_breaks"] == [] and _dev(rep)["dropped"] == [[21, 22]]
    # not announced, the same break is reported
    code, rep = run_json([ln for ln in lines if "outbox.dropped" not in ln])
    assert code == 1 and _dev(rep)["chain_breaks"] == [24]


def test_default_key_store_is_read_without_keys():
    d = tempfile.mkdtemp(prefix="qterm-verify-")
    store = os.path.join(d, "keystore.json")
    with open(store, "w") as f:
        json.dump({"hall1/k1": {"key": KEY.hex()}, "hall1/c2": {"key": KEY2.hex()}}, f)
    lines = _lines(make_stream()) + _lines(other_device())
    code, out, _ = run_tool(lines, keys=False, keystore_env=store)
    assert code == 0 and "RESULT: clean" in out, out
    code, out, _ = run_tool(lines, keys=False)   # no default store: macs cannot be checked
    assert code == 1 and "no key for this device" in out
    # --key alone means exactly those keys
    code, out, _ = run_tool(lines, "--key", "hall1/k1=" + KEY.hex(), keys=False, keystore_env=store)
    assert code == 1 and "hall1/c2: no key for this device" in out
    # monitor finds its keys through the same helper
    old = os.environ.get("QTERM_KEYSTORE")
    os.environ["QTERM_KEYSTORE"] = store
    try:
        assert default_keys() == (store, {"hall1/k1": KEY, "hall1/c2": KEY2})
        os.environ["QTERM_KEYSTORE"] = os.path.join(d, "missing.json")
        assert default_keys() == (None, {})
    finally:
        if old is None:
            del os.environ["QTERM_KEYSTORE"]
        else:
            os.environ["QTERM_KEYSTORE"] = old
    import tools.monitor
    assert tools.monitor.default_keys is default_keys
