"""Role `screen`: the hall call screen with voice, following the kiosk's call events.

It subscribes (QoS 1, persistent session) to the kiosk's evt/ticket.called and
evt/ticket.recalled and shows the last `link.calls` calls, the newest flashing for FLASH_MS
(a visual alert for citizens who cannot hear the voice). Each call is announced once in each
language through the voice queue (firmware/announcer.py: bounded, never overlapping); a recall
is announced again. Events are deduplicated by the kiosk's seq (a broker re-delivers what it
was not sure arrived); calls older than STALE_S by this screen's clock (delivered after an
outage) are shown, not announced. The last calls and seq survive a power cut (screen.json),
and so do the calls not yet said in full ("say"): written before the broker is told the call
arrived, said after the power cut unless stale by then.
The screen cannot check the kiosk's event MACs (it holds no key of the kiosk's): it trusts
the broker's access control for what it shows, and keeps no record of its own.
"""
import json
from time import ticks_add, ticks_diff

import asyncio

from firmware import messages, screens, store
from firmware.announcer import Announcer

FLASH_MS = 6000
STALE_S = 120
_CLOCK_SET = const(1704067200)


class Screen:
    def __init__(self, app, cfg):
        self.app = app
        ln = cfg["link"]
        self.keep = ln.get("calls", 4)
        self.kbase = "qterm/v1/%s/%s/evt/" % (cfg["site"], ln["kiosk"])
        self.path = app.root + "/screen.json"
        try:
            st = store.read_json(self.path) if store.exists(self.path) else {}
        except ValueError:
            st = {}
        self.seq = st.get("seq", 0)     # the kiosk's newest call event seen
        self.calls = st.get("calls", [])  # [ticket, counter id, recall] newest first
        self.unsaid = []        # [ticket, counter id, recall, ts] not yet said in full
        self.dirty = False
        self.top = None         # the newest call's lines and the earlier calls', made once a call
        self.rest = None
        self.flash_until = 0
        self.lit = True
        self.voice = Announcer(6)
        self.stats = {"calls": 0, "repeats": 0, "stale": 0}
        say = st.get("say")
        for u in say if isinstance(say, list) else ():  # cut off mid-speech: said again, whole
            if isinstance(u, list) and len(u) == 4 and isinstance(u[0], str) and isinstance(u[1], str):
                self._announce(u[0][:8], u[1][:8], bool(u[2]), u[3])

    def subs(self):
        return ((self.kbase + "ticket.called", 1), (self.kbase + "ticket.recalled", 1),
                (self.kbase + "ticket.unparked", 1), (self.kbase + "day.reset", 1))

    def message(self, topic, payload):
        """One kiosk event (small JSON): handled at once, without flash writes."""
        if not payload:     # None, False: not received (too large, no memory), or empty
            return
        try:
            e = json.loads(payload)
            seq = e["seq"]
            d = e["data"]
        except (ValueError, KeyError, TypeError):
            return
        if not isinstance(seq, int) or seq <= self.seq:
            self.stats["repeats"] += 1
            return
        self.seq = seq
        self.dirty = True
        self.top = None
        if e.get("type") == "day.reset":
            self.calls = []
            self.unsaid = []
            self.voice.clear()      # yesterday's numbers are not called today
            screens.home(self.app)
            return
        t, cid = d.get("ticket"), d.get("counter")
        if not isinstance(t, str) or not isinstance(cid, str):
            return
        recall = e.get("type") == "ticket.recalled"
        self.calls.insert(0, [t[:8], cid[:8], recall])
        del self.calls[self.keep:]
        self.stats["calls"] += 1
        self._announce(t[:8], cid[:8], recall, e.get("ts"))
        try:    # on flash before on_message returns, i.e. before the PUBACK goes
            self.save()
        except Exception:   # low memory, flash: run() writes it
            self.dirty = True
        self.flash_until = ticks_add(self.app.hal.clock.ticks_ms(), FLASH_MS)
        self.lit = True
        screens.home(self.app)

    def _announce(self, t, cid, recall, ts):
        now = self.app.now()
        if now >= _CLOCK_SET and isinstance(ts, int) and abs(now - ts) > STALE_S:
            self.stats["stale"] += 1
            return
        names = messages.hall_text("ctr." + cid, cid)
        langs = self.app.langs
        self.voice.add(t, tuple((langs[i], names[i]) for i in range(min(2, len(langs)))), recall)
        u = self.unsaid
        u.append([t, cid, recall, ts])
        del u[:-7]      # the voice queue holds 6 and the one being said

    def save(self):
        self.dirty = False
        store.write_json(self.path, {"seq": self.seq, "calls": self.calls, "say": self.unsaid})

    def home(self):
        """The newest call in both languages (what flashes), then 最近叫号 Recent calls and a
        line for each call before it: A001 1号窗口 Counter 1. The lines are made once a call
        (the words are read from flash), not at each flash."""
        app = self.app
        if not self.calls:
            screens.show(app, messages.lines("welcome", app.langs), "", 0)
            return True
        t, cid, _ = self.calls[0]
        if self.top is None:
            self.top = screens.call_lines(app.langs, t, cid)
            self.rest = screens.extra("calls", app.langs, self.calls[1:]) if len(self.calls) > 1 else []
        lines = self.top if self.lit else ["" for _ in self.top]
        screens.show(app, lines + self.rest, "%s %s" % (t, cid) if self.lit else "", 0)
        return True

    def tick(self, now_ms):
        """Every 200 ms: the newest call flashes (on and off each 400 ms) until FLASH_MS."""
        if not self.flash_until:
            return
        if ticks_diff(now_ms, self.flash_until) >= 0:
            self.flash_until = 0
            self.lit = True
        else:
            self.lit = (now_ms // 400) % 2 == 0
        screens.home(self.app)

    async def run(self):
        """Speaks the queued calls one at a time, and keeps the calls on flash."""
        app = self.app
        v = app.hal.voice
        while True:
            await asyncio.sleep_ms(100)
            try:
                if not v.busy():
                    text = self.voice.next_text()
                    if text:
                        v.say(text)
                    if self.unsaid:     # (idle: no lists made every 100 ms)
                        left = self.voice.tickets()
                        u = [x for x in self.unsaid if x[0] in left]
                        if len(u) != len(self.unsaid):  # a call said in full
                            self.unsaid = u
                            self.dirty = True
                if self.dirty:
                    self.save()
            except Exception as e:
                app.fault_seen("screen", e)
                await asyncio.sleep_ms(1000)

    def away(self):
        return False

    def status(self):
        s = dict(self.stats)
        s["calls_shown"] = [c[0] + ">" + c[1] for c in self.calls]
        s["voice_dropped"] = self.voice.dropped
        return s
