"""Role `counter`: one service window - its display, staff keys and rating pad - asking the
kiosk for every queue decision over the hall protocol (firmware/hallnet.py).

The kiosk is the truth about the queue; this device is the truth about its ratings. What it
must not forget across a power cut is in <root>/link.json, written before anything is sent:
  n        the last request number used (never reused, so the kiosk applies each once)
  pend     [n, ticket] of a `finish` the kiosk has not confirmed yet (delivered, once, when it
           is back; the kiosk finishes that ticket or refuses)
  serving  [ticket, service] this window serves; state/staff/day as the kiosk last said
  rate     [ticket, service, staff, opened ts, finish request n, finish event seq, day] of the
           open rating window: a rating names the kiosk's finished service by it
A staff key is asked twice at most (same n, ~4 s in all); no answer -> "not sent" on the
display, and the kiosk refuses that request if it turns up later (firmware/role_kiosk.py).
`finish` is different: the service is over whatever the network says, so the pad opens for
the ticket being served and the finish waits in `pend`, re-sent with backoff (1 s .. 30 s)
until the kiosk answers it. Other keys wait until it has.
"""
import json

import asyncio

from firmware import hallnet, messages, release, screens
from firmware.rating import IDLE

_LINK = "/link.json"
_BACKOFF_MAX_MS = const(30000)


class CounterLink:
    def __init__(self, app, cfg):
        self.app = app
        ln = cfg["link"]
        self.cid = ln["counter"]
        self.dev = cfg["device"]
        self.kiosk = ln["kiosk"]
        self.hm = hallnet.keyed(ln["request_key"])
        kbase = "qterm/v1/%s/%s/" % (cfg["site"], ln["kiosk"])
        self.kbase = kbase
        self.req_topic = hallnet.topic(kbase, "req", self.cid)
        self.ans_topic = hallnet.topic(kbase, "ans", self.cid)
        self.path = app.root + _LINK
        from firmware import store
        try:
            st = store.read_json(self.path) if store.exists(self.path) else {}
        except ValueError:      # written temp-then-rename: only a damaged flash gets here
            st = {}
            app.problems.append("link.json damaged: asking the kiosk")
        store = None
        self.n = st.get("n", 0)
        self.pend = st.get("pend")
        self.serving = st.get("serving")
        self.state = st.get("state", "open")
        self.staff = st.get("staff")
        self.day = st.get("day", "")
        self.rate = st.get("rate")
        self.reached = None     # the kiosk answered the last request (None: not asked yet)
        self.kiosk_up = None    # its retained status
        self.busy = False       # a request is out: one at a time
        self.resync = True      # ask the kiosk what this window serves (at boot, on a mismatch)
        self.want = 0
        self.got = None
        self.event = asyncio.Event()
        self.kick = asyncio.Event()
        self.stats = {"not_sent": 0, "bad_answers": 0, "late_answers": 0}
        self.skew = 0           # the kiosk's clock minus this one's, learnt from a `late` refusal
        self.entry = None       # the keypad's KeyEntry, from the first key on
        if self.rate:   # the window stays open across a power cut (quietly: booting)
            app.pads[self.cid].open(self.rate[:4], app.hal.clock.ticks_ms(), app.now())

    # ---- wiring ------------------------------------------------------------------
    def subs(self):
        k = self.kbase
        return ((self.ans_topic, 0), (k + "status", 1), (k + "state", 0))

    def save(self):
        """link.json, temp-then-rename (firmware/store.py, loaded for the write: a key press
        is rare next to the heap it would hold all day)."""
        from firmware import store
        store.write_json(self.path, {"n": self.n, "pend": self.pend, "serving": self.serving,
                                     "state": self.state, "staff": self.staff, "day": self.day,
                                     "rate": self.rate})
        store = None
        release("store")

    def message(self, topic, payload):
        if not payload:     # None, False: not received (too large, no memory), or empty
            return
        if topic == self.ans_topic:
            m = hallnet.open_answer(self.hm, payload, self.cid)
            if m is None:
                self.stats["bad_answers"] += 1
            elif m["n"] == self.want:
                self.got = m
                self.event.set()
            else:
                self.stats["late_answers"] += 1
            return
        try:
            d = json.loads(payload)
        except ValueError:
            return
        if not isinstance(d, dict):
            return
        if topic == self.kbase + "status":
            up = d.get("state") == "online"
            if up != self.kiosk_up:
                self.kiosk_up = up
                if up:
                    self.kick.set()     # retry now, not at the end of a backoff
                if not self.app.screen_until:   # 叫号暂停 comes and goes with the kiosk
                    screens.home(self.app)
        elif topic == self.kbase + "state":
            mine = (d.get("counters") or {}).get(self.cid)
            if isinstance(mine, dict) and self.pend is None and not self.busy:
                label = self.serving[0] if self.serving else None
                if mine.get("serving") != label or mine.get("state") != self.state:
                    self.resync = True  # changed behind this window's back (a backend command)
                    self.kick.set()

    # ---- requests ------------------------------------------------------------------
    async def ask(self, op, args, n=None):
        """The kiosk's answer {"n", "ok", "r", ...} to one request, or None if none came."""
        app = self.app
        if n is None:
            self.n += 1
            n = self.n
            self.save()     # before sending: a number is never used twice
        raw = hallnet.sign(self.hm, {"a": args, "c": self.cid, "dev": self.dev, "n": n, "op": op,
                                     "ts": app.now() + self.skew})
        self.want = n
        self.got = None
        for wait_ms in (1500, 2500):
            self.event.clear()
            if not await app.publisher.send(self.req_topic, raw, 0):
                break
            try:
                await asyncio.wait_for_ms(self.event.wait(), wait_ms)
            except asyncio.TimeoutError:
                continue
            m = self.got
            self.want = 0
            self._reached(True)
            self.adopt(m["r"])
            return m
        self.want = 0
        self._reached(False)
        return None

    def _reached(self, ok):
        if ok != self.reached:
            self.reached = ok
            self.app.hal.indicator.set("link", ok)
            if not self.app.screen_until:
                screens.home(self.app)

    def adopt(self, r):
        """The kiosk's word on this window (every answer carries it)."""
        if self.pend is None:
            s = r.get("serving")
            self.serving = list(s) if s else None
        self.state = r.get("state", self.state)
        self.staff = r.get("staff")
        self.day = r.get("day", self.day)
        q = r.get("req")    # a sync's: the kiosk's highest number from this window
        if isinstance(q, int) and q > self.n:
            self.n = q      # link.json was lost: never reuse a number the kiosk holds
        self.save()

    async def sync(self):
        """Ask the kiosk what this window serves. With no request number yet (a new board,
        link.json lost) it is asked as number 0, which the kiosk never applies nor takes for a
        repeat, and its answer's "req" sets the number to go on from."""
        m = await self.ask("sync", {}, 0 if not self.n else None)
        if m is not None:
            self.resync = False
        return m

    async def deliver(self):
        """Send the finish the kiosk has not confirmed; its answer, or None. It names its
        ticket: the kiosk finishes that service or refuses, never whatever a backend made this
        window serve meanwhile (a rating would be bound to a service nobody rated)."""
        p = self.pend
        m = await self.ask("finish", {"ticket": p[1]} if len(p) > 1 else {}, p[0])
        if m is not None:
            self.pend = None
            s = m["r"].get("serving")       # the kiosk's word, now that no finish is pending
            self.serving = list(s) if s else None
            rate = self.rate
            if rate and rate[4] == p[0] and rate[5] is None and m["ok"]:
                rate[5] = m["r"].get("fin_seq")
            self.save()
            screens.home(self.app)
        return m

    async def act(self, key, args):
        """A staff key or keypad function: asked of the kiosk; the press's result."""
        for _ in range(120):    # a background request (sync, a finish) ends within ~4 s
            if not self.busy:
                break
            await asyncio.sleep_ms(50)
        else:
            return self._refuse("busy")
        self.busy = True
        try:
            if not self.n and await self.sync() is None:
                return self._refuse("not_sent")
            if self.pend is not None and await self.deliver() is None:
                return self._refuse("not_sent")
            if key == "finish":
                return await self._finish()
            done = []
            if key == "next" and self.serving is not None:
                # `next` while serving finishes first, as its own request: the finish is then
                # delivered once whatever happens to the call, and the pad opens for it
                f = await self._finish()
                if not f["ok"]:
                    return f
                if f.get("queued"):     # the kiosk went away meanwhile: the call waits
                    return self._refuse("not_sent")
                done = f["events"]
            m = await self.ask(key, args)
            if m is not None and not m["ok"] and m["r"].get("refused") == "late":
                # this clock is off (a flat RTC cell, no NTP): the request was refused, not
                # applied. Stamp with the kiosk's time (its signed answer) and ask once more.
                self.skew = m["ts"] - self.app.now()
                m = await self.ask(key, args)
            if m is None:
                return self._refuse("not_sent")
            r = m["r"]
            if not m["ok"]:
                return self._refuse(r.get("refused") or "error", r.get("detail") or "")
            evs = done + (r.get("events") or [])
            res = {"ok": True, "events": evs}
            if self.serving:
                res["ticket"] = self.serving[0]
                if "ticket.called" in evs or "ticket.recalled" in evs or "ticket.unparked" in evs \
                        or "ticket.walkin" in evs:
                    self._show_call()
                    return res
            screens.home(self.app)
            return res
        finally:
            self.busy = False

    async def _finish(self):
        app = self.app
        if self.serving is None:
            return self._refuse("not_serving")
        pad = app.pads[self.cid]
        if pad.stage != IDLE:
            app._expire(pad)    # the last citizen's window ends with this service
        t, svc = self.serving
        was = (self.n, self.pend, self.rate)
        n = self.n = self.n + 1
        self.pend = [n, t]
        self.rate = [t, svc, self.staff, app.now(), n, None, self.day]
        self.serving = None
        try:
            self.save()     # from here the service is over, on this side, power cut or not
        except MemoryError:     # not on flash: as if not pressed (the press may be tried again)
            self.n, self.pend, self.rate = was
            self.serving = [t, svc]
            raise
        # Past the point of no return nothing may escape: the press would be tried again and
        # find nobody served. Short of memory, the finish waits in `pend` as when the kiosk is
        # away, and a window that could not open is opened by run().
        try:
            m = await self.deliver()
        except MemoryError:
            m = None
        try:
            if m is not None and not m["ok"]:
                # the kiosk holds no such service (a backend moved it): nothing to rate
                self.rate = None
                self.save()
                r = m["r"]
                return self._refuse(r.get("refused") or "error", r.get("detail") or "")
            self.open_pad()
        except MemoryError:
            pass
        return {"ok": True, "events": ["service.finished"] if m else [], "ticket": t, "queued": m is None}

    def _refuse(self, reason, detail=""):
        if reason == "not_sent":
            self.stats["not_sent"] += 1
        screens.show(self.app, messages.refusal(reason, self.app.langs, detail), "----", 4)
        return {"ok": False, "refused": reason, "detail": detail}

    # ---- the 呼叫器 keypad (firmware/keyentry.py: the key map staff learn) ---------------------
    async def key(self, ch):
        """One keypad key (the ESP32 keypad task, or the simulator's `keys` op): typing shows
        on the display; a finished entry is asked of the kiosk like a staff key."""
        app = self.app
        e = self.entry
        if e is None:       # loaded at the first key: a counter without a keypad never pays for it
            from firmware.keyentry import KeyEntry
            h = app.hall
            mine = [h.services[i] for i in h.counter(self.cid).services]
            svcs = mine + [s for s in h.services if s not in mine]
            staff = self.staff or ""
            i = 0
            while i < len(staff) and not staff[i].isdigit():
                i += 1
            e = self.entry = KeyEntry(tuple(s.code for s in svcs), tuple(s.prefix for s in svcs), staff[:i])
        r = e.key(ch, app.hal.clock.ticks_ms())
        if r is None:
            p = e.prompt()
            screens.show(app, [p] if p else messages.lines("welcome", app.langs)[:1], "*", 10 if p else 1)
            return {"ok": True, "typing": p}
        if r[0] == "error":
            return self._refuse("bad_args", r[1])
        return await app.staff(self.cid, r[1], r[2])

    async def keypad(self, pad):
        """The ESP32 keypad (hal.keypad): one key at a time, for good."""
        while True:
            try:
                await self.key(await pad.next_key())
            except Exception as e:  # a bug or low memory: the keypad stays alive
                self.app.fault_seen("keypad", e)

    # ---- the rating pad ----------------------------------------------------------------
    def open_pad(self):
        app = self.app
        r = self.rate
        pad = app.pads[self.cid]
        pad.open([r[0], r[1], r[2], r[3]], app.hal.clock.ticks_ms(), app.now())
        app.hal.indicator.set("rate", True)
        if app.cfg.get("voice"):
            app.hal.voice.say("请对本次服务进行评价")
        screens.home(app)

    def bind(self, data):
        """A rating names the kiosk's finished service: kiosk device, day, ticket, the finish
        request's number (carried by the kiosk's service.finished as "req") and, once the kiosk
        confirmed it, that event's seq."""
        r = self.rate
        if r and r[0] == data["ticket"]:
            data["kiosk"] = self.kiosk
            data["day"] = r[6]
            data["req"] = r[4]
            data["fin_seq"] = r[5]

    def rated(self):
        self.rate = None
        self.save()

    # ---- display and background ------------------------------------------------------
    def _show_call(self):
        app = self.app
        t = self.serving[0]
        screens.show(app, screens.call_lines(app.langs, t, self.cid), "%s %s" % (t, self.cid), 5)

    def home(self):
        """This window's own screen; False while its pad asks for a rating (the app shows it)."""
        app = self.app
        if app.pads[self.cid].stage != IDLE:
            return False
        langs = app.langs
        if self.state == "paused":
            lines, fig = messages.lines("paused", langs, ""), "P"
        elif self.state == "closed":
            lines, fig = messages.lines("closed", langs), "----"
        elif self.serving:
            lines, fig = messages.lines("serving", langs, self.serving[0]), self.serving[0]
        else:
            lines, fig = messages.lines("welcome", langs), ""
        if self.state != "closed":      # who is on duty at this window
            lines += screens.extra("duty", langs, self.cid, self.staff)
        screens.show(app, lines, fig, 0)
        return True

    def away(self):
        """The kiosk is unreachable: the home screen says 叫号暂停 请稍候 (screens.show)."""
        return self.reached is False or self.kiosk_up is False

    def tick(self, now_ms):
        pass

    async def run(self):
        """The one background task: a finish the kiosk has not confirmed, and asking what this
        window serves (at boot, after a mismatch, while the kiosk is unreachable), with
        backoff from 1 s to 30 s; the kiosk's status coming back online retries at once."""
        app = self.app
        pad = getattr(app.hal, "keypad", None)
        if pad is not None:
            asyncio.create_task(self.keypad(pad))
        backoff = 1000
        while True:
            self.kick.clear()
            try:
                await asyncio.wait_for_ms(self.kick.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            if not self.busy and self.rate and app.pads[self.cid].stage == IDLE:
                self.open_pad()     # a finish whose window could not open (short of memory)
            if self.busy or not app.publisher.connected():
                continue
            if self.pend is None and not self.resync and self.reached:
                backoff = 1000
                continue
            self.busy = True
            try:
                m = await (self.deliver() if self.pend is not None else self.sync())
            except Exception as e:     # low memory, flash: try again later
                app.fault_seen("hall link", e)
                m = None
            finally:
                self.busy = False
            backoff = 1000 if m is not None else min(backoff * 2, _BACKOFF_MAX_MS)
            if m is not None and not app.screen_until:
                screens.home(app)

    def status(self):
        s = dict(self.stats)
        s.update({"kiosk": self.kiosk, "reached": self.reached, "kiosk_online": self.kiosk_up,
                  "serving": self.serving[0] if self.serving else None, "state": self.state,
                  "pending_finish": self.pend is not None, "request": self.n})
        return s
