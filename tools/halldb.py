"""The hall database (SQLite): what `qterm collect` keeps and `qterm report` reads.

One file per hall; several collectors may write it at once (WAL, busy timeout, and every
insert keyed so that a second copy of an event is a no-op). Tables:

events     one row per *verified* event (mac checked with its device's key): device
           ("<site>/<device>"), seq, type, ts (device clock, epoch s), boot, prev, hash
           (chain hash of the canonical payload: the next event's prev), data (JSON text),
           raw (payload bytes as received), received (collector clock). PRIMARY KEY
           (device, seq): stored once; figures are computed from this table only.
suspect    everything kept apart, never counted: verdict 'forged' (bad mac, or a seq already
           held by a different verified event), 'unsigned' (no key for the device),
           'malformed' (not an envelope), with the reason, topic and raw bytes (the first
           RAW_KEEP bytes of a bigger payload). Kept up to the collector's --suspect-keep rows;
suspect_over  what came after that, counted per device and verdict only (a flood of junk
           cannot fill the disk), never lost from the figures' marks.
device_stats  per device: duplicates (identical re-sends, e.g. QoS 1 redelivery),
           chain_breaks (prev not the hash of the stored event before it), last_received.
status     the latest retained status and state payload per device (device health).
followups  a bad rating's follow-up as recorded by the hall (record id = 办件编号).
"""
import datetime
import hashlib
import json
import sqlite3
import time
import urllib.parse

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    ts INTEGER NOT NULL,
    boot INTEGER NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL,
    data TEXT NOT NULL,
    raw BLOB NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, ts);
CREATE TABLE IF NOT EXISTS suspect (
    id INTEGER PRIMARY KEY,
    device TEXT,
    seq INTEGER,
    type TEXT,
    verdict TEXT NOT NULL,
    reason TEXT,
    topic TEXT,
    raw BLOB NOT NULL,
    received REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS suspect_once ON suspect (topic, raw);
CREATE TABLE IF NOT EXISTS suspect_over (
    device TEXT NOT NULL,
    verdict TEXT NOT NULL,
    n INTEGER NOT NULL,
    first REAL NOT NULL,
    last REAL NOT NULL,
    PRIMARY KEY (device, verdict)
);
CREATE TABLE IF NOT EXISTS device_stats (
    device TEXT PRIMARY KEY,
    duplicates INTEGER NOT NULL DEFAULT 0,
    chain_breaks INTEGER NOT NULL DEFAULT 0,
    last_received REAL
);
CREATE TABLE IF NOT EXISTS status (
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (device, kind)
);
CREATE TABLE IF NOT EXISTS followups (
    record_id TEXT PRIMARY KEY,
    done_on TEXT NOT NULL,
    note TEXT NOT NULL,
    recorded REAL NOT NULL
);
"""


def connect(path, timeout=30.0):
    """Open (creating if needed) the hall database at path. Commits are durable when they
    return (synchronous=FULL): a collector acknowledges an event to the broker only then."""
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=%d" % int(timeout * 1000))
    db.executescript(SCHEMA)
    return db


def connect_ro(path, timeout=5.0):
    """A read-only connection (the report, the live page): it can never change the hall's
    record nor create a database that is missing, and in WAL mode it does not block the
    collector's commits."""
    uri = "file:%s?mode=ro" % urllib.parse.quote(str(path))
    db = sqlite3.connect(uri, uri=True, timeout=timeout)
    db.execute("PRAGMA busy_timeout=%d" % int(timeout * 1000))
    return db


RAW_KEEP = 4096    # a terminal's event is at most ~1.5 KB: enough of any payload to inspect it
TEXT_KEEP = 256    # of a suspect's device, type, topic and reason (a real topic is < 100)
STATUS_KEEP = 16384   # a retained status/state bigger than this is no terminal's (~1 KB)


def cut(value, keep):
    """value (str or bytes) as a suspect row keeps it: whole up to keep, else its first keep
    characters/bytes and a tail with its length and digest - two different long values stay
    two rows, an identical re-send stays one (suspect rows are unique by topic and raw)."""
    if value is None or len(value) <= keep:
        return value
    whole = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    tail = " ...[%d in all, sha256 %s]" % (len(value), hashlib.sha256(whole).hexdigest()[:16])
    return value[:keep] + (tail if isinstance(value, str) else tail.encode())


def suspect_counts(db):
    """{(device or None, verdict): messages kept apart}: the rows kept and those only counted
    after the cap (a database from before suspect_over has rows only)."""
    out = {}
    for dev, verdict, n in db.execute("SELECT device, verdict, COUNT(*) FROM suspect GROUP BY device, verdict"):
        out[(dev, verdict)] = n
    try:
        over = db.execute("SELECT device, verdict, n FROM suspect_over").fetchall()
    except sqlite3.OperationalError:    # no such table: written by an older collector
        over = []
    for dev, verdict, n in over:
        key = (dev or None, verdict)
        out[key] = out.get(key, 0) + n
    return out


def is_day(d):
    """A real business day "YYYY-MM-DD": any other `day` in an event or a retained state (a
    device bug, any broker client's word) is ignored rather than sorted or parsed."""
    if not isinstance(d, str) or len(d) != 10:
        return False
    try:
        return datetime.date.fromisoformat(d).isoformat() == d
    except ValueError:
        return False


def device_name(site, dev):
    return dev if site is None else "%s/%s" % (site, dev)


def events(db, types=None, since_ts=None, until_ts=None):
    """Verified events as (device, seq, type, ts, data dict), in (device, seq) order."""
    sql = "SELECT device, seq, type, ts, data FROM events"
    where, args = [], []
    if types:
        where.append("type IN (%s)" % ",".join("?" * len(types)))
        args.extend(types)
    if since_ts is not None:
        where.append("ts >= ?")
        args.append(since_ts)
    if until_ts is not None:
        where.append("ts < ?")
        args.append(until_ts)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY device, seq"
    for device, seq, etype, ts, data in db.execute(sql, args):
        yield device, seq, etype, ts, json.loads(data)


def now():
    return time.time()
