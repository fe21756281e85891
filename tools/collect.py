"""Keep a hall's events in its database: each verified event stored once, acknowledged only once committed.

    tools/qterm collect --broker 127.0.0.1:1883 --db hall.sqlite [--keystore FILE] [--site SITE|+]
    tools/qterm collect --broker ... --db hall.sqlite --share G --client-id collector-a
    tools/qterm collect --broker broker.hall:8883 --cafile ca.pem [--server-name NAME] [--cert C --key K] ...
    tools/qterm collect --db hall.sqlite --gaps [--json]

A long-running subscriber with its own MQTT 3.1.1 client on a *persistent* session (fixed
client id, clean session off): while the collector is away the broker keeps its QoS 1 events
(mosquitto: `persistence true` to survive a broker restart, and `max_queued_messages` large
enough for the longest absence - its default of 1000 drops the rest). Every event on
qterm/v1/<site>/+/evt/# is checked (envelope shape, topic, the device's mac with its key
from the key store: "<site>/<device>" first, then "<device>") and committed to the hall
database (tools/halldb.py) *before* its PUBACK goes back: an event the broker may forget is
on disk, through a SIGKILL of the collector or a power cut. Received events are committed in
batches (one transaction for what arrived together, then the PUBACKs of that batch).

  events        verified events, one row per (device, seq): an identical re-send counts as a
                duplicate; a different event claiming a stored seq goes to suspect as forged
  suspect       unsigned (no key for the device), forged (bad mac, wrong topic, seq taken),
                malformed (not an envelope): kept for inspection, never counted in figures
  device_stats  duplicates, chain breaks (prev not the hash of the stored seq - 1, except
                right after a range the device announced dropped with outbox.dropped)
  status        the latest retained status and state per device (device health)

With --share GROUP the event subscription is $share/GROUP/qterm/v1/...: the broker hands
each event to one collector of the group (mosquitto, EMQX, HiveMQ ...), all writing one
database. Give each collector of a group its own fixed --client-id (two with one id throw
each other off the broker). mosquitto keeps handing a stopped member its share (queued in its
session): restart it with the same id. Status and state are subscribed unshared by every collector,
because shared subscriptions get no retained messages.

--gaps lists per device the seq numbers missing between the first and last stored, apart
from those the device announced dropped (outbox.dropped), without a broker; exit 1 when
any is missing.
One line of totals on stderr per minute and at exit. Ctrl-C or SIGTERM: the batch in hand is
committed and acknowledged, then exit 0. Exit status: 0 ok, 1 broker unreachable at start or
database error, 2 usage.
"""
import json
import os
import random
import signal
import sqlite3
import ssl
import sys
import time

from firmware import canonical
from firmware.envelope import ZERO_PREV, chain_hash
from firmware.envelope_check import BadMac, parse, verify
from tools import halldb
from tools.device import ToolError
from tools.monitor import parse_broker
from tools.mqtt_session import MQTTError, Session, tls_context
from tools.verify import UsageError, _merged, _split, default_keys

SUMMARY_EVERY_S = 60
SUSPECT_KEEP = 50000      # suspect rows kept with their bytes (at most ~4 KiB each: ~200 MB)
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0


def add_arguments(p):
    p.add_argument("--broker", metavar="HOST:PORT", help="MQTT broker, e.g. 127.0.0.1:1883")
    p.add_argument("--db", required=True, metavar="FILE", help="the hall database (SQLite), created if missing")
    p.add_argument("--keystore", metavar="FILE",
                   help="device keys (default: the provision key store, $QTERM_KEYSTORE or ~/.qterm/keystore.json)")
    p.add_argument("--site", default="+", help="site whose devices to collect (default + : every site)")
    p.add_argument("--client-id", metavar="ID",
                   help="fixed MQTT client id of this collector's session (default qterm-collector; "
                        "required with --share: one per member of the group)")
    p.add_argument("--share", metavar="GROUP", help="share the events with the other collectors of GROUP ($share)")
    p.add_argument("--user", help="broker user name")
    p.add_argument("--password", help="broker password")
    p.add_argument("--cafile", metavar="FILE",
                   help="connect with TLS, the broker's certificate checked against this CA (PEM or DER)")
    p.add_argument("--server-name", metavar="NAME",
                   help="with --cafile: the name the broker's certificate must carry (default: the broker's host)")
    p.add_argument("--cert", metavar="FILE", help="with --cafile: client certificate (PEM) for a broker that asks for one")
    p.add_argument("--key", metavar="FILE", help="with --cert: its private key (PEM)")
    p.add_argument("--suspect-keep", type=int, default=SUSPECT_KEEP, metavar="N",
                   help="suspect messages kept with their bytes (default %d); later ones are counted only" % SUSPECT_KEEP)
    p.add_argument("--http", metavar="HOST:PORT", help="also serve the live hall page, e.g. 127.0.0.1:8080")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--gaps", action="store_true",
                   help="list missing seq numbers per device and exit, 1 if any (no broker)")
    p.add_argument("--json", action="store_true", help="with --gaps: JSON output")


# --- what a message is --------------------------------------------------------------------

def topic_parts(topic):
    """(kind, site, device, event type) of a qterm topic; kind "evt", "status", "state" or None."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != "qterm" or parts[1] != "v1":
        return None, None, None, None
    kind = parts[4]
    if kind == "evt" and len(parts) > 5:
        return "evt", parts[2], parts[3], "/".join(parts[5:])
    if kind in ("status", "state") and len(parts) == 5:
        return kind, parts[2], parts[3], None
    return None, parts[2], parts[3], None


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _int64(v):
    """An int SQLite can store (a bigger one makes sqlite3 raise OverflowError)."""
    return _int(v) and -(1 << 63) <= v < (1 << 63)


def _has_float(obj):
    """Whether a value from json.loads holds a float anywhere (a plain loop: it runs per event)."""
    t = type(obj)
    if t is float:
        return True
    if t is not dict and t is not list:
        return False
    for v in obj.values() if t is dict else obj:
        t = type(v)
        if t is float or ((t is dict or t is list) and _has_float(v)):
            return True
    return False


def fast_canonical(obj):
    """firmware.canonical.dumps(obj) of a value from json.loads, at C speed where that gives the
    same bytes: CPython's json writes sorted keys, plain ints and raw UTF-8 alike, and differs
    only in escapes (\\n where canonical writes \\u000a) and in accepting floats. So: floats
    refused as canonical does, and any output with a backslash made again the canonical way.
    (The firmware's pure-Python encoder was ~70 % of the collector's time per event.)"""
    if _has_float(obj):
        raise ValueError("no floats")
    fast = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return canonical.dumps(obj) if b"\\" in fast else fast


class Keys:
    """Device keys from the key store; read again when the file changes (a device provisioned
    while the collector runs is verified from its next event on)."""

    def __init__(self, path=None, keys=None):
        self.path = path
        self.keys = dict(keys or {})
        self._mtime = self._stat()

    def _stat(self):
        try:
            return os.stat(self.path).st_mtime_ns if self.path else None
        except OSError:
            return None

    def _find(self, site, dev):
        return (site is not None and self.keys.get(site + "/" + dev)) or self.keys.get(dev)

    def lookup(self, site, dev):
        key = self._find(site, dev)
        if key is None and self.path and self._stat() != self._mtime:
            try:
                self.keys = default_keys(self.path)[1]
                self._mtime = self._stat()
            except UsageError as e:
                print("collect: key store not reloaded: %s" % e, file=sys.stderr)
            key = self._find(site, dev)
        return key


class Recorder:
    """Verifies messages and writes them to the hall database, a batch per transaction."""

    def __init__(self, db, keys, suspect_keep=SUSPECT_KEEP):
        self.db = db
        self.keys = keys if isinstance(keys, Keys) else Keys(keys=keys)
        self.suspect_keep = suspect_keep
        self._suspect_rows = 0      # rows kept in suspect, read at each batch (other collectors add too)
        self._said_full = False
        self.counts = dict.fromkeys(("stored", "duplicates", "forged", "unsigned", "malformed",
                                     "chain_breaks", "status"), 0)
        self._seen = set()          # devices with an event stored in the batch at hand

    def batch(self, messages, now=None):
        """Record (topic, payload) pairs in one transaction; committed when this returns."""
        now = time.time() if now is None else now
        counts = dict(self.counts)
        try:
            return self._batch(messages, now, False)
        except (sqlite3.Error, MemoryError, KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            # A message the checks did not foresee must not stop the hall's record: crashing
            # here would leave it unacknowledged, the broker would send it first again after
            # every restart (a poison message). Again, each message in its own savepoint; the
            # one that fails is kept apart as malformed.
            self.counts = counts
            return self._batch(messages, now, True)

    def _batch(self, messages, now, guarded):
        self._seen = set()
        self.db.execute("BEGIN IMMEDIATE")   # the write lock first: reads below see every commit
        # max(id), not COUNT(*): a lookup, not a read of every kept row at every batch; ids
        # are handed out as max + 1, so it counts every row ever kept (all collectors' too)
        self._suspect_rows = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM suspect").fetchone()[0]
        try:
            record = self._guarded if guarded else self.record
            verdicts = [record(t, p, now) for t, p in messages]
            for device in self._seen:
                self._stat(device, None, now)
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:   # some errors (disk full) have rolled back already
                self.db.execute("ROLLBACK")
            raise
        return verdicts

    def _guarded(self, topic, payload, now):
        self.db.execute("SAVEPOINT message")
        try:
            verdict = self.record(topic, payload, now)
        except (sqlite3.Error, MemoryError):
            raise
        except Exception as e:
            self.db.execute("ROLLBACK TO message")
            self._seen.clear()
            kind, site, dev, _etype = topic_parts(topic)
            print("collect: %s: kept apart as malformed, it could not be processed: %s: %s"
                  % (topic, type(e).__name__, e), file=sys.stderr)
            verdict = self._suspect(halldb.device_name(site, dev) if dev else None, None, "malformed",
                                    "could not be processed: %s: %s" % (type(e).__name__, e),
                                    topic, bytes(payload), now)
            self.counts["malformed"] += 1
        self.db.execute("RELEASE message")
        return verdict

    def record(self, topic, payload, now):
        """One message inside the caller's transaction; its verdict ("stored", "duplicate",
        "forged", "unsigned", "malformed", "status" or "ignored")."""
        payload = bytes(payload)
        kind, site, dev, etype = topic_parts(topic)
        if kind == "evt":
            verdict = self._event(topic, site, dev, etype, payload, now)
        elif kind in ("status", "state"):
            verdict = self._status(topic, site, dev, kind, payload, now)
        else:
            return "ignored"
        self.counts[verdict if verdict != "duplicate" else "duplicates"] += 1
        return verdict

    # --- events -----------------------------------------------------------------------

    def _event(self, topic, site, dev, etype, payload, now):
        device = halldb.device_name(site, dev)
        try:
            env = parse(payload)
            full = fast_canonical(env)   # the chain hashes the canonical form (tools/verify too)
        except (ValueError, TypeError, RecursionError) as e:
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            return self._suspect(device, _loose(payload), "malformed", reason, topic, payload, now)
        if not _int(env["boot"]):
            return self._suspect(device, env, "malformed", "bad boot", topic, payload, now)
        for k in ("seq", "ts", "boot"):
            if not _int64(env[k]):
                return self._suspect(device, env, "malformed", "%s out of range" % k, topic, payload, now)
        if env["dev"] != dev:
            return self._suspect(device, env, "forged", "topic device %s but payload dev %s" % (dev, env["dev"]),
                                 topic, payload, now)
        if env["type"] != etype:
            return self._suspect(device, env, "forged", "topic type %s but payload type %s" % (etype, env["type"]),
                                 topic, payload, now)
        key = self.keys.lookup(site, dev)
        if key is None:
            return self._suspect(device, env, "unsigned", "no key for %s in the key store" % device,
                                 topic, payload, now)
        try:
            verify(env, key)
        except RecursionError:
            return self._suspect(device, env, "malformed", "nested too deeply", topic, payload, now)
        except BadMac:
            return self._suspect(device, env, "forged", "mac mismatch: altered, or not signed with %s's key" % device,
                                 topic, payload, now)
        return self._insert(device, env, chain_hash(full), topic, payload, now)

    def _insert(self, device, env, hash_, topic, payload, now):
        seq = env["seq"]
        cur = self.db.execute(
            "INSERT OR IGNORE INTO events (device, seq, type, ts, boot, prev, hash, data, raw, received) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device, seq, env["type"], env["ts"], env["boot"], env["prev"], hash_,
             fast_canonical(env["data"]).decode(), payload, now))
        if cur.rowcount == 0:
            held = self.db.execute("SELECT hash FROM events WHERE device = ? AND seq = ?", (device, seq)).fetchone()[0]
            if held == hash_:
                self._stat(device, "duplicates", now)
                return "duplicate"
            return self._suspect(device, env, "forged",
                                 "seq %d is already held by a different verified event (device state rolled back?)"
                                 % seq, topic, payload, now)
        self._seen.add(device)      # its last_received, once per batch
        self._check_links(device, seq, env["prev"], hash_, now)
        return "stored"

    def _check_links(self, device, seq, prev, hash_, now):
        """Check the links to seq - 1 and seq + 1 that are now both stored: each link is checked
        once, by whichever of its two events arrives second (order varies with shared subs)."""
        near = {s: (h, p) for s, h, p in self.db.execute(
            "SELECT seq, hash, prev FROM events WHERE device = ? AND seq IN (?, ?)", (device, seq - 1, seq + 1))}
        want = ZERO_PREV if seq == 1 else near.get(seq - 1, (None,))[0]
        if want is not None and want != prev:
            self._break(device, seq, now)
        if seq + 1 in near and near[seq + 1][1] != hash_:
            self._break(device, seq + 1, now)

    def _break(self, device, seq, now):
        """prev of seq is not the hash of seq - 1: a chain break, unless seq - 1 lies in a range
        the device announced dropped (its prev links to an event that was never sent)."""
        if any(a <= seq - 1 <= b for a, b in announced(self.db, device)):
            return
        self._stat(device, "chain_breaks", now)
        self.counts["chain_breaks"] += 1
        print("collect: %s seq %d: prev is not the hash of seq %d (chain break)" % (device, seq, seq - 1),
              file=sys.stderr)

    def _stat(self, device, column, now):
        bump = ", %s = %s + 1" % (column, column) if column else ""
        self.db.execute(
            "INSERT INTO device_stats (device, duplicates, chain_breaks, last_received) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device) DO UPDATE SET last_received = excluded.last_received" + bump,
            (device, int(column == "duplicates"), int(column == "chain_breaks"), now))

    def _suspect(self, device, env, verdict, reason, topic, payload, now):
        """Keep a message apart. Everything in the row is cut to a size (the payload to RAW_KEEP,
        names and reasons - which may quote the payload - to TEXT_KEEP), and past --suspect-keep
        rows it is only counted: a flood of junk cannot fill the disk."""
        if self._suspect_rows >= self.suspect_keep:
            # per device only for a device of the key store: junk names one row in all ('')
            self.db.execute(
                "INSERT INTO suspect_over (device, verdict, n, first, last) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (device, verdict) DO UPDATE SET n = n + 1, last = excluded.last",
                (device if device and self._known(device) else "", verdict, now, now))
            if not self._said_full:
                print("collect: %d suspect messages kept: later ones are only counted per device and "
                      "verdict (suspect_over; --suspect-keep)" % self._suspect_rows, file=sys.stderr)
                self._said_full = True
            return verdict
        if len(payload) > halldb.RAW_KEEP:
            reason = "%s (first %d of %d bytes kept)" % (reason, halldb.RAW_KEEP, len(payload))
        seq = env.get("seq") if isinstance(env, dict) else None
        etype = env.get("type") if isinstance(env, dict) else None
        text = halldb.TEXT_KEEP
        cur = self.db.execute(
            "INSERT OR IGNORE INTO suspect (device, seq, type, verdict, reason, topic, raw, received) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (halldb.cut(device, text), seq if _int64(seq) else None,
             halldb.cut(etype, text) if isinstance(etype, str) else None, verdict, halldb.cut(reason, text),
             halldb.cut(topic, text), halldb.cut(payload, halldb.RAW_KEEP), now))
        self._suspect_rows += cur.rowcount
        return verdict

    def _known(self, device):
        site, _, dev = device.rpartition("/")
        return self.keys.lookup(site or None, dev) is not None

    # --- device health ------------------------------------------------------------------

    def _status(self, topic, site, dev, kind, payload, now):
        """Keep the latest retained status/state of a device of the key store. They are unsigned
        (contract v1): any client could send them, so a device the hall does not know, or a
        payload no terminal sends, is kept apart like junk - bounded, not a row per name."""
        device = halldb.device_name(site, dev)
        if self.keys.lookup(site, dev) is None:
            return self._suspect(device, None, "unsigned", "%s of a device not in the key store" % kind,
                                 topic, payload, now)
        if len(payload) > halldb.STATUS_KEEP:
            return self._suspect(device, None, "malformed", "%s of %d bytes (over %d)"
                                 % (kind, len(payload), halldb.STATUS_KEEP), topic, payload, now)
        if not payload:     # an empty retained message clears the topic
            self.db.execute("DELETE FROM status WHERE device = ? AND kind = ?", (device, kind))
            return "status"
        self.db.execute(
            "INSERT INTO status (device, kind, payload, received) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device, kind) DO UPDATE SET payload = excluded.payload, received = excluded.received",
            (device, kind, payload.decode("utf-8", "replace"), now))
        return "status"

    def summary(self):
        c = self.counts
        return ("stored %d, duplicates %d, suspect %d (forged %d, unsigned %d, malformed %d), chain breaks %d"
                % (c["stored"], c["duplicates"], c["forged"] + c["unsigned"] + c["malformed"], c["forged"],
                   c["unsigned"], c["malformed"], c["chain_breaks"]))


def _loose(payload):
    """What can be read of a payload that is no envelope (for the suspect row)."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


# --- gaps ------------------------------------------------------------------------------

def announced(db, device):
    """Merged seq ranges the device announced dropped in its verified outbox.dropped events."""
    ranges = []
    for (data,) in db.execute("SELECT data FROM events WHERE type = 'outbox.dropped' AND device = ?", (device,)):
        rs = json.loads(data).get("ranges")
        for r in rs if isinstance(rs, list) else ():
            if isinstance(r, list) and len(r) == 2 and all(_int(x) for x in r) and 1 <= r[0] <= r[1]:
                ranges.append(r)
    return _merged(ranges)


def gaps(db):
    """{device: {"first", "last", "missing": [[a, b], ...], "announced": [[a, b], ...]}} from the
    events table: seq numbers absent between the first and last stored, split into those lost
    (missing) and those the device said it dropped (announced)."""
    out = {}
    for device, first, last in db.execute("SELECT device, MIN(seq), MAX(seq) FROM events GROUP BY device"):
        out[device] = {"first": first, "last": last, "missing": [], "announced": []}
    holes = db.execute(
        "SELECT device, p + 1, seq - 1 FROM (SELECT device, seq, LAG(seq) OVER (PARTITION BY device ORDER BY seq) AS p"
        " FROM events) WHERE seq - p > 1 ORDER BY device, seq").fetchall()
    told = {}
    for device, lo, hi in holes:
        if device not in told:
            told[device] = announced(db, device)
        for a, b, was_told in _split(lo, hi, told[device]):
            out[device]["announced" if was_told else "missing"].append([a, b])
    return out


def _ranges(rs):
    return ", ".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in rs) or "none"


def print_gaps(db, as_json=False, out=sys.stdout):
    """Print gaps(db); whether every device is complete (nothing missing but announced drops)."""
    g = gaps(db)
    if as_json:
        print(json.dumps(g, indent=1), file=out)
    elif not g:
        print("no events in the database", file=out)
    else:
        for device, d in sorted(g.items()):
            print("%s: seq %d..%d, missing %s; dropped as announced %s" % (
                device, d["first"], d["last"], _ranges(d["missing"]), _ranges(d["announced"])), file=out)
    return not any(d["missing"] for d in g.values())


# --- the broker side -------------------------------------------------------------------

def subscriptions(site, share=None):
    evt = "qterm/v1/%s/+/evt/#" % site
    if share:
        evt = "$share/%s/%s" % (share, evt)
    # status/state unshared: a shared subscription gets no retained messages
    return [(evt, 1), ("qterm/v1/%s/+/status" % site, 0), ("qterm/v1/%s/+/state" % site, 0)]


class Collector:
    """The receive -> commit -> PUBACK loop, reconnecting with backoff until stopped."""

    def __init__(self, session, recorder, log=sys.stderr):
        self.session = session
        self.recorder = recorder
        self.log = log
        self.stopping = False
        self.last_failure = None     # the reason a reconnect last failed, said once
        self.up = False
        self.started = False    # the first connection succeeded

    def say(self, text):
        print("collect: " + text, file=self.log, flush=True)

    def stop(self, *_):
        self.stopping = True

    def run(self, seconds=None):
        """Until stop() or seconds; the first connection must succeed (ToolError otherwise)."""
        s = self.session
        try:
            present = s.open()
        except (OSError, MQTTError) as e:
            s.close(disconnect=False)
            raise ToolError("cannot reach the broker at %s:%d: %s" % (s.host, s.port, _why(e, s)), 1)
        self.up = self.started = True
        self.say("collecting from %s:%d as %s (%s session)" % (s.host, s.port, s.client_id,
                                                                  "resumed" if present else "new"))
        end = time.monotonic() + seconds if seconds else None
        next_summary = time.monotonic() + SUMMARY_EVERY_S
        backoff = BACKOFF_MIN_S
        try:
            while not self.stopping and (end is None or time.monotonic() < end):
                if time.monotonic() >= next_summary:
                    self.say(self.recorder.summary())
                    next_summary += SUMMARY_EVERY_S
                if not self.up:
                    backoff = self._reconnect(backoff, end)
                    continue
                wait = 0.5 if end is None else max(0.0, min(0.5, end - time.monotonic()))
                try:
                    self._pump(wait)
                except (OSError, MQTTError) as e:
                    self.say("broker connection lost: %s; reconnecting" % e)
                    s.close(disconnect=False)
                    self.up = False
                    backoff = BACKOFF_MIN_S
                except sqlite3.OperationalError as e:
                    if not _busy(e):
                        raise
                    # Another writer held the database past the busy timeout (a backup, an
                    # open sqlite3 shell): nothing of the batch was acknowledged, so leaving
                    # the broker makes it send the batch again when we are back - later.
                    self.say("database busy (%s): nothing acknowledged, the broker keeps the "
                             "events; trying again" % e)
                    s.close(disconnect=False)
                    self.up = False
                    backoff = BACKOFF_MAX_S / 2
        finally:
            if self.up:
                s.close()
        return 0

    def _pump(self, wait):
        """One batch: what has arrived is committed, then acknowledged."""
        msgs = self.session.receive(wait)
        if msgs:
            self.recorder.batch([(m.topic, m.payload) for m in msgs])
            pids = [m.pid for m in msgs if m.qos]
            if pids:
                self.session.ack(pids)

    def _reconnect(self, backoff, end):
        """One attempt after a pause; the next pause (capped exponential, with jitter)."""
        pause = backoff * (0.5 + random.random() / 2)
        until = time.monotonic() + pause
        while time.monotonic() < until and not self.stopping and (end is None or time.monotonic() < end):
            time.sleep(0.05)
        if self.stopping or (end is not None and time.monotonic() >= end):
            return backoff
        try:
            present = self.session.open()
        except (OSError, MQTTError) as e:
            self.session.close(disconnect=False)
            why = _why(e, self.session)
            if why != self.last_failure:    # once per reason, not once per attempt
                self.say("cannot reconnect: %s; trying again" % why)
                self.last_failure = why
            return min(backoff * 2, BACKOFF_MAX_S)
        self.last_failure = None
        self.up = True
        self.say("reconnected (%s)" % ("session resumed" if present else
                                      "NEW session: the broker kept none, events sent meanwhile may be missing"))
        return BACKOFF_MIN_S


def _why(e, session):
    """An open() failure in a technician's words (a refused certificate names what was checked)."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return ("TLS: the broker's certificate is not accepted (%s); it is checked against --cafile "
                "and the name %s (--server-name)" % (getattr(e, "verify_message", None) or e,
                                                        session.server_name))
    if isinstance(e, ssl.SSLError):
        return "TLS handshake failed: %s (is %s:%d a TLS listener?)" % (
            getattr(e, "reason", None) or e, session.host, session.port)
    return str(e) or type(e).__name__


def _busy(e):
    text = str(e)
    return "locked" in text or "busy" in text


# --- command line ----------------------------------------------------------------------

def _open_db(path):
    try:
        return halldb.connect(path)
    except sqlite3.Error as e:
        raise ToolError("cannot open the database %s: %s" % (path, e), 1)


def _start_http(spec, db_path):
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ToolError("--http %s: expected HOST:PORT, e.g. 127.0.0.1:8080" % spec, 2)
    port = int(port)
    try:
        from tools import livepage
    except ImportError as e:
        raise ToolError("--http: the live page (tools/livepage.py) cannot be loaded: %s" % e, 2)
    try:
        return livepage.start(db_path, host, port)
    except OSError as e:
        raise ToolError("--http %s: cannot serve there: %s" % (spec, e), 1)


def _stop_http(server):
    for name in ("shutdown", "server_close"):
        fn = getattr(server, name, None)
        if fn is not None:
            fn()


def _tls(args):
    """The TLS context of --cafile (--cert/--key), or None for a plain connection."""
    if not args.cafile:
        if args.cert or args.key or args.server_name:
            raise ToolError("--cert, --key and --server-name go with --cafile (TLS)", 2)
        return None
    try:
        return tls_context(args.cafile, args.cert, args.key)
    except ValueError as e:
        raise ToolError("--cafile/--cert/--key: %s" % e, 2)


def run(args):
    if args.gaps:
        db = _open_db(args.db)
        try:
            return 0 if print_gaps(db, args.json) else 1
        except sqlite3.Error as e:
            raise ToolError("database %s: %s" % (args.db, e), 1)
    if not args.broker:
        raise ToolError("--broker HOST:PORT is needed (or --gaps)", 2)
    host, port = parse_broker(args.broker)
    try:
        path, keys = default_keys(args.keystore)
    except UsageError as e:
        raise ToolError(str(e), 2)
    db = _open_db(args.db)
    if args.suspect_keep < 0:
        raise ToolError("--suspect-keep: a count of rows, 0 or more", 2)
    recorder = Recorder(db, Keys(path, keys), args.suspect_keep)
    if args.share and not args.client_id:
        # two members of a group with one id would take the session from each other for ever
        raise ToolError("--share needs --client-id: each collector of a group its own fixed id", 2)
    client_id = args.client_id or "qterm-collector"
    session = Session(host, port, client_id, subscriptions(args.site, args.share), clean=False,
                      user=args.user, password=args.password, tls=_tls(args), server_name=args.server_name)
    col = Collector(session, recorder)
    if not keys:
        col.say("WARNING: no device keys (--keystore): every event is kept apart as unsigned")
    server = _start_http(args.http, args.db) if args.http else None
    if server is not None:
        col.say("live hall page at %s" % getattr(server, "url", "http://" + args.http + "/"))
    signal.signal(signal.SIGTERM, col.stop)
    signal.signal(signal.SIGINT, col.stop)
    try:
        col.run(args.seconds)
    except sqlite3.Error as e:
        raise ToolError("database %s: %s (events not acknowledged stay with the broker)" % (args.db, e), 1)
    finally:
        if col.started:
            col.say(recorder.summary())
        if server is not None:
            _stop_http(server)
        db.close()
    return 0
