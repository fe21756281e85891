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
Pure logic: runs under CPython and MicroPython.
"""
from firmware import calendar
from firmware.ticketring import TicketRing, PRIORITY, APPOINTMENT, REQUEUED, TRANSFERRED


# Facts about every event type, in one place (the README's events table is the contract).
# Here, beside Hall.apply, because the strings are shared with it (one copy in RAM).
#   priority 0  dropped first when the outbox overflows: device.heartbeat, printer.status
#   priority 2  never dropped (the citizen's record): ticket.issued, ticket.called,
#               service.finished, service.ended, rating.submitted, rating.expired
#   priority 1  everything else
#   state       ticket.*, service.*, rating.*, counter.*, staff.*, day.reset, clock.set change the
#               hall (Hall.apply) and are replayed at boot; ticket.refused, device.*, printer.*,
#               command.*, config.*, outbox.*, storage.* only report.
_KEEP = ("ticket.issued", "ticket.called", "service.finished", "service.ended",
         "rating.submitted", "rating.expired")
_STATEFUL = ("ticket", "service", "rating", "counter", "staff", "day", "clock")


def event_facts(etype):
    """(outbox priority, changes the hall state) of an event type."""
    if etype in _KEEP:
        return 2, True
    if etype == "device.heartbeat" or etype == "printer.status":
        return 0, False
    return 1, etype != "ticket.refused" and etype[:etype.find(".")] in _STATEFUL


class Refused(Exception):
    """A staff or backend request that the hall rules do not allow; .reason is a code."""

    def __init__(self, reason, detail=""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


KINDS = {"normal": 0, "priority": PRIORITY, "appointment": APPOINTMENT}


def kind_name(flags):
    if flags & APPOINTMENT:
        return "appointment"
    if flags & PRIORITY:
        return "priority"
    return "normal"


class Service:
    def __init__(self, idx, cfg, capacity):
        self.idx = idx
        self.code = cfg["code"]
        self.prefix = cfg["prefix"]
        self.limit = cfg["daily_limit"]
        self.target_min = cfg["target_min"]
        h = cfg["hours"]
        self.opens = _minutes(h[0])
        self.closes = _minutes(h[1])
        self.default_avg = cfg["avg_service_s"]
        self.waiting = TicketRing(capacity)
        self.last = 0          # last number issued today
        self.avg_s = self.default_avg
        self.finished = 0      # services finished today

    def label(self, number):
        return "%s%03d" % (self.prefix, number)


class Counter:
    def __init__(self, idx, cfg, services_by_code):
        self.idx = idx
        self.id = cfg["id"]
        self.services = [services_by_code[c].idx for c in cfg["services"]]
        self.staff = cfg.get("staff")
        self.state = "open"        # open | paused | closed
        self.reason = ""
        self.direct = TicketRing(8)  # tickets transferred to this very counter
        # current and rating point at these preallocated lists (or are None): applying an
        # event, which happens after it is durable, must not allocate.
        self.cur = [0, 0, 0, 0, 0, 0, 0]
        self.rate = [None, None, None, 0]
        self.current = None        # cur: [service, number, flags, origin, issued_off, called_off, recalls]
        self.priority_run = 0
        self.rating = None         # rate: [ticket label, service code, staff, opened_ts] while a window is open


def _minutes(hhmm):
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


class Hall:
    def __init__(self, cfg):
        q = cfg["queue"]
        self.max_recalls = q["max_recalls"]
        self.priority_run = q["priority_run"]
        self.tz = cfg["tz_offset_min"]
        self.reset_hour = cfg["day_reset_hour"]
        self.services = [Service(i, s, q["max_waiting"]) for i, s in enumerate(cfg["services"])]
        self.by_code = {}
        for s in self.services:
            self.by_code[s.code] = s
        self.counters = [Counter(i, c, self.by_code) for i, c in enumerate(cfg["counters"])]
        self.by_id = {}
        for c in self.counters:
            self.by_id[c.id] = c
        self.skipped = TicketRing(q["skipped_keep"])  # service byte = origin service
        self.next_guard = q.get("next_guard_s", 3)
        self.day = ""
        self.day_start = 0     # origin of the tickets' time offsets; moves with clock steps

    # ---- lookups -------------------------------------------------------------
    def service(self, code):
        s = self.by_code.get(code)
        if s is None:
            raise Refused("unknown_service", code)
        return s

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

    def open_counters(self, s):
        n = 0
        for c in self.counters:
            if c.state == "open" and s.idx in c.services:
                n += 1
        return n

    def estimate_min(self, s, ahead):
        """Minutes until a new ticket is called: people ahead x measured service time / open counters."""
        counters = self.open_counters(s) or 1
        return (ahead * s.avg_s + counters * 60 - 1) // (counters * 60)

    def is_new_day(self, now):
        """Time has passed into a later business day. Only a later day counts: after the
        clock was stepped back, the day it already reached is not started again."""
        return calendar.business_day(now, self.tz, self.reset_hour)[0] > self.day

    def _offset(self, ts):
        return max(0, ts - self.day_start)

    # ---- decisions (pure: state unchanged) -------------------------------------
    def decide_issue(self, code, kind, now, appointment=None):
        s = self.by_code.get(code)
        day = self.day
        if s is None:
            return ("ticket.refused", {"service": code, "reason": "unknown_service", "day": day})
        minute = calendar.local_minute(now, self.tz)
        if not (s.opens <= minute < s.closes):
            return ("ticket.refused", {"service": code, "reason": "closed", "day": day})
        if s.last >= s.limit:
            return ("ticket.refused", {"service": code, "reason": "limit", "day": day})
        if s.waiting.full():
            return ("ticket.refused", {"service": code, "reason": "queue_full", "day": day})
        if self.open_counters(s) == 0 and not any(c.state == "paused" and s.idx in c.services for c in self.counters):
            return ("ticket.refused", {"service": code, "reason": "no_counter", "day": day})
        flags = KINDS.get(kind, 0)
        if flags & (PRIORITY | APPOINTMENT):
            # served before normal tickets (see _pick): only those of the same class are ahead
            ahead = s.waiting.count_with(PRIORITY | APPOINTMENT)
        else:
            ahead = self.waiting_count(s)
        n = s.last + 1
        data = {"ticket": s.label(n), "n": n, "service": code, "kind": kind_name(flags),
                "ahead": ahead, "wait_min": self.estimate_min(s, ahead), "day": day}
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
        number, flags, origin, issued = ring.number(i), ring.flags(i), ring.service(i), ring.issued(i)
        out.append(("ticket.called", {
            "ticket": self.services[origin].label(number), "n": number, "service": serving.code,
            "origin": self.services[origin].code, "kind": kind_name(flags), "counter": c.id,
            "staff": c.staff, "waited_s": max(0, self._offset(now) - issued), "day": self.day}))
        return out

    def _current(self, cid):
        c = self.counter(cid)
        if c.current is None:
            raise Refused("not_serving")
        return c, c.current

    def _ticket_fields(self, c, cur):
        s = self.services[cur[0]]
        return {"ticket": self.services[cur[3]].label(cur[1]), "n": cur[1], "service": s.code,
                "counter": c.id, "staff": c.staff, "day": self.day}

    def decide_recall(self, cid, now):
        c, cur = self._current(cid)
        if cur[6] >= self.max_recalls:
            d = self._ticket_fields(c, cur)
            d["auto"] = True
            return ("ticket.skipped", d)
        d = self._ticket_fields(c, cur)
        d["count"] = cur[6] + 1
        return ("ticket.recalled", d)

    def decide_skip(self, cid, now):
        c, cur = self._current(cid)
        d = self._ticket_fields(c, cur)
        d["auto"] = False
        return ("ticket.skipped", d)

    def decide_finish(self, cid, now):
        c, cur = self._current(cid)
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
        """
        if etype == "ticket.issued":
            s = self.by_code[d["service"]]
            off = self._offset(ts)
            if d["n"] > s.last:
                s.last = d["n"]
            s.waiting.append(d["n"], KINDS.get(d["kind"], 0), s.idx, off)
            return
        if etype == "day.reset":
            return self._new_day(d, ts)
        if etype == "clock.set":
            self.day_start += d["to"] - d["from"]
            if d.get("day", "") > self.day:
                self.day = d["day"]
            return
        if etype == "ticket.requeued":
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
        if etype == "ticket.called":
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
        elif etype == "service.finished":
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
            c.rating = r
        elif etype == "service.ended":
            c.current = None
        elif etype in ("rating.submitted", "rating.expired"):
            if c.rating is not None and c.rating[0] == d["ticket"]:
                c.rating = None
        elif etype == "ticket.recalled":
            if cur is not None:
                cur[6] = d["count"]
        elif etype == "ticket.skipped":
            if cur is not None:
                if self.skipped.full():
                    self.skipped.remove(0)
                self.skipped.append(cur[1], cur[2], cur[3], cur[4])
                c.current = None
        elif etype == "ticket.transferred":
            if cur is not None:
                flags = cur[2] | TRANSFERRED
                if "to_counter" in d:
                    self.by_id[d["to_counter"]].direct.append(cur[1], flags, cur[3], cur[4])
                else:
                    self.by_code[d["to_service"]].waiting.push_front(cur[1], flags, cur[3], cur[4])
                c.current = None
        elif etype == "counter.paused":
            c.state = "paused"
            c.reason = d.get("reason", "")
        elif etype == "counter.resumed":
            c.state = "open"
            c.reason = ""
        elif etype == "counter.closed":
            c.state = "closed"
        elif etype == "staff.signed_in":
            c.staff = d["staff"]
        elif etype == "staff.signed_out":
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
        return {
            "day": self.day,
            "waiting": dict((s.code, self.waiting_count(s)) for s in self.services),
            "issued": dict((s.code, s.last) for s in self.services),
            "counters": dict((c.id, {"state": c.state, "reason": c.reason, "staff": c.staff,
                                     "serving": self._ticket_fields(c, c.current)["ticket"] if c.current else None,
                                     "rating_open": c.rating[0] if c.rating else None})
                             for c in self.counters),
        }
