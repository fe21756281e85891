"""Role `kiosk`: the ticket dispenser and the hall's queue authority for counter devices.

Requests come on `hall/req/<counter>` (firmware/hallnet.py), wait in a small fixed ring and
are handled one at a time by one task, in arrival order: three counters pressing `next` at
the same instant get three different tickets, because only this task decides.

A request is applied once: its number `n` is carried in the events it causes ("req"), and the
hall keeps each counter's last applied number (Counter.req, replayed at boot), so a request
re-sent after a lost answer, or after this kiosk lost power, is answered, not applied again.
Its answer is kept in RAM per counter; after a restart a repeat is answered from the state.
Checking and answering is firmware/kiosk_answer.py, loaded while requests wait and released
when none does (with the protocol and canonical-JSON code, ~3 KiB of heap a ticket needs more).
"""
import binascii

import asyncio

from firmware import release, screens

_RING = const(8)           # requests waiting; more are dropped (counted): the counter re-sends


class Kiosk:
    def __init__(self, app, cfg):
        self.app = app
        # Request keys are derived per request (two HMACs): a key object per counter would
        # hold ~250 bytes of heap each all day.
        self.hall_key = binascii.unhexlify(cfg["hall_key"])
        self.devices = {}   # counter id -> the device that acts for it
        for c in cfg["counters"]:
            self.devices[c["id"]] = c["device"]
        self.req_topic = "qterm/v1/%s/%s/hall/req/" % (cfg["site"], cfg["device"])
        self.ring = [None] * _RING
        self.head = 0
        self.n = 0
        self.wake = asyncio.Event()
        self.answers = {}   # counter id -> (n, answer bytes): a repeat gets the same answer
        self.stats = {"requests": 0, "bad": 0, "dropped": 0, "late": 0, "repeats": 0}

    def subs(self):
        return ((self.req_topic + "+", 0),)

    def message(self, topic, payload):
        """Called by the MQTT client: queue, never handle here (it would hold the reader)."""
        if not topic.startswith(self.req_topic) or not payload:   # (None/False: not received)
            return
        if self.n >= _RING:
            self.stats["dropped"] += 1
            return
        self.ring[(self.head + self.n) % _RING] = (topic[len(self.req_topic):], payload)
        self.n += 1
        self.wake.set()

    async def run(self):
        while True:
            if not self.n:
                self.wake.clear()
                await self.wake.wait()
                continue
            cid, raw = self.ring[self.head]
            self.ring[self.head] = None
            self.head = (self.head + 1) % _RING
            self.n -= 1
            out = await self._answer(cid, raw)
            raw = None
            if not self.n:
                release("kiosk_answer", "hallnet")   # (canonical stays: events are signed with it)
            if out is not None:
                await self.app.publisher.send(self.req_topic[:-4] + "ans/" + cid, out)

    async def _answer(self, cid, raw):
        """kiosk_answer.handle(), tried again after the idle code gave way when memory was
        short (a request applies nothing until its event is durable, and a repeat of one that
        did is answered from the state: the same as the counter sending it again, sooner).
        None when it could not be answered: the counter re-sends, then tells staff."""
        for pause in (30, 200, 0):
            try:
                from firmware import kiosk_answer
                return kiosk_answer.handle(self, cid, raw)
            except MemoryError as e:
                kiosk_answer = None
                if not pause:
                    self.app.fault_seen("hall request", e)
                    return None
            except Exception as e:     # a bug: this request goes unanswered
                self.app.fault_seen("hall request", e)
                return None
            release("kiosk_answer", "hallnet")
            self.app.shed()
            await asyncio.sleep_ms(pause)

    def away(self):
        return False

    def home(self):
        """The kiosk's display: the last call in the hall, else the welcome, then each service's
        waiting count (never one counter's pause: its counters are other devices)."""
        from firmware import messages
        app = self.app
        lines = list(app.call[0]) if app.call else messages.lines("welcome", app.langs)
        screens.show(app, lines + screens.extra("waiting", app.langs, app.hall),
                     app.call[1] if app.call else "", 0)
        return True

    def tick(self, now_ms):
        pass

    def status(self):
        return dict(self.stats)
