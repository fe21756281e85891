"""hal/esp32 drivers against fake machine/network/time (CPython and MicroPython)."""
import asyncio
import os

import fake_machine as fm
from _util import raises, rmtree, tmpdir

fm.install()
try:
    from hal.esp32 import board as esp_board
    from hal.esp32 import clock as esp_clock
    from hal.esp32 import gpio_buttons, wlan
    from hal.esp32.gpio_buttons import GpioButtons
    from hal.esp32.indicator import GpioIndicator
    from hal.esp32.max7219 import Max7219, glyph
    from hal.esp32.storage import FlashStorage
    from hal.esp32.syn6288 import Syn6288, fit_gb2312
    from hal.esp32.uart_printer import UartPrinter
finally:
    fm.restore()

from hal import buttons as hal_buttons
from hal import clock as hal_clock
from hal import display as hal_display
from hal import indicator as hal_indicator
from hal import netlink as hal_netlink
from hal import printer as hal_printer
from hal import storage as hal_storage
from hal import voice as hal_voice


# ------------------------------------------------------------ interfaces

def test_interfaces_raise_not_implemented():
    raises(NotImplementedError, hal_printer.PrinterPort().write, b"x")
    raises(NotImplementedError, hal_printer.PrinterPort().query, b"x")
    raises(NotImplementedError, hal_display.Display().show, ["A001"])
    raises(NotImplementedError, hal_buttons.Buttons().pending)
    raises(NotImplementedError, hal_buttons.Buttons().clear)
    raises(NotImplementedError, asyncio.run, hal_buttons.Buttons().next_press())
    raises(NotImplementedError, hal_indicator.Indicator().set, "rate", True)
    raises(NotImplementedError, hal_indicator.Indicator().beep)
    raises(NotImplementedError, hal_voice.Voice().say, "x")
    raises(NotImplementedError, hal_voice.Voice().busy)
    c = hal_clock.Clock()
    assert c.synced is False
    raises(NotImplementedError, c.time)
    raises(NotImplementedError, c.ticks_ms)
    raises(NotImplementedError, c.set_time, 0)
    s = hal_storage.Storage()
    assert s.root is None
    raises(NotImplementedError, s.free_bytes)
    raises(NotImplementedError, hal_netlink.NetLink().up)
    raises(NotImplementedError, hal_netlink.NetLink().info)
    raises(NotImplementedError, asyncio.run, hal_netlink.NetLink().ensure())


# ------------------------------------------------------------ UART printer

def test_printer_writes_every_byte_despite_partial_writes():
    fm.reset_clock()
    u = fm.UART(2)
    u.max_chunk = 3
    u.stalls = 2
    p = UartPrinter(u)
    data = b"\x1b@" + b"A001" * 10 + b"\n"
    p.write(data)
    assert bytes(u.written) == data
    p.write(bytearray(b"xy"))
    p.write(memoryview(b"--z")[2:])
    assert bytes(u.written) == data + b"xyz"


def test_printer_write_gives_up_when_printer_stops_accepting():
    fm.reset_clock()
    u = fm.UART(2)
    u.stuck = True
    p = UartPrinter(u, write_timeout_ms=500)
    e = raises(OSError, p.write, b"ticket")
    assert e.args[0] == 110
    assert fm.clock.ms >= 500          # fake time advanced, nothing really waited


def test_printer_query_returns_reply_and_flushes_stale_input():
    fm.reset_clock()
    u = fm.UART(2)
    u.feed(b"\xff\xee" * 30)           # leftovers from earlier, late replies
    u.reply(b"\x10\x04\x04", b"\x12", delay_ms=7)
    p = UartPrinter(u)
    assert p.query(b"\x10\x04\x04") == b"\x12"
    assert bytes(u.written) == b"\x10\x04\x04"


def test_printer_query_collects_multibyte_reply():
    fm.reset_clock()
    u = fm.UART(2)
    u.reply(b"\x1dI\x01", b"TM", delay_ms=3)
    u.reply(b"\x1dI\x01", b"-T20", delay_ms=8)
    p = UartPrinter(u)
    assert p.query(b"\x1dI\x01") == b"TM-T20"


def test_printer_query_times_out_with_none():
    fm.reset_clock()
    u = fm.UART(2)
    p = UartPrinter(u)
    assert p.query(b"\x10\x04\x04", timeout_ms=300) is None
    assert 300 <= fm.clock.ms < 320
    fm.reset_clock()
    u.reply(b"\x10\x04\x01", b"\x16", delay_ms=400)   # answers too late
    assert p.query(b"\x10\x04\x01", timeout_ms=300) is None


# ------------------------------------------------------------ MAX7219

def _max(digits=8, intensity=7):
    spi = fm.SPI(2)
    cs = fm.Pin(5, fm.Pin.OUT, value=1)
    d = Max7219(spi, cs, digits=digits, intensity=intensity)
    return d, spi, cs


def test_max7219_init_sequence():
    d, spi, cs = _max(intensity=5)
    assert spi.writes[:5] == [b"\x09\x00", b"\x0a\x05", b"\x0b\x07", b"\x0c\x01", b"\x0f\x00"]
    assert spi.writes[5:] == [bytes((i, 0)) for i in range(1, 9)]
    # every transfer framed by CS low .. high
    assert cs.history[0] == 1 and cs.history[1:] == [0, 1] * 13
    d2, spi2, _ = _max(digits=4)
    assert spi2.writes[2] == b"\x0b\x03"


def test_max7219_font():
    expect = {"0": 0x7E, "1": 0x30, "2": 0x6D, "3": 0x79, "4": 0x33, "5": 0x5B,
              "6": 0x5F, "7": 0x70, "8": 0x7F, "9": 0x7B, "A": 0x77, "b": 0x1F,
              "C": 0x4E, "d": 0x3D, "E": 0x4F, "F": 0x47, "H": 0x37, "L": 0x0E,
              "n": 0x15, "o": 0x1D, "P": 0x67, "r": 0x05, "t": 0x0F, "U": 0x3E,
              "-": 0x01, " ": 0x00}
    for ch in expect:
        assert glyph(ch) == expect[ch], ch
    assert glyph("a") == 0x77 and glyph("B") == 0x1F and glyph("u") == 0x3E
    assert glyph("?") == 0 and glyph("中") == 0


def _digits(spi, start):
    """Register -> value of the digit writes after index start."""
    out = {}
    for w in spi.writes[start:]:
        out[w[0]] = w[1]
    return out


def test_max7219_shows_ticket_left_counter_right():
    d, spi, _ = _max()
    n = len(spi.writes)
    d.show(["A001 -> 3", "综合业务", "等候 5 人"])
    assert _digits(spi, n) == {8: 0x77, 7: 0x7E, 6: 0x7E, 5: 0x30, 1: 0x79}
    assert bytes(d.render("A001 3")) == bytes(d.render("A001 -> 3")) == bytes(d.render("A001->3"))
    n = len(spi.writes)
    d.show(["A002 -> 3"])                  # only the changed digit goes out
    assert spi.writes[n:] == [b"\x05\x6d"]
    n = len(spi.writes)
    d.show(["P"])
    assert _digits(spi, n) == {8: 0x67, 7: 0, 6: 0, 5: 0, 1: 0}
    d.show([])
    assert bytes(d.render("")) == bytes(8)


def test_max7219_points_and_overflow():
    d, spi, _ = _max()
    assert bytes(d.render("12.5")) == bytes((0x30, 0x6D | 0x80, 0x5B, 0, 0, 0, 0, 0))
    assert bytes(d.render("A1234567 12")) == bytes((0x77, 0x30, 0x6D, 0x79, 0x33, 0x5B, 0x5F, 0x70))
    assert bytes(d.render("b001 12")) == bytes((0x1F, 0x7E, 0x7E, 0x30, 0, 0, 0x30, 0x6D))


# ------------------------------------------------------------ buttons

def _keys(pin_map, **kw):
    fm.reset_clock()
    for gpio in pin_map.values():
        fm.Pin.levels.pop(gpio, None)         # keys released
    b = GpioButtons(pin_map, **kw)
    return b


def _hold(b, pin, t, ms, step=5):
    """Drive pin low for ms (polling every step ms from t), then high; returns t."""
    pin.value(0)
    end = t + ms
    while t < end:
        b.step(t)
        t += step
    pin.value(1)
    return t


def _idle(b, t, ms, step=5):
    end = t + ms
    while t < end:
        b.step(t)
        t += step
    return t


def _drain(b):
    out = []
    while b.pending():
        out.append(b._pop())
    return out


def test_buttons_pins_are_pulled_up_inputs():
    b = _keys({"ticket:A": 32, "next": 34, "rate5": 21})
    assert fm.Pin.made[32].mode == fm.Pin.IN and fm.Pin.made[32].pull == fm.Pin.PULL_UP
    assert fm.Pin.made[21].pull == fm.Pin.PULL_UP
    assert fm.Pin.made[34].pull == -1          # input-only pad: external pull-up
    assert b.pending() == 0


def test_buttons_bounces_shorter_than_debounce_are_ignored():
    b = _keys({"rate5": 21}, debounce_ms=30)
    pin = fm.Pin.made[21]
    t = _idle(b, 0, 20)
    for _ in range(5):                         # 10 ms glitches
        t = _hold(b, pin, t, 10)
        t = _idle(b, t, 40)
    assert b.pending() == 0
    # A real press that chatters for its first 15 ms still counts once.
    for _ in range(3):
        pin.value(0)
        b.step(t)
        t += 5
        pin.value(1)
        b.step(t)
        t += 5
    t = _hold(b, pin, t, 100)
    t = _idle(b, t, 5)
    for _ in range(3):                         # release chatter
        pin.value(0)
        b.step(t)
        t += 5
        pin.value(1)
        b.step(t)
        t += 5
    t = _idle(b, t, 60)
    assert _drain(b) == ["rate5"]


def test_buttons_one_event_per_press_and_no_repeat_while_held():
    b = _keys({"next": 22, "rate1": 15})
    nxt = fm.Pin.made[22]
    t = _hold(b, nxt, 0, 5000)                # held 5 s
    assert b.pending() == 0                   # reported on release only
    t = _idle(b, t, 50)
    assert _drain(b) == ["next"]
    t = _idle(b, t, 2000)
    assert b.pending() == 0
    t = _hold(b, fm.Pin.made[15], t, 60)
    t = _idle(b, t, 40)
    t = _hold(b, nxt, t, 60)
    t = _idle(b, t, 40)
    assert _drain(b) == ["rate1", "next"]


def test_buttons_long_press_on_service_key_means_priority():
    b = _keys({"ticket:A": 32, "ticket:B:priority": 33, "next@2": 23}, long_ms=1500)
    a = fm.Pin.made[32]
    t = _hold(b, a, 0, 1400)
    assert b.pending() == 0
    a.value(0)
    t = _idle(b, t, 200)                      # crosses 1.5 s while still held
    assert _drain(b) == ["ticket:A:priority"]
    t = _idle(b, t, 3000)                     # keeps holding: nothing more
    a.value(1)
    t = _idle(b, t, 100)
    assert b.pending() == 0
    t = _hold(b, a, t, 200)                   # short press
    t = _idle(b, t, 50)
    t = _hold(b, fm.Pin.made[33], t, 2000)    # own priority key: no long meaning
    t = _idle(b, t, 50)
    t = _hold(b, fm.Pin.made[23], t, 2000)    # staff key of counter 2
    t = _idle(b, t, 50)
    assert _drain(b) == ["ticket:A", "ticket:B:priority", "next@2"]


def test_buttons_queue_full_drops_newest_and_counts():
    b = _keys({"rate1": 15, "rate2": 4, "rate3": 19, "rate4": 22, "rate5": 21, "next": 23},
              queue_size=4)
    t = 0
    order = ["rate1", "rate2", "rate3", "rate4", "rate5", "next"]
    pins = {"rate1": 15, "rate2": 4, "rate3": 19, "rate4": 22, "rate5": 21, "next": 23}
    for name in order:
        t = _hold(b, fm.Pin.made[pins[name]], t, 60)
        t = _idle(b, t, 40)
    assert b.pending() == 4
    assert b.dropped == 2
    assert _drain(b) == ["rate1", "rate2", "rate3", "rate4"]
    t = _hold(b, fm.Pin.made[23], t, 60)      # room again
    t = _idle(b, t, 40)
    assert _drain(b) == ["next"]


def test_buttons_clear_drops_queue_and_the_key_being_held():
    b = _keys({"ticket:A": 32, "rate5": 21})
    t = _hold(b, fm.Pin.made[21], 0, 60)
    t = _idle(b, t, 40)
    a = fm.Pin.made[32]
    a.value(0)
    t = _idle(b, t, 100)                      # ticket key down while printing
    b.clear()
    assert b.pending() == 0
    t = _idle(b, t, 2000)                     # no long-press either
    a.value(1)
    t = _idle(b, t, 100)
    assert b.pending() == 0
    t = _hold(b, a, t, 100)
    t = _idle(b, t, 50)
    assert _drain(b) == ["ticket:A"]


def test_buttons_key_held_at_boot_is_not_a_press():
    fm.reset_pins()
    fm.set_level(21, 0)                       # stuck or held before the driver starts
    b = _keys({"rate5": 21})
    p = fm.Pin.made[21]
    t = _idle(b, 0, 3000)
    p.value(1)
    t = _idle(b, t, 100)
    assert b.pending() == 0
    t = _hold(b, p, t, 80)                    # the next real press counts
    t = _idle(b, t, 50)
    assert _drain(b) == ["rate5"]


def test_buttons_survive_ticks_wraparound():
    b = _keys({"ticket:A": 32})
    a = fm.Pin.made[32]
    start = (1 << 30) - 700                   # ticks_ms wraps at 2**30
    t = start
    a.value(0)
    while t < start + 1600:
        b.step(t % (1 << 30))
        t += 5
    assert _drain(b) == ["ticket:A:priority"]


def test_buttons_next_press_wakes_on_queued_press():
    b = _keys({"rate4": 22})

    async def scenario():
        t = _hold(b, fm.Pin.made[22], 0, 60)
        _idle(b, t, 40)
        first = await b.next_press()
        waiter = asyncio.create_task(b.next_press())
        await asyncio.sleep(0.01)
        t = _hold(b, fm.Pin.made[22], 1000, 60)
        _idle(b, t, 40)
        second = await asyncio.wait_for(waiter, 1)
        b.stop()
        return first, second

    assert asyncio.run(scenario()) == ("rate4", "rate4")


def test_long_name_rules():
    assert gpio_buttons._long_name("ticket:A") == "ticket:A:priority"
    assert gpio_buttons._long_name("ticket:A:priority") is None
    assert gpio_buttons._long_name("rate5") is None
    assert gpio_buttons._long_name("ticket:A@2") is None


# ------------------------------------------------------------ indicator

def test_indicator_lamps_and_unknown_names():
    ind = GpioIndicator({"rate": 14, "net": 2})
    assert fm.Pin.made[14].mode == fm.Pin.OUT and fm.Pin.made[14].level == 0
    ind.set("rate", True)
    assert fm.Pin.made[14].level == 1
    ind.set("rate", False)
    assert fm.Pin.made[14].level == 0
    ind.set("paper", True)                    # not fitted: ignored
    ind.beep()                                # no buzzer: ignored


def test_indicator_beep_switches_itself_off():
    fm.PWM.made = []
    ind = GpioIndicator({}, buzzer_pin=13)
    pwm = fm.PWM.made[-1]
    assert pwm.duty == 0 and pwm.pin.id == 13    # silent from construction

    async def scenario():
        ind.beep(20)
        on = pwm.duty
        await asyncio.sleep(0.08)
        return on, pwm.duty

    on, off = asyncio.run(scenario())
    assert on > 0 and off == 0


def test_indicator_overlapping_beeps_keep_latest():
    fm.PWM.made = []
    ind = GpioIndicator({}, buzzer_pin=13)
    pwm = fm.PWM.made[-1]

    async def scenario():
        ind.beep(20)
        await asyncio.sleep(0.005)
        ind.beep(150)                         # extends: the first timer must not cut it
        await asyncio.sleep(0.06)
        mid = pwm.duty
        await asyncio.sleep(0.2)
        return mid, pwm.duty

    mid, end = asyncio.run(scenario())
    assert mid > 0 and end == 0


# ------------------------------------------------------------ SYN6288

_TEXT = "请A001号到3号窗口"
_GB = {"请": b"\xc7\xeb", "号": b"\xba\xc5", "到": b"\xb5\xbd", "窗": b"\xb4\xb0", "口": b"\xbf\xda"}


def _gb2312(text):
    out = bytearray()
    for ch in text:
        out.extend(_GB[ch] if ch in _GB else ch.encode())
    return bytes(out)


def test_syn6288_frame_bytes_and_checksum():
    v = Syn6288(fm.UART(1), _gb2312)
    text = bytes.fromhex("c7eb41303031bac5b5bd33bac5b4b0bfda")
    assert _gb2312(_TEXT) == text
    head = bytes((0xFD, 0x00, len(text) + 3, 0x01, 0x00))
    x = 0
    for b in head + text:
        x ^= b
    assert bytes(v.frame(_TEXT)) == head + text + bytes((x,))
    # the same frame written out by hand: FD 0014 01 00 <17 text bytes> EE
    assert bytes(v.frame(_TEXT)) == bytes.fromhex("fd00140100c7eb41303031bac5b5bd33bac5b4b0bfdaee")
    assert bytes(v.frame("A")) == bytes((0xFD, 0, 4, 1, 0, 0x41, 0xFD ^ 4 ^ 1 ^ 0x41))


def test_syn6288_long_text_cut_on_character_boundary():
    assert fit_gb2312(b"a" * 250) == 200
    assert fit_gb2312(b"a" + b"\xc7\xeb" * 120) == 199   # never half a character
    assert fit_gb2312(b"\xc7\xeb" * 3) == 6
    v = Syn6288(fm.UART(1), lambda s: b"a" + b"\xc7\xeb" * 120)
    f = bytes(v.frame("x"))
    assert len(f) == 199 + 6 and f[1] == 0 and f[2] == 202


def test_syn6288_say_writes_frame_and_tracks_busy_from_replies():
    fm.reset_clock()
    u = fm.UART(1)
    v = Syn6288(u, _gb2312)
    assert not v.busy()
    v.say(_TEXT)
    assert bytes(u.written) == bytes(v.frame(_TEXT))
    u.feed(b"\x41")                           # frame accepted
    assert v.busy()
    fm.advance(1500)
    u.feed(b"\x4f")                           # done speaking
    assert not v.busy()


def test_syn6288_busy_estimate_when_module_is_silent():
    fm.reset_clock()
    v = Syn6288(fm.UART(1), _gb2312)
    v.say(_TEXT)
    assert v.busy()
    fm.advance(1000)
    assert v.busy()
    fm.advance(10000)
    assert not v.busy()


def test_syn6288_busy_pin():
    busy = fm.Pin(39, fm.Pin.IN)
    busy.value(0)
    v = Syn6288(fm.UART(1), _gb2312, busy_pin=busy)
    assert not v.busy()
    busy.value(1)
    assert v.busy()
    v2 = Syn6288(fm.UART(1), _gb2312, busy_pin=busy, busy_level=0)
    assert not v2.busy()


# ------------------------------------------------------------ clock, storage

def test_clock_set_time_round_trip_and_synced():
    fm.reset_clock(wall=0)
    c = esp_clock.RtcClock()
    assert c.synced is False
    c.set_time(1718000000)                    # 2024-06-10 06:13:20 UTC, Monday
    assert c.synced is True
    assert fm.RTC.last == (2024, 6, 10, 0, 6, 13, 20, 0)
    assert c.time() == 1718000000
    fm.advance(2500)
    assert c.time() == 1718000002
    assert c.ticks_ms() == 2500


def test_clock_on_a_2000_epoch_port_still_returns_unix_seconds():
    fm.reset_clock(wall=0, epoch_year=2000)
    c = esp_clock.RtcClock()
    c.set_time(1718000000)
    assert fm.clock.wall == 1718000000 - 946684800
    assert c.time() == 1718000000
    fm.reset_clock()


def test_clock_ntp_time_asks_a_server_without_blocking_the_loop():
    import socket
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for attempt in range(50):       # MicroPython sockets have no getsockname(): pick a port
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 40000
        try:
            server.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            break
        except OSError:
            pass
    server.setblocking(False)
    c = esp_clock.RtcClock()
    ticks = []

    async def answer(t1900):
        while True:
            try:
                req, peer = server.recvfrom(64)
                break
            except OSError:
                await asyncio.sleep(0.01)
        assert len(req) == 48 and req[0] == 0x1B
        reply = bytearray(48)
        reply[40:44] = t1900.to_bytes(4, "big")
        server.sendto(reply, peer)

    async def other_work():     # the loop keeps running while the answer is awaited
        for _ in range(5):
            ticks.append(1)
            await asyncio.sleep(0.005)

    async def scenario():
        asyncio.create_task(answer(1718000000 + 2208988800))
        asyncio.create_task(other_work())
        got = await c.ntp_time("127.0.0.1", 2000, port)
        silent = await c.ntp_time("127.0.0.1", 100, port)   # nobody answers: None, in time
        return got, silent

    with fm.installed():
        got, silent = asyncio.run(scenario())
    server.close()
    assert got == 1718000000 and silent is None and len(ticks) == 5


def test_flash_storage_creates_root_and_reports_free_space():
    d = tmpdir("hal")
    try:
        s = FlashStorage(d + "/data")
        assert s.root == d + "/data"
        f = open(s.root + "/probe", "w")
        f.write("ok")
        f.close()
        FlashStorage(d + "/data")             # existing root is fine
        free = s.free_bytes()
        assert isinstance(free, int) and free > 0
    finally:
        rmtree(d)


# ------------------------------------------------------------ wlan

def test_backoff_doubles_and_caps():
    assert [wlan.backoff_ms(i, 1000, 60000) for i in range(8)] == \
        [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
    for _ in range(50):
        j = wlan.jitter(1000)
        assert 750 <= j <= 1250


def _link(**kw):
    args = {"connect_ms": 20, "first_backoff_ms": 2, "max_backoff_ms": 8, "poll_ms": 2}
    args.update(kw)
    return wlan.WlanLink("hall-wifi", "secret", hostname="qterm-k1", **args)


def test_wlan_retries_until_connected():
    fm.WLAN.connect_after = 3
    fm.WLAN.fail_status = fm.network.STAT_CONNECTING
    link = _link()
    w = fm.WLAN.last
    assert not link.up()
    assert link.info()["up"] is False
    asyncio.run(asyncio.wait_for(link.ensure(), 5))
    assert link.up() and w.active()
    assert w.connects == 3 and link.attempts == 3
    assert ("connect", "hall-wifi", "secret") in w.calls
    assert fm.network.names[-1] == "qterm-k1"
    info = link.info()
    assert info["up"] is True and info["ip"] == "192.168.1.50" and info["rssi"] == -58
    assert info["mac"] == "24:0a:c4:00:00:01" and info["ssid"] == "hall-wifi"
    asyncio.run(link.ensure())                # already up: returns at once
    assert w.connects == 3


def test_wlan_wrong_password_ends_attempt_early():
    fm.WLAN.connect_after = 2
    fm.WLAN.fail_status = fm.network.STAT_WRONG_PASSWORD
    link = _link(connect_ms=100000)           # without the early end this would hang
    asyncio.run(asyncio.wait_for(link.ensure(), 5))
    assert link.attempts == 2 and link.up()
    fm.WLAN.fail_status = fm.network.STAT_CONNECTING


def test_wlan_two_callers_share_one_attempt():
    fm.WLAN.connect_after = 2
    link = _link()

    async def both():
        await asyncio.gather(link.ensure(), link.ensure())

    asyncio.run(asyncio.wait_for(both(), 5))
    assert link.up() and link.attempts == 2


# ------------------------------------------------------------ board

def _board(**changes):
    b = {}
    for k in esp_board.DEFAULT_BOARD:
        v = esp_board.DEFAULT_BOARD[k]
        b[k] = dict(v) if isinstance(v, dict) else v
    for k in changes:
        b[k] = changes[k]
    return b


def _paths(errs):
    return [p for p, _ in errs]


def test_default_board_is_valid():
    assert esp_board.validate_board(esp_board.DEFAULT_BOARD) == []


def test_validate_board_reports_pin_mistakes():
    b = _board()
    b["printer"]["tx"] = 35                   # input-only
    b["display"]["cs"] = 17                   # free now that tx moved away
    b["buttons"]["rate1"] = 21                # same as rate5
    b["buttons"]["rate2"] = 7                 # flash
    b["buttons"]["rate3"] = "19"              # not an int
    b["buttons"]["rate4"] = 3                 # REPL
    b["buttons"]["finish"] = 24               # does not exist
    b["indicator"]["error"] = True            # bool is not a pin
    errs = esp_board.validate_board(b)
    d = {}
    for p, m in errs:
        d[p] = m
    assert "input-only" in d["board.printer.tx"]
    assert "board.display.cs" not in d
    assert "already used by board.buttons.rate5" in d["board.buttons.rate1"] or \
        "already used by board.buttons.rate1" in d["board.buttons.rate5"]
    assert "flash" in d["board.buttons.rate2"]
    assert "GPIO number" in d["board.buttons.rate3"]
    assert "UART0" in d["board.buttons.rate4"]
    assert "no GPIO 24" in d["board.buttons.finish"]
    assert "GPIO number" in d["board.indicator.error"]
    assert "board.buttons.recall" not in d     # input-only is fine for a key


def test_validate_board_reports_structure_mistakes():
    b = _board(voice={"uart": 2, "tx": 4}, extra=1, debounce_ms=1)
    b["buttons"] = {"tickt:A": 32, "ticket:": 33, "ticket:A:vip": 25, "next@": 26,
                    "ticket:B:priority": 27, "next@2": 14}
    b["indicator"] = {"lamp": 2, "buzzer": 36}
    b["display"]["digits"] = 9
    del b["printer"]["rx"]
    errs = esp_board.validate_board(b)
    paths = _paths(errs)
    for p in ("board.extra", "board.debounce_ms", "board.voice.uart", "board.voice.rx",
              "board.buttons.tickt:A", "board.buttons.ticket:", "board.buttons.ticket:A:vip",
              "board.buttons.next@", "board.indicator.lamp", "board.indicator.buzzer",
              "board.display.digits", "board.printer.rx"):
        assert p in paths, p
    assert "board.buttons.ticket:B:priority" not in paths
    assert "board.buttons.next@2" not in paths
    assert esp_board.validate_board([]) == [("board", "must be an object")]


def test_make_hal_default_board_on_fakes():
    d = tmpdir("hal")
    try:
        fm.reset_clock()
        fm.WLAN.connect_after = 1
        cfg = {"board": _board(data_dir=d + "/data"),
               "wifi": {"ssid": "hall-wifi", "password": "pw"}}
        hal = esp_board.make_hal(cfg)
        assert isinstance(hal.printer, UartPrinter)
        assert isinstance(hal.display, Max7219)
        assert isinstance(hal.buttons, GpioButtons)
        assert isinstance(hal.indicator, GpioIndicator)
        assert hal.voice is None                   # not wired on the default board
        assert isinstance(hal.clock, esp_clock.RtcClock)
        assert hal.storage.root == d + "/data"
        assert isinstance(hal.net, wlan.WlanLink)
        u = fm.UART.made[2]
        assert u.baudrate == 9600 and u.kw["tx"] == 17 and u.kw["rx"] == 16
        spi = fm.SPI.made[2]
        assert spi.kw["miso"] is None and spi.kw["sck"].id == 18 and spi.kw["mosi"].id == 23
        assert fm.Pin.made[5].mode == fm.Pin.OUT and fm.Pin.made[5].level == 1
        assert fm.Pin.made[32].pull == fm.Pin.PULL_UP
        hal.display.show(["A001 -> 3"])
        assert spi.writes[-1] == b"\x01\x79"
        hal.indicator.set("net", True)
        assert fm.Pin.made[2].level == 1
        hal.printer.write(b"\x1b@")
        assert bytes(u.written) == b"\x1b@"
    finally:
        rmtree(d)


def test_make_hal_voice_and_missing_sections():
    d = tmpdir("hal")
    try:
        b = {"display": {"spi": 1, "sck": 14, "mosi": 13, "cs": 15, "digits": 4},
             "voice": {"uart": 1, "tx": 4, "rx": 36, "busy": 39},
             "data_dir": d}
        hal = esp_board.make_hal({"board": b}, encode=_gb2312)
        assert hal.printer is None and hal.buttons is None and hal.indicator is None
        assert hal.net is None
        assert isinstance(hal.voice, Syn6288)
        u = fm.UART.made[1]
        assert u.kw["tx"] == 4 and u.kw["rx"] == 36
        hal.voice.say("请")
        assert bytes(u.written)[:4] == b"\xfd\x00\x05\x01"
        assert esp_board.make_hal({"board": b}).voice is None    # no encoder, no voice
    finally:
        rmtree(d)


def test_make_hal_refuses_bad_board():
    b = _board()
    b["indicator"]["net"] = 34
    e = raises(ValueError, esp_board.make_hal, {"board": b})
    assert "board.indicator.net" in str(e)


# ------------------------------------------------------------ keypad in the board

def _counter_board():
    """A counter's board: no printer, no ticket or staff keys, a 4x4 keypad in their place."""
    b = _board()
    del b["printer"]
    for name in ("ticket:A", "ticket:B", "next", "recall", "skip", "finish", "pause"):
        del b["buttons"][name]
    b["keypad"] = {"rows": [17, 16, 32, 33], "cols": [34, 35, 36, 39]}
    return b


def test_validate_board_accepts_a_keypad():
    assert esp_board.validate_board(_counter_board()) == []


def test_validate_board_reports_keypad_mistakes():
    b = _counter_board()
    b["keypad"]["rows"] = [17, 16, 16, 36]     # twice the same; input-only cannot be a row
    b["keypad"]["cols"] = [34, 35, 21, 7]      # rate5's pin; flash
    d = dict(esp_board.validate_board(b))
    assert "already used by board.keypad.rows[1]" in d["board.keypad.rows[2]"]
    assert "input-only" in d["board.keypad.rows[3]"]
    assert "already used by board.buttons.rate5" in d["board.keypad.cols[2]"] or \
        "already used by board.keypad.cols[2]" in d["board.buttons.rate5"]
    assert "flash" in d["board.keypad.cols[3]"]
    assert "board.keypad.cols[0]" not in d     # input-only is fine for a column
    b["keypad"] = {"rows": [17, 16, 32], "colz": [34, 35, 36, 39]}
    d = dict(esp_board.validate_board(b))
    assert "4 GPIO" in d["board.keypad.rows"]
    assert d["board.keypad.cols"] == "missing" and d["board.keypad.colz"] == "unknown key"
    b["keypad"] = [17, 16]
    assert _paths(esp_board.validate_board(b)) == ["board.keypad"]
    b["keypad"] = {"rows": "17,16,32,33", "cols": [34, 35, 36, 39]}
    assert _paths(esp_board.validate_board(b)) == ["board.keypad.rows"]


def test_make_hal_builds_the_keypad_only_when_fitted():
    d = tmpdir("hal")
    fm.install()      # the keypad driver is imported lazily, by make_hal
    try:
        fm.reset_pins()
        b = _counter_board()
        b["data_dir"] = d
        b["debounce_ms"] = 50
        hal = esp_board.make_hal({"board": b})
        pad = hal.keypad
        assert type(pad).__name__ == "MatrixKeypad" and pad._stable == 5
        assert fm.Pin.made[17].mode == fm.Pin.OPEN_DRAIN and fm.Pin.made[34].mode == fm.Pin.IN
        assert pad.pending() == 0
        assert esp_board.make_hal({"board": _board(data_dir=d)}).keypad is None
    finally:
        fm.restore()
        rmtree(d)
