"""Record the follow-up of a bad rating (差评回访), or list those still open.

    tools/qterm followup --db hall.sqlite --record A003-20261203-hall01.kiosk --note "called back" [--done DAY]
    tools/qterm followup --db hall.sqlite --list [--followup-days N] [--today DAY]

The record is the 办件编号 of the report's 差评 list (ticket-day-issuing device). --done is
the day it was followed up (default today). Recording again for the same record adds the
note to the earlier ones and moves the day. --list shows the bad ratings without a recorded
follow-up, the deadline (N working days after the rating, Saturdays and Sundays skipped) and
whether it has passed. Exit 0 done, 1 unknown record or unreadable database, 2 usage.
"""
import datetime

from tools import halldb
from tools.device import ToolError
from tools.report import HallInfo, build, day_arg, open_db


def add_arguments(p):
    p.add_argument("--db", required=True, metavar="FILE", help="the hall database")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--record", metavar="ID", help="办件编号 of the bad rating followed up")
    what.add_argument("--list", action="store_true", help="list the bad ratings with no follow-up recorded")
    p.add_argument("--note", metavar="TEXT", help="what was done (required with --record)")
    p.add_argument("--done", metavar="DAY", help="day of the follow-up, YYYY-MM-DD (default today)")
    p.add_argument("--followup-days", type=int, default=3, metavar="N", help="working days allowed (default 3)")
    p.add_argument("--today", metavar="DAY", help="judge deadlines as of DAY (default today)")
    p.add_argument("--config", metavar="FILE", help="the kiosk's config (time zone, names)")


def bad_ratings(db, args):
    today = day_arg(args.today) if args.today else None
    return build(db, HallInfo.load(args.config), followup_days=args.followup_days, today=today)["bad"]


def record(db, args):
    if not args.note or not args.note.strip():
        raise ToolError("--record needs --note TEXT: what was done", 2)
    done = day_arg(args.done) if args.done else datetime.date.today().isoformat()
    known = [b for b in bad_ratings(db, args) if b["record_id"] == args.record]
    if not known:
        raise ToolError("%s is not a bad rating in %s (see --list)" % (args.record, args.db), 1)
    b = known[0]
    if done < b["day"]:
        raise ToolError("--done %s is before the rating (%s)" % (done, b["day"]), 2)
    # a second follow-up of one record keeps the first note: the history is the record
    db.execute("INSERT INTO followups (record_id, done_on, note, recorded) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (record_id) DO UPDATE SET done_on = excluded.done_on, "
               "note = followups.note || char(10) || excluded.note, recorded = excluded.recorded",
               (args.record, done, "%s: %s" % (done, args.note.strip()), halldb.now()))
    late = " (after the deadline %s)" % b["deadline"] if done > b["deadline"] else ""
    print("%s: follow-up recorded on %s%s" % (args.record, done, late))
    return 0


def list_open(db, args):
    open_ = [b for b in bad_ratings(db, args) if b["followup_state"] in ("open", "overdue")]
    for b in open_:
        print("%s  %s  counter %s  staff %s  score %d  reason %s  due %s%s" % (
            b["record_id"], b["rating_time"][:16].replace("T", " "), b["counter"], b["staff_id"], b["level"],
            b["reason_code"], b["deadline"], "  OVERDUE" if b["followup_state"] == "overdue" else ""))
    print("%d bad rating(s) without a follow-up" % len(open_))
    return 0


def run(args):
    if args.list and (args.note or args.done):
        raise ToolError("--note and --done go with --record", 2)
    if args.done:
        day_arg(args.done)
    db = open_db(args.db, write=bool(args.record))
    try:
        return record(db, args) if args.record else list_open(db, args)
    finally:
        db.close()
