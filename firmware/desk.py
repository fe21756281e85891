"""Decisions that happen a few times a day: recall and skip a citizen who does not come,
pause/resume, close, transfer (AB岗), requeue a returned no-show, staff sign-in - and the hall's
calendar: a new business day, a clock step.

Separate from firmware.hall so the common path (issue, call, finish, rate) costs no RAM for
it: the app imports this module when needed and lets it go afterwards. Like the hall's
decide_* methods, every function here only decides: it returns an event or raises Refused.
"""
from firmware import calendar
from firmware.hall import Refused
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
    out.append(("day.reset", {"day": day, "prev_day": hall.day, "dropped_waiting": waiting}))
    return out


def decide_clock(hall, before, after):
    """A clock step is not time passing: the tickets' time offsets move with it and the
    business day only ever moves forward (a late first NTP sync names today without
    dropping anyone or restarting the numbers)."""
    day = calendar.business_day(after, hall.tz, hall.reset_hour)[0]
    return ("clock.set", {"from": before, "to": after, "day": day if day > hall.day else hall.day})

