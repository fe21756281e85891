"""The service hall's queue: services, waiting tickets, counters and their rating windows.

Event-sourced: every decide_* method looks at the state and returns an event (type, data)
without changing anything; apply(type, data, ts) is the only way state changes. The app
makes each event durable in the outbox *before* applying it, and at boot replays the
outbox after the last snapshot, so a power cut at any instant neither loses an issued
ticket nor repeats a number.

Serving order at a counter (documented in the README):
  1. tickets transferred to this counter, in arrival order;
  2. the counter's services in its configured order; within a service, priority
     (绿色通道) tickets first - but after `priority_run` priority calls in a row at
     this counter, one waiting normal ticket is called, so normal tickets never starve.
Pure logic: runs under CPython and MicroPython.
"""
from firmware import calendar
from firmware.ticketring import TicketRing, PRIORITY, APPOINTMENT, REQUEUED, TRANSFERRED


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
        self.name = cfg["name"]
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
        self.name = cfg["name"]
        self.services = [services_by_code[c].idx for c in cfg["services"]]
        self.staff = cfg.get("staff")
        self.state = "open"        # open | paused | closed
        self.reason = ""
        self.direct = TicketRing(8)  # tickets transferred to this very counter
        self.current = None        # [service, number, flags, origin, issued_off, called_off, recalls]
        self.priority_run = 0
        self.rating = None         # [ticket label, service code, staff, opened_ts] while a window is open


def _minutes(hhmm):
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


class Hall:
    def __init__(self, cfg):
        self.cfg = cfg
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
        self.day = ""
        self.day_start = 0

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
                if c.direct.get(i)[2] == s.idx:
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
        return calendar.business_day(now, self.tz, self.reset_hour)[0] != self.day

    def _offset(self, ts):
        return max(0, ts - self.day_start)

    # ---- decisions (pure: state unchanged) -------------------------------------
    def decide_day(self, now):
        day, _ = calendar.business_day(now, self.tz, self.reset_hour)
        waiting = 0
        for s in self.services:
            waiting += len(s.waiting)
        return ("day.reset", {"day": day, "prev_day": self.day, "dropped_waiting": waiting})

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
        if flags & PRIORITY:
            ahead = s.waiting.count_with(PRIORITY)
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
            return c.direct, 0, self.services[c.direct.get(0)[2]]
        for si in c.services:
            ring = self.services[si].waiting
            if not len(ring):
                continue
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
            out.append(self.decide_finish(cid, now))
        ring, i, serving = self._pick(c)
        if ring is None:
            if not out:
                raise Refused("nobody_waiting")
            return out
        number, flags, origin, issued = ring.get(i)
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

    def decide_transfer(self, cid, now, to_service=None, to_counter=None):
        c, cur = self._current(cid)
        d = self._ticket_fields(c, cur)
        if to_counter is not None:
            t = self.counter(to_counter)
            if t is c:
                raise Refused("same_counter")
            if t.direct.full():
                raise Refused("queue_full")
            d["to_counter"] = t.id
        else:
            s = self.service(to_service)
            if s.waiting.full():
                raise Refused("queue_full")
            d["to_service"] = s.code
        return ("ticket.transferred", d)

    def decide_requeue(self, label, cid=None):
        """A skipped citizen came back: staff put the ticket back first in its queue, once."""
        for i in range(len(self.skipped)):
            number, flags, origin, issued = self.skipped.get(i)
            if self.services[origin].label(number) == label:
                if flags & REQUEUED:
                    raise Refused("already_requeued", label)
                if self.services[origin].waiting.full():
                    raise Refused("queue_full")
                return ("ticket.requeued", {"ticket": label, "n": number, "service": self.services[origin].code,
                                            "counter": cid, "day": self.day})
        raise Refused("not_skipped", label)

    def decide_pause(self, cid, reason, staff=None):
        c = self.counter(cid)
        if c.state == "paused":
            raise Refused("already_paused")
        if c.state == "closed":
            raise Refused("counter_closed")
        if c.current is not None:
            raise Refused("serving", self._ticket_fields(c, c.current)["ticket"])
        return ("counter.paused", {"counter": c.id, "staff": c.staff, "reason": reason or "break"})

    def decide_resume(self, cid):
        c = self.counter(cid)
        if c.state == "open":
            raise Refused("not_paused")
        return ("counter.resumed", {"counter": c.id, "staff": c.staff, "was": c.state})

    def decide_close(self, cid):
        """窗口有群众不下班: a counter may close only when none of its services has anyone waiting."""
        c = self.counter(cid)
        if c.state == "closed":
            raise Refused("already_closed")
        if c.current is not None:
            raise Refused("serving", self._ticket_fields(c, c.current)["ticket"])
        waiting = len(c.direct)
        for si in c.services:
            waiting += len(self.services[si].waiting)
        if waiting:
            raise Refused("people_waiting", str(waiting))
        return ("counter.closed", {"counter": c.id, "staff": c.staff})

    def decide_signin(self, cid, staff):
        c = self.counter(cid)
        if c.current is not None:
            raise Refused("serving", self._ticket_fields(c, c.current)["ticket"])
        if staff:
            return ("staff.signed_in", {"counter": c.id, "staff": staff, "was": c.staff})
        return ("staff.signed_out", {"counter": c.id, "staff": c.staff})

    # ---- the one place state changes -------------------------------------------
    def apply(self, etype, d, ts):
        fn = _APPLY.get(etype)
        if fn is not None:
            fn(self, d, ts)

    def _apply_day(self, d, ts):
        self.day, self.day_start = calendar.business_day(ts, self.tz, self.reset_hour)
        if d.get("day"):
            self.day = d["day"]
        for s in self.services:
            s.waiting.clear()
            s.last = 0
            s.finished = 0
        for c in self.counters:
            c.direct.clear()
            c.current = None
            c.rating = None
            c.priority_run = 0
            if c.state == "closed":
                c.state = "open"
        self.skipped.clear()

    def _apply_issued(self, d, ts):
        s = self.by_code[d["service"]]
        s.last = d["n"]
        s.waiting.append(d["n"], KINDS.get(d["kind"], 0), s.idx, self._offset(ts))

    def _take(self, c, d):
        """Remove the called ticket from wherever it waits; (flags, origin, issued offset)."""
        origin = self.by_code[d.get("origin", d["service"])].idx
        rings = [c.direct] + [self.services[si].waiting for si in c.services]
        for ring in rings:
            i = ring.find(d["n"], origin)
            if i >= 0:
                _, flags, _, issued = ring.pop(i)
                return flags, origin, issued
        return 0, origin, 0

    def _apply_called(self, d, ts):
        c = self.by_id[d["counter"]]
        flags, origin, issued = self._take(c, d)
        if flags & (PRIORITY | APPOINTMENT):
            c.priority_run += 1
        else:
            c.priority_run = 0
        c.current = [self.by_code[d["service"]].idx, d["n"], flags, origin, issued, self._offset(ts), 0]

    def _apply_recalled(self, d, ts):
        c = self.by_id[d["counter"]]
        if c.current is not None:
            c.current[6] = d["count"]

    def _apply_skipped(self, d, ts):
        c = self.by_id[d["counter"]]
        cur = c.current
        if cur is None:
            return
        if self.skipped.full():
            self.skipped.pop(0)
        self.skipped.append(cur[1], cur[2], cur[3], cur[4])
        c.current = None

    def _apply_requeued(self, d, ts):
        s = self.by_code[d["service"]]
        i = self.skipped.find(d["n"], s.idx)
        if i >= 0:
            number, flags, origin, issued = self.skipped.pop(i)
            s.waiting.push_front(number, flags | REQUEUED, origin, issued)

    def _apply_transferred(self, d, ts):
        c = self.by_id[d["counter"]]
        cur = c.current
        if cur is None:
            return
        flags = cur[2] | TRANSFERRED
        if "to_counter" in d:
            self.by_id[d["to_counter"]].direct.append(cur[1], flags, cur[3], cur[4])
        else:
            self.by_code[d["to_service"]].waiting.push_front(cur[1], flags, cur[3], cur[4])
        c.current = None

    def _apply_finished(self, d, ts):
        c = self.by_id[d["counter"]]
        s = self.by_code[d["service"]]
        s.finished += 1
        # Rolling average (weight 1/8): follows a slow afternoon without one long case dominating.
        s.avg_s = (s.avg_s * 7 + max(10, d["served_s"])) // 8
        c.current = None
        c.rating = [d["ticket"], d["service"], d["staff"], ts]

    def _apply_rated(self, d, ts):
        c = self.by_id.get(d["counter"])
        if c is not None and c.rating is not None and c.rating[0] == d["ticket"]:
            c.rating = None

    def _apply_paused(self, d, ts):
        c = self.by_id[d["counter"]]
        c.state = "paused"
        c.reason = d.get("reason", "")

    def _apply_resumed(self, d, ts):
        c = self.by_id[d["counter"]]
        c.state = "open"
        c.reason = ""

    def _apply_closed(self, d, ts):
        self.by_id[d["counter"]].state = "closed"

    def _apply_signin(self, d, ts):
        self.by_id[d["counter"]].staff = d["staff"]

    def _apply_signout(self, d, ts):
        self.by_id[d["counter"]].staff = None

    # ---- snapshots -----------------------------------------------------------
    def snapshot(self):
        """JSON-able state, written temp-then-rename every so many events."""
        import binascii
        return {
            "day": self.day, "day_start": self.day_start,
            "services": [[s.last, s.avg_s, s.finished, binascii.hexlify(s.waiting.dump()).decode()]
                         for s in self.services],
            "counters": [[c.state, c.reason, c.staff, c.current, c.priority_run, c.rating,
                          binascii.hexlify(c.direct.dump()).decode()] for c in self.counters],
            "skipped": binascii.hexlify(self.skipped.dump()).decode(),
        }

    def restore(self, snap):
        import binascii
        self.day = snap["day"]
        self.day_start = snap["day_start"]
        for s, row in zip(self.services, snap["services"]):
            s.last, s.avg_s, s.finished = row[0], row[1], row[2]
            s.waiting.load(binascii.unhexlify(row[3]))
        for c, row in zip(self.counters, snap["counters"]):
            c.state, c.reason, c.staff, c.current, c.priority_run, c.rating = row[:6]
            c.direct.load(binascii.unhexlify(row[6]))
        self.skipped.load(binascii.unhexlify(snap["skipped"]))

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


_APPLY = {
    "day.reset": Hall._apply_day,
    "ticket.issued": Hall._apply_issued,
    "ticket.called": Hall._apply_called,
    "ticket.recalled": Hall._apply_recalled,
    "ticket.skipped": Hall._apply_skipped,
    "ticket.requeued": Hall._apply_requeued,
    "ticket.transferred": Hall._apply_transferred,
    "service.finished": Hall._apply_finished,
    "rating.submitted": Hall._apply_rated,
    "rating.expired": Hall._apply_rated,
    "counter.paused": Hall._apply_paused,
    "counter.resumed": Hall._apply_resumed,
    "counter.closed": Hall._apply_closed,
    "staff.signed_in": Hall._apply_signin,
    "staff.signed_out": Hall._apply_signout,
}
