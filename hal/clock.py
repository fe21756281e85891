"""Wall clock and monotonic ticks."""


class Clock:
    synced = False
    """True once the time was set from NTP or the backend since boot."""

    def time(self):
        """UTC seconds since 1970-01-01 (int), whatever the port's own epoch."""
        raise NotImplementedError

    def ticks_ms(self):
        """Monotonic milliseconds; wraps like time.ticks_ms, so compare with
        time.ticks_diff, never with < or -."""
        raise NotImplementedError

    def set_time(self, epoch):
        """Set the wall clock to epoch (UTC seconds since 1970); sets synced."""
        raise NotImplementedError
