"""The terminal: wires buttons, hall rules, the outbox, printer, display, voice and MQTT.

Data flows one way: press -> hall decision -> event stamped and appended to the flash
outbox (durable) -> state applied -> printed / displayed / announced -> published
later by the publisher task. Nothing here waits for the network.
"""
import gc
from time import ticks_add, ticks_diff

import asyncio

from firmware import messages, release, screens
from firmware.hall import Refused, event_facts
from firmware.outbox import OutboxFull
from firmware.publisher import Publisher

FIRMWARE = "0.4.0"
IDLE, REASON = 0, 2   # RatingPad stages (firmware/rating.py is not loaded by a kiosk or screen)
SNAPSHOT_EVERY = 64
_SHEET = const(1024)      # bytes of the ticket layout buffer (a ticket is ~650; more spills over)
_KEEP_LAYOUT = const(24576)  # free heap after a ticket above which its layout code stays loaded
_NO_MEMORY = {"ok": False, "refused": "memory"}  # the answer when even that could not be made
_LOW_HEAP = const(3072)    # below this free heap, collect before making an event durable
_MAX_COMMANDS = const(8)   # backend commands waiting (a ring), and at most _CMD_BYTES of them:
_CMD_BYTES = const(4096)   # more are dropped and counted, so a flood can't eat RAM


class App:
    FW = FIRMWARE   # (the publisher reads it here: it imports nothing of this module)

    def __init__(self, hal, cfg):
        # Allocated first, while the heap is still whole: later in the day the free heap is
        # many small holes, and a ticket laid out in a growing bytearray needs a large one.
        self.sheet = bytearray(_SHEET)
        self.hal = hal
        self.cfg = cfg
        self.langs = cfg["languages"]
        # the screen of a press refused for memory, made while there is memory
        self.no_memory = ["----"] + messages.refusal("memory", self.langs)
        self.root = hal.storage.root
        from firmware import hall_setup
        self.hall = hall_setup.build(cfg)
        release("hall_setup")
        messages.TEXTS = self.root + "/texts.txt"
        r = cfg["rating"]
        codes = tuple(x["code"] for x in r["reasons"])
        self.pads = {}
        role = cfg["role"]
        # The rating pads this device has: every counter's for `all`, its own for a counter.
        self.home = cfg["link"]["counter"] if role == "counter" else self.hall.counters[0].id
        for c in self.hall.counters:
            if role == "all" or (role == "counter" and c.id == self.home):
                from firmware.rating import RatingPad
                self.pads[c.id] = RatingPad(c.id, r["window_s"], r["reason_window_s"], codes)
        self.role = None            # the hall role's wiring (firmware/role_*.py); None for `all`
        self.printing = False
        self.paper = "ok"
        self.since_snapshot = 0
        self.call = None            # (lines, figure) of the last call: the screen between messages
        self.screen_until = 0       # ticks when a timed message gives way to that screen
        self.stats = {"ignored": 0, "refused": 0, "storage_errors": 0, "cmd_dropped": 0}
        self.fault = None           # words on the display while storage is failing
        self.uptime_s = 0           # summed tick by tick: ticks_ms wraps (ESP32: ~6.2 days)
        self.up_ms = 0
        self.behind = False         # an event is durable that the state could not take
        self.last_ts = 0            # wall time of the newest event (a clock behind it was stepped)
        self.tick_ms = hal.clock.ticks_ms()
        self.tick_wall = hal.clock.time()
        self.outbox = None
        self.stamper = None
        self.publisher = None
        self.boot_no = 0
        self.commands = [None] * _MAX_COMMANDS  # ring of raw command payloads waiting
        self.cmd_head = 0
        self.cmd_n = 0
        self.cmd_wake = None        # the command task's Event, once it runs
        self.cmd_mod = None         # firmware.commands while the command task holds it
        self.cmd_busy = False       # a command is being handled (its code cannot be shed)
        self.pressing = 0           # presses being handled: the command code waits to load
        self.layout_mod = None      # firmware.ticket while it stays loaded (see _layout)
        self.trial = None           # (trial, uptime deadline): a broker change on trial
        self.offline = None         # the broker cannot be reached (display line, net lamp)
        self.cmd_quiet = None       # refusals being suppressed (see commands._journal)
        self.snapshot_seq = 0       # seq covered by the newest snapshot on flash
        self.snapshot_due = 0       # ticks_ms when the timers try again one that found no RAM
        self.full_refusals = 0      # tickets refused while the outbox was full (reported later)
        self.restart_pending = False
        self.late_reply = None
        self.problems = []

    # ---- boot ------------------------------------------------------------------
    def boot(self):
        """Recover state from flash (snapshot + replay of the outbox), then announce the boot."""
        role = self.cfg["role"]
        if role != "all":   # before the replay: a counter's open rating window comes from its link
            if role == "kiosk":
                from firmware.role_kiosk import Kiosk as Role
            elif role == "counter":
                from firmware.role_counter import CounterLink as Role
            else:
                from firmware.role_screen import Screen as Role
            self.role = Role(self, self.cfg)
            Role = None
        from firmware import recovery
        replayed = recovery.recover(self)
        release("recovery", "store")
        # Short power cycles must not keep the outbox from being released.
        self.since_snapshot = replayed
        self.publisher = Publisher(self)
        # From here on the firmware needs only a small part of the config in RAM; the
        # hall's own words go to flash (firmware/texts.py).
        broker = self.cfg["broker"]    # (the compact config below keeps none of it)
        from firmware import texts
        try:
            texts.write(self.cfg, self.root)
        except (OSError, MemoryError) as e:   # names then show as codes; the terminal serves
            self.problems.append("texts.txt not written: %r" % (e,))
        self.cfg = texts.compact(self.cfg)
        release("texts")
        self.emit("device.boot", {"fw": FIRMWARE, "role": self.cfg["role"], "boot": self.boot_no,
                                  "replayed": replayed, "outbox_pending": self.outbox.pending(),
                                  "problems": self.problems + list(self.outbox.problems)})
        from firmware import recovery
        self.late_reply = recovery.config_outcome(self)   # a config.set answered after its restart
        from firmware import trial
        self.trial = trial.at_boot(self, broker)            # a broker change on trial
        broker = None
        release("recovery", "store", "text", "trial")
        now = self.now()
        if now < self.last_ts - 2:
            # The clock is behind the newest event: the RTC lost the time with the power
            # (an ESP32's starts at 2000). That is a step, not the days running backwards.
            self._stepped(self.last_ts, now, "boot")
        self.new_day_if_due()
        if self.since_snapshot >= SNAPSHOT_EVERY:
            self.snapshot()
        screens.home(self)

    def now(self):
        return self.hal.clock.time()

    # ---- time: steps are not time passing -----------------------------------------
    def clock_step(self, epoch, source):
        """Set the wall clock to epoch (a step: NTP, time.set, technician); range-checked by
        the caller. The business day does not change because of it (see desk.decide_clock)."""
        self.check_clock()
        before = self.now()
        self.hal.clock.set_time(epoch)
        self.hal.clock.synced = True
        self.tick_wall, self.tick_ms = self.now(), self.hal.clock.ticks_ms()
        self._stepped(before, self.tick_wall, source)

    def check_clock(self):
        """Notice a step of the wall clock that nobody announced (an RTC set behind the
        firmware's back): wall time and monotonic ticks disagree by more than 2 s. Also sums
        the uptime. Called every timer tick and before anything that reads the date."""
        now_ms = self.hal.clock.ticks_ms()
        wall = self.now()
        dt = ticks_diff(now_ms, self.tick_ms)
        up = self.up_ms + max(0, dt)
        self.uptime_s += up // 1000
        self.up_ms = up % 1000
        skew = (wall - self.tick_wall) * 1000 - dt   # whole-second wall time: +-1000 is jitter
        expected = self.tick_wall + dt // 1000
        self.tick_ms, self.tick_wall = now_ms, wall
        if skew > 2000 or skew < -2000:
            self._stepped(expected, wall, "detected")

    def _stepped(self, before, after, source):
        from firmware import desk
        etype, data = desk.decide_clock(self.hall, before, after)
        release("desk", "text")
        data["source"] = source
        self.emit(etype, data)

    def new_day_if_due(self):
        """Start a new business day when time has passed the reset hour (not for clock steps)."""
        now = self.now()
        if not self.hall.is_new_day(now):
            return False
        from firmware import desk
        evs = desk.decide_day(self.hall, now)
        release("desk", "text")
        for etype, data in evs:
            self.emit(etype, data)
        self.call = None
        return True

    # ---- the one way anything happens -------------------------------------------
    def emit(self, etype, data):
        """Stamp, persist, then apply. Returns True when the event is durable.

        On a storage failure nothing is applied (so state never runs ahead of flash), the
        display says so and the caller refuses the citizen's action.
        """
        ts = self.now()
        if gc.mem_free() < _LOW_HEAP:
            gc.collect()
        prio, stateful = event_facts(etype)
        seq, prev = self.stamper.seq, self.stamper.prev
        payload = self.stamper.stamp(etype, data, ts)
        try:
            try:
                self.outbox.append(self.stamper.seq, payload, prio)
            except OutboxFull:
                # Delivered events may only be waiting for a snapshot to cover them: two
                # snapshots (of the state before this event) move the release floor up to
                # now; then stamp again and try once more.
                self.stamper.seq, self.stamper.prev = seq, prev
                self.snapshot()
                self.snapshot()
                payload = self.stamper.stamp(etype, data, ts)
                self.outbox.append(self.stamper.seq, payload, prio)
        except MemoryError:
            self.stamper.seq, self.stamper.prev = seq, prev
            raise
        except (OutboxFull, OSError) as e:
            self.stamper.seq, self.stamper.prev = seq, prev
            self.stats["storage_errors"] += 1
            self.fault = "storage.full" if isinstance(e, OutboxFull) else "refused.storage_error"
            screens.show(self, messages.lines(self.fault, self.langs), "Err", 0)
            self.hal.indicator.set("error", True)
            return False
        if self.fault:
            fault, self.fault = self.fault, None
            self.hal.indicator.set("error", False)
            refused, self.full_refusals = self.full_refusals, 0
            self.emit("storage.recovered", {"fault": fault, "refused_tickets": refused,
                                            "errors": self.stats["storage_errors"]})
        if self.outbox.dropped:
            dropped = self.outbox.dropped
            self.outbox.dropped = []
            self.emit("outbox.dropped", {"ranges": [list(r) for r in dropped]})
        self.last_ts = ts
        if stateful:
            try:
                self.hall.apply(etype, data, ts)
            except MemoryError:
                # apply changes nothing before its last allocation, so it can run again
                gc.collect()
                try:
                    self.hall.apply(etype, data, ts)
                except MemoryError:
                    # durable, but the state could not take it: only a restart (which rebuilds
                    # the state from flash) makes them equal again; the timers do it next tick
                    self.behind = True
                    self.fault_seen("apply", MemoryError())
            self.since_snapshot += 1
            if self.since_snapshot >= SNAPSHOT_EVERY or etype == "day.reset":
                self.snapshot()
        if self.publisher:
            self.publisher.wake(stateful)
        return True

    def snapshot(self):
        """Write the hall's snapshot so the outbox can release what it covers. Only an
        optimisation: if it fails the outbox still holds everything needed to replay."""
        gc.collect()
        for again in (True, False):
            try:
                from firmware import recovery
                recovery.write_snapshot(self)
                self.since_snapshot = 0
                self.snapshot_due = 0
                break
            except MemoryError as e:
                release("recovery", "store")
                if not (again and self.shed()):     # idle code gives way, then once more
                    if not self.snapshot_due:       # (tried again by the timers, once a second)
                        self.fault_seen("snapshot", e)
                    self.snapshot_due = ticks_add(self.hal.clock.ticks_ms(), 1000) or 1
                    break
            except OSError as e:
                self.fault_seen("snapshot", e)
                break
        recovery = None
        release("recovery", "store")

    # ---- presses ---------------------------------------------------------------
    async def press(self, name):
        """Handle one debounced press; returns a result dict (also given to buttons.handled).
        Running short of memory is an answer, not a crash: nothing was made durable. A
        citizen comes before the backend: short of memory, a press sheds the idle command
        code and is tried again a moment later, four times within ~2.3 s (a connect, a snapshot,
        hall requests or a command hold their RAM only briefly; on a busy kiosk 0.8 s was not
        always enough) - only while nothing of it has reached flash."""
        seq = self.stamper.seq
        self.pressing += 1
        try:
            for pause in (30, 200, 600, 1500, 0):
                try:
                    r = await self._try_press(name)
                except MemoryError:     # (no heap even for its coroutine)
                    r = None
                if r is not None:
                    return r
                try:   # (outside the except clause: its own allocations may fail as well)
                    self.shed()
                    # the backend commands waiting behind the head of the ring are dropped and
                    # counted (cmd_dropped), as a full ring turns them away: a flood must not
                    # hold the RAM a citizen's ticket needs, and a backend with no reply asks
                    # again. The head stays: the command task may be handling it.
                    n = self.cmd_n
                    for i in range(1, n):
                        self.commands[(self.cmd_head + i) % _MAX_COMMANDS] = None
                    if n > 1:
                        self.cmd_n = 1
                        self.stats["cmd_dropped"] += n - 1
                    gc.collect()
                    if not pause or self.stamper.seq != seq:
                        break
                    await asyncio.sleep_ms(pause)
                except MemoryError:
                    break
        finally:
            self.pressing -= 1
        return self._refused()

    def _refused(self):
        """Refuse a press for memory: counted, and said on the display for 4 s."""
        try:
            self.stats["refused"] += 1
            # the words were read at boot: reading them now from flash could fail as well
            self.screen_until = ticks_add(self.hal.clock.ticks_ms(), 4000)
            self.hal.display.show(self.no_memory)
        except MemoryError:
            pass    # the answer still goes back to the key (made at boot, below)
        return _NO_MEMORY

    def shed(self, layout=True, commands=True):
        """Free code that is loaded again when needed: (commands) the backend-command code if
        no command is being handled, and (layout) the ticket layout code. True if something was
        freed. Nothing is freed that a coroutine still references: a coroutine that failed
        with an exception is left on its awaiting task's stack, so retry loops here are fed
        answers (None, "again") rather than exceptions from what they await."""
        freed = False
        # (released even when not held: an import that failed half-way leaves its modules)
        if commands and not self.cmd_busy:
            freed = self.cmd_mod is not None
            self.cmd_mod = None
            release("commands", "config", "store", "text", "texts", "report", "config_keys", "desk")
        if layout:
            freed = freed or self.layout_mod is not None
            self.layout_mod = None
            release("ticket", "escpos", "gb2312")
        return freed

    async def _try_press(self, name):
        """_press, or None if it ran short of memory: caught here, in a coroutine that then ends
        normally, so the failed one does not stay on press()'s stack holding the layout code
        that shed() is about to free (see shed)."""
        try:
            return await self._press(name)
        except MemoryError:
            return None

    async def _press(self, name):
        cid = self.home
        if "@" in name:
            name, cid = name.split("@", 1)
        if self.behind:
            return {"ok": False, "refused": "restarting"}
        self.check_clock()
        role = self.cfg["role"]
        if name.startswith("ticket:") and (role == "all" or role == "kiosk"):
            if self.printing:
                self.stats["ignored"] += 1
                return {"ok": True, "ignored": "printing"}
            parts = name.split(":")
            kind = "priority" if len(parts) > 2 and parts[2] == "priority" else "normal"
            return await self.issue(parts[1], kind)
        if name.startswith("rate") and len(name) == 5 and name[4] in "12345" and self.pads:
            return self.rate(cid, int(name[4]))
        if name in ("next", "recall", "skip", "finish", "pause"):
            return await self.staff(cid, name)
        self.stats["ignored"] += 1
        return {"ok": False, "error": "unknown button %r" % name}

    async def issue(self, code, kind, appointment=None, printed=True):
        while self.printing:    # a backend check-in while a ticket prints: one sheet buffer
            await asyncio.sleep_ms(50)
        self.printing = True
        try:
            if printed:
                from firmware import printer_status
                state = printer_status.check(self)
                release("printer_status")
                if state == "out" or state == "offline":
                    return self._refuse({"service": code, "reason": "paper_out" if state == "out"
                                         else "printer_offline", "day": self.hall.day})
            self.new_day_if_due()
            etype, data = self.hall.decide_issue(code, kind, self.now(), appointment)
            if etype == "ticket.refused":
                return self._refuse(data)
            # The ticket is laid out before it becomes durable: if memory is short it is
            # refused, never issued and then left unprinted.
            if printed:
                self.shed(False)    # the layout needs the RAM more than an idle command task
            paper = self._layout(data) if printed else None
            if not self.emit(etype, data):
                self.full_refusals += 1
                return {"ok": False, "refused": "outbox_full" if self.fault == "storage.full" else "storage_error"}
            screens.show(self, messages.lines("ticket", self.langs, data["ticket"], data["ahead"]), data["ticket"], 5)
            if paper:
                await self._print(paper)
            return {"ok": True, "event": etype, "ticket": data["ticket"], "ahead": data["ahead"],
                    "wait_min": data["wait_min"]}
        finally:
            self.printing = False
            self.stats["ignored"] += self.hal.buttons.pending()
            self.hal.buttons.clear()

    def _refuse(self, data):
        self.stats["refused"] += 1
        self.emit("ticket.refused", data)
        screens.show(self, messages.refusal(data["reason"], self.langs), "----", 5)
        return {"ok": False, "refused": data["reason"]}

    def _layout(self, d):
        """The ESC/POS bytes of ticket d (about 650 bytes, a view of self.sheet). The layout,
        ESC/POS and GB2312 code (~7 KiB of heap) stays loaded while at least _KEEP_LAYOUT is
        free after it: loading it again for every ticket needs large free blocks that a busy
        day's heap lacks. Anything short of memory sheds it (shed)."""
        if self.layout_mod is None:
            from firmware import ticket
            self.layout_mod, ticket = ticket, None
        try:
            return self.layout_mod.render(self, d)
        finally:
            gc.collect()
            if gc.mem_free() < _KEEP_LAYOUT:
                self.shed()

    async def _print(self, paper):
        try:
            await self.hal.printer.send(paper)
        except OSError:
            # The number is on the display and in the queue; staff see the printer fault.
            from firmware import printer_status
            printer_status.changed(self, "offline")
            release("printer_status")
            return
        paper = None
        # The cutter needs a moment after the last byte; presses meanwhile are dropped.
        await asyncio.sleep_ms(self.cfg["printer"].get("settle_ms", 800))

    def rate(self, cid, score):
        pad = self.pads.get(cid)
        if pad is None:
            return {"ok": False, "error": "unknown counter %r" % cid}
        now_ms = self.hal.clock.ticks_ms()
        res = pad.press(score, now_ms)
        if res is None:
            self.stats["ignored"] += 1
            return {"ok": True, "ignored": "no rating window" if pad.stage == IDLE else "already rated"}
        kind, data = res
        if kind == "reason":
            from firmware import store
            try:  # keeps the score over a power cut during the reason step
                store.write_json(self.root + "/rating.pending", {"counter": cid, "ticket": pad.ticket,
                                                                 "score": score, "ms": pad.press_ms()})
            except OSError:
                self.stats["storage_errors"] += 1  # the step goes on; only a power cut now loses it
            store = None
            release("store")
            screens.home(self)
            return {"ok": True, "stage": "reason"}
        return self._submit_rating(pad, data)

    def _bind(self, data):
        """What a rating names of the service it rates: the day here, or on a counter the
        kiosk's finished service (firmware/role_counter.py)."""
        data["day"] = self.hall.day
        if self.role is not None:   # (only `all` and a counter have pads: a counter's link)
            self.role.bind(data)

    def _submit_rating(self, pad, data):
        self._bind(data)
        if not self.emit("rating.submitted", data):
            return {"ok": False, "error": "storage"}
        pad.close()
        if self.role is not None:
            self.role.rated()
        from firmware import store
        store.remove(self.root + "/rating.pending")
        store = None
        release("store")    # loaded for a moment: a citizen's ticket needs the RAM more
        self.hal.indicator.set("rate", False)
        self.hal.indicator.set("thanks", True)
        screens.show(self, messages.lines("thanks", self.langs), data["ticket"], 3)
        if self.cfg.get("voice"):
            self.hal.voice.say(messages.text("thanks")[0])
        return {"ok": True, "event": "rating.submitted", "ticket": data["ticket"], "score": data["score"],
                "reason": data["reason"]}

    async def staff(self, cid, key, args=None):
        """A staff key or keypad function at counter cid: decided here (role `all`), asked of
        the kiosk (a counter), or not for this device (kiosk, screen: their counters are
        other devices, and acting for them would bypass the counter's own pad)."""
        role = self.cfg["role"]
        if role == "counter":   # (the control port's and a command's own fields stay here)
            args = dict((k, v) for k, v in (args or {}).items() if k not in ("op", "action", "counter"))
            return await self.role.act(key, args)
        if role != "all":
            return {"ok": False, "refused": "not_here", "detail": role}
        return self.staff_key(cid, key, args)

    def decide_staff(self, cid, key, args):
        """The events of a counter action (raises Refused): the five keys, or keypad/backend
        functions with arguments (transfer, requeue, close, pause with a reason, resume, signin,
        signout, park, unpark, call, walkin)."""
        now = self.now()
        h = self.hall
        if key == "next":
            return h.decide_next(cid, now)
        if key == "finish":
            return [h.decide_finish(cid, now)]
        # recall, skip and the rest are decided in desk (loaded per use)
        if key == "pause" and "reason" not in args and h.counter(cid).state != "open":
            key = "resume"  # the pause key toggles
        from firmware import desk
        try:
            return [desk.decide(h, cid, key, now, args)]
        finally:
            release("desk", "text")

    def staff_key(self, cid, key, args=None):
        """A counter action decided and applied on this device (role `all`; the backend)."""
        try:
            events = self.decide_staff(cid, key, args or {})
        except Refused as e:
            screens.show(self, messages.refusal(e.reason, self.langs, e.detail), "----", 4)
            return {"ok": False, "refused": e.reason, "detail": e.detail}
        return self.apply_events(events)

    def apply_events(self, events, req=None):
        """Emit and apply events in order; req: the hall request (firmware/role_kiosk.py) they
        answer, carried in each (so a request is applied once, across power cuts too).
        "seq" is the last event's; "fin_seq" a service.finished's (a rating binds to it)."""
        result = {"ok": True, "events": []}
        for etype, data in events:
            if req is not None:
                data["req"] = req
            if not self.emit(etype, data):
                return {"ok": False, "error": "storage"}
            result["events"].append(etype)
            result["seq"] = self.stamper.seq
            if etype == "service.finished":
                result["fin_seq"] = self.stamper.seq
            if "ticket" in data:
                result["ticket"] = data["ticket"]
            self._after(etype, data)
        return result

    def _after(self, etype, d):
        """What the citizen sees and hears after a staff action."""
        if etype == "ticket.called" or etype == "ticket.recalled" or etype == "ticket.unparked":
            cid = d["counter"]
            lines = screens.call_lines(self.langs, d["ticket"], cid)
            self.call = (lines, "%s %s" % (d["ticket"], cid))
            if self.cfg.get("voice"):
                self.hal.voice.say(lines[0])
        elif etype == "service.finished" and d["counter"] in self.pads:
            pad = self.pads[d["counter"]]
            if pad.stage != IDLE:
                self._expire(pad)
            window = self.hall.counter(d["counter"]).rating
            pad.open(window, self.hal.clock.ticks_ms(), window[3])  # opened now, by definition
            self.hal.indicator.set("rate", True)
            if self.cfg.get("voice"):
                self.hal.voice.say("请对本次服务进行评价")
        screens.home(self)

    def _expire(self, pad):
        if pad.stage == REASON:
            return self._submit_rating(pad, pad._data("none", self.hal.clock.ticks_ms()))
        data = pad.fields()
        self._bind(data)
        self.emit("rating.expired", data)
        pad.close()
        if self.role is not None:
            self.role.rated()
        self.hal.indicator.set("rate", False)

    # ---- background work -------------------------------------------------------
    async def timers(self):
        """Every 200 ms: clock, rating windows, display timeout, business day change, heartbeat."""
        last_hb = self.hal.clock.ticks_ms()
        while True:
            await asyncio.sleep_ms(200)
            try:
                if self.behind:
                    self.restart()
                self.check_clock()
                now_ms = self.hal.clock.ticks_ms()
                for pad in self.pads.values():
                    res = pad.tick(now_ms)
                    if res is None:
                        continue
                    if res[0] == "submit":
                        self._submit_rating(pad, res[1])
                    else:
                        self._expire(pad)
                        screens.home(self)
                if self.screen_until and ticks_diff(now_ms, self.screen_until) >= 0:
                    self.screen_until = 0
                    self.hal.indicator.set("thanks", False)
                    screens.home(self)
                if not self.printing and self.new_day_if_due():
                    screens.home(self)
                if self.snapshot_due and ticks_diff(now_ms, self.snapshot_due) >= 0 \
                        and not (self.printing or self.cmd_busy):
                    # one that found no RAM (a command held it): delivered events stay on
                    # flash, and after a power cut are sent again, until a snapshot covers them
                    self.snapshot()
                screens.net_watch(self)
                if self.trial is not None:
                    self._check_trial()
                if self.role is not None:
                    self.role.tick(now_ms)
                if ticks_diff(now_ms, last_hb) >= self.cfg["heartbeat_s"] * 1000:
                    last_hb = now_ms
                    from firmware import report
                    report.heartbeat(self)
                    release("report", "text")
            except Exception as e:  # a failing timer (even MemoryError) must not stop the others
                self.fault_seen("timers", e)
                await asyncio.sleep_ms(1000)

    def _check_trial(self):
        """A change that decides the broker connection is on trial (firmware/trial.py):
        connected, it is committed; not connected by its deadline, the last configuration
        that connected comes back by a restart."""
        t, deadline = self.trial
        if self.publisher.connected():
            from firmware import trial
            trial.commit(self.root, t)
            self.trial = None
            release("trial", "store")
        elif deadline is not None and self.uptime_s >= deadline and not self.printing:
            from firmware import trial
            trial.revert(self.root, t, self.publisher.last_error())
            self.trial = None
            self.restart()

    def fault_seen(self, where, exc):
        """Count and print an unexpected error in a background task; the task carries on."""
        gc.collect()
        self.stats["faults"] = self.stats.get("faults", 0) + 1
        print("qterm: %s: %r" % (where, exc))

    async def buttons(self):
        while True:
            name = None
            try:
                name = await self.hal.buttons.next_press()
                result = await self.press(name)
            except MemoryError:     # not even the press could start: say so, not "internal"
                result = self._refused()
            except Exception as e:  # a bug (or no heap even for an answer) must not stop the keys
                self.fault_seen("buttons", e)
                result = {"ok": False, "error": "internal"}
            if name is not None:
                self.hal.buttons.handled(name, result)

    # ---- backend commands ------------------------------------------------------
    def command(self, raw):
        """A message on .../cmd (called by the MQTT client; None = too large to receive,
        False = not held, short of memory: each is answered).
        It waits in a fixed ring for the one command task. When _MAX_COMMANDS wait, or their
        payloads would pass _CMD_BYTES, it is dropped unanswered and counted (stats
        cmd_dropped, in the heartbeat): a flood costs neither RAM nor tasks."""
        ring, n = self.commands, self.cmd_n
        size = len(raw) if raw else 0
        for i in range(n):
            r = ring[(self.cmd_head + i) % _MAX_COMMANDS]
            size += len(r) if r else 0
        if n >= _MAX_COMMANDS or size > _CMD_BYTES:
            self.stats["cmd_dropped"] += 1
            return
        ring[(self.cmd_head + n) % _MAX_COMMANDS] = raw
        self.cmd_n = n + 1
        if self.cmd_wake is None:  # the first command starts the task (again, if that failed)
            wake = asyncio.Event()
            asyncio.create_task(self._commands())
            self.cmd_wake = wake
        self.cmd_wake.set()

    async def _commands(self):
        """The one command task: handles the waiting commands in arrival order and publishes
        their replies (commands.handle decides which refusals go unanswered in a flood).
        Nothing ends it: low memory or a bug answers the command at hand and the loop carries
        on. The commands module stays loaded while commands keep coming (a flood is not
        imported message by message) and is released when none waits or a press needs the
        RAM (shed); the task
        also ends a quiet period of suppressed refusals (commands.quiet_over) when it is due."""
        while True:
            reply = None
            try:
                q = self.cmd_quiet
                if self.cmd_n:
                    reply = {"id": None, "ok": False, "error": "internal"}  # if handling fails
                    try:
                        while self.pressing:
                            # a citizen first: the command code would take the RAM a ticket
                            # layout needs - given back, even in a flood, and loaded again
                            # after (the ring bounds what waits meanwhile)
                            if self.cmd_mod is not None:
                                self.shed(False)
                            await asyncio.sleep_ms(20)
                        for pause in (50, 200, 500, 0):
                            # Short of memory before the command did anything (loading its
                            # code, reading it, the replay list): idle code gives way, and the
                            # heap gets a moment to change - a busy day's heap is many small
                            # holes, and other tasks free theirs - before it is refused.
                            try:
                                if self.cmd_mod is None:
                                    gc.collect()
                                    from firmware import commands as cmds
                                    self.cmd_mod, cmds = cmds, None
                                self.cmd_busy = True
                                # "again", not a MemoryError raised through the await: a failed
                                # coroutine stays on this task's stack (MicroPython leaves popped
                                # slots as they were), and with it the code it ran - shed() would
                                # free nothing, and the next try load a second copy
                                reply = await self.cmd_mod.handle(self, self.commands[self.cmd_head],
                                                                  not pause)
                                if reply != "again":
                                    break
                            except MemoryError:     # (loading the command code)
                                if not pause:       # refused in words, not "internal"
                                    reply = {"id": None, "ok": False, "error": "low_memory", "detail": ""}
                                    break
                            self.cmd_busy = False
                            self.shed(True, False)  # other idle code gives way
                            await asyncio.sleep_ms(pause)
                        res = reply.get("result") if type(reply) is dict else None
                        if type(res) is dict and "issue" in res:
                            cid = reply["id"]
                            reply = {"id": cid, "ok": False, "error": "internal"}  # if it fails
                            reply = await self._appointment(cid, res["issue"])
                    finally:  # off the ring whatever happened: one message never jams it
                        self.cmd_busy = False
                        self.commands[self.cmd_head] = None
                        self.cmd_head = (self.cmd_head + 1) % _MAX_COMMANDS
                        self.cmd_n -= 1
                elif self.cmd_mod is not None:  # none waits: give the RAM back
                    self.shed()
                else:
                    self.cmd_wake.clear()
                    if q and q[0]:  # a quiet period runs: look at its end every second
                        # (polled: asyncio.wait_for would keep asyncio.funcs in RAM for good)
                        for _ in range(10):
                            await asyncio.sleep_ms(100)
                            if self.cmd_n:
                                break
                        if not self.cmd_n and ticks_diff(self.hal.clock.ticks_ms(), q[1]) >= 0:
                            from firmware import commands as cmds
                            self.cmd_mod, cmds = cmds, None     # released next turn
                            self.cmd_mod.quiet_over(self)
                    else:
                        await self.cmd_wake.wait()
            except Exception as e:  # low memory or a bug: answer, and carry on serving
                self.fault_seen("command", e)
                if reply is not None:
                    reply["detail"] = repr(e)[:80]
            if reply is not None:
                try:
                    if not self.cmd_n and self.cmd_mod is not None:
                        self.shed(False)    # the last one: the reply (a status is ~1 KiB of
                        # JSON in one piece) gets the RAM the command code held
                    await self.publisher.reply(reply)
                except Exception as e:
                    self.fault_seen("command reply", e)
            if self.restart_pending and not self.cmd_n:    # the commands waiting are answered first
                await asyncio.sleep_ms(300)  # let the reply and the events before it go out
                while self.printing:         # never cut a ticket in half
                    await asyncio.sleep_ms(100)
                if not self.cmd_n:           # (more may have come meanwhile: answer them first)
                    if self.cmd_quiet is not None:
                        from firmware import commands as cmds
                        cmds.quiet_over(self)   # what was kept quiet would die with the restart
                    self.restart()

    async def _appointment(self, cid, args):
        """A printed appointment ticket a command asked for (commands.handle admitted it, once):
        laid out and printed with the command code given back - the layout and that code do
        not fit a busy 96 KiB heap together. A refusal is journalled as the command's."""
        self.cmd_busy = False
        self.shed(False)
        try:
            r = await self.issue(args["service"], "appointment", appointment=args["appt"], printed=True)
        except MemoryError:
            r = {"refused": "low_memory"}
        if r.get("ok"):
            return {"id": cid, "ok": True, "result": r}
        from firmware import commands as cmds
        self.cmd_mod, cmds = cmds, None
        return self.cmd_mod._refused(self, None, cid, "ticket.appointment",
                                     r.get("refused") or "refused", r.get("error", ""))

    def restart(self):
        """Soft reset to apply a restructuring config change; state comes back from flash."""
        self.outbox.flush_ack()
        try:
            import machine
            machine.reset()
        except (ImportError, AttributeError):
            import sys
            sys.exit(3)  # the simulator's launcher re-executes itself: same PID, like a reset

    async def _answer_late(self):
        """The reply to a config.set that needed a restart, once the broker is reachable."""
        while not self.publisher.connected():
            await asyncio.sleep_ms(200)
        await self.publisher.reply(self.late_reply)
        self.late_reply = None
        try:
            import os
            os.remove(self.root + "/config.result.json")
        except OSError:
            pass

    async def run(self):
        asyncio.create_task(self.timers())
        asyncio.create_task(self.buttons())
        if self.late_reply:
            asyncio.create_task(self._answer_late())
        if self.role is not None:
            asyncio.create_task(self.role.run())
        while True:     # publishing may fail (low memory, a bug): the terminal keeps serving
            try:
                await self.publisher.run()
            except Exception as e:
                self.fault_seen("publisher", e)
                await asyncio.sleep_ms(1000)
