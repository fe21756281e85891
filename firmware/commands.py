"""Authenticated commands from the backend on qterm/v1/<site>/<device>/cmd.

A command is {"id": str, "op": str, "args": {...}, "ts": int, "mac": hex} and nothing else.
mac = first 32 hex digits of HMAC-SHA256(device key, canonical JSON of the command
without "mac") - the same canonical form and truncation as events. It is accepted only
if it is at most MAX_BYTES long, strict JSON, correctly signed, not older than the newest
command accepted so far minus commands.window_s (the replay floor: moving the device clock
back reopens nothing), its id was not accepted before, and its ts is within window_s of the
device clock - or, for time.set, of the epoch it sets, so that a device whose clock is
wrong can still be corrected. No op creates, changes or deletes a rating.

Every command handled is answered on cmd/reply. Refusals by a sender that holds the key
(unknown_op, bad_args, ...) are each journalled as command.rejected. Refusals anyone can
provoke without the key (QUIET) are journalled at most once per QUIET_MS: the first one in
full, the rest counted and summed up in one command.rejected with reason "suppressed",
so a flood of junk costs no flash wear; during a flood they are not answered either.

Loaded when a command arrives (see App._commands) and released when they stop.
"""
import binascii
import hashlib
import json
import os
import struct

try:
    from micropython import const
except ImportError:     # CPython (unit tests)
    def const(x):
        return x

from firmware import canonical, text
from firmware.hmac256 import HMAC256

MAX_BYTES = 2048
QUIET = ("malformed", "too_large", "bad_mac", "stale", "future", "replayed", "low_memory")
QUIET_MS = 60000
# time.set refuses what no hall clock can be: before 2024-01-01 (1704067200) or after
# 2100-01-01 (4102444800, written out where used: a const() must be a small int on the ESP32)
_EPOCH_MIN = const(1704067200)
_FIELDS = ("args", "id", "mac", "op", "ts")

# op -> its args: "name" (text), "name:kind" (int, bool, object); "?" ends an optional one.
# Strings, not dicts: they live in the bytecode, a dict per op would take heap while loaded.
SCHEMA = {
    "ping": "",
    "status": "",
    "config.set": "patch:object",
    "counter.pause": "counter reason?",
    "counter.resume": "counter",
    "counter.close": "counter",
    "counter.transfer": "counter to_service? to_counter?",
    "ticket.requeue": "ticket counter?",
    "ticket.park": "counter",
    "ticket.unpark": "counter ticket",
    "ticket.call": "counter ticket",
    "ticket.walkin": "counter service",
    "ticket.appointment": "service appt print:bool?",
    "staff.signin": "counter staff",
    "staff.signout": "counter",
    "day.reset": "",
    "time.set": "epoch:int",
}

# config keys a command may change without a restart, and those that restructure the
# hall (allowed only while nobody is waiting or being served)
_LATER = "later"     # the answer comes after the restart (config.set)
_STRUCTURAL = ("services", "counters", "queue", "tz_offset_min", "day_reset_hour", "languages")


class Rejected(Exception):
    def __init__(self, reason, detail=""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _typed(v, kind):
    if kind == "text":
        return text.ok(v)
    if kind == "int":
        return _int(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "object":
        return isinstance(v, dict)
    return False


_WS = b" \t\r\n"


def _ws(b, i):
    while i < len(b) and b[i] in _WS:
        i += 1
    return i


def _json_end(b, i, depth=0):
    """End of the JSON value starting at b[i], or -1: a strict RFC 8259 syntax check (the
    MicroPython parser accepts missing commas and colons, which a command must not have)."""
    if i >= len(b) or depth > 8:
        return -1
    c = b[i]
    if c == 0x22:  # string
        i += 1
        while i < len(b):
            c = b[i]
            if c == 0x22:
                return i + 1
            if c < 0x20:
                return -1
            if c == 0x5C:
                i += 1
                if i >= len(b):
                    return -1
                if b[i] == 0x75:
                    for j in range(i + 1, i + 5):
                        if j >= len(b) or b[j] not in b"0123456789abcdefABCDEF":
                            return -1
                    i += 4
                elif b[i] not in b'"\\/bfnrt':
                    return -1
            i += 1
        return -1
    if c == 0x7B or c == 0x5B:  # object or array
        close = 0x7D if c == 0x7B else 0x5D
        i = _ws(b, i + 1)
        if i < len(b) and b[i] == close:
            return i + 1
        while True:
            if c == 0x7B:
                if i >= len(b) or b[i] != 0x22:
                    return -1
                i = _ws(b, _json_end(b, i, depth + 1))
                if i >= len(b) or b[i] != 0x3A:
                    return -1
                i = _ws(b, i + 1)
            i = _json_end(b, i, depth + 1)
            if i < 0:
                return -1
            i = _ws(b, i)
            if i < len(b) and b[i] == close:
                return i + 1
            if i >= len(b) or b[i] != 0x2C:
                return -1
            i = _ws(b, i + 1)
    for word in (b"true", b"false", b"null"):
        if bytes(b[i:i + len(word)]) == word:   # (b may be a memoryview: see mqtt)
            return i + len(word)
    start = i  # number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    if b[i] == 0x2D:
        i += 1
    digits = i
    while i < len(b) and 0x30 <= b[i] <= 0x39:
        i += 1
    if i == digits or (b[digits] == 0x30 and i - digits > 1):
        return -1
    if i < len(b) and b[i] == 0x2E:
        i += 1
        frac = i
        while i < len(b) and 0x30 <= b[i] <= 0x39:
            i += 1
        if i == frac:
            return -1
    if i < len(b) and b[i] in b"eE":
        i += 1
        if i < len(b) and b[i] in b"+-":
            i += 1
        exp = i
        while i < len(b) and 0x30 <= b[i] <= 0x39:
            i += 1
        if i == exp:
            return -1
    return i if i > start else -1


def strict_json(b):
    """True when bytes b are exactly one well-formed JSON value (with optional whitespace)."""
    end = _json_end(b, _ws(b, 0))
    return end >= 0 and _ws(b, end) == len(b)


def authentic(raw, hm):
    """The command dict of raw if it is well-formed and signed with the device key (hm: its
    HMAC256), else Rejected. Nothing on flash is read for a message that fails here."""
    if raw is False:    # within the size limit, but the heap could not hold it just now
        raise Rejected("low_memory", "")
    if raw is None or len(raw) > MAX_BYTES:
        raise Rejected("too_large", "" if raw is None else str(len(raw)))
    if not strict_json(raw):
        raise Rejected("malformed", "not JSON")
    try:
        cmd = json.loads(raw)
    except (ValueError, UnicodeError):
        raise Rejected("malformed", "not JSON")
    if not isinstance(cmd, dict):
        raise Rejected("malformed", "not an object")
    if sorted(cmd.keys()) != list(_FIELDS):
        raise Rejected("malformed", "fields must be exactly " + ",".join(_FIELDS))
    cid, op, args, ts, mac = cmd["id"], cmd["op"], cmd["args"], cmd["ts"], cmd["mac"]
    if not text.ok(cid) or not isinstance(op, str) or not isinstance(args, dict) \
            or not _int(ts) or not isinstance(mac, str) or len(mac) != 32:
        raise Rejected("malformed", "wrong field types")
    body = {"args": args, "id": cid, "op": op, "ts": ts}
    try:
        signed = canonical.dumps(body)
    except (ValueError, TypeError):
        raise Rejected("malformed", "args not canonical (floats are not allowed)")
    want = binascii.hexlify(hm.digest(signed)).decode()[:32]
    if not _same(want, mac):
        raise Rejected("bad_mac")
    return cmd


def admit(cmd, now, window_s, seen):
    """Time window, replay and schema checks of an authentic command. An id that gets past
    the replay checks is recorded in `seen` (the ReplayCache) before the schema is looked
    at, so not even a refused command can be replayed."""
    cid, op, args, ts = cmd["id"], cmd["op"], cmd["args"], cmd["ts"]
    if ts < seen.newest - window_s:
        raise Rejected("stale", "older than the replay floor")
    if seen.seen(cid, ts):
        raise Rejected("replayed", "id seen" if ts > seen.floor else "older than a damaged replay list")
    ref = now
    if op == "time.set":
        epoch = args.get("epoch")
        if _int(epoch) and _EPOCH_MIN <= epoch <= 4102444800:
            ref = epoch  # the device clock may be the thing to correct
    if ts < ref - window_s or ts < 0:
        raise Rejected("stale", str(ts - ref))
    if ts > ref + window_s or ts > 0xFFFFFFFF:
        raise Rejected("future", str(ts - ref))
    if seen.full():
        raise Rejected("rate_limited", "too many commands in the time window")
    seen.add(cid, ts)
    spec = SCHEMA.get(op)
    if spec is None:
        raise Rejected("unknown_op", op[:32])
    names = []
    for item in spec.split():
        optional = item.endswith("?")
        name, _, kind = item.rstrip("?").partition(":")
        kind = kind or "text"
        names.append(name)
        if name not in args:
            if not optional:
                raise Rejected("bad_args", "missing " + name)
        elif not _typed(args[name], kind):
            raise Rejected("bad_args", "%s must be %s" % (name, kind))
    for name in args:
        if name not in names:
            raise Rejected("bad_args", "unexpected " + name[:32])
    if op == "time.set" and not _EPOCH_MIN <= args["epoch"] <= 4102444800:
        raise Rejected("bad_args", "epoch must be from 2024-01-01 to 2100-01-01")
    return cmd


def parse(raw, key, now, window_s, seen):
    """The checked command dict, or raise Rejected(reason). `seen` is the ReplayCache."""
    return admit(authentic(raw, HMAC256(key)), now, window_s, seen)


def _same(a, b):
    """Compare without stopping at the first difference (no timing hint about the mac)."""
    diff = len(a) ^ len(b)
    for i in range(min(len(a), len(b))):
        diff |= ord(a[i]) ^ ord(b[i])
    return diff == 0


class ReplayCache:
    """Ids of the commands accepted, and the newest accepted ts, kept on flash.

    File: floor ts | newest ts (u32 each) | records of sha256(id)[:8] + ts (u32) | crc32.
    Only hashes are kept, so 256 ids cost 3 KiB. An id is kept while its ts is within the
    window of the newest accepted ts, and anything older than that is refused as stale:
    judged by the commands themselves, never by the device clock, which may be stepped.
    If the file is damaged, nothing signed before that moment is accepted again (the
    floor); if it is full of ids still inside the window, new commands are refused
    (rate_limited) rather than forgetting an id that could be replayed.
    The file is read and rewritten a few records at a time through one 96-byte buffer: a
    busy day's heap is many small holes, and a buffer the size of the list (up to 3 KiB,
    in one piece) was often not there - every command then refused for memory.
    """
    MAX = 256

    def __init__(self, path, now, window_s):
        self.path = path
        self.window = window_s
        self.floor = self.newest = 0
        self.n = 0  # bytes of the records still within the window
        self.damaged = False
        self.buf = bytearray(96)
        try:
            size = os.stat(path)[6]
        except OSError:
            return
        ok = False
        try:
            if size >= 12 and not size % 12:
                with open(path, "rb") as f:
                    ok = self._scan(f, size - 12)
        except OSError:
            pass
        if not ok:      # what it said cannot be trusted: only the floor holds
            self.damaged = True
            self.floor = now
            self.newest = self.n = 0

    def _records(self, f, size):
        """(memoryview of up to 8 records, count) chunk by chunk, from f after the head."""
        mv = memoryview(self.buf)
        left = size
        while left > 0:
            k = min(left, 96)
            if f.readinto(mv[:k]) != k:
                raise OSError(5)
            left -= k
            yield mv, k

    def _scan(self, f, size):
        """Read the head and count the live records; True if the crc32 matches."""
        head = f.read(8)
        if len(head) != 8:
            return False
        self.floor, self.newest = struct.unpack("<II", head)
        crc = binascii.crc32(head)
        limit = self.newest - self.window
        n = 0
        for mv, k in self._records(f, size):
            crc = binascii.crc32(mv[:k], crc)
            for off in range(0, k, 12):
                if struct.unpack_from("<I", self.buf, off + 8)[0] >= limit:
                    n += 12
        self.n = n
        tail = f.read(4)
        return len(tail) == 4 and struct.unpack("<I", tail)[0] == crc & 0xFFFFFFFF

    @staticmethod
    def _key(cid):
        return hashlib.sha256(cid.encode()).digest()[:8]

    def seen(self, cid, ts):
        if self.floor and ts <= self.floor:
            return True
        if not self.n:
            return False
        key = self._key(cid)
        limit = self.newest - self.window
        b = self.buf
        with open(self.path, "rb") as f:
            f.read(8)
            for mv, k in self._records(f, os.stat(self.path)[6] - 12):
                for off in range(0, k, 12):
                    if struct.unpack_from("<I", b, off + 8)[0] >= limit and b[off:off + 8] == key:
                        return True
        return False

    def full(self):
        return self.n >= self.MAX * 12

    def add(self, cid, ts):
        """Keep cid: the list is written anew, records gone out of the window left behind."""
        self.save(self._key(cid), ts)

    def save(self, key=None, ts=0):
        """Write the list (temp-then-rename: a power cut leaves the old or the new one) with
        the live records of the old file - none if it was damaged - and key/ts if given."""
        newest = max(self.newest, ts)
        limit = newest - self.window
        head = struct.pack("<II", self.floor, newest)
        b = self.buf
        tmp = self.path + ".tmp"
        n = 0
        with open(tmp, "wb") as out:
            out.write(head)
            crc = binascii.crc32(head)
            try:
                size = 0 if self.damaged else os.stat(self.path)[6] - 12
            except OSError:
                size = 0
            if size > 0:
                with open(self.path, "rb") as src:
                    src.read(8)
                    for mv, k in self._records(src, size):
                        for off in range(0, k, 12):
                            if struct.unpack_from("<I", b, off + 8)[0] >= limit:
                                out.write(mv[off:off + 12])
                                crc = binascii.crc32(mv[off:off + 12], crc)
                                n += 12
            if key is not None:
                rec = key + struct.pack("<I", ts)
                out.write(rec)
                crc = binascii.crc32(rec, crc)
                n += 12
            out.write(struct.pack("<I", crc & 0xFFFFFFFF))
        os.rename(tmp, self.path)
        self.newest = newest
        self.n = n
        self.damaged = False


async def handle(app, raw, last=True):
    """Check and run one command (raw None: too large to receive); returns the reply dict,
    or None for a refusal that goes unanswered (see _refused). A MemoryError refuses this
    command only - unless it came before the command changed anything (its id not yet in
    the replay list) and this is not the last try (last): then "again" is returned, for the
    app to try again."""
    cfg = app.cfg
    cid = op = None
    kept = False
    try:
        cmd = authentic(raw, _device_key(app))
        cid, op = cmd["id"], cmd["op"]
        # the code an op loads per use (desk: staff actions, decided here unless a counter's
        # kiosk decides them), loaded before the command is admitted: short of memory, it is
        # tried again after shedding, not refused
        if op == "status":
            _load("firmware.report")
        elif op == "day.reset" or (op.startswith(("counter.", "ticket.", "staff.")) and op != "ticket.appointment"
                                   and app.cfg.get("role") != "counter"):
            _load("firmware.desk")
        window = cfg["commands"]["window_s"]
        now = app.now()
        seen = ReplayCache(app.root + "/cmd_seen.bin", now, window)
        if seen.damaged:
            seen.save()
            app.emit("command.rejected", {"id": None, "op": None, "reason": "replay_list_damaged",
                                          "detail": "commands signed before now are refused"})
        admit(cmd, now, window, seen)
        kept = True     # in the replay list now: a second try would be refused as replayed
        seen = None
        result = await _run(app, op, cmd["args"], cid)
        if result is _LATER:
            return None
    except Rejected as e:
        return _refused(app, raw, cid, op, e.reason, e.detail)
    except MemoryError:
        cmd = seen = None
        if not (kept or last):
            return "again"      # (not raised: see App._commands)
        import gc
        gc.collect()
        return _refused(app, raw, cid, op, "low_memory", "")
    return {"id": cid, "ok": True, "result": result}


_load = __import__      # (a test makes it run short of memory)


def _device_key(app):
    """The HMAC of the device key: the running config no longer holds the key; the stamper,
    which signs events with it, does."""
    return app.stamper.hm


def _refused(app, raw, cid, op, reason, detail):
    """Journal a refusal as command.rejected and return the reply to it.

    A refusal anyone can provoke at any rate (QUIET) is journalled only when it opens a
    quiet period of QUIET_MS; the others of that period are counted (quiet_over sums them
    up). They are still answered, unless the period is a flood - messages had to be
    dropped since it began: then only low_memory is, and None is returned. State:
    app.cmd_quiet = [period running, its end (ticks_ms), cmd_dropped at its start, a count
    per QUIET reason]. Sender text goes through text.clean for the event (signed) and the
    reply (which must stay valid JSON)."""
    journal = True
    if reason in QUIET:
        q = app.cmd_quiet
        if q is None:
            q = app.cmd_quiet = [0] * (3 + len(QUIET))
        if q[0]:
            q[3 + QUIET.index(reason)] += 1
            journal = False
            if reason != "low_memory" and app.stats["cmd_dropped"] != q[2]:
                return None
        else:
            _quiet_from_now(app, q)
    if cid is None:
        cid, op = _peek(raw)
    cid = text.clean(cid)
    detail = text.clean(detail, 200) or ""
    if journal:
        app.emit("command.rejected", {"id": cid, "op": text.clean(op, 32), "reason": reason,
                                      "detail": detail})
    return {"id": cid, "ok": False, "error": reason, "detail": detail}


def _quiet_from_now(app, q):
    q[0] = 1
    q[2] = app.stats["cmd_dropped"]
    t = app.hal.clock.ticks_ms()
    try:
        from time import ticks_add
    except ImportError:  # CPython (unit tests): plain integers never wrap
        q[1] = t + QUIET_MS
        return
    q[1] = ticks_add(t, QUIET_MS)


def quiet_over(app):
    """The quiet period has ended (the app calls this): journal what it suppressed as one
    command.rejected {reason "suppressed", count, reasons {reason: n}} and stay quiet for
    another period; with nothing suppressed the next refusal is journalled in full."""
    q = app.cmd_quiet
    n = 0
    reasons = {}
    for i in range(len(QUIET)):
        if q[3 + i]:
            n += q[3 + i]
            reasons[QUIET[i]] = q[3 + i]
    if not n:
        q[0] = 0
        return
    if app.emit("command.rejected", {"id": None, "op": None, "reason": "suppressed", "detail": "",
                                     "count": n, "reasons": reasons}):
        for i in range(3, len(q)):
            q[i] = 0
    _quiet_from_now(app, q)


def _peek(raw):
    """(id, op) of a rejected command where they can be read: the sender matches the reply
    by id, and the audit trail shows what was attempted."""
    try:
        cmd = json.loads(raw)
        cid, op = cmd.get("id"), cmd.get("op")
    except (ValueError, AttributeError, TypeError, UnicodeError):
        return None, None
    return (cid if isinstance(cid, str) and len(cid) <= 64 else None,
            op[:32] if isinstance(op, str) else None)


async def _run(app, op, args, cid):
    if op == "ping":
        return {"pong": app.now()}
    if op == "status":
        from firmware import report
        return report.status(app)
    if op == "time.set":
        app.clock_step(args["epoch"], "command")
        return {"time": app.now()}
    if op == "config.set":
        return _config_set(app, args["patch"], cid)
    if op == "day.reset":
        from firmware import desk, release
        due = desk.decide_day(app.hall, app.now())
        desk = None
        release("desk")     # the reset's snapshot wants the RAM
        for etype, data in due:
            app.emit(etype, data)
        return {"day": app.hall.day}
    if op == "ticket.appointment":
        if args.get("print") is True:
            # laid out and printed by the app once this code is given back (App._appointment):
            # the ticket layout (~7 KiB) and the command code do not fit the heap together
            return {"issue": args}
        r = await app.issue(args["service"], "appointment", appointment=args["appt"], printed=False)
        if not r.get("ok"):
            raise Rejected(r.get("refused") or "refused", r.get("error", ""))
        return r
    action = {"counter.pause": "pause", "counter.resume": "resume", "counter.close": "close",
              "counter.transfer": "transfer", "ticket.requeue": "requeue", "ticket.park": "park",
              "ticket.unpark": "unpark", "ticket.call": "call", "ticket.walkin": "walkin",
              "staff.signin": "signin", "staff.signout": "signout"}[op]
    if action == "pause":
        args = dict(args)
        args.setdefault("reason", "backend")
    cid = args.get("counter") or app.home
    # a counter device asks its kiosk; the kiosk (or `all`) is the queue and decides here
    r = await app.staff(cid, action, args) if app.cfg.get("role") == "counter" else app.staff_key(cid, action, args)
    if not r.get("ok"):
        raise Rejected(r.get("refused") or "refused", r.get("detail") or r.get("error", ""))
    return r


def _busy(h):
    """Someone is waiting or being served (structural config changes must wait)."""
    for s in h.services:
        if len(s.waiting):
            return True
    for c in h.counters:
        if c.current is not None or len(c.direct):
            return True
    return False


def _config_set(app, patch, cid):
    """Check what can be checked now, keep the patch on flash and restart: the next boot merges
    and validates it in a fresh heap (firmware/config.py apply_pending), then announces
    config.applied or command.rejected and answers this command. A serving terminal has no
    room for a second copy of the config plus the validator."""
    for k in ("key", "site", "device", "role", "version", "hall_key", "link"):
        if k in patch:
            raise Rejected("not_allowed", k + " is set by provisioning only")
    from firmware.config_keys import KEYS
    for k, v in patch.items():
        if not text.ok(k):  # the keys are listed in config.applied
            raise Rejected("bad_args", "patch key")
        if k not in KEYS[""] and k[0] != "_":
            raise Rejected("bad_config", k + ": unknown key")
        if isinstance(v, dict) and k in KEYS:
            for sub in v:
                if sub not in KEYS[k] and not (isinstance(sub, str) and sub[:1] == "_"):
                    raise Rejected("bad_config", "%s.%s: unknown key" % (k, text.clean(sub, 32)))
    structural = [k for k in patch if k in _STRUCTURAL]
    if structural and _busy(app.hall):
        raise Rejected("busy", "people waiting or being served; change %s after hours" % ",".join(structural))
    from firmware import store      # (only here: a command that prints a ticket needs the RAM)
    if store.exists(app.root + "/config.next.json"):
        raise Rejected("busy", "another config change is being applied")
    store.write_json(app.root + "/config.next.json", {"id": cid, "patch": patch})
    app.restart_pending = True
    return _LATER
