"""Printer port: the byte pipe to an ESC/POS ticket printer.

The firmware builds the ESC/POS bytes; a port only moves them. Drivers:
hal.esp32.uart_printer.UartPrinter (UART), sim doubles (file + scripted status).
"""


class PrinterPort:
    def write(self, data):
        """Send every byte of data (bytes-like) to the printer, in order.

        Raises OSError if the printer stops accepting bytes (cable, flow control).
        """
        raise NotImplementedError

    async def send(self, data):
        """Send a whole ticket without holding up the event loop: events keep publishing and
        rating windows keep running while the printer takes ~50 ms (115200 baud) to ~0.7 s
        (9600 baud) for 600 bytes. Raises OSError when the printer stops accepting bytes."""
        raise NotImplementedError

    def query(self, request, timeout_ms=300):
        """Send a real-time status request (e.g. DLE EOT 4 = b'\\x10\\x04\\x04').

        Returns the reply bytes, or None when the printer did not answer within
        timeout_ms (off, unplugged, no RX wire). Stale input is discarded first.
        """
        raise NotImplementedError
