"""Self-test of a terminal for tools/qterm selftest: one JSON line per check.

    from firmware import selftest
    selftest.run(hal, cfg, ["ticket:A", "rate5"], press_ms=10000, feed=wdt.feed)

Works on any hal (the ESP32 board or the simulator's doubles). In order: printer
(paper status, then a test slip), display (all-segments pattern), each button in turn
(the technician presses it within press_ms), network, broker (MQTT CONNECT/CONNACK),
clock, free heap, free flash. Prints {"check", "ok", "detail"} per check and
{"prompt": ...} before a step that needs the technician; ends with {"done", "failed"}
and returns the number of failed checks. feed() is called at least once a second
(the watchdog keeps running while the app is stopped for the test).
"""
import gc
import json
import os

import asyncio

_MIN_HEAP = const(16 * 1024)
_MIN_FLASH = const(32 * 1024)
_NET_MS = const(10000)
_BROKER_S = const(5)


def _say(obj):
    print(json.dumps(obj))


class _Result:
    def __init__(self, feed):
        self.failed = 0
        self.feed = feed or _nothing

    def check(self, name, ok, detail):
        if not ok:
            self.failed += 1
        _say({"check": name, "ok": ok, "detail": detail})
        self.feed()


def _nothing():
    pass


def printer(hal, cfg):
    from firmware import printer_status
    state = printer_status.paper_state(hal.printer)
    if state in ("out", "offline"):
        return False, "paper %s: no test slip printed" % state
    cols = cfg["printer"]["cols"] if cfg else 32
    # ESC @ reset, plain ASCII (no code page needed), ruler, feed 4 lines, partial cut
    slip = b"\x1b@qterm self-test\n" + (cfg["device"].encode() if cfg else b"?") + b"\n"
    hal.printer.write(slip + b"0123456789" * (cols // 10) + b"\n\x1bd\x04\x1dV\x01")
    return True, "paper %s, test slip printed: check it is legible and cut" % state


def display(hal):
    hal.display.show(["8.8.8.8.8.8.8.8.", "qterm self-test", "自检 self-test"])
    return True, "test pattern 8.8.8.8.8.8.8.8. shown: check every segment lights"


async def _one_press(hal, press_ms, feed):
    left = press_ms
    while left > 0:
        feed()
        step = min(1000, left)
        try:
            return await asyncio.wait_for_ms(hal.buttons.next_press(), step)
        except asyncio.TimeoutError:
            left -= step
    return None


async def buttons(hal, names, press_ms, res):
    hal.buttons.clear()
    for name in names:
        _say({"prompt": "press %s within %d s" % (name, press_ms // 1000 or 1)})
        got = await _one_press(hal, press_ms, res.feed)
        if got is None:
            res.check("button " + name, False, "no press within %g s" % (press_ms / 1000))
        elif got == name or got.startswith(name + ":"):
            res.check("button " + name, True, "pressed")
        else:
            res.check("button " + name, False, "got %s instead: wiring swapped?" % got)


async def network(hal):
    if not hal.net.up():
        try:
            await asyncio.wait_for_ms(hal.net.ensure(), _NET_MS)
        except asyncio.TimeoutError:
            pass
    info = hal.net.info()
    if hal.net.up():
        return True, "up, ip %s" % info.get("ip", "?")
    return False, "down: %s" % ", ".join("%s %s" % (k, info[k]) for k in info if k != "up")


def broker(cfg, root):
    """TCP, then TLS (files, handshake and which certificate check), then MQTT CONNECT: the
    first step that fails is named, in the words status shows as mqtt_error."""
    if not cfg:
        return False, "no config on the device: provision it first"
    from firmware import mqtt_link as mqtt
    b = cfg["broker"]
    where = "%s:%d" % (b["host"], b["port"])
    tls = b.get("tls")
    import socket
    s = socket.socket()
    step = "TCP to " + where
    try:
        s.settimeout(_BROKER_S)
        s.connect(socket.getaddrinfo(b["host"], b["port"])[0][-1])
        if tls:
            step = "TLS files"
            ctx = mqtt.tls_context(b, root)
            step = "TLS handshake with " + where
            s = ctx.wrap_socket(s, server_hostname=b.get("server_name") or b["host"])
        step = "MQTT CONNECT to " + where
        s.write(mqtt.encode_connect("qterm-selftest-" + cfg["device"], keepalive=10,
                                    user=b.get("user"), password=b.get("password")))
        ack = b""
        while len(ack) < 4:
            got = s.read(4 - len(ack))
            if not got:
                break
            ack += got
        if len(ack) != 4 or ack[0] != mqtt.CONNACK:
            return False, "%s: answered, but not with an MQTT CONNACK" % step
        code = mqtt.decode_connack(ack, 2, 4)[1]
        if code:
            return False, "%s: %s" % (step, mqtt.words(6 + code if code < 6 else 19))
        s.write(mqtt.DISCONNECT_PACKET)
        return True, "%s accepted MQTT CONNECT%s" % (where, " over TLS" if tls else "")
    except Exception as e:  # any failure here is the answer, whatever its type
        if step == "TLS files":
            return False, "%s: %s" % (step, mqtt.files_words(b, e))
        return False, "%s: %s" % (step, mqtt.words(e, False, step.startswith("TLS")))
    finally:
        s.close()


async def clock(hal, cfg, ntp):
    from firmware import calendar
    c = hal.clock
    if ntp and not getattr(c, "synced", False) and hal.net and hal.net.up() and hasattr(c, "ntp_time"):
        t = await c.ntp_time(ntp)
        if t:
            c.set_time(t)
    tz = cfg["tz_offset_min"] if cfg else 0
    when = calendar.stamp(c.time(), tz)
    if getattr(c, "synced", False) and c.time() > 1704067200:  # after 2024-01-01
        return True, "synced, %s local" % when
    return False, "not synced (reads %s): %s" % (when, "check network and NTP server %s" % ntp if ntp else "no ntp address in the config; the backend can send time.set")


def heap():
    gc.collect()
    free = gc.mem_free()
    return free >= _MIN_HEAP, "%d bytes free, %d in use (app stopped)" % (free, gc.mem_alloc())


def flash(hal):
    free = hal.storage.free_bytes()
    st = os.statvfs(hal.storage.root)
    return free >= _MIN_FLASH, "%d of %d bytes free on %s" % (free, st[0] * st[2], hal.storage.root)


_ABSENT = (False, "not fitted: no such section in the board config")


async def _all(hal, cfg, names, press_ms, res):
    res.check("printer", *(printer(hal, cfg) if hal.printer else _ABSENT))
    res.check("display", *(display(hal) if hal.display else _ABSENT))
    if hal.buttons:
        await buttons(hal, names, press_ms, res)
    elif names:
        res.check("buttons", *_ABSENT)
    if hal.net:
        res.check("network", *(await network(hal)))
    else:
        res.check("network", False, "no link: the config has no wifi section")
    res.check("broker", *broker(cfg, hal.storage.root))
    res.check("clock", *(await clock(hal, cfg, (cfg or {}).get("ntp"))))
    res.check("heap", *heap())
    res.check("flash", *flash(hal))


def run(hal, cfg, names, press_ms=10000, feed=None):
    """Run every check on hal (cfg: normalised config or None); returns the failures."""
    res = _Result(feed)
    asyncio.run(_all(hal, cfg, names, press_ms, res))
    _say({"done": True, "failed": res.failed})
    return res.failed
