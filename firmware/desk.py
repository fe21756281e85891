"""Decisions that happen a few times a day: recall and skip a citizen who does not come,
pause/resume, close, transfer (AB岗), requeue a returned no-show, staff sign-in, park a citizen
who fetches a document (挂起) and call them back, call a chosen number (特呼), serve a walk-in
without a ticket - and the hall's calendar: a new business day, a clock step.

Separate from firmware.hall so the common path (issue, call, finish, rate) costs no RAM for
it: the app imports this module when needed and lets it go afterwards. Like the hall's
decide_* methods, every function here only decides: it returns an event or raises Refused.
"""
from firmware import calendar
from firmware.hall import Refused, kind_name
from firmware.ticketring import REQUEUED


def decide(hall, cid, action, now, args):
    """The event for a counter action with arguments (from a keypad or a backend command)."""
    if action == "recall":
        return recall(hall, cid)
    if action == "skip":
        return skip(hall, cid)
    if action == "transfer":
        return transfer(hall, cid, args.get("to_service"), args.get("to_counter"))
    if action == "requeue":
        ticket = args.get("ticket")
        if not isinstance(ticket, str):
            raise Refused("bad_args", "ticket")
        return requeue(hall, ticket, cid)
    if action == "pause":
        reason = args.get("reason")
        if reason and not _printable(reason):  # it goes into a signed event
            raise Refused("bad_args", "reason")
        return pause(hall, cid, reason)
    if action == "resume":
        return resume(hall, cid)
    if action == "close":
        return close(hall, cid)
    if action == "signin":
        staff = args.get("staff")
        if not _printable(staff):  # it goes into signed events
            raise Refused("bad_args", "staff")
        return signin(hall, cid, staff)
    if action == "signout":
        return signin(hall, cid, None)
    if action == "park":
        return park(hall, cid)
    if action == "unpark":
        return unpark(hall, cid, args.get("ticket"))
    if action == "call":
        return call(hall, cid, args.get("ticket"), now)
    if action == "walkin":
        return walkin(hall, cid, args.get("service"), args.get("kind") or "normal")
    raise Refused("unknown_action", action)


def _printable(s):
    # firmware.text is imported only here: recall and skip, the common actions, need none of it
    from firmware import text
    return text.ok(s)


def _current(hall, cid):
    c = hall.counter(cid)
    if c.current is None:
        raise Refused("not_serving")
    return c, c.current


def recall(hall, cid):
    """Call the citizen being served again; after max_recalls calls it is a no-show (skipped)."""
    c, cur = _current(hall, cid)
    d = hall._ticket_fields(c, cur)
    if cur[6] >= hall.max_recalls:
        d["auto"] = True
        return ("ticket.skipped", d)
    d["count"] = cur[6] + 1
    return ("ticket.recalled", d)


def skip(hall, cid):
    """过号: the citizen called did not come; the ticket may be requeued later."""
    c, cur = _current(hall, cid)
    d = hall._ticket_fields(c, cur)
    d["auto"] = False
    return ("ticket.skipped", d)


def transfer(hall, cid, to_service=None, to_counter=None):
    """Hand the ticket being served to another service or counter; it goes first in line there."""
    c, cur = _current(hall, cid)
    d = hall._ticket_fields(c, cur)
    if to_counter is not None:
        t = hall.counter(to_counter)
        if t is c:
            raise Refused("same_counter")
        if t.state == "closed":
            raise Refused("counter_closed")  # nobody would call the citizen there today
        if t.direct.full():
            raise Refused("queue_full")
        d["to_counter"] = t.id
    elif to_service is not None:
        s = hall.by_code.get(to_service)
        if s is None:
            raise Refused("unknown_service", to_service)
        if s.waiting.full():
            raise Refused("queue_full")
        d["to_service"] = s.code
    else:
        raise Refused("bad_args", "to_service")
    return ("ticket.transferred", d)


def requeue(hall, label, cid=None):
    """A skipped citizen came back: staff put the ticket back first in its queue, once."""
    skipped = hall.skipped
    for i in range(len(skipped)):
        number, flags, origin = skipped.number(i), skipped.flags(i), skipped.service(i)
        s = hall.services[origin]
        if s.label(number) == label:
            if flags & REQUEUED:
                raise Refused("already_requeued", label)
            if s.waiting.full():
                raise Refused("queue_full")
            staff = hall.counter(cid).staff if cid else None
            return ("ticket.requeued", {"ticket": label, "n": number, "service": s.code,
                                        "counter": cid, "staff": staff, "day": hall.day})
    raise Refused("not_skipped", label)


def _serving(hall, c):
    if c.current is not None:
        raise Refused("serving", hall._ticket_fields(c, c.current)["ticket"])


def pause(hall, cid, reason, staff=None):
    """暂停服务: only between citizens, so nobody is left standing at a paused counter."""
    c = hall.counter(cid)
    if c.state == "paused":
        raise Refused("already_paused")
    if c.state == "closed":
        raise Refused("counter_closed")
    _serving(hall, c)
    return ("counter.paused", {"counter": c.id, "staff": c.staff, "reason": reason or "break"})


def resume(hall, cid):
    c = hall.counter(cid)
    if c.state == "open":
        raise Refused("not_paused")
    return ("counter.resumed", {"counter": c.id, "staff": c.staff, "was": c.state})


def close(hall, cid):
    """窗口有群众不下班: a counter may close only when none of its services has anyone waiting."""
    c = hall.counter(cid)
    if c.state == "closed":
        raise Refused("already_closed")
    _serving(hall, c)
    waiting = len(c.direct)
    for si in c.services:
        waiting += len(hall.services[si].waiting)
    p = hall.parked
    for i in range(len(p)):     # whom it parked comes back here (layout: firmware/hall.py)
        if p.buf[i * p.size + 9] == c.idx:
            waiting += 1
    if waiting:
        raise Refused("people_waiting", str(waiting))
    return ("counter.closed", {"counter": c.id, "staff": c.staff})


def signin(hall, cid, staff):
    """Every rating names the staff member signed in when the service finished."""
    c = hall.counter(cid)
    _serving(hall, c)
    if staff:
        return ("staff.signed_in", {"counter": c.id, "staff": staff, "was": c.staff})
    return ("staff.signed_out", {"counter": c.id, "staff": c.staff})


def _free(hall, cid):
    """The counter, when it may call someone now: open, and nobody at it (finish or park first:
    one key press never ends a service the staff did not mean to end)."""
    c = hall.counter(cid)
    if c.state != "open":
        raise Refused("counter_" + c.state)
    _serving(hall, c)
    return c


def _ticket(hall, label):
    """(service, number) of a label such as "A012" issued today."""
    if isinstance(label, str):
        for s in hall.services:
            if label.startswith(s.prefix):
                try:
                    n = int(label[len(s.prefix):])
                except ValueError:
                    continue
                if n >= 1 and s.label(n) == label:   # "A12", "A+12" are not A012
                    if n > s.last:
                        raise Refused("not_issued", label)
                    return s, n
    raise Refused("bad_args", "ticket")     # never echo text that is no label


def park(hall, cid):
    """挂起: the citizen being served steps away (a missing document); the counter may call the
    next one and the ticket waits aside, in a ring of PARK_MAX for the hall, until unparked."""
    c, cur = _current(hall, cid)
    if hall.parked.full():
        raise Refused("parked_full", str(hall.parked.capacity))
    return ("ticket.parked", hall._ticket_fields(c, cur))


def unpark(hall, cid, label):
    """Call a parked ticket back, at the counter that parked it or any counter serving the
    service it was being served as; service.finished later counts its first wait and its time
    at a counter, not the time away."""
    c = _free(hall, cid)
    s, n = _ticket(hall, label)
    p = hall.parked
    i = p.find(n, s.idx)
    if i < 0:
        raise Refused("not_parked", label)
    served = hall.services[p.buf[i * p.size + 8]]
    if p.buf[i * p.size + 9] != c.idx and served.idx not in c.services:
        raise Refused("other_service", served.code)
    return ("ticket.unparked", {"ticket": label, "n": n, "service": served.code, "origin": s.code,
                                "kind": kind_name(p.flags(i)), "counter": c.id, "staff": c.staff,
                                "day": hall.day})


def call(hall, cid, label, now):
    """特呼: call a chosen waiting number out of order. Only one waiting for a service this counter
    serves (or transferred to this very counter): the counter's services are what its staff
    may handle, and another service's citizen goes there by a transfer. The event is a normal
    ticket.called ("chosen": true), so every wait and no-show figure stays right."""
    c = _free(hall, cid)
    s, n = _ticket(hall, label)
    o = s.idx
    i = c.direct.find(n, o)
    if i >= 0:
        ev = hall.called_event(c, c.direct, i, s, now)   # served as its own service, as by next
    else:
        for si in c.services:
            serving = hall.services[si]
            i = serving.waiting.find(n, o)
            if i >= 0:
                ev = hall.called_event(c, serving.waiting, i, serving, now)
                break
        else:
            _not_waiting(hall, label, n, o)
    ev[1]["chosen"] = True
    return ev


def _not_waiting(hall, label, n, o):
    """Say why a number this counter cannot call is not waiting for it."""
    for t in hall.services:
        if t.waiting.find(n, o) >= 0:
            raise Refused("other_service", t.code)
    for k in hall.counters:
        if k.direct.find(n, o) >= 0:
            raise Refused("other_counter", k.id)
    if hall.skipped.find(n, o) >= 0:
        raise Refused("skipped", label)         # requeue it first
    if hall.parked.find(n, o) >= 0:
        raise Refused("parked", label)          # unpark it
    raise Refused("already_called", label)      # being served, or served, today


def walkin(hall, cid, code, kind):
    """A citizen served without a ticket: one event makes the service's next number (so no
    number is used twice) and calls it here, then it is finished and rated like any other.
    The counter must serve the service; daily_limit holds, opening hours do not (the staff
    member is serving the citizen in front of them)."""
    c = _free(hall, cid)
    s = hall.by_code.get(code) if isinstance(code, str) else None
    if s is None:
        raise Refused("unknown_service")
    if s.idx not in c.services:
        raise Refused("other_service", s.code)
    if kind != "normal" and kind != "priority":
        raise Refused("bad_args", "kind")
    if s.last >= s.limit:
        raise Refused("limit")
    n = s.last + 1
    return ("ticket.walkin", {"ticket": s.label(n), "n": n, "service": s.code, "kind": kind,
                              "counter": c.id, "staff": c.staff, "day": hall.day})


def decide_day(hall, now):
    """Events of a new business day: whoever is still being served is ended (not silently
    forgotten), then the reset itself."""
    day = calendar.business_day(now, hall.tz, hall.reset_hour)[0]
    out = []
    for c in hall.counters:
        if c.current is not None:
            d = hall._ticket_fields(c, c.current)
            d["reason"] = "day_reset"
            d["served_s"] = max(0, hall._offset(now) - c.current[5])
            out.append(("service.ended", d))
    waiting = 0
    for s in hall.services:
        waiting += len(s.waiting)
    out.append(("day.reset", {"day": day, "prev_day": hall.day, "dropped_waiting": waiting,
                              "dropped_parked": len(hall.parked)}))
    return out


def decide_clock(hall, before, after):
    """A clock step is not time passing: the tickets' time offsets move with it and the
    business day only ever moves forward (a late first NTP sync names today without
    dropping anyone or restarting the numbers)."""
    day = calendar.business_day(after, hall.tz, hall.reset_hour)[0]
    return ("clock.set", {"from": before, "to": after, "day": day if day > hall.day else hall.day})

