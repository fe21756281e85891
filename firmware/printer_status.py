"""Paper state of the ticket printer, asked over its own port.

DLE EOT 4 (10 04 04) is a real-time request: the printer answers at once, even
while busy or stopped for lack of paper. Its one-byte reply (paper roll sensor):

    bit 0     fixed 0
    bit 1     fixed 1
    bits 2,3  near-end sensor: 0 = paper adequate, 1 = near end   (mask 0x0C)
    bit 4     fixed 1
    bits 5,6  end sensor: 0 = paper present, 1 = paper end         (mask 0x60)
    bit 7     fixed 0

so a healthy reply is 0x12, near end 0x1E, out 0x7E. A reply whose fixed bits are
wrong (a clone printer, a stray byte) is not trusted; then GS r 1 (1D 72 01) is tried:

    bits 0,1  near-end sensor (mask 0x03)   bits 2,3  end sensor (mask 0x0C)
    bits 4,7  fixed 0                       bits 5,6  reserved

GS r waits behind buffered data and is not answered once the paper has run out,
which is why it is only the fallback. No answer at all means "offline".
"""

OK = "ok"
NEAR_END = "near_end"
OUT = "out"
OFFLINE = "offline"

DLE_EOT_4 = b"\x10\x04\x04"
GS_R_1 = b"\x1d\x72\x01"


def decode_dle_eot4(b):
    """"ok" | "near_end" | "out" from a DLE EOT 4 reply byte; ValueError if the fixed bits are wrong."""
    if b & 0x93 != 0x12:
        raise ValueError("not a DLE EOT 4 reply: 0x%02x" % b)
    if b & 0x60:
        return OUT
    if b & 0x0C:
        return NEAR_END
    return OK


def decode_gs_r1(b):
    """"ok" | "near_end" | "out" from a GS r 1 reply byte; ValueError if the fixed bits are wrong."""
    if b & 0x90:
        raise ValueError("not a GS r 1 reply: 0x%02x" % b)
    if b & 0x0C:
        return OUT
    if b & 0x03:
        return NEAR_END
    return OK


def _ask(port, request, decode, timeout_ms):
    try:
        reply = port.query(request, timeout_ms)
    except OSError:
        return None  # a port that fails to talk is a printer we cannot reach
    if not reply:
        return None
    try:
        # the last byte is the answer to this request; earlier ones are leftovers
        return decode(reply[-1])
    except ValueError:
        return ""


def paper_state(port, timeout_ms=300):
    """Ask the printer: "ok" | "near_end" | "out" | "offline".

    port.query(request_bytes, timeout_ms) returns the reply bytes or None.
    """
    state = _ask(port, DLE_EOT_4, decode_dle_eot4, timeout_ms)
    if state is None:
        return OFFLINE
    if state:
        return state
    return _ask(port, GS_R_1, decode_gs_r1, timeout_ms) or OFFLINE


def check(app):
    """Ask the printer before a ticket; a change is announced (printer.status) and lit."""
    state = paper_state(app.hal.printer)
    changed(app, state)
    return state


def changed(app, state):
    if state != app.paper:
        app.paper = state
        app.emit("printer.status", {"state": state})
        app.hal.indicator.set("paper", state != "ok")
