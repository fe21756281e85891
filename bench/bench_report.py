"""Time `qterm report` over a synthetic hall database of N events (default 100 000).

    python3 bench/bench_report.py [--events N] [--counters K] [--keep DIR]

The database is what a collector stores for a hall of one kiosk and K counters: per citizen
ticket.issued, ticket.called, service.finished on the kiosk and a rating.submitted (or, one
in ten, rating.expired) on the counter, bound by kiosk, req and fin_seq as the firmware binds
it; one in twenty calls is a no-show (ticket.skipped). Spread over business days of 400
citizens. Prints the time to build the database (not part of the figure) and the time of
the report: reading, joining, figures, and writing index.html, the CSVs and the JSON.
"""
import argparse
import datetime
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from firmware import canonical  # noqa: E402
from firmware.envelope import chain_hash  # noqa: E402
from tools import halldb  # noqa: E402
from tools.__main__ import main  # noqa: E402

T0 = int(datetime.datetime(2026, 11, 2, 8, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=8))).timestamp())
PER_DAY = 400


class Gen:
    def __init__(self, counters):
        self.rows = []
        self.seq = {}
        self.req = {}
        self.counters = counters

    def emit(self, dev, etype, ts, data):
        seq = self.seq[dev] = self.seq.get(dev, 0) + 1
        env = {"v": 1, "dev": dev, "boot": 1, "seq": seq, "ts": ts, "type": etype, "data": data,
               "prev": "0" * 32, "mac": "0" * 32}
        raw = canonical.dumps(env)
        self.rows.append(("hall01/" + dev, seq, etype, ts, 1, env["prev"], chain_hash(raw),
                          canonical.dumps(data).decode(), raw, 0.0))
        return seq

    def citizen(self, i, rnd):
        day_i, k = divmod(i, PER_DAY)
        day = (datetime.date(2026, 11, 2) + datetime.timedelta(days=day_i)).isoformat()
        svc = "AB"[k % 2]
        n = k // 2 + 1
        t = "%s%03d" % (svc, n)
        cid = str(k % self.counters + 1)
        staff = "S%03d" % int(cid)
        base = T0 + day_i * 86400 + k * 60
        self.emit("kiosk", "ticket.issued", base, {"ticket": t, "n": n, "service": svc, "kind": "normal",
                                                   "ahead": 3, "wait_min": 5, "day": day})
        waited = rnd.randrange(0, 2400)
        req = self.req[cid] = self.req.get(cid, 0) + 1
        self.emit("kiosk", "ticket.called", base + waited, {
            "ticket": t, "n": n, "service": svc, "origin": svc, "kind": "normal", "counter": cid, "staff": staff,
            "waited_s": waited, "day": day, "req": req})
        if rnd.random() < 0.05:
            self.req[cid] += 1
            self.emit("kiosk", "ticket.skipped", base + waited + 120, {
                "ticket": t, "n": n, "service": svc, "counter": cid, "staff": staff, "day": day, "auto": False,
                "req": self.req[cid]})
            return
        served = rnd.randrange(60, 900)
        req = self.req[cid] = self.req[cid] + 1
        fin = self.emit("kiosk", "service.finished", base + waited + served, {
            "ticket": t, "service": svc, "counter": cid, "staff": staff, "kind": "normal", "waited_s": waited,
            "served_s": served, "day": day, "req": req})
        d = {"ticket": t, "service": svc, "counter": cid, "staff": staff, "day": day, "kiosk": "kiosk",
             "req": req, "fin_seq": fin}
        if rnd.random() < 0.1:
            self.emit("ctr" + cid, "rating.expired", base + waited + served + 30, d)
            return
        score = rnd.choice((5, 5, 5, 4, 4, 3, 2, 1))
        d.update(score=score, reason=rnd.choice(("wait", "attitude", "slow", "none")) if score <= 2 else None,
                 followup=score <= 2, ms=3000)
        self.emit("ctr" + cid, "rating.submitted", base + waited + served + 5, d)


def build_db(path, events, counters):
    g = Gen(counters)
    rnd = random.Random(1)
    i = 0
    while len(g.rows) < events:
        g.citizen(i, rnd)
        i += 1
    db = halldb.connect(path)
    db.execute("BEGIN")
    db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)", g.rows[:events])
    db.execute("COMMIT")
    db.close()
    return i


def run(events, counters, keep=None):
    d = keep or tempfile.mkdtemp(prefix="qterm-bench-report-")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "hall.sqlite")
    if os.path.exists(path):
        os.remove(path)
    t = time.perf_counter()
    citizens = build_db(path, events, counters)
    t_db = time.perf_counter() - t
    out = os.path.join(d, "out")
    t, c = time.perf_counter(), time.process_time()
    code = main(["report", "--db", path, "--out", out, "--today", "2026-12-31"])
    t_rep, c_rep = time.perf_counter() - t, time.process_time() - c
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print("events %d (%d citizens, 1 kiosk + %d counters): database built in %.1f s" % (
        events, citizens, counters, t_db))
    print("report: %.2f s wall, %.2f s CPU (exit %d; %.0f events/s; %d files, %.1f MB written to %s)" % (
        t_rep, c_rep, code, events / t_rep, len(os.listdir(out)), size / 1e6, out))
    if keep is None:
        shutil.rmtree(d, ignore_errors=True)
    return t_rep


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--counters", type=int, default=6)
    ap.add_argument("--keep", metavar="DIR", help="keep the database and the report in DIR")
    a = ap.parse_args()
    run(a.events, a.counters, a.keep)
