"""Moves events from the flash outbox to the broker, in order, QoS 1, pipelined.

Also owns the device's presence (retained `status`, `offline` as Last Will), the retained
`state` snapshot and the inbound `cmd` subscription. The outbox is the source of truth:
across a reconnection the MQTT client re-sends its unacknowledged window itself (DUP=1,
same packet ids, persistent session) and publishing continues after it; after a reboot
publishing restarts from the last acknowledged record. Consumers dedupe on dev+seq.
"""
import json
from time import ticks_diff

import asyncio

from firmware.mqtt import MQTTClient

_BATCH = 8           # records read from flash per pass: bounded RAM, flash read in small bites
_STATE_MIN_MS = 1000  # retained state snapshot at most once a second
_WINDOW = 8          # QoS 1 messages in flight: pipelined, yet bounded RAM (~3 KiB)
_RX_BYTES = 2304      # a 2 KiB command (commands.MAX_BYTES) plus its topic and header


def _type_of(payload):
    """The event type from a canonical envelope without parsing the whole JSON."""
    i = payload.find(b'"type":"')
    if i < 0:
        return "unknown"
    i += 8
    return payload[i:payload.find(b'"', i)].decode()


class Publisher:
    def __init__(self, app):
        self.app = app
        cfg = app.cfg
        b = cfg["broker"]
        self.base = "qterm/v1/%s/%s/" % (cfg["site"], cfg["device"])
        offline = json.dumps({"state": "offline", "dev": cfg["device"], "boot": app.boot_no})
        self.client = MQTTClient(
            "qterm-%s-%s" % (cfg["site"], cfg["device"]), b["host"], b["port"],
            keepalive=b["keepalive"], user=b.get("user"), password=b.get("password"),
            ssl_context=tls_context(b, app.root),
            server_hostname=(b.get("server_name") or b["host"]) if b.get("tls") else None,
            will=(self.base + "status", offline.encode(), True, 1),
            clean_session=False, window=_WINDOW, subs=[(self.base + "cmd", 1)], rx_size=_RX_BYTES,
            on_message=self._on_message, on_ack=self._on_ack, on_state=self._on_state)
        self.inflight = {}   # packet id -> seq
        self.sent = app.outbox.acked()
        self.flag = asyncio.Event()
        self.fresh = False   # just (re)connected: announce presence first
        self.state_dirty = True

    def connected(self):
        return self.client.connected()

    def wake(self, state_changed=False):
        if state_changed:
            self.state_dirty = True
        self.flag.set()

    def link_changed(self):
        """The network link went up or down (Wi-Fi lost, cable pulled)."""
        up = self.app.hal.net.up()
        self.client.enabled = up
        if not up:
            self.client.drop()
        self.flag.set()

    def _on_state(self, up):
        if up:
            self.fresh = True
        self.flag.set()

    def _on_ack(self, pid):
        seq = self.inflight.pop(pid, None)
        if seq is None:
            return
        # The broker acknowledges in order; only a contiguous prefix is released.
        lowest = None
        for s in self.inflight.values():
            if lowest is None or s < lowest:
                lowest = s
        self.app.outbox.ack(seq if lowest is None or lowest > seq else lowest - 1)

    def _on_message(self, topic, payload):
        if topic == self.base + "cmd":
            self.app.command(payload)

    async def reply(self, obj):
        if self.client.connected():
            try:
                await self.client.publish(self.base + "cmd/reply", json.dumps(obj).encode(), qos=1)
            except OSError:
                pass

    async def run(self):
        self.client.enabled = self.app.hal.net.up()
        asyncio.create_task(self.client.run())
        last_state = None
        while True:
            try:
                await asyncio.wait_for_ms(self.flag.wait(), 1000)
            except asyncio.TimeoutError:
                pass
            self.flag.clear()
            if not self.client.connected():
                continue
            try:
                if self.fresh:
                    self.fresh = False
                    await self._announce()
                await self._drain()
                now = self.app.hal.clock.ticks_ms()
                if self.state_dirty and (last_state is None or ticks_diff(now, last_state) >= _STATE_MIN_MS):
                    self.state_dirty = False
                    last_state = now
                    await self.client.publish(self.base + "state", json.dumps(self.app.hall.summary()).encode(),
                                              qos=0, retain=True)
                elif self.state_dirty:
                    self.flag.set()
                    await asyncio.sleep_ms(100)
            except OSError:
                pass  # connection dropped mid-way; the client re-sends its window on reconnect
            except Exception as e:  # e.g. MemoryError: never let publishing take the terminal down
                self.app.fault_seen("publisher", e)
                await asyncio.sleep_ms(1000)

    async def _announce(self):
        cfg = self.app.cfg
        online = {"state": "online", "dev": cfg["device"], "boot": self.app.boot_no,
                  "fw": _fw(), "ts": self.app.now()}
        await self.client.publish(self.base + "status", json.dumps(online).encode(), qos=1, retain=True)
        self.state_dirty = True

    async def _drain(self):
        outbox = self.app.outbox
        while self.client.connected():
            batch = []
            gen = outbox.records(self.sent)
            try:
                for rec in gen:
                    batch.append(rec)
                    if len(batch) >= _BATCH:
                        break
            finally:
                gen.close()
            if not batch:
                return
            for seq, payload in batch:
                pid = await self.client.publish(self.base + "evt/" + _type_of(payload), payload, qos=1)
                self.inflight[pid] = seq
                self.sent = seq
            batch = None


def _fw():
    from firmware.app import FIRMWARE
    return FIRMWARE


def tls_context(b, root):
    """TLS with the CA certificate (DER) kept on flash and the broker's name checked
    (broker.server_name, default broker.host); None for plain TCP."""
    if not b.get("tls"):
        return None
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ca = b.get("ca") or "ca.der"
    path = ca if ca.startswith("/") else root + "/" + ca
    with open(path, "rb") as f:
        ctx.load_verify_locations(cadata=f.read())
    return ctx
