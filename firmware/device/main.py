"""qterm terminal entry on the ESP32 (deployed as /main.py; boot.py put the active slot on sys.path).

Order: config -> board hal -> watchdog -> Wi-Fi (bounded wait) -> NTP -> App.
The network never holds up the citizen: after _NET_WAIT_S without Wi-Fi the terminal
starts offline and a background task keeps bringing the link and the clock up
(status shows clock_synced). A bad or missing config stops here with the reason printed
and the REPL free, before the watchdog starts.
The watchdog is fed by a task of the main loop: a hung loop or a crash resets the board
after _WDT_MS. After Ctrl-C (mpremote, tools/qterm) it keeps running: the tools feed the
global qterm_wdt; by hand, call qterm_wdt.feed() or expect a reset.
"""
import gc
import json

import asyncio
import machine
from time import ticks_add, ticks_diff, ticks_ms

CONFIG = "/data/config.json"
_WDT_MS = 30000
_FEED_MS = 5000
_NET_WAIT_S = 20
_NTP_RETRY_MS = 60000
_NTP_EVERY_MS = 6 * 3600000
_MIN_EPOCH = 1704067200   # 2024-01-01: an answer before this is not the time

qterm_wdt = None


class _Absent:
    """A part this board does not have: every call is accepted and does nothing
    (no printer reads as offline, so tickets are refused in words, not by a crash)."""

    def show(self, lines):
        pass

    def set(self, what, on):
        pass

    def beep(self, ms=80):
        pass

    def say(self, text):
        pass

    def busy(self):
        return False

    def write(self, data):
        pass

    def query(self, request, timeout_ms=300):
        return None

    def up(self):
        return False

    def info(self):
        return {"up": False, "link": "none"}

    async def ensure(self):
        await asyncio.Event().wait()

    async def next_press(self):
        await asyncio.Event().wait()

    def pending(self):
        return 0

    def clear(self):
        pass

    def handled(self, name, result):
        pass


def load_config():
    """The validated, normalised config, or None after printing every problem."""
    from firmware import config
    config.apply_pending(CONFIG.rsplit("/", 1)[0])
    try:
        with open(CONFIG) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        print("qterm: cannot read %s (%r): provision the device with tools/qterm" % (CONFIG, e))
        return None
    errors = config.validate(cfg)
    for line in config.describe(errors):
        print("qterm: %s: %s" % (CONFIG, line))
    return None if errors else config.normalise(cfg)


def build_hal(cfg):
    from hal.esp32.board import DEFAULT_BOARD, make_hal
    encode = None
    if cfg.get("voice") and (cfg.get("board") or DEFAULT_BOARD).get("voice"):
        from firmware.gb2312 import Gb2312
        encode = Gb2312().encode
    board = cfg.get("board") or DEFAULT_BOARD
    render = None
    if board.get("display", {}).get("type") in ("hub12", "st7789"):
        from firmware import panel as render     # pixel displays draw text with the flash font
    hal = make_hal(cfg, encode=encode, render=render)
    for part in ("printer", "display", "buttons", "indicator", "voice", "net"):
        if getattr(hal, part) is None:
            setattr(hal, part, _Absent())
    return hal


async def _feed(wdt):
    while True:
        wdt.feed()
        await asyncio.sleep_ms(_FEED_MS)


async def _ntp(hal, server):
    """Time from the `ntp` config key: "a.b.c.d" or "a.b.c.d:port"."""
    host, _, port = server.partition(":")
    return await hal.clock.ntp_time(host, 2000, int(port) if port else 123)


async def _keep_online(app, hal, ntp):
    """Link up again after a loss (the driver retries with backoff); clock from NTP."""
    was_up = hal.net.up()
    next_ntp = ticks_add(ticks_ms(), _NTP_EVERY_MS if hal.clock.synced else 0)
    while True:
        if not hal.net.up():
            if was_up:
                was_up = False
                app.publisher.link_changed()
            await hal.net.ensure()
        if not was_up:
            was_up = True
            app.publisher.link_changed()
        if ntp and ticks_diff(ticks_ms(), next_ntp) >= 0:
            t = await _ntp(hal, ntp)
            if t and t >= _MIN_EPOCH:
                if abs(t - hal.clock.time()) > 1:
                    app.clock_step(t, "ntp")   # a step: the business day does not change
                hal.clock.synced = True
            next_ntp = ticks_add(ticks_ms(), _NTP_EVERY_MS if t else _NTP_RETRY_MS)
        await asyncio.sleep_ms(2000)


async def _run(cfg, hal, wdt):
    asyncio.create_task(_feed(wdt))
    ntp = cfg.get("ntp")  # an IPv4 address, or no NTP (the backend's time.set then)
    linked = not isinstance(hal.net, _Absent)
    if not linked:
        print("qterm: no wifi section in the config, running offline")
    else:
        try:
            await asyncio.wait_for(hal.net.ensure(), _NET_WAIT_S)
        except asyncio.TimeoutError:
            print("qterm: no network after %d s, starting offline" % _NET_WAIT_S)
    if hal.net.up() and ntp:
        # Before boot: time that passed while the power was off moves the business day on.
        t = await _ntp(hal, ntp)
        if t and t >= _MIN_EPOCH:
            hal.clock.set_time(t)
    from firmware.app import App
    app = App(hal, cfg)
    cfg = None      # the app keeps what it needs; the whole config stays on flash
    app.boot()
    if linked:
        asyncio.create_task(_keep_online(app, hal, ntp))
    await app.run()


def main():
    global qterm_wdt
    cfg = load_config()
    if cfg is None:
        return
    from firmware import release
    release("config", "text", "config_keys", "trial")  # boot-only code: its bytecode is worth more as free RAM
    try:
        hal = build_hal(cfg)
    except (ValueError, OSError) as e:
        print("qterm: board: %s" % e)
        return
    gc.collect()
    qterm_wdt = machine.WDT(timeout=_WDT_MS)
    asyncio.run(_run(cfg, hal, qterm_wdt))


main()
