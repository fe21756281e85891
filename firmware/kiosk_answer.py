"""The kiosk's answer to one hall request (firmware/role_kiosk.py loads this while requests
wait). A request older than _REQ_MAX_AGE_S (30 s) by this kiosk's clock is refused "late": a `next`
the counter gave up on is never executed later; a `finish` is exempt - it is the end of a
service that happened, and the counter delivers it whenever the kiosk is back.
"""
from firmware import hallnet
from firmware.hall import Refused
from firmware.hmac256 import HMAC256

_REQ_MAX_AGE_S = const(30)
_CLOCK_SET = const(1704067200)  # before 2024 the clock is unset and ages cannot be judged
_OPS = ("next", "recall", "skip", "finish", "pause", "resume", "close", "transfer", "requeue",
        "signin", "signout", "park", "unpark", "call", "walkin", "sync")


def handle(k, cid, raw):
    """The answer (bytes) of kiosk k to one request from counter cid, or None when it is not
    worth one (forged, altered, for an unknown counter or from another device)."""
    dev = k.devices.get(cid)
    hm = HMAC256(hallnet.request_key(k.hall_key, cid)) if dev else None
    m = hallnet.open_request(hm, raw, cid, dev) if dev else None
    if m is None:
        k.stats["bad"] += 1
        return None
    k.stats["requests"] += 1
    app = k.app
    n = m["n"]
    c = app.hall.counter(cid)
    last = k.answers.get(cid)
    if last is not None and last[0] == n:
        k.stats["repeats"] += 1
        return last[1]
    op = m["op"]
    if n <= c.req and op != "sync":
        # applied before (its answer lost, this kiosk restarted since): the state says the rest
        k.stats["repeats"] += 1
        return _answer(k, hm, cid, n, _state(k, {"ok": True, "repeat": True}, c))
    now = app.now()
    if op not in _OPS:
        r = {"ok": False, "refused": "unknown_op", "detail": op[:16]}
    elif op != "finish" and op != "sync" and now >= _CLOCK_SET and abs(now - m["ts"]) > _REQ_MAX_AGE_S:
        k.stats["late"] += 1
        r = {"ok": False, "refused": "late", "detail": str(now - m["ts"])}
    elif op == "sync":
        # the highest number from this counter: one that lost link.json goes on above it
        r = {"ok": True, "req": max(c.req, last[0] if last is not None else 0)}
    else:
        r = _apply(app, cid, op, m["a"], n)
    return _answer(k, hm, cid, n, _state(k, r, c))


def _apply(app, cid, op, args, n):
    c = app.hall.counter(cid)
    if op == "finish" and (c.current is None or args.get("ticket", "") not in
                           ("", app.hall._ticket_fields(c, c.current)["ticket"])):
        # nothing served, or not the ticket the counter finished (a backend parked it and
        # called another meanwhile): that one was never served here
        return {"ok": False, "refused": "not_serving", "detail": str(args.get("ticket") or "")[:8]}
    if op == "next" and c.current is not None:
        # A counter finishes before it asks `next` (its rating window opens on that finish):
        # this one does not know it serves (an answer lost). Finished here, nobody could rate.
        return {"ok": False, "refused": "serving", "detail": app.hall._ticket_fields(c, c.current)["ticket"]}
    try:
        events = app.decide_staff(cid, op, args)
    except Refused as e:
        return {"ok": False, "refused": e.reason, "detail": e.detail}
    res = app.apply_events(events, n)
    if not res["ok"]:
        return {"ok": False, "refused": "storage"}
    out = {"ok": True, "events": res["events"]}
    if "fin_seq" in res:
        out["fin_seq"] = res["fin_seq"]
    return out


def _state(k, r, c):
    """What the counter shows after it: what it serves now, open/paused/closed, staff, day."""
    h = k.app.hall
    r["state"] = c.state
    r["day"] = h.day
    r["staff"] = c.staff
    if c.current is not None:
        f = h._ticket_fields(c, c.current)
        r["serving"] = [f["ticket"], f["service"]]
    else:
        r["serving"] = None
    return r


def _answer(k, hm, cid, n, r):
    out = hallnet.sign(hm, {"c": cid, "n": n, "ok": r.pop("ok"), "r": r, "ts": k.app.now()})
    k.answers[cid] = (n, out)
    return out
