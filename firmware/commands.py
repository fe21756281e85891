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
import json

from firmware import canonical, store
from firmware.hmac256 import hmac_sha256

MAX_BYTES = 2048
_SEEN_MAX = 64
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


def _typed(v, kind):
    if kind == "text":
        return isinstance(v, str) and 0 < len(v) <= 64
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "object":
        return isinstance(v, dict)
    return False


def parse(raw, key, now, window_s, seen):
    """The checked command dict, or raise Rejected(reason). `seen` = {id: ts} of recent ids."""
    if len(raw) > MAX_BYTES:
        raise Rejected("too_large", str(len(raw)))
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
    if cid in seen:
        raise Rejected("replayed", cid)
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


def load_seen(path, now, window_s):
    try:
        seen = store.read_json(path) or {}
    except ValueError:
        seen = {}  # a damaged list only means old ids can't be replayed anyway: they are stale
    for cid in list(seen):
        if seen[cid] < now - window_s:
            del seen[cid]
    return seen


def remember(path, seen, cid, ts):
    if len(seen) >= _SEEN_MAX:
        oldest = None
        for k in seen:
            if oldest is None or seen[k] < seen[oldest]:
                oldest = k
        del seen[oldest]
    seen[cid] = ts
    store.write_json(path, seen)


async def handle(app, raw):
    """Check and run one command; returns the reply dict (already persisted/emitted)."""
    cfg = app.cfg
    window = cfg["commands"]["window_s"]
    path = app.root + "/cmd_seen.json"
    now = app.now()
    seen = load_seen(path, now, window)
    cid = None
    op = None
    try:
        cmd = parse(raw, binascii.unhexlify(cfg["key"]), now, window, seen)
        cid, op = cmd["id"], cmd["op"]
        remember(path, seen, cid, cmd["ts"])
        result = await _run(app, op, cmd["args"])
    except Rejected as e:
        if cid is None:
            cid, op = _peek(raw)
        app.emit("command.rejected", {"id": cid, "op": op, "reason": e.reason, "detail": e.detail[:64]})
        return {"id": cid, "ok": False, "error": e.reason, "detail": e.detail}
    return {"id": cid, "ok": True, "result": result}


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
        before = app.now()
        app.hal.clock.set_time(args["epoch"])
        app.hal.clock.synced = True
        app.emit("clock.set", {"from": before, "to": args["epoch"]})
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
    current = store.read_json(app.root + "/config.json")
    if current is None:
        raise Rejected("no_config")
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
    normal = cfgmod.normalise(merged)
    store.write_json(app.root + "/config.json", merged)
    restart = [k for k in patch if k not in _LIVE]
    if not restart:
        for k in patch:
            app.cfg[k] = normal[k]
        app.config_changed()
    app.emit("config.applied", {"keys": sorted(patch.keys()), "restart": bool(restart)})
    if restart:
        app.restart_pending = True
    return {"applied": sorted(patch.keys()), "restart": bool(restart)}
