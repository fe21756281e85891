"""The terminal: wires buttons, hall rules, the outbox, printer, display, voice and MQTT.

Data flows one way: press -> hall decision -> event stamped and appended to the flash
outbox (durable) -> state applied -> printed / displayed / announced -> published
later by the publisher task. Nothing here waits for the network.
"""
import gc
from time import ticks_add, ticks_diff

import asyncio

from firmware import calendar, messages
from firmware.hall import Hall, Refused
from firmware.outbox import OutboxFull
from firmware.rating import RatingPad, IDLE, REASON
from firmware.publisher import Publisher

FIRMWARE = "0.3.0"
SNAPSHOT_EVERY = 64

# Events that must never be dropped by the outbox overflow policy (prio 2); heartbeats and
# printer status are the first to go (prio 0); everything else prio 1.
_PRIO = {"device.heartbeat": 0, "printer.status": 0,
         "ticket.issued": 2, "rating.submitted": 2, "rating.expired": 2, "service.finished": 2,
         "ticket.called": 2}
_STATE_FREE = ("device.boot", "device.heartbeat", "printer.status", "ticket.refused",
               "command.rejected", "config.applied", "outbox.dropped", "clock.set",
               "storage.recovered")
_MAX_COMMANDS = 4  # queued backend commands; more are answered "busy" (a flood can't eat RAM)


class App:
    def __init__(self, hal, cfg):
        self.hal = hal
        self.cfg = cfg
        self.langs = cfg["languages"]
        self.root = hal.storage.root
        self.hall = Hall(cfg)
        r = cfg["rating"]
        self.pads = {}
        for c in self.hall.counters:
            self.pads[c.id] = RatingPad(c.id, r["window_s"], r["reason_window_s"], r["reasons"])
        self.home = self.hall.counters[0].id
        self.printing = False
        self.paper = "ok"
        self.since_snapshot = 0
        self.screen = messages.lines("welcome", self.langs)
        self.figure = ""
        self.screen_until = 0
        self.stats = {"ignored": 0, "refused": 0, "storage_errors": 0}
        self.fault = None           # words on the display while storage is failing
        self.started_ms = hal.clock.ticks_ms()
        self.outbox = None
        self.stamper = None
        self.publisher = None
        self.boot_no = 0
        self.commands = []          # raw command payloads waiting to be handled
        self.snapshot_seq = 0       # seq covered by the newest snapshot on flash
        self.full_refusals = 0      # tickets refused while the outbox was full (reported later)
        self.restart_pending = False
        self.problems = []

    # ---- boot ------------------------------------------------------------------
    def boot(self):
        """Recover state from flash (snapshot + replay of the outbox), then announce the boot."""
        from firmware import recovery
        replayed = recovery.recover(self)
        _unload("firmware.recovery", "firmware.store")
        # Short power cycles must not keep the outbox from being released.
        self.since_snapshot = replayed
        self.publisher = Publisher(self)
        self.emit("device.boot", {"fw": FIRMWARE, "role": self.cfg["role"], "boot": self.boot_no,
                                  "replayed": replayed, "outbox_pending": self.outbox.pending(),
                                  "problems": self.problems + list(self.outbox.problems)})
        if self.hall.is_new_day(self.now()):
            self.emit(*self.hall.decide_day(self.now()))
        if self.since_snapshot >= SNAPSHOT_EVERY:
            self.snapshot()
        self._home_screen()

    def now(self):
        return self.hal.clock.time()

    def clock_step(self, epoch, source):
        """Set the wall clock to epoch (a step, not time passing): NTP, time.set, technician.
        The caller has range-checked epoch. Emits clock.set."""
        before = self.now()
        self.hal.clock.set_time(epoch)
        self.hal.clock.synced = True
        self.emit("clock.set", {"from": before, "to": epoch, "source": source})

    # ---- the one way anything happens -------------------------------------------
    def emit(self, etype, data):
        """Stamp, persist, then apply. Returns True when the event is durable.

        On a storage failure nothing is applied (so state never runs ahead of flash), the
        display says so and the caller refuses the citizen's action.
        """
        ts = self.now()
        seq, prev = self.stamper.seq, self.stamper.prev
        payload = self.stamper.stamp(etype, data, ts)
        try:
            try:
                self.outbox.append(self.stamper.seq, payload, _PRIO.get(etype, 1))
            except OutboxFull:
                # Delivered events may only be waiting for a snapshot to cover them: two
                # snapshots (of the state before this event) move the release floor up to
                # now; then stamp again and try once more.
                self.stamper.seq, self.stamper.prev = seq, prev
                self.snapshot()
                self.snapshot()
                payload = self.stamper.stamp(etype, data, ts)
                self.outbox.append(self.stamper.seq, payload, _PRIO.get(etype, 1))
        except (OutboxFull, OSError) as e:
            self.stamper.seq, self.stamper.prev = seq, prev
            self.stats["storage_errors"] += 1
            self.fault = "storage.full" if isinstance(e, OutboxFull) else "refused.storage_error"
            self._show(messages.lines(self.fault, self.langs), "Err", 0)
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
        if etype not in _STATE_FREE:
            self.hall.apply(etype, data, ts)
            self.since_snapshot += 1
            if self.since_snapshot >= SNAPSHOT_EVERY or etype == "day.reset":
                self.snapshot()
        if self.publisher:
            self.publisher.wake(etype not in _STATE_FREE)
        return True

    def snapshot(self):
        """Write the hall's snapshot so the outbox can release what it covers. Only an
        optimisation: if it fails the outbox still holds everything needed to replay."""
        gc.collect()
        try:
            from firmware import recovery
            recovery.write_snapshot(self)
            self.since_snapshot = 0
        except (OSError, MemoryError) as e:
            self.fault_seen("snapshot", e)
        _unload("firmware.recovery", "firmware.store")

    # ---- presses ---------------------------------------------------------------
    async def press(self, name):
        """Handle one debounced press; returns a result dict (also given to buttons.handled)."""
        cid = self.home
        if "@" in name:
            name, cid = name.split("@", 1)
        if name.startswith("ticket:"):
            if self.printing:
                self.stats["ignored"] += 1
                return {"ok": True, "ignored": "printing"}
            parts = name.split(":")
            kind = "priority" if len(parts) > 2 and parts[2] == "priority" else "normal"
            return await self.issue(parts[1], kind)
        if name.startswith("rate") and len(name) == 5 and name[4] in "12345":
            return self.rate(cid, int(name[4]))
        if name in ("next", "recall", "skip", "finish", "pause"):
            return self.staff_key(cid, name)
        self.stats["ignored"] += 1
        return {"ok": False, "error": "unknown button %r" % name}

    async def issue(self, code, kind, appointment=None, printed=True):
        self.printing = True
        try:
            if printed:
                refusal = self._printer_refusal(code)
                if refusal:
                    return refusal
            if self.hall.is_new_day(self.now()):
                self.emit(*self.hall.decide_day(self.now()))
            etype, data = self.hall.decide_issue(code, kind, self.now(), appointment)
            if etype == "ticket.refused":
                return self._refuse(data)
            if not self.emit(etype, data):
                self.full_refusals += 1
                return {"ok": False, "refused": "outbox_full" if self.fault == "storage.full" else "storage_error"}
            self._show(messages.lines("ticket", self.langs, data["ticket"], data["ahead"]), data["ticket"], 5)
            if printed:
                await self._print(data)
            return {"ok": True, "event": etype, "ticket": data["ticket"], "ahead": data["ahead"],
                    "wait_min": data["wait_min"]}
        finally:
            self.printing = False
            self.stats["ignored"] += self.hal.buttons.pending()
            self.hal.buttons.clear()

    def _refuse(self, data):
        self.stats["refused"] += 1
        self.emit("ticket.refused", data)
        self._show(messages.refusal(data["reason"], self.langs), "----", 5)
        return {"ok": False, "refused": data["reason"]}

    def _printer_refusal(self, code):
        from firmware import printer_status
        state = printer_status.paper_state(self.hal.printer)
        _unload("firmware.printer_status")
        if state != self.paper:
            self.paper = state
            self.emit("printer.status", {"state": state})
            self.hal.indicator.set("paper", state != "ok")
        if state in ("out", "offline"):
            reason = "paper_out" if state == "out" else "printer_offline"
            return self._refuse({"service": code, "reason": reason, "day": self.hall.day})
        return None

    async def _print(self, d):
        s = self.hall.service(d["service"])
        pcfg = self.cfg["printer"]
        info = {"hall": self.cfg["hall"], "service": s.name, "number": d["ticket"], "kind": d["kind"],
                "ahead": d["ahead"], "wait_min": d["wait_min"],
                "time": calendar.stamp(self.now(), self.hall.tz),
                "notice": pcfg.get("notice"), "lang2": self.langs[1] if len(self.langs) > 1 else None,
                "qr": "%s%s/%s/%s" % (pcfg.get("qr_prefix") or "", self.cfg["device"], self.hall.day, d["ticket"])}
        # The layout, ESC/POS and GB2312 code is loaded only while a ticket prints: on a
        # 96 KiB heap the bytecode of rarely used modules is worth more as free RAM.
        from firmware import ticket as layout
        from firmware.gb2312 import Gb2312
        with Gb2312() as gb:
            layout.print_ticket(self.hal.printer.write, info, pcfg["cols"], gb)
        _unload("firmware.ticket", "firmware.escpos", "firmware.gb2312")
        # A 58 mm printer needs about a second to print and cut; presses meanwhile are dropped.
        await asyncio.sleep_ms(pcfg.get("settle_ms", 800))

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
                store.write_json(self.root + "/rating.pending", {"counter": cid, "ticket": pad.window[0],
                                                                 "score": score, "ms": pad.press_ms()})
            except OSError:
                self.stats["storage_errors"] += 1  # the step goes on; only a power cut now loses it
            self._show(self._reason_lines(), pad.window[0], 0)
            return {"ok": True, "stage": "reason"}
        return self._submit_rating(pad, data)

    def _reason_lines(self):
        out = messages.lines("reason", self.langs)
        # Each reason is labelled with the button that picks it (rate5 = the first reason).
        out.append(" ".join("[%d]%s" % (5 - i, r.get(self.langs[0], r["code"]))
                            for i, r in enumerate(self.cfg["rating"]["reasons"])))
        return out

    def _submit_rating(self, pad, data):
        data["day"] = self.hall.day
        if not self.emit("rating.submitted", data):
            return {"ok": False, "error": "storage"}
        pad.close()
        from firmware import store
        store.remove(self.root + "/rating.pending")
        self.hal.indicator.set("rate", False)
        self.hal.indicator.set("thanks", True)
        self._show(messages.lines("thanks", self.langs), data["ticket"], 3)
        if self.cfg.get("voice"):
            self.hal.voice.say(messages.text("thanks")[0])
        return {"ok": True, "event": "rating.submitted", "ticket": data["ticket"], "score": data["score"],
                "reason": data["reason"]}

    def staff_key(self, cid, key, args=None):
        """A counter action: the five keys, or keypad/backend functions with arguments
        (transfer, requeue, close, pause with a reason, resume, signin, signout)."""
        now = self.now()
        h = self.hall
        args = args or {}
        try:
            if key == "next":
                events = h.decide_next(cid, now)
            elif key == "recall":
                events = [h.decide_recall(cid, now)]
            elif key == "skip":
                events = [h.decide_skip(cid, now)]
            elif key == "finish":
                events = [h.decide_finish(cid, now)]
            else:
                if key == "pause" and "reason" not in args and h.counter(cid).state != "open":
                    key = "resume"  # the pause key toggles
                from firmware import desk
                try:
                    events = [desk.decide(h, cid, key, now, args)]
                finally:
                    _unload("firmware.desk")
        except Refused as e:
            self._show(messages.refusal(e.reason, self.langs, e.detail), "----", 4)
            return {"ok": False, "refused": e.reason, "detail": e.detail}
        return self.apply_events(events)

    def apply_events(self, events):
        result = {"ok": True, "events": []}
        for etype, data in events:
            if not self.emit(etype, data):
                return {"ok": False, "error": "storage"}
            result["events"].append(etype)
            if "ticket" in data:
                result["ticket"] = data["ticket"]
            self._after(etype, data)
        return result

    def _after(self, etype, d):
        """What the citizen sees and hears after a staff action."""
        if etype == "ticket.called" or etype == "ticket.recalled":
            counter = self.hall.counter(d["counter"])
            cname = counter.name.get(self.langs[0], counter.id)
            lines = messages.lines("call", self.langs, d["ticket"], cname)
            if len(self.langs) > 1:
                lines[1] = messages.text("call")[1] % (d["ticket"], counter.name.get(self.langs[1], counter.id))
            self.figure = "%s %s" % (d["ticket"], counter.id)
            self._show(lines, self.figure, 0)
            if self.cfg.get("voice"):
                self.hal.voice.say("请%s号到%s办理" % (d["ticket"], cname))
        elif etype == "service.finished":
            pad = self.pads[d["counter"]]
            if pad.stage != IDLE:
                self._expire(pad)
            window = self.hall.counter(d["counter"]).rating
            pad.open(window, self.hal.clock.ticks_ms(), window[3])  # opened now, by definition
            self.hal.indicator.set("rate", True)
            self._show(messages.lines("rate", self.langs, d["ticket"]), d["ticket"], 0)
            if self.cfg.get("voice"):
                self.hal.voice.say("请对本次服务进行评价")
        elif etype == "counter.paused":
            self._show(messages.lines("paused", self.langs, d.get("reason", "")), "P", 0)
        elif etype in ("counter.resumed", "counter.closed", "ticket.skipped", "ticket.transferred"):
            self._home_screen()

    def _expire(self, pad):
        w = pad.window
        if pad.stage == REASON:
            return self._submit_rating(pad, pad._data("none", self.hal.clock.ticks_ms()))
        self.emit("rating.expired", {"ticket": w[0], "service": w[1], "counter": pad.counter,
                                     "staff": w[2], "day": self.hall.day})
        pad.close()
        self.hal.indicator.set("rate", False)

    # ---- display -----------------------------------------------------------------
    def _show(self, lines, figure, hold_s):
        self.screen = lines
        self.screen_until = ticks_add(self.hal.clock.ticks_ms(), hold_s * 1000) if hold_s else 0
        self.hal.display.show([figure or self.figure] + list(lines))

    def _home_screen(self):
        c = self.hall.counter(self.home)
        if c.state == "paused":
            self._show(messages.lines("paused", self.langs, c.reason), "P", 0)
        elif c.state == "closed":
            self._show(messages.lines("closed", self.langs), "----", 0)
        elif self.figure:
            self._show(self.screen if not self.screen_until else messages.lines("welcome", self.langs),
                       self.figure, 0)
        else:
            self._show(messages.lines("welcome", self.langs), "", 0)

    # ---- background work -------------------------------------------------------
    async def timers(self):
        """Rating windows, display timeouts, business day change, heartbeats."""
        hb_every = self.cfg["heartbeat_s"] * 1000
        last_hb = self.hal.clock.ticks_ms()
        while True:
            await asyncio.sleep_ms(200)
            try:
                last_hb = self._tick(last_hb, hb_every)
            except Exception as e:  # a failing timer must not stop the others
                self.fault_seen("timers", e)
                await asyncio.sleep_ms(1000)

    def _tick(self, last_hb, hb_every):
        """One pass of the timers: rating windows, display timeout, new day, heartbeat."""
        now_ms = self.hal.clock.ticks_ms()
        for pad in self.pads.values():
            res = pad.tick(now_ms)
            if res is None:
                continue
            if res[0] == "submit":
                self._submit_rating(pad, res[1])
            else:
                self._expire(pad)
                self._home_screen()
        if self.screen_until and ticks_diff(now_ms, self.screen_until) >= 0:
            self.screen_until = 0
            self.hal.indicator.set("thanks", False)
            self._home_screen()
        if self.hall.is_new_day(self.now()) and not self.printing:
            self.emit(*self.hall.decide_day(self.now()))
            self.figure = ""
            self._home_screen()
        if ticks_diff(now_ms, last_hb) >= hb_every:
            last_hb = now_ms
            self.heartbeat()
        return last_hb

    def fault_seen(self, where, exc):
        """Count and print an unexpected error in a background task; the task carries on."""
        gc.collect()
        self.stats["faults"] = self.stats.get("faults", 0) + 1
        print("qterm: %s: %r" % (where, exc))

    def heartbeat(self):
        gc.collect()
        self.emit("device.heartbeat", {"uptime_s": ticks_diff(self.hal.clock.ticks_ms(), self.started_ms) // 1000,
                                       "heap_free": gc.mem_free(), "outbox": self.outbox.pending(),
                                       "ignored": self.stats["ignored"], "refused": self.stats["refused"],
                                       "printer": self.paper, "net": self.hal.net.up()})

    async def buttons(self):
        while True:
            name = await self.hal.buttons.next_press()
            try:
                result = await self.press(name)
            except Exception as e:  # a bug must never take the terminal down
                result = {"ok": False, "error": "internal: %r" % (e,)}
            self.hal.buttons.handled(name, result)

    def config_changed(self):
        """Live settings changed by a command: pass them to the parts that keep copies."""
        r = self.cfg["rating"]
        for pad in self.pads.values():
            pad.configure(r["window_s"], r["reason_window_s"], r["reasons"])

    def busy(self):
        """Someone is waiting or being served (structural config changes must wait)."""
        h = self.hall
        for s in h.services:
            if len(s.waiting):
                return True
        for c in h.counters:
            if c.current is not None or len(c.direct):
                return True
        return False

    # ---- backend commands ------------------------------------------------------
    def command(self, raw):
        """A message on .../cmd (called by the MQTT client; None = too large to receive),
        handled in arrival order. Beyond _MAX_COMMANDS waiting, it is answered "busy"."""
        if len(self.commands) >= _MAX_COMMANDS:
            asyncio.create_task(self._refuse_command(raw, "busy"))
            return
        self.commands.append(raw)
        if len(self.commands) == 1:
            asyncio.create_task(self._commands())

    async def _refuse_command(self, raw, reason):
        # Only called while the command task runs (a queue is waiting, or from inside its
        # loop), and that task releases the commands module when it is done.
        from firmware import commands
        await self.publisher.reply(commands.refuse(self, raw, reason))

    async def _commands(self):
        """Handle queued commands one by one. Nothing may end this task early: commands
        arriving later are only started by it."""
        while self.commands:
            raw = self.commands[0]
            try:
                if raw is None:
                    await self._refuse_command(None, "too_large")
                    continue
                gc.collect()  # commands are rare and heavy (config validation): start clean
                from firmware import commands
                reply = await commands.handle(self, raw)
                await self.publisher.reply(reply)
            except Exception as e:  # low memory or a bug: answer, and carry on serving
                self.fault_seen("command", e)
                try:
                    await self.publisher.reply({"id": None, "ok": False, "error": "internal",
                                                "detail": repr(e)[:80]})
                except Exception:
                    pass
            finally:
                self.commands.pop(0)
                _unload("firmware.commands", "firmware.config", "firmware.store")
            if self.restart_pending:
                await asyncio.sleep_ms(300)  # let the reply and config.applied go out first
                self.restart()

    def restart(self):
        """Soft reset to apply a restructuring config change; state comes back from flash."""
        self.outbox.flush_ack()
        try:
            import machine
            machine.reset()
        except (ImportError, AttributeError):
            import sys
            sys.exit(3)  # the simulator's launcher re-executes itself: same PID, like a reset

    def status(self):
        s = self.hall.summary()
        s["role"] = self.cfg["role"]
        s["device"] = self.cfg["device"]
        s["boot"] = self.boot_no
        s["seq"] = self.stamper.seq
        s["outbox"] = self.outbox.pending()
        s["connected"] = self.publisher.connected() if self.publisher else False
        s["net"] = self.hal.net.up()
        s["printer"] = self.paper
        s["clock_synced"] = getattr(self.hal.clock, "synced", False)
        s["fault"] = self.fault
        s["rating"] = dict((cid, ["idle", "score", "reason"][p.stage]) for cid, p in self.pads.items())
        s["stats"] = dict(self.stats)
        gc.collect()
        s["heap"] = {"free": gc.mem_free(), "alloc": gc.mem_alloc()}
        return s

    async def run(self):
        asyncio.create_task(self.timers())
        asyncio.create_task(self.buttons())
        await self.publisher.run()


def _unload(*names):
    """Forget modules so their bytecode can be collected (the package keeps a reference too)."""
    import sys
    for name in names:
        sys.modules.pop(name, None)
        pkg, _, attr = name.rpartition(".")
        try:
            delattr(sys.modules[pkg], attr)
        except (KeyError, AttributeError):
            pass
    gc.collect()
