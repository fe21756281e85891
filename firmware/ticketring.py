"""A bounded, preallocated list of waiting tickets (one per service, and a few per counter).

Each entry is 8 bytes: number (u16), flags (u8), origin service index (u8), seconds since the
business day started when the ticket was issued (u32). A day of 3 000 tickets costs nothing
extra: only tickets still waiting are held, up to the configured capacity.
"""
import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_SIZE = const(8)
_FMT = "<HBBI"

PRIORITY = const(1)
APPOINTMENT = const(2)
REQUEUED = const(4)
TRANSFERRED = const(8)


class TicketRing:
    def __init__(self, capacity):
        self.capacity = capacity
        self.buf = bytearray(capacity * _SIZE)
        self.n = 0

    def __len__(self):
        return self.n

    def full(self):
        return self.n >= self.capacity

    def get(self, i):
        """(number, flags, service index, issued offset s) of entry i."""
        return struct.unpack_from(_FMT, self.buf, i * _SIZE)

    def flags(self, i):
        return self.buf[i * _SIZE + 2]

    def number(self, i):
        return struct.unpack_from("<H", self.buf, i * _SIZE)[0]

    def append(self, number, flags, service, offset_s):
        if self.n >= self.capacity:
            raise IndexError("ring full")
        struct.pack_into(_FMT, self.buf, self.n * _SIZE, number, flags, service, offset_s)
        self.n += 1

    def push_front(self, number, flags, service, offset_s):
        """Put a ticket first in line (transfers, requeues); the last entry is lost only if full."""
        if self.n >= self.capacity:
            self.n = self.capacity - 1
        end = self.n * _SIZE
        self.buf[_SIZE:end + _SIZE] = self.buf[0:end]
        struct.pack_into(_FMT, self.buf, 0, number, flags, service, offset_s)
        self.n += 1

    def pop(self, i):
        entry = self.get(i)
        start = i * _SIZE
        end = self.n * _SIZE
        self.buf[start:end - _SIZE] = self.buf[start + _SIZE:end]
        self.n -= 1
        return entry

    def find(self, number, service):
        """Index of the ticket with this number and origin service, or -1."""
        for i in range(self.n):
            num, _, svc, _ = self.get(i)
            if num == number and svc == service:
                return i
        return -1

    def first_with(self, flag, want):
        """Index of the first entry whose flag bit is set (want=True) or clear (want=False), or -1."""
        for i in range(self.n):
            if bool(self.buf[i * _SIZE + 2] & flag) == want:
                return i
        return -1

    def count_with(self, flag):
        c = 0
        for i in range(self.n):
            if self.buf[i * _SIZE + 2] & flag:
                c += 1
        return c

    def clear(self):
        self.n = 0

    def dump(self):
        """Bytes of the used part, for snapshots."""
        return bytes(self.buf[:self.n * _SIZE])

    def load(self, data):
        n = min(len(data) // _SIZE, self.capacity)
        self.buf[:n * _SIZE] = data[:n * _SIZE]
        self.n = n
