"""A loopback TCP proxy that holds every byte for a fixed time in each direction.

Models the latency of a Wi-Fi hop (not its bandwidth or losses), so a benchmark can show
what a window of unacknowledged messages buys over stop-and-wait: on plain loopback the
round trip is ~50 us and both look alike.

    with DelayProxy(broker_port, delay_ms=10) as p:
        ... connect to 127.0.0.1:p.port ...

    python3 bench/delay_proxy.py --target 1883 --delay-ms 10   # run by hand until Ctrl-C

Standard library only; listens on 127.0.0.1 only.
"""
import argparse
import asyncio
import threading
import time


class DelayProxy:
    def __init__(self, target_port, delay_ms=10, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.delay = delay_ms / 1000.0
        self.port = None
        self._loop = None
        self._thread = None
        self._ready = threading.Event()

    # --- asyncio side ---------------------------------------------------------------------

    async def _pump(self, reader, writer):
        """Copy reader -> writer, each chunk leaving `delay` after it arrived, in order."""
        q = asyncio.Queue()

        async def send():
            while True:
                due, data = await q.get()
                if data is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                q.put_nowait((time.monotonic() + self.delay, data))
        except (ConnectionError, OSError):
            pass
        q.put_nowait((0, None))
        try:
            await sender
            writer.close()
        except (ConnectionError, OSError):
            pass

    async def _client(self, c_reader, c_writer):
        try:
            b_reader, b_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.close()
            return
        try:
            await asyncio.gather(self._pump(c_reader, b_writer), self._pump(b_reader, c_writer))
        except asyncio.CancelledError:  # proxy stopping: end quietly
            c_writer.close()
            b_writer.close()

    async def _main(self):
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        self._ready.set()
        async with server:
            await self._stop.wait()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    # --- thread side ------------------------------------------------------------------------

    def start(self):
        def run():
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._main())
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("delay proxy did not start")
        return self

    def stop(self):
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", type=int, required=True, help="port on 127.0.0.1 to forward to")
    ap.add_argument("--delay-ms", type=float, default=10, help="added each way (default 10)")
    args = ap.parse_args()
    with DelayProxy(args.target, args.delay_ms) as p:
        print("127.0.0.1:%d -> 127.0.0.1:%d, +%g ms each way; Ctrl-C ends" % (p.port, args.target, args.delay_ms))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
