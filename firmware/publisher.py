"""Moves events from the flash outbox to the broker, in order, QoS 1, pipelined.

Also owns the device's presence (retained `status`, `offline` as Last Will), the retained
`state` snapshot and the inbound `cmd` subscription. The outbox is the source of truth:
across a reconnection the MQTT client re-sends its unacknowledged window itself (DUP=1,
same packet ids, persistent session) and publishing continues after it; after a reboot
publishing restarts from the last acknowledged record. Consumers dedupe on dev+seq.

Speed: an event goes out as soon as it is durable; the retained `state` is coalesced to at
most one a second and waits for no one. A drain after an outage reads the outbox in one
pass, one record in RAM at a time, and tells the outbox of acknowledgements once per window
(outbox.ack saves its pointer every 16th call, a flash write): after a power cut in the
middle of a drain up to ~16 windows of delivered events are published again.
"""
import json
import time

import asyncio

from firmware.mqtt import MQTTClient, link

# const() needs no import on MicroPython (its compiler folds it); with `import time`, 8
# globals fit one table size less.

_STATE_MIN_MS = const(1000)  # retained state snapshot at most once a second
_WINDOW = const(8)           # QoS 1 messages in flight: pipelined, yet bounded RAM (~3 KiB)
_RX_BYTES = const(2304)      # largest command received whole (commands.MAX_BYTES + topic, header),
                             # in a buffer of its own while it arrives; larger: on_message(t, None)


class Publisher:
    def __init__(self, app):
        self.app = app
        cfg = app.cfg
        b = cfg["broker"]
        # (short literals: each one above ten characters costs a heap object)
        self.base = "qterm/v1/" + cfg["site"] + "/" + cfg["device"] + "/"
        offline = json.dumps({"state": "offline", "dev": cfg["device"], "boot": app.boot_no})
        ctx = name = None
        self.tls_error = None   # broken TLS material: offline (and saying why) until it loads
        self.tls = bool(b.get("tls"))
        self.clock_unset = False  # TLS waits for a device clock it can check certificates by
        if b.get("tls"):
            ctx, name, self.tls_error = link("tls", b, app.root)
            if self.tls_error:      # missing, unreadable or PEM files: serve offline, never stop
                self.broker = b     # kept for _await_ca (the running config drops it)
                app.problems.append(self.tls_error)
        self.client = MQTTClient(
            "qterm-" + cfg["site"] + "-" + cfg["device"], b["host"], b["port"],
            keepalive=b["keepalive"], user=b.get("user"), password=b.get("password"),
            ssl_context=ctx, server_hostname=name,
            will=(self.base + "status", offline.encode(), True, 1),
            clean_session=False, window=_WINDOW, subs=((self.base + "cmd", 1),) + (app.role.subs() if app.role else ()),
            rx_size=_RX_BYTES,
            on_message=self._on_message, on_ack=self._on_ack, on_state=self.wake)
        self.inflight = {}   # packet id -> seq
        self.sent = app.outbox.acked()
        self.flag = asyncio.Event()
        self.online = 0      # client.connects when presence was last announced: on each
        #                      (re)connect the retained "online" goes out first
        self.state_dirty = True
        if self.tls_error:
            self.client.last_error = self.tls_error
        self.hold_ms = 0     # a held-back `state` falls due in this many ms (for _timer)
        self.timer = asyncio.Event()

    def connected(self):
        return self.client.connected

    def last_error(self):
        """Why the broker connection last failed, in words (None while all is well)."""
        return self.client.last_error

    def wake(self, state_changed=False):
        """An event is durable (state_changed: and the hall changed), or the broker connection
        came (True) or went: either way there may be something to publish."""
        if state_changed:
            self.state_dirty = True
        self.flag.set()

    def link_changed(self):
        """The network link went up or down (Wi-Fi lost, cable pulled)."""
        up = self.app.hal.net.up()
        self.client.enabled = up and not self.tls_error and not self.clock_unset
        if not up:
            self.client.drop()
        self.flag.set()

    def check_clock(self, now):
        """Certificate dates are checked against the device clock (mbedTLS on the ESP32): with
        TLS, no handshake is tried while the clock reads before 2024 (an RTC that lost the time
        with the power) - the terminal serves offline and says so until NTP or a technician sets
        it. The simulator applies the same rule to its simulated clock."""
        unset = self.tls and now < 1704067200      # 2024-01-01 (a big int on a 32-bit port)
        if unset != self.clock_unset:
            self.clock_unset = unset
            self.link_changed()
            if unset:
                self.client.drop()
                self.client.last_error = "TLS: device clock not set (before 2024): waiting for NTP"
            elif not self.tls_error:
                self.client.last_error = None

    def _on_ack(self, pid):
        seq = self.inflight.pop(pid, None)
        if seq is None:
            return
        inflight = self.inflight
        # During a drain the outbox hears of it once per _WINDOW acks (every 16th call of
        # outbox.ack rewrites its ack file: a flash write); always when the window empties.
        if inflight and seq % _WINDOW:
            return
        # The broker acknowledges in order; only a contiguous prefix is released.
        lowest = min(inflight.values()) if inflight else seq + 1
        self.app.outbox.ack(seq if lowest > seq else lowest - 1)

    def _on_message(self, topic, payload):
        if topic == self.base + "cmd":
            self.app.command(payload)
        elif self.app.role is not None:     # the hall protocol (firmware/role_*.py)
            self.app.role.message(topic, payload)

    async def reply(self, obj):
        await self.send(self.base + "cmd/reply", json.dumps(obj), 1)   # (a str: see encode_publish)

    async def send(self, topic, payload, qos=0):
        """A message that is not an event (a reply, a hall request or answer): sent if the
        broker is there now, else dropped - its sender asks again if it still wants it."""
        if self.client.connected:
            try:
                await self.client.publish(topic, payload, qos=qos)
                return True
            except OSError:
                pass
        return False

    async def run(self):
        self.client.enabled = self.app.hal.net.up() and not self.tls_error
        asyncio.create_task(self.client.run())
        if self.tls_error:
            asyncio.create_task(self._await_ca())
        asyncio.create_task(self._timer())
        last_state = None
        timer = None    # when the wake-up for a held-back `state` fires
        while True:
            # Woken by an event, a (re)connect or a held-back `state` falling due. A plain
            # wait: woken, this task runs before the next press is handled (wait_for would
            # take three turns of the loop), so events never wait behind other work.
            await self.flag.wait()
            self.flag.clear()
            if not self.client.connected:
                continue
            try:
                if self.online != self.client.connects:  # (re)connected: announce presence first
                    self.online = self.client.connects
                    online = {"state": "online", "dev": self.app.cfg["device"], "boot": self.app.boot_no,
                              "fw": self.app.FW, "ts": self.app.now()}
                    await self.client.publish(self.base + "status", json.dumps(online), qos=1,
                                              retain=True)
                    online = None
                    self.state_dirty = True
                # One pass of the outbox, one record in RAM at a time: records() finds its place
                # again if the outbox changed while publish() waited for window space.
                gen = self.app.outbox.records(self.sent)
                evt = (self.base + "evt/").encode()
                try:
                    for seq, payload in gen:
                        # The topic's last level is the event type, read without parsing the
                        # JSON. Bytes throughout: making a str looks it up among all interned
                        # names first.
                        i = payload.find(b'"type":"') + 8
                        t = payload[i:payload.find(b'"', i)] if i > 7 else b"unknown"
                        pid = await self.client.publish(evt + t, payload, qos=1)
                        self.inflight[pid] = seq
                        self.sent = seq
                finally:
                    gen.close()
                    gen = payload = evt = t = None  # this frame waits long: hold no record
                if self.state_dirty:
                    now = self.app.hal.clock.ticks_ms()
                    due = 0 if last_state is None else _STATE_MIN_MS - time.ticks_diff(now, last_state)
                    if due > 0:
                        # at most one a second, never holding events back: wake up for it
                        if timer is None or time.ticks_diff(now, timer) >= 0:
                            timer = time.ticks_add(now, due)
                            self.hold_ms = due
                            self.timer.set()
                    else:
                        self.state_dirty = False
                        last_state = now
                        await self.client.publish(self.base + "state", json.dumps(self.app.hall.summary()),
                                                  qos=0, retain=True)
            except OSError:
                pass  # connection dropped mid-way; the client re-sends its window on reconnect
            except Exception as e:  # e.g. MemoryError: never let publishing take the terminal down
                self.app.fault_seen("publisher", e)
                await asyncio.sleep_ms(1000)
                self.flag.set()

    async def _await_ca(self):
        """While the CA cannot be loaded, try again every 5 s: a technician who copies ca.der
        to the flash brings the terminal online without a restart."""
        b = self.broker
        short = 0
        # a boot that was itself short of memory for it does not restart again (no loop)
        may_restart = "no memory" not in self.tls_error
        while self.tls_error:
            await asyncio.sleep_ms(5000)
            # a CA takes a few KiB in one piece (its parse as well): idle code gives way first
            self.app.shed()
            ctx, name, why = link("tls", b, self.app.root)
            if why:
                self.tls_error = self.client.last_error = why
                short = short + 1 if "no memory" in why else 0
                if short >= 3 and may_restart:
                    # A day's heap is many small holes: the boot loads the CA into a clean one.
                    # A soft restart, as a config change is applied: state comes from flash,
                    # after the waiting commands and never in the middle of a ticket.
                    app = self.app
                    while app.printing or app.cmd_n or app.pressing:
                        await asyncio.sleep_ms(100)
                    app.restart()
                continue
            c = self.client
            c.conf = c.conf[:6] + (ctx, name) + c.conf[8:]
            self.tls_error = c.last_error = None
            self.link_changed()

    async def _timer(self):
        """The one task that wakes run() when a held-back `state` falls due. One for good, not
        a task per wake-up: those piled up, each sleeping out its second, whenever citizens
        came faster than one a second of device clock (bench_heap's day at 96K ran out of
        heap after ~40 citizens)."""
        while True:
            await self.timer.wait()
            self.timer.clear()
            ms, self.hold_ms = self.hold_ms, 0
            await asyncio.sleep_ms(ms)
            self.flag.set()

