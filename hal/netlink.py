"""Network link (Wi-Fi, Ethernet, or the host's network in the simulator)."""


class NetLink:
    def up(self):
        """True when the link has an IP address now."""
        raise NotImplementedError

    async def ensure(self):
        """Bring the link up, retrying with backoff; return once it is up.

        Never blocks the event loop for long: waits with asyncio.sleep.
        """
        raise NotImplementedError

    def info(self):
        """A dict of what the driver knows: at least "up"; often "ip", "rssi"."""
        raise NotImplementedError
