"""Authenticated commands from the backend on qterm/v1/<site>/<device>/cmd.

A command is {"id": str, "op": str, "args": {...}, "ts": int, "mac": hex} and nothing else.
mac = first 32 hex digits of HMAC-SHA256(device key, canonical JSON of the command
without "mac") - the same canonical form and truncation as events. It is accepted only
if it is at most MAX_BYTES long, well-formed, correctly signed, no more than
commands.window_s away from the device clock, and its id was not seen within that
window (the list of seen ids is kept on flash, so a reboot does not reopen replays).
Every command is answered on cmd/reply; every refusal also becomes a command.rejected
event with its reason. No op creates, changes or deletes a rating: ratings come only
from the rating pad.

Loaded only when a command arrives (see App.command) and released afterwards.
"""
import binascii
import hashlib
import json
import struct

from firmware import canonical, store
from firmware.hmac256 import hmac_sha256

MAX_BYTES = 2048
_FIELDS = ("args", "id", "mac", "op", "ts")

# op -> {arg: type name}; every listed arg is required unless marked optional with "?".
SCHEMA = {
    "ping": {},
    "status": {},
    "config.set": {"patch": "object"},
    "counter.pause": {"counter": "text", "reason": "text?"},
    "counter.resume": {"counter": "text"},
    "counter.close": {"counter": "text"},
    "counter.transfer": {"counter": "text", "to_service": "text?", "to_counter": "text?"},
    "ticket.requeue": {"ticket": "text", "counter": "text?"},
    "ticket.appointment": {"service": "text", "appt": "text", "print": "bool?"},
    "staff.signin": {"counter": "text", "staff": "text"},
    "staff.signout": {"counter": "text"},
    "day.reset": {},
    "time.set": {"epoch": "int"},
}

# config keys a command may change without a restart, and those that restructure the
# hall (allowed only while nobody is waiting or being served)
_LIVE = ("hall", "heartbeat_s", "voice", "rating", "printer", "commands")
_STRUCTURAL = ("services", "counters", "queue", "tz_offset_min", "day_reset_hour", "languages")


class Rejected(Exception):
    def __init__(self, reason, detail=""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _utf8_len(cp):
    return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4


def _good_text(s):
    """Printable, well-formed text: it will be copied into signed events, so no control
    characters, surrogates or overlong UTF-8 (MicroPython's JSON parser lets those through)."""
    for ch in s:
        cp = ord(ch)
        if cp < 32 or cp == 127 or 0xD800 <= cp <= 0xDFFF or len(ch.encode()) != _utf8_len(cp):
            return False
    return True


def _typed(v, kind):
    if kind == "text":
        return isinstance(v, str) and 0 < len(v) <= 64 and _good_text(v)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
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
        if b[i:i + len(word)] == word:
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


def parse(raw, key, now, window_s, seen):
    """The checked command dict, or raise Rejected(reason). `seen` is the ReplayCache."""
    if len(raw) > MAX_BYTES:
        raise Rejected("too_large", str(len(raw)))
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
    if not _typed(cid, "text") or not isinstance(op, str) or not isinstance(args, dict) \
            or not _typed(ts, "int") or not isinstance(mac, str) or len(mac) != 32:
        raise Rejected("malformed", "wrong field types")
    body = {"args": args, "id": cid, "op": op, "ts": ts}
    try:
        signed = canonical.dumps(body)
    except (ValueError, TypeError):
        raise Rejected("malformed", "args not canonical (floats are not allowed)")
    want = binascii.hexlify(hmac_sha256(key, signed)).decode()[:32]
    if not _same(want, mac):
        raise Rejected("bad_mac")
    if ts < now - window_s or ts > now + window_s:
        raise Rejected("stale" if ts < now else "future", str(ts - now))
    if seen.seen(cid, ts):
        raise Rejected("replayed", "id seen" if ts > seen.floor else "older than a damaged replay list")
    if seen.full():
        raise Rejected("rate_limited", "too many commands in the time window")
    spec = SCHEMA.get(op)
    if spec is None:
        raise Rejected("unknown_op", op[:32])
    for name, kind in spec.items():
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        if name not in args:
            if not optional:
                raise Rejected("bad_args", "missing " + name)
        elif not _typed(args[name], kind):
            raise Rejected("bad_args", "%s must be %s" % (name, kind))
    for name in args:
        if name not in spec:
            raise Rejected("bad_args", "unexpected " + name[:32])
    return cmd


def _same(a, b):
    """Compare without stopping at the first difference (no timing hint about the mac)."""
    diff = len(a) ^ len(b)
    for i in range(min(len(a), len(b))):
        diff |= ord(a[i]) ^ ord(b[i])
    return diff == 0


class ReplayCache:
    """Ids of the commands accepted within the time window, kept on flash.

    File: floor ts (u32) | records of sha256(id)[:8] + ts (u32) | crc32 (u32). Only hashes are
    kept, so 256 ids cost 3 KiB. If the file is damaged, nothing signed before that moment
    is accepted again (the floor); if it is full of ids still inside the window, new
    commands are refused (rate_limited) rather than forgetting an id that could be replayed.
    """
    MAX = 256

    def __init__(self, path, now, window_s):
        self.path = path
        self.floor = 0
        self.buf = bytearray()
        self.damaged = False
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            return
        if len(raw) < 8 or (len(raw) - 8) % 12 or \
                struct.unpack("<I", raw[-4:])[0] != binascii.crc32(raw[:-4]) & 0xFFFFFFFF:
            self.damaged = True
            self.floor = now
            return
        self.floor = struct.unpack("<I", raw[:4])[0]
        limit = now - window_s
        for off in range(4, len(raw) - 4, 12):
            if struct.unpack("<I", raw[off + 8:off + 12])[0] >= limit:
                self.buf += raw[off:off + 12]

    @staticmethod
    def _key(cid):
        return hashlib.sha256(cid.encode()).digest()[:8]

    def seen(self, cid, ts):
        if ts <= self.floor:
            return True
        key = self._key(cid)
        for off in range(0, len(self.buf), 12):
            if self.buf[off:off + 8] == key:
                return True
        return False

    def full(self):
        return len(self.buf) >= self.MAX * 12

    def add(self, cid, ts):
        self.buf += self._key(cid) + struct.pack("<I", ts)
        self.save()

    def save(self):
        data = struct.pack("<I", self.floor) + self.buf
        store.write_atomic(self.path, data + struct.pack("<I", binascii.crc32(data) & 0xFFFFFFFF))


def _clean(text, limit=64):
    """Text from a sender as it may appear in a signed event: unchanged when well-formed,
    otherwise printable ASCII with "?" for everything else; bounded."""
    if not isinstance(text, str):
        return None
    text = text[:limit]
    if _good_text(text):
        return text
    return "".join(ch if 32 <= ord(ch) < 127 and len(ch.encode()) == 1 else "?" for ch in text)


async def handle(app, raw):
    """Check and run one command; returns the reply dict (already persisted/emitted)."""
    cfg = app.cfg
    window = cfg["commands"]["window_s"]
    now = app.now()
    seen = ReplayCache(app.root + "/cmd_seen.bin", now, window)
    if seen.damaged:
        seen.save()
        app.emit("command.rejected", {"id": None, "op": None, "reason": "replay_list_damaged",
                                      "detail": "commands signed before now are refused"})
    cid = None
    op = None
    try:
        cmd = parse(raw, binascii.unhexlify(cfg["key"]), now, window, seen)
        cid, op = cmd["id"], cmd["op"]
        seen.add(cid, cmd["ts"])
        seen = None
        result = await _run(app, op, cmd["args"])
    except Rejected as e:
        if cid is None:
            cid, op = _peek(raw)
        return _rejected(app, cid, op, e.reason, e.detail)
    return {"id": cid, "ok": True, "result": result}


def refuse(app, raw, reason):
    """Refuse a command without checking it (too large to receive, or too many waiting)."""
    cid, op = _peek(raw) if raw is not None else (None, None)
    return _rejected(app, cid, op, reason, "")


def _rejected(app, cid, op, reason, detail):
    """Emit command.rejected and return the reply. The signed event gets printable text
    only; the reply echoes the id as sent, so the sender can match it."""
    app.emit("command.rejected", {"id": _clean(cid), "op": _clean(op, 32), "reason": reason,
                                  "detail": _clean(detail) or ""})
    return {"id": cid, "ok": False, "error": reason, "detail": detail}


def _peek(raw):
    """(id, op) of a rejected command where they can be read: the sender matches the reply
    by id, and the audit trail shows what was attempted."""
    try:
        cmd = json.loads(raw)
        cid, op = cmd.get("id"), cmd.get("op")
    except (ValueError, AttributeError, UnicodeError):
        return None, None
    return (cid if isinstance(cid, str) and len(cid) <= 64 else None,
            op[:32] if isinstance(op, str) else None)


async def _run(app, op, args):
    if op == "ping":
        return {"pong": app.now()}
    if op == "status":
        return app.status()
    if op == "time.set":
        app.clock_step(args["epoch"], "command")
        return {"time": app.now()}
    if op == "config.set":
        return _config_set(app, args["patch"])
    if op == "day.reset":
        app.emit(*app.hall.decide_day(app.now()))
        return {"day": app.hall.day}
    if op == "ticket.appointment":
        r = await app.issue(args["service"], "appointment", appointment=args["appt"],
                            printed=args.get("print", False))
        if not r.get("ok"):
            raise Rejected(r.get("refused") or "refused", r.get("error", ""))
        return r
    action = {"counter.pause": "pause", "counter.resume": "resume", "counter.close": "close",
              "counter.transfer": "transfer", "ticket.requeue": "requeue",
              "staff.signin": "signin", "staff.signout": "signout"}[op]
    if action == "pause":
        args = dict(args)
        args.setdefault("reason", "backend")
    r = app.staff_key(args.get("counter") or app.home, action, args)
    if not r.get("ok"):
        raise Rejected(r.get("refused") or "refused", r.get("detail") or r.get("error", ""))
    return r


def _config_set(app, patch):
    """Validate the patched config, persist it atomically, apply it, announce config.applied."""
    from firmware import config as cfgmod
    # The running config is complete and valid (defaults filled in): patch a shallow copy of
    # it rather than parsing config.json again - a second copy would not fit in the heap.
    current = app.cfg
    for k in ("key", "site", "device", "role", "version"):
        if k in patch:
            raise Rejected("not_allowed", k + " is set by provisioning only")
    merged = dict(current)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(current.get(k), dict):
            m = dict(current[k])
            m.update(v)
            merged[k] = m
        else:
            merged[k] = v
    errors = cfgmod.validate(merged)
    if errors:
        raise Rejected("bad_config", "; ".join(cfgmod.describe(errors))[:200])
    structural = [k for k in patch if k in _STRUCTURAL]
    if structural and app.busy():
        raise Rejected("busy", "people waiting or being served; change %s after hours" % ",".join(structural))
    errors = None
    store.write_json(app.root + "/config.json", merged)
    restart = [k for k in patch if k not in _LIVE]
    if not restart:
        for k in patch:
            app.cfg[k] = cfgmod.normalised(merged, k)
        app.config_changed()
    app.emit("config.applied", {"keys": sorted(patch.keys()), "restart": bool(restart)})
    if restart:
        app.restart_pending = True
    return {"applied": sorted(patch.keys()), "restart": bool(restart)}
