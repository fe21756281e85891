"""The simulator's control port: newline-delimited JSON on 127.0.0.1, one request -> one reply.

It stands in for the physical world (fingers on buttons, paper in the printer, the
network cable, the wall clock) and for reading the display. It never reaches past the
firmware's own entry points, so nothing here can do what the device's keys cannot.
"""
import json

import asyncio

_MAX_LINE = const(320)    # a request and its newline (the longest real one is ~100 bytes): per connection
_PAPER = ("ok", "near_end", "out", "offline")


class Control:
    def __init__(self, app, hal):
        self.app = app
        self.hal = hal
        self.hog = None     # heap held by op_squeeze

    async def run(self, port):
        """Open the control port once the device has booted, then run the device."""
        await asyncio.start_server(self._client, "127.0.0.1", port)
        cfg = self.app.cfg
        print("qterm-sim: %s/%s booted (boot %d), control on 127.0.0.1:%d" % (
            cfg["site"], cfg["device"], self.app.boot_no, port))
        cfg = None
        await self.app.run()

    async def _client(self, reader, writer):
        """Serve one connection: lines are gathered in a buffer of their own (a socket's
        readline grows a new one for every line, and a MemoryError there would drop the line),
        so a request is always answered, if only with "device out of memory"."""
        buf = bytearray(_MAX_LINE)
        mv = memoryview(buf)
        n = 0          # bytes in buf
        skip = False   # inside a line longer than buf: answered once, then skipped to its end
        try:
            try:    # TCP_NODELAY: a reply and its newline are two writes; Nagle would hold one 40 ms
                writer.s.setsockopt(6, 1, 1)
            except (AttributeError, OSError):
                pass
            while True:
                got = await reader.readinto(mv[n:])
                if not got:
                    break
                n += got
                while True:
                    end = buf.find(b"\n", 0, n)
                    if end < 0:
                        if n == _MAX_LINE:      # no end in sight: refuse, drop what is here
                            if not skip:
                                await self._answer(writer, None)
                            skip = True
                            n = 0
                        break
                    if skip:
                        skip = False
                    else:
                        await self._answer(writer, bytes(mv[:end]))
                    buf[:n - end - 1] = mv[end + 1:n]
                    n -= end + 1
        except OSError:
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def _answer(self, writer, line):
        if self.hog is not None and line and b"squeeze" in line:
            # A squeeze request first gives back what the last one holds: with the heap that
            # short, parsing the request (a dict, a str) could fail and the device stay squeezed.
            self.hog = None
        try:
            if line is None:
                reply = {"ok": False, "error": "request longer than %d bytes" % (_MAX_LINE - 1)}
            else:
                reply = await self.handle(line)
        except MemoryError:   # the device is short of heap: say so, keep the connection
            reply = None
        line = None
        try:
            # the text's own UTF-8 bytes (a memoryview, no copy): a status is ~1 KiB, and a
            # busy heap often has no hole that size for json.dumps() and two copies of it
            out = memoryview(json.dumps(reply)) if reply is not None else None
        except MemoryError:
            out = None
        reply = None
        if out is None:
            out = b'{"ok": false, "error": "device out of memory"}'
        writer.write(out)
        out = None
        writer.write(b"\n")
        await writer.drain()

    async def handle(self, line):
        try:
            req = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "malformed JSON"}
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            return {"ok": False, "error": "expected an object with a string 'op'"}
        try:
            return await self._op(req["op"], req)
        except (KeyError, TypeError, ValueError) as e:
            return {"ok": False, "error": "bad request for %s: %r" % (req["op"], e)}
        except MemoryError:
            return {"ok": False, "error": "device out of memory"}

    async def _op(self, op, req):
        """One request. One method with a branch per op, not a method per op: each function
        costs heap the simulated device shares with its firmware."""
        app = self.app
        hal = self.hal
        if op == "press":
            name = req["button"]
            if not isinstance(name, str) or not name:
                return {"ok": False, "error": "button must be a non-empty string"}
            if req.get("counter"):
                name = "%s@%s" % (name, req["counter"])
            waiter = hal.buttons.inject(name)
            await waiter[0].wait()
            return waiter[1]
        if op == "status":
            from firmware import report
            from firmware import release
            for pause in (50, 250, 0):  # read only: asked again after shedding and a pause
                try:
                    s = report.status(app)
                    break
                except MemoryError:
                    if not pause:
                        raise
                app.shed()
                await asyncio.sleep_ms(pause)   # (a boot's replay or a connect holds RAM briefly)
            release("report", "text")
            s["ok"] = True
            return s
        if op == "display":
            return {"ok": True, "lines": hal.lines, "indicator": hal.state, "voice": hal.said[-3:]}
        if op == "staff":
            # counter keypad functions beyond the five keys (numeric entry on a real 呼叫器);
            # short of memory before anything was journalled (loading the desk code), asked
            # again after shedding, as a press is
            seq = app.stamper.seq
            for pause in (50, 250, 0):
                try:
                    return await app.staff(req.get("counter") or app.home, req["action"], req)
                except MemoryError:
                    if not pause or app.stamper.seq != seq:
                        raise
                app.shed()
                await asyncio.sleep_ms(pause)
        if op == "keys":
            # the counter's 4x4 keypad (呼叫器): each character is one key, e.g. "*3 12#"
            keys = req["keys"]
            if app.role is None or not hasattr(app.role, "key") or not isinstance(keys, str):
                return {"ok": False, "error": "keys: a string, for a counter device"}
            r = {"ok": True}
            for ch in keys.replace(" ", "")[:32]:   # up to the first key that does something
                r = await app.role.key(ch)
                if "typing" not in r:
                    break
            return r
        if op == "net":
            up = req["up"]
            if not isinstance(up, bool):
                return {"ok": False, "error": "'up' must be true or false"}
            hal.is_up = up
            app.publisher.link_changed()
            return {"ok": True, "up": up}
        if op == "paper":
            state = req["state"]
            if state not in _PAPER:
                return {"ok": False, "error": "state must be one of %s" % ", ".join(_PAPER)}
            hal.printer.paper = state
            return {"ok": True, "state": state}
        if op == "clock":
            if "advance_s" in req:      # time passing
                adv = req["advance_s"]
                if not isinstance(adv, int) or isinstance(adv, bool):
                    return {"ok": False, "error": "advance_s must be an integer"}
                if not 0 <= hal.clock.time() + adv < 1 << 32:    # beyond: the RTC has no such time
                    return {"ok": False, "error": "advance_s would take the clock outside epoch 0..2**32-1"}
                hal.clock.advance(adv)
            elif "set" in req:
                # a step behind the firmware's back (an RTC set by hand, one that lost power):
                # the firmware notices it by itself, as it would on the device
                t = req["set"]
                if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < 1 << 32:
                    return {"ok": False, "error": "set must be an epoch in 0..2**32-1"}
                hal.clock.set_time(t)
                app.check_clock()
            return {"ok": True, "time": hal.clock.time()}
        if op == "voice":
            # the voice double's speech pace (ms per GB2312 byte; the SYN6288 speaks ~130):
            # 0 lets a test hear a day's calls without waiting for each to be spoken
            pace = req["ms_per_byte"]
            if not isinstance(pace, int) or isinstance(pace, bool) or not 0 <= pace <= 1000:
                return {"ok": False, "error": "ms_per_byte must be an integer 0..1000"}
            hal.voice_ms_per_byte = pace
            return {"ok": True, "ms_per_byte": pace}
        if op == "squeeze":
            # fault injection: hold heap until only `leave` bytes are free (null: give it back),
            # so tests see the device refuse clearly, not crash, when memory runs short
            import gc
            self.hog = None
            gc.collect()
            leave = req.get("leave")
            if leave is not None:
                hog = []
                size = 4096
                while size >= 16:
                    try:
                        while gc.mem_free() - size > leave:
                            hog.append(bytearray(size))
                    except MemoryError:
                        pass
                    size //= 2
                self.hog = hog
            return {"ok": True, "free": gc.mem_free()}
        return {"ok": False, "error": "unknown op %r" % op}
