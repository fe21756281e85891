"""tools/qterm report and followup over hall databases (tools/halldb.py) built here.

The events carry exactly the fields the firmware emits (firmware/hall.py, desk.py, rating.py,
role_counter.py bind(): a counter's rating names kiosk, day, ticket, req, fin_seq). One small
hall is hand-computed (10 ratings across 2 counters) so every figure is asserted exactly; one
database comes from a real simulated hall (kiosk + 2 counters over mosquitto), verified with
tools.verify before it is stored, as a collector would.
"""
import csv
import datetime
import json
import os
import shutil
import sqlite3
import time

import pytest

from firmware import canonical
from firmware.envelope import chain_hash
from tools import halldb
from tools.__main__ import main
from tools.report import add_working_days
from tools.verify import Metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "sim", "config.example.json")
TZ = datetime.timezone(datetime.timedelta(hours=8))
DAY = "2026-12-04"      # a Friday
T0 = int(datetime.datetime(2026, 12, 4, 8, 30, tzinfo=TZ).timestamp())


class HallDB:
    """Writes events into a hall database the way the collector stores them."""

    def __init__(self, path, site="hall01"):
        self.db = halldb.connect(path)
        self.site = site
        self.seq = {dev.split("/", 1)[1]: n for dev, n in
                    self.db.execute("SELECT device, max(seq) FROM events GROUP BY device")}

    def emit(self, dev, etype, ts, data):
        seq = self.seq.get(dev, 0) + 1
        self.seq[dev] = seq
        env = {"v": 1, "dev": dev, "boot": 1, "seq": seq, "ts": ts, "type": etype, "data": data,
               "prev": "0" * 32, "mac": "0" * 32}
        raw = canonical.dumps(env)
        self.db.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (self.site + "/" + dev, seq, etype, ts, 1, env["prev"], chain_hash(raw),
                         canonical.dumps(data).decode(), raw, time.time()))
        return seq


class Hall:
    """A kiosk and counters ctr<id> (hall protocol), or one `all` device (kiosk=None)."""

    def __init__(self, db, kiosk="kiosk", all_dev="term01"):
        self.h = db
        self.kiosk = kiosk
        self.dev = kiosk or all_dev
        self.n = {}
        self.req = {}

    def issue(self, ts, service, day=DAY):
        n = self.n[service] = self.n.get(service, 0) + 1
        t = "%s%03d" % (service, n)
        self.h.emit(self.dev, "ticket.issued", ts, {"ticket": t, "n": n, "service": service, "kind": "normal",
                                                    "ahead": 0, "wait_min": 0, "day": day})
        return t

    def _req(self, cid, d):
        if self.kiosk:
            self.req[cid] = self.req.get(cid, 0) + 1
            d["req"] = self.req[cid]
        return d

    def call(self, ts, t, cid, staff, waited, day=DAY):
        self.h.emit(self.dev, "ticket.called", ts, self._req(cid, {
            "ticket": t, "n": int(t[1:]), "service": t[0], "origin": t[0], "kind": "normal", "counter": cid,
            "staff": staff, "waited_s": waited, "day": day}))

    def skip(self, ts, t, cid, staff, day=DAY):
        self.h.emit(self.dev, "ticket.skipped", ts, self._req(cid, {
            "ticket": t, "n": int(t[1:]), "service": t[0], "counter": cid, "staff": staff, "day": day, "auto": False}))

    def finish(self, ts, t, cid, staff, waited, served, day=DAY):
        d = self._req(cid, {"ticket": t, "service": t[0], "counter": cid, "staff": staff, "kind": "normal",
                            "waited_s": waited, "served_s": served, "day": day})
        seq = self.h.emit(self.dev, "service.finished", ts, d)
        return seq, d.get("req")

    def rate(self, ts, t, cid, staff, score, reason=None, fin=(None, None), day=DAY, expired=False):
        d = {"ticket": t, "service": t[0], "counter": cid, "staff": staff, "day": day}
        if not expired:
            d.update(score=score, reason=reason, followup=score <= 2, ms=4000)
        dev = self.dev
        if self.kiosk:   # role_counter.bind(): the counter names the kiosk's finished service
            d.update(kiosk=self.kiosk, req=fin[1], fin_seq=fin[0])
            dev = "ctr" + cid
        return self.h.emit(dev, "rating.expired" if expired else "rating.submitted", ts, d)


# counter 1 (S001, service A): 5 5 4 3 2(wait), one no-show; counter 2 (S002, service B): 5 4 1 1 3, one expired
A_WAITS = (600, 1200, 300, 960, 0)              # target A 15 min: 1200 and 960 over
B_WAITS = (1300, 100, 200, 1500, 50, 1250)      # target B 20 min: 1300, 1500, 1250 over
B_SERVED = (120, 240, 360, 480, 600, 720)
A_SCORES = ((5, None), (5, None), (4, None), (3, None), (2, "wait"))
B_SCORES = ((5, None), (4, None), (1, "attitude"), (1, "none"), (3, None), (None, None))


def small_hall(path, hall_kw=None):
    """The hand-computed hall; returns the Hall and the ticket issue/finish times."""
    h = Hall(HallDB(path), **(hall_kw or {}))
    times = {}
    plan = [("A", w, 300, s, "1", "S001") for w, s in zip(A_WAITS, A_SCORES)] + \
           [("B", w, sv, s, "2", "S002") for w, sv, s in zip(B_WAITS, B_SERVED, B_SCORES)]
    tickets = []
    for i, (svc, waited, served, _s, _c, _st) in enumerate(plan):
        ts = T0 + 60 * i                       # issued 08:30.. (hour 8)
        tickets.append(h.issue(ts, svc))
    a6 = h.issue(T0 + 3000, "A")                # 09:20: the no-show
    for i, (t, (svc, waited, served, (score, reason), cid, staff)) in enumerate(zip(tickets, plan)):
        called = T0 + 60 * i + waited
        h.call(called, t, cid, staff, waited)
        fin = h.finish(called + served, t, cid, staff, waited, served)
        h.rate(called + served + 2, t, cid, staff, score, reason, fin, expired=score is None)
        times[t] = (T0 + 60 * i, called + served, called + served + 2)
    h.call(T0 + 7200, a6, "1", "S001", 4200)
    h.skip(T0 + 7300, a6, "1", "S001")
    return h, times


def kiosk_config(tmp_path):
    from sim.hallconf import make_hall
    path = str(tmp_path / "kiosk.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(make_hall(EXAMPLE, 2)["kiosk"], f, ensure_ascii=False)
    return path


def report(tmp_path, db, *extra):
    out = str(tmp_path / "out")
    shutil.rmtree(out, ignore_errors=True)
    code = main(["report", "--db", db, "--out", out, "--today", "2026-12-07"] + list(extra))
    return code, out


def load(out, name):
    with open(os.path.join(out, name), encoding="utf-8") as f:
        return json.load(f)


def read_csv(out, name):
    with open(os.path.join(out, name), "rb") as f:
        raw = f.read()
    assert raw.startswith(b"\xef\xbb\xbf"), name + " has no UTF-8 BOM"
    return list(csv.reader(raw[3:].decode("utf-8").splitlines()))


@pytest.fixture
def small(tmp_path):
    path = str(tmp_path / "hall.sqlite")
    h, times = small_hall(path)
    h.h.db.close()
    return path, times


def test_figures_are_exactly_the_hand_computed_ones(tmp_path, small):
    db, _times = small
    code, out = report(tmp_path, db, "--config", kiosk_config(tmp_path))
    assert code == 0
    f = load(out, "figures.json")
    tot = f["total"]
    assert (tot["ratings"], tot["satisfied"], tot["satisfaction_rate"]) == (10, 7, 0.7)
    assert (tot["bad"], tot["bad_rate"], tot["expired"], tot["finished"]) == (3, 0.3, 1, 11)
    assert tot["rated_share"] == round(10 / 11, 4)
    assert [tot["s%d" % s] for s in (5, 4, 3, 2, 1)] == [3, 2, 2, 1, 2]
    assert tot["bad_reasons"] == {"attitude": 1, "none": 1, "wait": 1}
    assert (tot["called"], tot["skipped"], tot["no_show_rate"]) == (12, 1, round(1 / 12, 4))
    assert tot["issued"] == 12 and tot["over_target"] == 5 and tot["over_target_share"] == round(5 / 11, 4)
    c1, c2 = f["by"]["counter"]["1"], f["by"]["counter"]["2"]
    assert (c1["satisfaction_rate"], c1["bad_rate"], c1["rated_share"]) == (0.8, 0.2, 1.0)
    assert (c2["satisfaction_rate"], c2["bad_rate"], c2["rated_share"], c2["expired"]) == (0.6, 0.4, round(5 / 6, 4), 1)
    assert (c1["no_show_rate"], c2["no_show_rate"]) == (round(1 / 6, 4), 0.0)
    assert f["by"]["staff"]["S001"] == c1 and f["by"]["staff"]["S002"] == c2
    a, b = f["by"]["service"]["A"], f["by"]["service"]["B"]
    assert (a["avg_wait_s"], a["over_target"], a["over_target_share"], a["avg_service_s"]) == (612.0, 2, 0.4, 300.0)
    assert (b["avg_wait_s"], b["over_target"], b["over_target_share"], b["avg_service_s"]) == (733.3, 3, 0.5, 420.0)
    assert (a["issued"], b["issued"]) == (6, 6)
    assert f["targets"] == {"A": {"target_s": 900, "from_config": True}, "B": {"target_s": 1200, "from_config": True}}
    assert f["by"]["day"][DAY]["satisfaction_rate"] == 0.7
    assert f["arrivals_by_hour"][8] == 11 and f["arrivals_by_hour"][9] == 1
    # the CSVs: BOM, bilingual header, one row per group and the total
    rows = read_csv(out, "figures_by_counter.csv")
    assert rows[0][0] == "窗口 Counter" and "满意率 satisfaction rate" in rows[0]
    col = rows[0].index("满意率 satisfaction rate")
    assert [(r[0], r[col]) for r in rows[1:]] == [("1", "0.8"), ("2", "0.6"), ("合计 total", "0.7")]
    assert [len(read_csv(out, "figures_by_%s.csv" % d)) for d in ("staff", "service", "day")] == [4, 4, 3]
    html = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    assert "<svg" in html and "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "满意率" in html and "Satisfaction" in html and "过号率 no-show rate" in html
    assert "社保业务" in html    # the service name from the kiosk's config


def test_figures_agree_with_verify_metrics(tmp_path, small):
    """The report's 满意率, bad ratings, rated share and waits are tools.verify's, per counter."""
    db, _ = small
    code, out = report(tmp_path, db)
    assert code == 0
    m = Metrics()
    conn = halldb.connect(db)
    for dev, seq, etype, ts, data in halldb.events(conn):
        m.add({"dev": dev, "seq": seq, "type": etype, "ts": ts, "data": data})
    ref = m.report()
    mine = load(out, "figures.json")
    for cid, r in ref["by"]["counter"].items():
        got = mine["by"]["counter"][cid]
        for k in ("ratings", "satisfied", "satisfaction_rate", "bad", "expired", "finished", "rated_share",
                  "bad_reasons"):
            assert got[k] == r[k], (cid, k)
        assert got["avg_wait_s"] == r["avg_waited_s"] and got["avg_service_s"] == r["avg_served_s"]
    # without --config the targets are the firmware's default, and the page says so
    assert mine["targets"]["A"] == {"target_s": 900, "from_config": False}
    assert "default, 15 min" in open(os.path.join(out, "index.html"), encoding="utf-8").read()


def test_gbt39734_export_has_one_complete_record_per_rating(tmp_path, small):
    db, times = small
    code, out = report(tmp_path, db, "--config", kiosk_config(tmp_path))
    assert code == 0
    doc = load(out, "gbt39734_records.json")
    recs = doc["records"]
    assert len(recs) == 10 and doc["standard"] == "GB/T 39734-2020"
    assert len({r["rating_id"] for r in recs}) == 10 and len({r["record_id"] for r in recs}) == 10
    for r in recs:
        assert set(r) == set(doc["fields"])
        assert all(v not in (None, "") for v in r.values()), r
    by_id = {r["record_id"]: r for r in recs}
    r = by_id["A005-20261204-hall01.kiosk"]
    issued, done, rated = times["A005"]
    iso = lambda ts: datetime.datetime.fromtimestamp(ts, TZ).isoformat()    # noqa: E731
    assert (r["apply_time"], r["done_time"], r["rating_time"]) == (iso(issued), iso(done), iso(rated))
    assert (r["service_code"], r["staff_id"], r["level"], r["reason_code"], r["rating_device"]) == (
        "A", "S001", 2, "wait", "hall01/ctr1")
    assert r["service_name"] == "社保业务 Social Insurance" and "等待太久" in r["reason"]
    assert "B006-20261204-hall01.kiosk" not in by_id      # expired: not a rating
    rows = read_csv(out, "gbt39734_records.csv")
    assert rows[0][0] == "办件编号 record_id" and len(rows) == 11
    assert all(all(c != "" for c in row) for row in rows[1:])
    assert len(read_csv(out, "ratings.csv")) == 11
    bad = read_csv(out, "bad_ratings.csv")
    assert len(bad) == 4 and sorted(x[0] for x in bad[1:]) == [
        "A005-20261204-hall01.kiosk", "B003-20261204-hall01.kiosk", "B004-20261204-hall01.kiosk"]


def test_suspect_rows_and_gaps_are_marked_and_never_counted(tmp_path, small):
    db, _ = small
    conn = halldb.connect(db)
    # a forged rating (bad mac) of counter 2 and an unsigned event: kept apart by the collector
    forged = b'{"data":{"score":1},"dev":"ctr2","seq":99,"type":"rating.submitted"}'
    conn.execute("INSERT INTO suspect (device, seq, type, verdict, reason, topic, raw, received) "
                 "VALUES ('hall01/ctr2', 99, 'rating.submitted', 'forged', 'mac mismatch', 't', ?, 0)", (forged,))
    conn.execute("INSERT INTO suspect (device, seq, type, verdict, reason, topic, raw, received) "
                 "VALUES ('hall01/ctr2', 100, 'rating.submitted', 'unsigned', 'no key', 't2', ?, 0)", (forged,))
    # counter 1 lost its rating seq 3 (a 4): an unannounced gap
    conn.execute("DELETE FROM events WHERE device = 'hall01/ctr1' AND seq = 3")
    conn.close()
    # the kiosk (seq 1..36) dropped 37-38 (heartbeats) and said so: not a gap
    k = HallDB(db)
    assert k.seq["kiosk"] == 36
    k.seq["kiosk"] = 38
    k.emit("kiosk", "outbox.dropped", T0 + 9000, {"ranges": [[37, 38]]})
    k.db.close()
    code, out = report(tmp_path, db)
    assert code == 0
    f = load(out, "figures.json")
    devs = {d["device"]: d for d in f["devices"]}
    assert devs["hall01/ctr1"]["gaps"] == [[3, 3]] and not devs["hall01/ctr1"]["clean"]
    assert devs["hall01/ctr2"]["suspect"] == {"forged": 1, "unsigned": 1} and not devs["hall01/ctr2"]["clean"]
    assert devs["hall01/kiosk"]["dropped"] == [[37, 38]] and devs["hall01/kiosk"]["gaps"] == []
    assert devs["hall01/kiosk"]["clean"]
    # the forged score 1 is not counted; counter 1 has one rating less (the lost 4)
    assert f["by"]["counter"]["2"]["s1"] == 2 and f["by"]["counter"]["2"]["ratings"] == 5
    assert f["by"]["counter"]["1"]["ratings"] == 4 and f["by"]["counter"]["1"]["satisfaction_rate"] == 0.75
    html = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    warn = html[html.index("class=warn"):html.index("</div>", html.index("class=warn"))]
    assert "hall01/ctr1" in warn and "missing seq 3" in warn
    assert "hall01/ctr2" in warn and "forged 1" in warn and "unsigned 1" in warn and "未计入 not counted" in warn
    assert "hall01/kiosk" not in warn
    rows = read_csv(out, "ratings.csv")
    gaps_col = rows[0].index("设备有缺号 device_gaps")
    assert {r[gaps_col] for r in rows[1:] if "ctr1" in r[1]} == {"True"}


def test_a_rating_whose_finish_was_lost_is_kept_flagged_not_invented(tmp_path, small):
    db, times = small
    conn = halldb.connect(db)
    seq = conn.execute("SELECT seq FROM events WHERE device = 'hall01/kiosk' AND type = 'service.finished' "
                       "AND data LIKE '%\"B002\"%'").fetchone()[0]
    conn.execute("DELETE FROM events WHERE device = 'hall01/kiosk' AND seq = ?", (seq,))
    conn.close()
    code, out = report(tmp_path, db)
    assert code == 0
    f = load(out, "figures.json")
    assert f["incomplete_ratings"] == 1 and f["total"]["ratings"] == 10
    assert {d["device"]: d["gaps"] for d in f["devices"]}["hall01/kiosk"] == [[seq, seq]]
    r = {x["record_id"]: x for x in load(out, "gbt39734_records.json")["records"]}["B002-20261204-hall01.kiosk"]
    assert r["done_time"] is None and r["apply_time"] == datetime.datetime.fromtimestamp(times["B002"][0], TZ).isoformat()
    html = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    assert "ratings whose finished service or ticket is not in the database" in html and "hall01/ctr2#2" in html


def test_followup_deadline_counts_working_days_across_a_weekend():
    assert add_working_days("2026-12-04", 3) == "2026-12-09"     # Fri -> Wed
    assert add_working_days("2026-12-05", 3) == "2026-12-09"     # Sat -> Wed
    assert add_working_days("2026-12-06", 1) == "2026-12-07"     # Sun -> Mon
    assert add_working_days("2026-12-03", 1) == "2026-12-04"     # Thu -> Fri
    assert add_working_days("2026-12-04", 1) == "2026-12-07"     # Fri -> Mon
    assert add_working_days("2026-12-04", 0) == "2026-12-04"


def test_followup_is_recorded_listed_and_judged_against_the_deadline(tmp_path, small, capsys):
    db, _ = small
    code, out = report(tmp_path, db, "--followup-days", "2")
    bad = {b["record_id"]: b for b in load(out, "figures.json")["bad_ratings"]}
    assert {b["deadline"] for b in bad.values()} == {"2026-12-08"}      # Fri + 2 working days = Tue
    assert {b["followup_state"] for b in bad.values()} == {"open"}       # as of Mon 12-07
    capsys.readouterr()
    assert main(["followup", "--db", db, "--list", "--today", "2026-12-09", "--followup-days", "2"]) == 0
    text = capsys.readouterr().out
    assert text.count("OVERDUE") == 3 and "3 bad rating(s) without a follow-up" in text
    rid = "B003-20261204-hall01.kiosk"
    assert main(["followup", "--db", db, "--record", rid, "--note", "电话回访 called back", "--done", "2026-12-07"]) == 0
    assert main(["followup", "--db", db, "--record", "A005-20261204-hall01.kiosk", "--note", "late",
                 "--done", "2026-12-10"]) == 0
    assert main(["followup", "--db", db, "--record", rid, "--note", "second call", "--done", "2026-12-08"]) == 0
    assert main(["followup", "--db", db, "--record", "A001-20261204-hall01.kiosk", "--note", "x"]) == 1  # not bad
    assert main(["followup", "--db", db, "--record", rid]) == 2                                          # no note
    assert main(["followup", "--db", db, "--record", rid, "--note", "x", "--done", "2026-12-01"]) == 2  # before it
    capsys.readouterr()
    assert main(["followup", "--db", db, "--list", "--today", "2026-12-07"]) == 0
    text = capsys.readouterr().out
    assert "1 bad rating(s) without a follow-up" in text and "B004-20261204-hall01.kiosk" in text
    conn = sqlite3.connect(db)
    note, done = conn.execute("SELECT note, done_on FROM followups WHERE record_id = ?", (rid,)).fetchone()
    assert note == "2026-12-07: 电话回访 called back\n2026-12-08: second call" and done == "2026-12-08"
    code, out = report(tmp_path, db, "--followup-days", "2")
    states = {b["record_id"]: b["followup_state"] for b in load(out, "figures.json")["bad_ratings"]}
    assert states == {rid: "done", "A005-20261204-hall01.kiosk": "done late", "B004-20261204-hall01.kiosk": "open"}
    assert "逾期回访 done late" in open(os.path.join(out, "index.html"), encoding="utf-8").read()


def test_a_single_all_device_hall(tmp_path):
    """Role `all`: one device issues, calls, finishes and rates; ratings name no kiosk."""
    path = str(tmp_path / "all.sqlite")
    h, times = small_hall(path, {"kiosk": None})
    h.h.db.close()
    cfg = str(tmp_path / "all.json")
    shutil.copy(EXAMPLE, cfg)
    code, out = report(tmp_path, path, "--config", cfg)
    assert code == 0
    f = load(out, "figures.json")
    assert f["total"]["satisfaction_rate"] == 0.7 and f["by"]["counter"]["1"]["satisfaction_rate"] == 0.8
    assert [d["device"] for d in f["devices"]] == ["hall01/term01"] and f["devices"][0]["clean"]
    recs = load(out, "gbt39734_records.json")["records"]
    assert len(recs) == 10 and all(all(v not in (None, "") for v in r.values()) for r in recs)
    r = {x["record_id"]: x for x in recs}["B003-20261204-hall01.term01"]
    assert r["rating_device"] == "hall01/term01"
    assert r["done_time"] == datetime.datetime.fromtimestamp(times["B003"][1], TZ).isoformat()
    assert f["incomplete_ratings"] == 0


def test_days_filter_and_exit_statuses(tmp_path, small, capsys):
    db, _ = small
    h = Hall(HallDB(db))
    h.req = {"1": 100}      # a counter's request numbers only grow; ticket numbers start again
    t = h.issue(T0 + 86400 * 3, "A", day="2026-12-07")     # Monday: one more 5 on counter 1
    fin = h.finish(T0 + 86400 * 3 + 400, t, "1", "S001", 100, 300, day="2026-12-07")
    h.rate(T0 + 86400 * 3 + 402, t, "1", "S001", 5, fin=fin, day="2026-12-07")
    h.h.db.close()
    code, out = report(tmp_path, db, "--from", "2026-12-07", "--to", "2026-12-07")
    f = load(out, "figures.json")
    assert code == 0 and f["total"]["ratings"] == 1 and list(f["by"]["day"]) == ["2026-12-07"]
    code, out = report(tmp_path, db)
    assert load(out, "figures.json")["total"]["ratings"] == 11
    assert report(tmp_path, db, "--from", "2027-01-01")[0] == 1             # nothing in those days
    assert report(tmp_path, str(tmp_path / "none.sqlite"))[0] == 1           # no database (and none made)
    assert not os.path.exists(str(tmp_path / "none.sqlite"))
    empty = str(tmp_path / "empty.sqlite")
    halldb.connect(empty).close()
    assert report(tmp_path, empty)[0] == 1
    junk = str(tmp_path / "junk.sqlite")
    with open(junk, "w") as f:
        f.write("not a database at all" * 100)
    assert report(tmp_path, junk)[0] == 1
    assert report(tmp_path, db, "--from", "2026-12-32")[0] == 2
    assert report(tmp_path, db, "--from", "2026-12-08", "--to", "2026-12-07")[0] == 2
    bad_cfg = str(tmp_path / "bad.json")
    with open(bad_cfg, "w") as f:
        json.dump({"version": 1}, f)
    assert report(tmp_path, db, "--config", bad_cfg)[0] == 2
    with pytest.raises(SystemExit) as e:
        main(["report", "--db", db])          # no --out
    assert e.value.code == 2


# --- a real simulated hall --------------------------------------------------------------

def test_a_simulated_hall_reports_the_ratings_it_was_given(tmp_path):
    """Kiosk + 2 counters over mosquitto; their events verified (tools.verify) and stored as a
    collector does; the report's 满意率 per counter is the ratings pressed, every record joined."""
    if not (shutil.which("mosquitto") and os.path.exists(os.path.join(ROOT, ".venv", "bin", "micropython"))):
        pytest.skip("needs mosquitto and the MicroPython unix port")
    from tests.broker import Broker, Subscriber
    from tests.e2e.test_hall import Hall as SimHall, settle
    from tools.verify import Verifier, load_keystore
    broker = Broker().start()
    sub = hall = None
    try:
        sub = Subscriber(broker.port, "qterm/#")
        hall = SimHall(broker, counters=2, screen=False)
        for i in range(6):
            assert hall.kiosk.press("ticket:" + "AB"[i % 2])["ok"]
        pressed = {"1": [5, 2, 4], "2": [1, 3, 5]}
        for k in range(3):
            for cid in "12":
                sim = hall.counter(cid)
                assert sim.press("next")["ok"] and sim.press("finish")["ok"]
                score = pressed[cid][k]
                assert sim.press("rate%d" % score)["ok"]
                if score <= 2:
                    time.sleep(0.65)        # the pad takes a reason after its guard time
                    assert sim.press("rate4")["event"] == "rating.submitted"    # 2nd reason: "wait"
        settle(hall, sub)
        v = Verifier(load_keystore(hall.keys))
        path = str(tmp_path / "sim.sqlite")
        db = halldb.connect(path)
        for line in sub.lines():
            topic, _, payload = line.partition(" ")
            verdict, env = v.feed(topic, payload.encode())
            if verdict == "ok":
                site = topic.split("/")[2]
                db.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)", (
                    site + "/" + env["dev"], env["seq"], env["type"], env["ts"], env["boot"], env["prev"],
                    chain_hash(payload.encode()), canonical.dumps(env["data"]).decode(), payload.encode(), time.time()))
        assert v.clean
        db.close()
        cfg = str(tmp_path / "kiosk.json")
        with open(cfg, "w", encoding="utf-8") as f:
            json.dump(hall.cfgs["kiosk"], f, ensure_ascii=False)
    finally:
        if hall:
            hall.cleanup()
        if sub:
            sub.stop()
        broker.stop()
    code, out = report(tmp_path, path, "--config", cfg)
    assert code == 0
    f = load(out, "figures.json")
    for cid, scores in pressed.items():
        c = f["by"]["counter"][cid]
        assert c["ratings"] == 3 and c["finished"] == 3
        assert c["satisfaction_rate"] == round(sum(s >= 3 for s in scores) / 3, 4)
    assert f["total"]["bad_reasons"] == {"wait": 2}
    assert all(d["clean"] for d in f["devices"]) and f["incomplete_ratings"] == 0
    recs = load(out, "gbt39734_records.json")["records"]
    assert len(recs) == 6 and all(all(v not in (None, "") for v in r.values()) for r in recs)
    assert all(r["record_id"].endswith("-hall01.kiosk") and r["rating_device"].startswith("hall01/ctr")
               for r in recs)


def test_the_report_page_opens_in_chromium_and_shows_its_charts(tmp_path, small):
    """As the hall manager opens index.html: the charts are drawn (SVG bars with their labels),
    the figures table is there, nothing failed to load or threw; a screenshot is kept."""
    from tests.browser import Browser, need_chromium
    need_chromium()
    db, _times = small
    code, out = report(tmp_path, db, "--config", kiosk_config(tmp_path))
    assert code == 0
    shot = os.path.join(os.environ.get("QTERM_ARTIFACTS") or os.path.join(ROOT, "tests", "artifacts"),
                        "report.png")
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    with Browser(width=1300, height=1600) as b:
        b.open("file://" + os.path.join(out, "index.html"))
        charts = b.eval("document.querySelectorAll('svg').length")
        bars = b.eval("document.querySelectorAll('svg rect').length")
        text = b.eval("document.body.innerText")
        b.screenshot(shot)
        assert not b.events("Runtime.exceptionThrown")
    assert charts >= 5 and bars >= 10, (charts, bars)
    assert "满意率" in text and "70.0%" in text and "社保业务" in text, text[:500]
    assert os.path.getsize(shot) > 10000
