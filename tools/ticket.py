"""Show the tickets in a printer byte stream as text a person can read.

  tools/qterm ticket STATE/printer.bin     (the simulator's printer; a state dir works too)

One block per ticket, in printed order: centred lines as on the paper, double-size lines
marked [big], Chinese (GB2312) as Chinese, each QR code as "[QR] <content>" where it is
printed. A ticket that was never cut is marked: the last one (still printing, or a power cut)
and any torn one (the printer was restarted before its cut). The bytes are read by
tools/escpos_decode.py, written from the ESC/POS reference independently of the firmware.
Exit 0 when every byte was understood, 1 when the file cannot be read or holds bytes that
are not ESC/POS as the firmware sends it (the offset is named; what could be read is shown).
"""
import os
import sys

from tools.device import ToolError
from tools.escpos_decode import pieces


def add_arguments(p):
    p.add_argument("file", metavar="FILE", help="printer byte stream (e.g. STATE/printer.bin), or a state dir")
    p.add_argument("--last", type=int, metavar="N", help="show only the last N tickets")
    p.add_argument("--cols", type=int, metavar="N",
                   help="paper width in columns for centring (default: the widest printed line)")


def columns(text):
    """Printed width in half-width columns: ASCII 1, a Chinese character 2."""
    return sum(1 if ord(ch) < 0x80 else 2 for ch in text)


def blocks(data):
    """[(ticket or None, state, note)] in printed order; state is cut, open (the stream ends
    before the cut), torn (the printer was restarted before the cut) or bad (unreadable)."""
    out = []
    parts = pieces(data)
    for k, (start, tickets, err) in enumerate(parts):
        last_part = k == len(parts) - 1
        for t in tickets:
            if t.cut:
                out.append((t, "cut", ""))
            elif err is not None and err.truncated:
                out.append((t, "open" if last_part else "torn", "the bytes end inside a command"))
            else:
                out.append((t, "open" if last_part and err is None else "torn", ""))
        if err is not None and not err.truncated:
            out.append((None, "bad", "byte %d: %s" % (start + err.offset, str(err).split(": ", 1)[-1])))
        elif err is not None and not tickets:
            out.append((None, "open" if last_part else "torn", "the bytes end inside a command"))
    return out


_HEAD = {
    "cut": "cut",
    "open": "NOT CUT - printing stopped here (still printing, or the power was cut)",
    "torn": "NOT CUT - torn: the printer was restarted before the cut (e.g. a power cut)",
}


def render(ticket, cols=None):
    """The ticket's lines as a person reads the paper (QR codes where they are printed)."""
    width = cols or max([columns(ln) * ticket.sizes[i][0] for i, ln in enumerate(ticket.lines)] + [1])
    qr_at = {}
    for q, params in zip(ticket.qr, ticket.qr_params):
        qr_at.setdefault(params.get("at_line", len(ticket.lines)), []).append(q)
    out = []
    for i, text in enumerate(ticket.lines + [None]):
        out.extend("[QR] " + q for q in qr_at.get(i, ()))
        if text is None:
            break
        w, h = ticket.sizes[i]
        printed = columns(text) * w
        pad = {1: (width - printed) // 2, 2: width - printed}.get(ticket.align[i], 0)
        mark = "[big]" if i in ticket.big else "[wide]" if w > 1 else "[tall]" if h > 1 else ""
        out.append(("%-7s" % mark + " " * max(pad, 0) + text).rstrip())
    while out and not out[-1]:  # the feed before the cut
        out.pop()
    return out


def run(args):
    path = args.file
    if os.path.isdir(path):
        path = os.path.join(path, "printer.bin")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ToolError("cannot read %s: %s" % (path, e.strerror or e))
    every = blocks(data)
    bad = [note for _, state, note in every if state == "bad"]
    numbered, n = [], 0
    for ticket, state, note in every:
        if state != "bad":
            n += 1
        numbered.append((n, ticket, state, note))
    shown = numbered
    if args.last is not None:  # the last N tickets and any unreadable bytes among them
        shown = [b for b in numbered if b[0] > n - args.last or b[2] == "bad" and b[0] == n - args.last]
    for n, ticket, state, note in shown:
        if state == "bad":
            print("--- unreadable from %s ---\n" % note)
            continue
        print("--- ticket %d: %s ---" % (n, _HEAD[state] + ("; " + note if note else "")))
        if ticket is not None:
            for line in render(ticket, args.cols):
                print(line)
        print()
    tickets = [state for _, _, state, _ in shown if state != "bad"]
    print("%s: %d ticket(s) shown, %d cut, %d not cut (%d bytes)" % (
        path, len(tickets), tickets.count("cut"), len(tickets) - tickets.count("cut"), len(data)))
    if bad:
        print("qterm ticket: %s: not ESC/POS as the firmware sends it, at %s" % (path, "; ".join(bad)),
              file=sys.stderr)
        return 1
    return 0
