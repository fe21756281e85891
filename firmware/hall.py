"""The service hall's queue: services, waiting tickets, counters and their rating windows.

Event-sourced: every decide_* method looks at the state and returns an event (type, data)
without changing anything; apply(type, data, ts) is the only way state changes. The app
makes each event durable in the outbox *before* applying it, and at boot replays the
outbox after the last snapshot, so a power cut at any instant neither loses an issued
ticket nor repeats a number.

Serving order at a counter (documented in the README):
  1. tickets transferred to this counter, in arrival order;
  2. the counter's services in its configured order; within a service, tickets
     transferred to it or requeued after a no-show first (they already waited), then priority
     (绿色通道) tickets first - but after `priority_run` priority calls in a row at
     this counter, one waiting normal ticket is called, so normal tickets never starve.
The hall is built from the config by firmware/hall_setup.py (loaded at boot only), so the config's
key names cost no RAM here; decisions taken a few times a day (recall, skip, transfer, pause,
park, call a chosen number, walk-in...) live in firmware/desk.py, loaded per use.
Parked tickets (挂起) wait in one ring for the hall, PARK_MAX of them; a new day clears them.
Pure logic: runs under CPython and MicroPython.
"""
from firmware import calendar
from firmware.ticketring import TicketRing, PRIORITY, APPOINTMENT, REQUEUED, TRANSFERRED

PARK_MAX = 8   # parked tickets a hall holds (a few citizens away at once; more is refused)
# A parked ticket (挂起) is a ring entry of 16 bytes: the usual 8 - whose time field holds the
# seconds the citizen waited before the first call, not an issue time - then the service it was
# being served as (u8), the index of the counter that parked it (u8), 2 spare, and the seconds
# already served (u32). Durations, not times: unparked, the ticket gets back its own wait and
# service time, without the time away and whatever the clock did meanwhile.


def event_facts(etype):
    """(outbox priority, changes the hall state) of an event type, in one place (the README's
    events table is the contract; tests/unit/test_hall.py checks every type). Mostly by group:
    a tuple of full type names would cost a string object each in RAM on the device."""
    group = etype[:etype.find(".")]
    # 2: never dropped, the citizen's record (ticket.issued, ticket.called, ticket.walkin - a
    # number issued and called in one -, service.*, rating.*)
    if etype == "ticket.issued" or etype == "ticket.called" or etype.endswith(".walkin") \
            or group == "service" or group == "rating":
        return 2, True
    # 0: dropped first when the outbox overflows (device.heartbeat, printer.status)
    if etype.endswith(".heartbeat") or group == "printer":
        return 0, False
    # 1: everything else. ticket.*, counter.*, staff.*, day.reset and clock.set change the hall
    # (Hall.apply) and are replayed at boot; ticket.refused, device.*, command.*, config.*,
    # outbox.* and storage.* only report.
    return 1, etype != "ticket.refused" and (group == "ticket" or group == "counter" or group == "staff"
                                             or group == "day" or group == "clock")


class Refused(Exception):
    """A staff or backend request that the hall rules do not allow; .reason is a code."""

    def __init__(self, reason, detail=""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def kind_flags(kind):
    """The ticket flags of a kind name (anything unknown is a normal ticket)."""
    if kind == "priority":
        return PRIORITY
    if kind == "appointment":
        return APPOINTMENT
    return 0


def kind_name(flags):
    if flags & APPOINTMENT:
        return "appointment"
    if flags & PRIORITY:
        return "priority"
    return "normal"


class Service:
    def __init__(self, idx, code, prefix, limit, opens, closes, avg_s, capacity):
        self.idx = idx
        self.code = code
        self.prefix = prefix
        self.limit = limit         # daily_limit: numbers a day
        self.opens = opens         # hours, in minutes after local midnight
        self.closes = closes
        self.default_avg = avg_s   # avg_service_s: the estimate before any measurement
        self.waiting = TicketRing(capacity)
        self.last = 0              # last number issued today
        self.avg_s = avg_s
        self.finished = 0          # services finished today

    def label(self, number):
        return "%s%03d" % (self.prefix, number)


class Counter:
    def __init__(self, idx, cid, services, staff):
        self.idx = idx
        self.id = cid
        self.services = services   # service indexes, in the order this counter serves them
        self.staff = staff
        self.state = "open"        # open | paused | closed
        self.reason = ""
        self.direct = TicketRing(8)  # tickets transferred to this very counter
        # current and rating point at these preallocated lists (or are None): applying an
        # event, which happens after it is durable, must not allocate.
        self.cur = [0, 0, 0, 0, 0, 0, 0]
        self.rate = [None, None, None, 0]
        self.current = None        # cur: [service, number, flags, origin, issued_off, called_off, recalls]
        self.priority_run = 0
        self.req = 0               # the last hall request of this counter's device applied (a kiosk)
        self.rating = None         # rate: [ticket label, service code, staff, opened_ts] while a window is open


class Hall:
    def __init__(self, services, counters, max_recalls, priority_run, skipped_keep, next_guard, tz, reset_hour):
        """The queue rules come as plain values (firmware/hall_setup.py reads them from the config)."""
        self.max_recalls = max_recalls
        self.priority_run = priority_run
        self.tz = tz               # tz_offset_min
        self.reset_hour = reset_hour
        self.services = services
        self.by_code = {}
        for s in services:
            self.by_code[s.code] = s
        self.counters = counters
        self.by_id = {}
        for c in counters:
            self.by_id[c.id] = c
        self.skipped = TicketRing(skipped_keep)  # service byte = origin service
        self.parked = TicketRing(PARK_MAX, 16)
        self.next_guard = next_guard   # next_guard_s
        self.day = ""
        self.day_start = 0     # origin of the tickets' time offsets; moves with clock steps
        self.rates = True      # rating windows are kept here (False on a kiosk: see hall_setup)

    # ---- lookups -------------------------------------------------------------
    def counter(self, cid):
        c = self.by_id.get(cid)
        if c is None:
            raise Refused("unknown_counter", cid)
        return c

    def waiting_count(self, s):
        n = len(s.waiting)
        for c in self.counters:
            for i in range(len(c.direct)):
                if c.direct.service(i) == s.idx:
                    n += 1
        return n

    def is_new_day(self, now):
        """Time has passed into a later business day. Only a later day counts: after the
        clock was stepped back, the day it already reached is not started again."""
        return calendar.business_day(now, self.tz, self.reset_hour)[0] > self.day

    def _offset(self, ts):
        return max(0, ts - self.day_start)

    # ---- decisions (pure: state unchanged) -------------------------------------
    def decide_issue(self, code, kind, now, appointment=None):
        s = self.by_code.get(code)
        serving = 0                # counters serving s now
        if s is None:
            reason = "unknown_service"
        elif not (s.opens <= calendar.local_minute(now, self.tz) < s.closes):
            reason = "closed"
        elif s.last >= s.limit:
            reason = "limit"
        elif s.waiting.full():
            reason = "queue_full"
        else:
            reason = "no_counter"  # unless a counter serves s, or will after its pause
            for c in self.counters:
                if s.idx in c.services and c.state != "closed":
                    reason = None
                    if c.state == "open":
                        serving += 1
        if reason:
            return ("ticket.refused", {"service": code, "reason": reason, "day": self.day})
        flags = kind_flags(kind)
        if flags & (PRIORITY | APPOINTMENT):
            # served before normal tickets (see _pick): only those of the same class are ahead
            ahead = s.waiting.count_with(PRIORITY | APPOINTMENT)
        else:
            ahead = self.waiting_count(s)
        # minutes until called: people ahead x measured service time / counters serving now
        serving = serving or 1
        n = s.last + 1
        data = {"ticket": s.label(n), "n": n, "service": code, "kind": kind_name(flags), "ahead": ahead,
                "wait_min": (ahead * s.avg_s + serving * 60 - 1) // (serving * 60), "day": self.day}
        if appointment:
            data["appt"] = appointment
        return ("ticket.issued", data)

    def _pick(self, c):
        """(ring, index, serving service) of the ticket this counter should call next."""
        if len(c.direct):
            return c.direct, 0, self.services[c.direct.service(0)]
        for si in c.services:
            ring = self.services[si].waiting
            if not len(ring):
                continue
            front = ring.first_with(TRANSFERRED | REQUEUED, True)
            if front >= 0:  # transferred or requeued: already waited once, called next
                return ring, front, self.services[si]
            special = PRIORITY | APPOINTMENT
            pri = ring.first_with(special, True)
            if pri >= 0 and (c.priority_run < self.priority_run or ring.first_with(special, False) < 0):
                return ring, pri, self.services[si]
            return ring, ring.first_with(special, False), self.services[si]
        return None, -1, None

    def decide_next(self, cid, now):
        """Events for the 'next' key: finish the current ticket (if any), then call the next one."""
        c = self.counter(cid)
        if c.state != "open":
            raise Refused("counter_" + c.state)
        out = []
        if c.current is not None:
            # A second 'next' right after a call is a bounce or a mashed key, not a citizen
            # served in no time: nobody is finished and called on its account.
            if self._offset(now) - c.current[5] < self.next_guard:
                raise Refused("too_soon", str(self.next_guard))
            out.append(self.decide_finish(cid, now))
        ring, i, serving = self._pick(c)
        if ring is None:
            if not out:
                raise Refused("nobody_waiting")
            return out
        out.append(self.called_event(c, ring, i, serving, now))
        return out

    def called_event(self, c, ring, i, serving, now):
        """ticket.called for entry i of ring, served as service `serving` at counter c (also
        for a number chosen out of order: firmware/desk.py)."""
        number, flags, origin, issued = ring.number(i), ring.flags(i), ring.service(i), ring.issued(i)
        return ("ticket.called", {
            "ticket": self.services[origin].label(number), "n": number, "service": serving.code,
            "origin": self.services[origin].code, "kind": kind_name(flags), "counter": c.id,
            "staff": c.staff, "waited_s": max(0, self._offset(now) - issued), "day": self.day})

    def _ticket_fields(self, c, cur):
        s = self.services[cur[0]]
        return {"ticket": self.services[cur[3]].label(cur[1]), "n": cur[1], "service": s.code,
                "counter": c.id, "staff": c.staff, "day": self.day}

    def decide_finish(self, cid, now):
        c = self.counter(cid)
        cur = c.current
        if cur is None:
            raise Refused("not_serving")
        d = self._ticket_fields(c, cur)
        d["waited_s"] = max(0, cur[5] - cur[4])
        d["served_s"] = max(0, self._offset(now) - cur[5])
        d["kind"] = kind_name(cur[2])
        return ("service.finished", d)

    # ---- the one place state changes -------------------------------------------
    def apply(self, etype, d, ts):
        """Change the hall as event (etype, data d) at time ts says; unknown types change nothing.

        Runs after the event is durable, so it must not fail half-way: whatever allocates
        (look-ups, date maths) comes before the first change, and the changes themselves
        allocate nothing (preallocated rings and slots). A MemoryError can therefore only
        come before anything changed, and the caller may simply try again.

        It goes by the word after the dot ("ticket.called" -> "called"; each names one event
        type, tests/unit/test_hall.py checks it): the full type names would cost a string
        object each in RAM, and most are needed nowhere else here.
        """
        what = etype[etype.find(".") + 1:]     # allocates: before any change
        if "req" in d:     # caused by a counter's hall request: it is applied, once (role_kiosk)
            c = self.by_id.get(d.get("counter"))
            if c is not None and d["req"] > c.req:
                c.req = d["req"]
        if what == "issued":                   # ticket.issued
            s = self.by_code[d["service"]]
            flags = kind_flags(d["kind"])
            off = self._offset(ts)
            if d["n"] > s.last:
                s.last = d["n"]
            s.waiting.append(d["n"], flags, s.idx, off)
            return
        if what == "reset":                    # day.reset
            return self._new_day(d, ts)
        if what == "set":                      # clock.set
            self.day_start += d["to"] - d["from"]
            if d.get("day", "") > self.day:
                self.day = d["day"]
            return
        if what == "requeued":                 # ticket.requeued
            s = self.by_code[d["service"]]
            sk = self.skipped
            i = sk.find(d["n"], s.idx)
            if i >= 0:
                number = sk.number(i)
                flags = sk.flags(i)
                origin = sk.service(i)
                issued = sk.issued(i)
                sk.remove(i)
                s.waiting.push_front(number, flags | REQUEUED, origin, issued)
            return
        c = self.by_id.get(d.get("counter"))
        if c is None:
            return
        cur = c.current
        if what == "called":                   # ticket.called
            served = self.by_code[d["service"]].idx
            origin = self.by_code[d.get("origin", d["service"])].idx
            off = self._offset(ts)
            cur = c.cur
            # one store per slot: a 7-tuple assignment would build a tuple
            cur[0] = served
            cur[1] = d["n"]
            cur[2] = 0
            cur[3] = origin
            cur[4] = 0
            cur[5] = off
            cur[6] = 0
            self._take(c, cur)
            c.priority_run = c.priority_run + 1 if cur[2] & (PRIORITY | APPOINTMENT) else 0
            c.current = cur
        elif what == "finished":               # service.finished
            s = self.by_code[d["service"]]
            s.finished += 1
            # Rolling average (weight 1/8): follows a slow afternoon without one long case dominating.
            s.avg_s = (s.avg_s * 7 + max(10, d["served_s"])) // 8
            c.current = None
            r = c.rate
            r[0] = d["ticket"]
            r[1] = d["service"]
            r[2] = d["staff"]
            r[3] = ts
            if self.rates:
                c.rating = r
        elif what == "walkin":                 # ticket.walkin: a number made and called at once
            s = self.by_code[d["service"]]
            flags = kind_flags(d["kind"])
            off = self._offset(ts)
            if d["n"] > s.last:
                s.last = d["n"]
            cur = c.cur
            cur[0] = s.idx
            cur[1] = d["n"]
            cur[2] = flags
            cur[3] = s.idx
            cur[4] = off     # issued and called now: it waited nowhere
            cur[5] = off
            cur[6] = 0
            c.current = cur
        elif what == "parked":                 # ticket.parked
            if cur is not None:
                off = self._offset(ts)
                p = self.parked
                if p.full():   # refused when deciding; a replay must still not fail
                    p.remove(0)
                p.append(cur[1], cur[2], cur[3], max(0, cur[5] - cur[4]))
                b = p.buf
                o = (p.n - 1) * p.size + 8
                v = max(0, off - cur[5])
                b[o] = cur[0]
                b[o + 1] = c.idx
                b[o + 2] = b[o + 3] = 0
                b[o + 4] = v & 0xFF
                b[o + 5] = (v >> 8) & 0xFF
                b[o + 6] = (v >> 16) & 0xFF
                b[o + 7] = (v >> 24) & 0xFF
                c.current = None
        elif what == "unparked":               # ticket.unparked
            p = self.parked
            i = p.find(d["n"], self.by_code[d["origin"]].idx)
            if i >= 0:
                off = self._offset(ts)
                cur = c.cur
                b = p.buf
                o = i * p.size + 8
                cur[0] = b[o]
                cur[1] = p.number(i)
                cur[2] = p.flags(i)
                cur[3] = p.service(i)
                # called and issued move on by the time away: service.finished says the wait
                # before the first call and the time spent at a counter, not the errand
                cur[5] = max(0, off - (b[o + 4] | b[o + 5] << 8 | b[o + 6] << 16 | b[o + 7] << 24))
                cur[4] = max(0, cur[5] - p.issued(i))
                cur[6] = 0
                p.remove(i)
                c.current = cur
        elif what == "ended":                  # service.ended
            c.current = None
        elif what == "submitted" or what == "expired":     # rating.submitted, rating.expired
            if c.rating is not None and c.rating[0] == d["ticket"]:
                c.rating = None
        elif what == "recalled":               # ticket.recalled
            if cur is not None:
                cur[6] = d["count"]
        elif what == "skipped":                # ticket.skipped
            if cur is not None:
                if self.skipped.full():
                    self.skipped.remove(0)
                self.skipped.append(cur[1], cur[2], cur[3], cur[4])
                c.current = None
        elif what == "transferred":            # ticket.transferred
            if cur is not None:
                flags = cur[2] | TRANSFERRED
                if "to_counter" in d:
                    self.by_id[d["to_counter"]].direct.append(cur[1], flags, cur[3], cur[4])
                else:
                    self.by_code[d["to_service"]].waiting.push_front(cur[1], flags, cur[3], cur[4])
                c.current = None
        elif what == "paused":                 # counter.paused
            c.state = "paused"
            c.reason = d.get("reason", "")
        elif what == "resumed":                # counter.resumed
            c.state = "open"
            c.reason = ""
        elif what == "closed":                 # counter.closed
            c.state = "closed"
        elif what == "signed_in":              # staff.signed_in
            c.staff = d["staff"]
        elif what == "signed_out":             # staff.signed_out
            c.staff = None

    def _new_day(self, d, ts):
        day, start = calendar.business_day(ts, self.tz, self.reset_hour)
        self.day, self.day_start = d.get("day") or day, start
        for s in self.services:
            s.waiting.clear()
            s.last = 0
            s.finished = 0
        for c in self.counters:
            c.direct.clear()
            c.current = None
            # An open rating window outlives the reset: the service happened, and the pad
            # (which keeps it open) must find it again after a power cut.
            c.priority_run = 0
            if c.state == "closed":
                c.state = "open"
        self.skipped.clear()
        self.parked.clear()

    def _take(self, c, cur):
        """Remove the called ticket (cur[1], origin cur[3]) from wherever it waits; fills in
        its flags and issue time."""
        ring = c.direct
        i = ring.find(cur[1], cur[3])
        if i < 0:
            for si in c.services:
                ring = self.services[si].waiting
                i = ring.find(cur[1], cur[3])
                if i >= 0:
                    break
        if i >= 0:
            cur[2], cur[4] = ring.flags(i), ring.issued(i)
            ring.remove(i)

    # ---- views for display / status ------------------------------------------
    def summary(self):
        waiting = {}
        issued = {}
        for s in self.services:
            waiting[s.code] = self.waiting_count(s)
            issued[s.code] = s.last
        counters = {}
        for c in self.counters:
            counters[c.id] = {"state": c.state, "reason": c.reason, "staff": c.staff,
                              "serving": self._ticket_fields(c, c.current)["ticket"] if c.current else None}
            if self.rates:
                counters[c.id]["rating_open"] = c.rating[0] if c.rating else None
        p = self.parked
        parked = [self.services[p.service(i)].label(p.number(i)) for i in range(len(p))]
        return {"day": self.day, "waiting": waiting, "issued": issued, "counters": counters, "parked": parked}
