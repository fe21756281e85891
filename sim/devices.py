"""Host doubles of every hal interface, driven by the control port instead of wires."""
import json
import os
import time

import asyncio

# The doubles implement the hal interfaces (hal/*.py) by duck typing rather than by
# inheritance: importing eight interface modules would cost the sim ~8 KiB of a 96 KiB heap.
# tests/unit/test_hal_conformance.py checks that every method of every interface is here.

_DLE_EOT = b"\x10\x04"
# DLE EOT 4 (paper roll sensor) replies: bits 1 and 4 are always set; bits 2-3 = near end,
# bits 5-6 = paper end. GS r 1 replies: bits 0-1 near end, bits 2-3 paper end.
_EOT4 = {"ok": 0x12, "near_end": 0x1E, "out": 0x7E}
_GSR1 = {"ok": 0x00, "near_end": 0x03, "out": 0x0F}


class SimPrinter:
    """Every byte goes to <state>/printer.bin exactly as it would go over the UART, at the
    UART's pace (10 bits a byte at `baud`), so a slow printer is felt as on the device."""

    def __init__(self, path, echo=False, baud=115200):
        self.path = path
        self.paper = "ok"      # ok | near_end | out | offline (set by the 'paper' control op)
        self.echo = echo
        self.bytes = 0
        self.baud = baud

    def write(self, data):
        if self.paper == "offline":
            return  # a switched-off printer swallows nothing visibly; the firmware asked first
        with open(self.path, "ab") as f:
            f.write(data)
        self.bytes += len(data)

    async def send(self, data):
        if self.paper == "offline":
            raise OSError(110)   # ETIMEDOUT: a switched-off printer holds CTS
        ms = len(data) * 10000 // self.baud
        self.write(data)
        await asyncio.sleep_ms(ms)

    def query(self, request, timeout_ms=300):
        if self.paper == "offline":
            return None
        if request.startswith(_DLE_EOT) and len(request) >= 3 and request[2] == 4:
            return bytes([_EOT4[self.paper]])
        if request.startswith(b"\x1dr"):
            return bytes([_GSR1[self.paper]])
        if request.startswith(_DLE_EOT):
            return b"\x12"
        return None


class SimButtons:
    """Presses injected by the control port; each press gets its own result back."""

    MAX_QUEUED = 32  # like a real keypad ring: a press beyond this is refused at once

    def __init__(self):
        self.queue = []      # (name, [Event, result]) not yet taken by the firmware
        self.current = None  # [Event, result] of the press the firmware is handling
        self.flag = asyncio.Event()

    def inject(self, name):
        """A press; returns [Event, result]: the event is set once result is there."""
        w = [asyncio.Event(), None]
        if len(self.queue) >= self.MAX_QUEUED:
            _resolve(w, {"ok": False, "error": "button queue full"})
            return w
        self.queue.append((name, w))
        self.flag.set()
        return w

    async def next_press(self):
        while not self.queue:
            self.flag.clear()
            await self.flag.wait()
        name, self.current = self.queue.pop(0)
        return name

    def pending(self):
        return len(self.queue)

    def clear(self):
        """Presses queued while a ticket printed are dropped, as the real pad does."""
        for _, w in self.queue:
            _resolve(w, {"ok": True, "ignored": "printing"})
        self.queue = []

    def handled(self, name, result):
        if self.current is not None:
            _resolve(self.current, result)
            self.current = None


def _resolve(w, result):
    w[1] = result
    w[0].set()


class SimClock:
    """Host time plus an offset the 'clock' control op moves; kept in the state dir like an RTC.

    advance(s) is time passing: wall clock and monotonic ticks move together.
    set_time(epoch) is a step (NTP, an RTC that lost power): only the wall clock moves.
    """

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.tick_offset = 0   # ms; like the device's ticks, not kept across a restart
        self.synced = True
        try:
            with open(path) as f:
                self.offset = json.load(f)["offset"]
        except (OSError, ValueError, KeyError):
            pass

    def time(self):
        return int(time.time()) + self.offset

    def ticks_ms(self):
        return time.ticks_add(time.ticks_ms(), self.tick_offset)

    def set_time(self, epoch):
        self.offset += int(epoch) - self.time()
        self._save()

    def advance(self, seconds):
        self.offset += int(seconds)
        self.tick_offset += int(seconds) * 1000
        self._save()

    def _save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"offset": self.offset}, f)
        os.rename(tmp, self.path)


class SimHal:
    """The simulated board. The small devices - display, lamps, voice, flash storage, network
    link - are this one object (a class each would cost ~1 KiB more of the heap the simulator
    shares with the firmware); printer, keys and clock have their own doubles."""

    def __init__(self, state_dir, data_root, echo=False, baud=115200):
        self.printer = SimPrinter(state_dir + "/printer.bin", echo, baud)
        self.buttons = SimButtons()
        self.clock = SimClock(state_dir + "/clock.json")
        self.display = self.indicator = self.voice = self.storage = self.net = self
        self.echo = echo
        self.lines = []        # display
        # the picture's source for sim/frames.py (QTERM_FRAMES=0: no watcher, nothing written)
        self._frame = None if os.getenv("QTERM_FRAMES") == "0" else state_dir + "/display.txt"
        self.state = {}        # lamps
        self.beeps = 0
        self.said = []         # voice: the last few announcements
        self.voice_ms_per_byte = 130   # speech pace of the SYN6288 double (0 = instant)
        self._state_dir = state_dir
        self._mute = False     # True: a build without the SYN6288 driver
        self._t0 = 0           # when the last announcement started (clock ticks) ...
        self._dur = -1         # ... and how many ms the double speaks it; -1: none
        self.root = data_root  # storage
        self.is_up = True      # network link (the 'net' control op)

    def show(self, lines):
        lines = list(lines)
        if self.echo:
            print("[display] " + " | ".join(lines))
        if lines == self.lines:
            return
        self.lines = lines
        # The picture is the host's work (sim/frames.py renders <state>/display.png from this
        # file); the device only writes the lines, temp then rename so no reader sees half.
        p = self._frame
        if p is None:
            return
        try:
            with open(p + ".tmp", "w") as f:
                for s in lines:
                    f.write(s)
                    f.write("\n")
            os.rename(p + ".tmp", p)
        except (OSError, MemoryError):
            pass    # a missed frame: the display itself (self.lines) is right

    def set(self, what, on):
        self.state[what] = bool(on)

    def beep(self, ms=80):
        self.beeps += 1

    def say(self, text):
        self.said.append(text)
        if len(self.said) > 8:
            self.said.pop(0)
        if self.echo:
            print("[voice] " + text)
        if self._mute:
            return
        try:
            self._speak(text)
        except MemoryError:
            # The device holds driver and encoder from boot; the simulator loads them into the
            # heap it shares with the firmware. Its lack of heap must not fail the firmware's
            # action: this announcement misses voice.log, the next one tries again.
            pass

    def _speak(self, text):
        """Say text the device's way - firmware GB2312 encoder -> SYN6288 driver -> a UART double
        (sim/voice.py) that decodes the frame into <state>/voice.log. All of it is loaded for
        the announcement and let go after: kept, it would hold ~3.6 KiB of the heap the
        firmware runs in (64-bit ROMFS), enough to refuse tickets on a busy day. busy() keeps
        only when the double ends the speech."""
        import sys
        held = [m for m in _VOICE_MODULES if m in sys.modules]
        try:
            try:
                from hal.esp32.syn6288 import Syn6288
            except ImportError:     # a build without the driver: the voice is only self.said
                self._mute = True
                sys.stderr.write("qterm-sim: no hal/esp32/syn6288.py in this build; voice.log stays empty\n")
                return
            from firmware.gb2312 import Gb2312
            from sim.voice import VoiceUart
            with Gb2312(cache=1) as gb:
                u = VoiceUart(self._state_dir + "/voice.log", gb.path, self.clock, self.voice_ms_per_byte)
                Syn6288(u, gb.encode).say(text)
            self._t0 = u.start
            self._dur = u.dur
        finally:
            Syn6288 = Gb2312 = VoiceUart = gb = u = None
            for m in _VOICE_MODULES:
                if m not in held:     # the ticket code may hold gb2312: not ours to drop then
                    sys.modules.pop(m, None)
                    pkg, _, name = m.rpartition(".")
                    try:
                        delattr(sys.modules[pkg], name)
                    except (AttributeError, KeyError):
                        pass
            import gc
            gc.collect()

    def busy(self):
        return self._dur >= 0 and time.ticks_diff(self.clock.ticks_ms(), self._t0) < self._dur

    def free_bytes(self):
        st = os.statvfs(self.root)
        return st[0] * st[4]

    def up(self):
        return self.is_up

    async def ensure(self):
        while not self.is_up:
            await asyncio.sleep_ms(200)

    def info(self):
        return {"ip": "127.0.0.1", "link": "sim", "up": self.is_up}


# What SimHal._speak loads for an announcement and lets go after.
_VOICE_MODULES = ("hal.esp32.syn6288", "hal.esp32", "hal.voice", "hal", "sim.voice", "firmware.gb2312")


# One double per hal interface (tests/test_hal_conformance.py pairs them with the interfaces).
SimDisplay = SimIndicator = SimVoice = SimStorage = SimNet = SimHal
