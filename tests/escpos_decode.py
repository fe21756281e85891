"""The independent ESC/POS decoder the tests read tickets with; it lives in tools/escpos_decode.py
(`tools/qterm ticket` shows tickets to a person with it) and never imports the firmware's builder."""
from tools.escpos_decode import DecodeError, Ticket, decode, decode_file, pieces  # noqa: F401
