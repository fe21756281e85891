"""A bounded, preallocated list of waiting tickets (one per service, and a few per counter).

Each entry is 8 bytes: number (u16), flags (u8), origin service index (u8), seconds since the
business day started when the ticket was issued (u32). A day of 3 000 tickets costs nothing
extra: only tickets still waiting are held, up to the configured capacity.

The changing operations (append, push_front, remove) allocate nothing: they run after an
event is already durable, where a MemoryError would leave the state behind the flash.
A ring may have wider entries (size): the bytes after the first 8 are its owner's (the hall's
parked ring, firmware/hall.py). No subclass for that: every method is heap on the device.
"""

try:
    from micropython import const
except ImportError:  # CPython; not a def: even unused, its code would take RAM on the device
    const = int      # the constants here are ints, and int(x) is x

_SIZE = const(8)

PRIORITY = const(1)
APPOINTMENT = const(2)
REQUEUED = const(4)
TRANSFERRED = const(8)


class TicketRing:
    def __init__(self, capacity, size=_SIZE):
        self.capacity = capacity
        self.size = size           # bytes an entry: the first 8 are always laid out as above
        self.buf = bytearray(capacity * size)
        self.n = 0

    def __len__(self):
        return self.n

    def full(self):
        return self.n >= self.capacity

    def number(self, i):
        b = self.buf
        o = i * self.size
        return b[o] | b[o + 1] << 8

    def flags(self, i):
        return self.buf[i * self.size + 2]

    def service(self, i):
        return self.buf[i * self.size + 3]

    def issued(self, i):
        b = self.buf
        o = i * self.size + 4
        return b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24

    def _put(self, i, number, flags, service, offset_s):
        b = self.buf
        o = i * self.size
        b[o] = number & 0xFF
        b[o + 1] = (number >> 8) & 0xFF
        b[o + 2] = flags
        b[o + 3] = service
        b[o + 4] = offset_s & 0xFF
        b[o + 5] = (offset_s >> 8) & 0xFF
        b[o + 6] = (offset_s >> 16) & 0xFF
        b[o + 7] = (offset_s >> 24) & 0xFF

    def _move(self, dst, src, count):
        """Copy count bytes inside buf (overlap-safe) without a temporary slice."""
        b = self.buf
        if dst < src:
            for k in range(count):
                b[dst + k] = b[src + k]
        else:
            for k in range(count - 1, -1, -1):
                b[dst + k] = b[src + k]

    def append(self, number, flags, service, offset_s):
        if self.n >= self.capacity:
            raise IndexError("ring full")
        self._put(self.n, number, flags, service, offset_s)
        self.n += 1

    def push_front(self, number, flags, service, offset_s):
        """Put a ticket first in line (transfers, requeues); the last entry is lost only if full."""
        if self.n >= self.capacity:
            self.n = self.capacity - 1
        self._move(self.size, 0, self.n * self.size)
        self._put(0, number, flags, service, offset_s)
        self.n += 1

    def remove(self, i):
        """Drop entry i; read what you need from it first."""
        sz = self.size
        self._move(i * sz, (i + 1) * sz, (self.n - i - 1) * sz)
        self.n -= 1

    def find(self, number, service):
        """Index of the ticket with this number and origin service, or -1."""
        b = self.buf
        lo = number & 0xFF
        hi = (number >> 8) & 0xFF
        sz = self.size
        for i in range(self.n):
            o = i * sz
            if b[o] == lo and b[o + 1] == hi and b[o + 3] == service:
                return i
        return -1

    def first_with(self, flag, want):
        """Index of the first entry whose flag bit is set (want=True) or clear (want=False), or -1."""
        sz = self.size
        for i in range(self.n):
            if bool(self.buf[i * sz + 2] & flag) == want:
                return i
        return -1

    def count_with(self, flag):
        c = 0
        sz = self.size
        for i in range(self.n):
            if self.buf[i * sz + 2] & flag:
                c += 1
        return c

    def clear(self):
        self.n = 0

    def used(self):
        """A view of the used part (snapshots write it without a copy)."""
        return memoryview(self.buf)[:self.n * self.size]

