"""Independent ESC/POS decoder: what would the printer have printed?

Written from the command reference, deliberately without importing the firmware's builder
(firmware/escpos.py), so a shared misunderstanding cannot make both sides agree; the tests
check the firmware's tickets with it and `tools/qterm ticket` shows them to a person.
Chinese text is decoded with CPython's own 'gb2312' codec while FS & is active.

    decode(data) -> [Ticket, ...]   one per cut; a trailing uncut part is a Ticket with cut=False
    decode_file(path)               same, for e.g. the simulator's printer.bin
    pieces(data)                    the stream split where the printer is initialised (ESC @),
                                    each part decoded on its own, so a torn ticket spoils no other

A DecodeError carries .offset (where the bad command starts), .truncated (the data ended
inside a command, as a power cut leaves it) and .tickets (what was decoded before it).

Ticket fields: lines (text), big (indexes of lines printed at >= double width and
height), bold (indexes of emphasised lines), align (per line 0/1/2), sizes (per line
(w, h)), qr (payloads as str), qr_params (dicts: model, module, ec, at_line), feeds (ESC d
counts), cut (bool), cut_kind ("full"/"partial"), nbytes (bytes of the ticket).
"""

ESC, GS, FS, DLE = 0x1B, 0x1D, 0x1C, 0x10

# commands we accept but whose effect on the text is not tracked: prefix -> parameter bytes
_IGNORED = {
    (ESC, 0x2D): 1,  # ESC - n underline
    (ESC, 0x32): 0,  # ESC 2 default line spacing
    (ESC, 0x33): 1,  # ESC 3 n line spacing
    (ESC, 0x4A): 1,  # ESC J n feed dots
    (ESC, 0x4D): 1,  # ESC M n font
    (ESC, 0x74): 1,  # ESC t n code table
    (ESC, 0x47): 1,  # ESC G n double strike
    (ESC, 0x7B): 1,  # ESC { n upside down
    (GS, 0x42): 1,   # GS B n reverse
    (GS, 0x4C): 2,   # GS L left margin
    (GS, 0x57): 2,   # GS W print width
    (FS, 0x21): 1,   # FS ! n Chinese print mode
    (FS, 0x2D): 1,   # FS - n Chinese underline
    (DLE, 0x04): 1,  # DLE EOT n status request
    (GS, 0x72): 1,   # GS r n status request
}


class DecodeError(ValueError):
    offset = None
    truncated = False
    tickets = ()


class Ticket:
    def __init__(self):
        self.lines = []
        self.big = []
        self.bold = []
        self.align = []
        self.sizes = []
        self.qr = []
        self.qr_params = []
        self.feeds = []
        self.cut = False
        self.cut_kind = None
        self.nbytes = 0

    @property
    def text(self):
        return "\n".join(self.lines)

    def big_lines(self):
        return [self.lines[i] for i in self.big]

    def __repr__(self):
        return "Ticket(cut=%r, lines=%r, qr=%r)" % (self.cut, self.lines, self.qr)


class _State:
    def __init__(self):
        self.reset()

    def reset(self):
        self.w = self.h = 1
        self.bold = False
        self.align = 0
        self.chinese = False


def decode(data):
    data = bytes(data)
    tickets = []
    st = _State()
    cur = Ticket()
    line = []            # characters of the line being composed
    line_attr = None     # (w, h, bold, align) at the first character of the line
    started = 0          # offset where the current ticket began
    qr_store = {"model": None, "module": None, "ec": None, "data": None}

    def end_line():
        nonlocal line, line_attr
        w, h, bold, align = line_attr or (st.w, st.h, st.bold, st.align)
        idx = len(cur.lines)
        cur.lines.append("".join(line))
        cur.sizes.append((w, h))
        cur.align.append(align)
        if w >= 2 and h >= 2:
            cur.big.append(idx)
        if bold:
            cur.bold.append(idx)
        line = []
        line_attr = None

    def put(ch):
        nonlocal line_attr
        if line_attr is None:
            line_attr = (st.w, st.h, st.bold, st.align)
        else:
            w, h, bold, align = line_attr
            line_attr = (max(w, st.w), max(h, st.h), bold or st.bold, align)
        line.append(ch)

    def need(i, n, what):
        if i + n > len(data):
            e = DecodeError("offset %d: %s truncated (needs %d bytes, %d left)" % (i, what, n, len(data) - i))
            e.truncated = True
            raise e

    i = 0
    n = len(data)
    try:
        while i < n:
            b = data[i]
            if 0x20 <= b < 0x7F:
                put(chr(b))
                i += 1
            elif b == 0x0A:
                end_line()
                i += 1
            elif b == 0x0D:
                i += 1
            elif b >= 0xA1 and st.chinese:
                need(i, 2, "GB2312 character")
                try:
                    ch = data[i:i + 2].decode("gb2312")
                except UnicodeDecodeError:
                    raise DecodeError("offset %d: bytes %s are not a GB2312 character" % (i, data[i:i + 2].hex()))
                put(ch)
                i += 2
            elif b == ESC:
                need(i, 2, "ESC command")
                c = data[i + 1]
                if c == 0x40:                          # ESC @
                    if line:
                        end_line()
                    st.reset()
                    i += 2
                elif c in (0x61, 0x45, 0x64, 0x21):
                    need(i, 3, "ESC %s" % chr(c))
                    v = data[i + 2]
                    if c == 0x61:                      # ESC a n
                        st.align = v % 48 if v >= 48 else v
                    elif c == 0x45:                    # ESC E n
                        st.bold = bool(v & 1)
                    elif c == 0x21:                    # ESC ! n
                        st.bold = bool(v & 0x08)
                        st.h = 2 if v & 0x10 else 1
                        st.w = 2 if v & 0x20 else 1
                    else:                              # ESC d n
                        cur.feeds.append(v)
                        if line:
                            end_line()
                            v -= 1
                        for _ in range(max(v, 0)):
                            end_line()
                    i += 3
                elif (ESC, c) in _IGNORED:
                    k = _IGNORED[(ESC, c)]
                    need(i, 2 + k, "ESC 0x%02x" % c)
                    i += 2 + k
                else:
                    raise DecodeError("offset %d: unknown command ESC 0x%02x" % (i, c))
            elif b == GS:
                need(i, 2, "GS command")
                c = data[i + 1]
                if c == 0x21:                          # GS ! n
                    need(i, 3, "GS !")
                    v = data[i + 2]
                    st.w = (v >> 4) + 1
                    st.h = (v & 0x0F) + 1
                    i += 3
                elif c == 0x56:                        # GS V m [n]
                    need(i, 3, "GS V")
                    m = data[i + 2]
                    if m in (0, 48, 1, 49):
                        kind = "full" if m in (0, 48) else "partial"
                        i += 3
                    elif m in (65, 66):
                        need(i, 4, "GS V %d n" % m)
                        kind = "full" if m == 65 else "partial"
                        cur.feeds.append(data[i + 3])
                        i += 4
                    else:
                        raise DecodeError("offset %d: unknown cut mode GS V %d" % (i, m))
                    if line:
                        end_line()
                    cur.cut = True
                    cur.cut_kind = kind
                    cur.nbytes = i - started
                    tickets.append(cur)
                    cur = Ticket()
                    started = i
                elif c == 0x28:                        # GS ( k
                    need(i, 5, "GS (")
                    if data[i + 2] != 0x6B:
                        raise DecodeError("offset %d: unknown command GS ( 0x%02x" % (i, data[i + 2]))
                    plen = data[i + 3] | data[i + 4] << 8
                    need(i, 5 + plen, "GS ( k")
                    params = data[i + 5:i + 5 + plen]
                    if plen < 2 or params[0] != 0x31:
                        raise DecodeError("offset %d: GS ( k for symbol type other than QR (cn=%r)" %
                                          (i, params[:1].hex()))
                    fn = params[1]
                    if fn in (0x41, 0x43, 0x45, 0x50) and plen < 3:
                        raise DecodeError("offset %d: QR function %d without its parameter" % (i, fn))
                    if fn == 0x45 and not 0x30 <= params[2] <= 0x33:
                        raise DecodeError("offset %d: QR error level %d (48..51 expected)" % (i, params[2]))
                    if fn == 0x41:
                        qr_store["model"] = params[2] - 48
                    elif fn == 0x43:
                        qr_store["module"] = params[2]
                    elif fn == 0x45:
                        qr_store["ec"] = "LMQH"[params[2] - 48]
                    elif fn == 0x50:
                        if params[2] != 0x30:
                            raise DecodeError("offset %d: QR store with m=%d" % (i, params[2]))
                        qr_store["data"] = params[3:]
                    elif fn == 0x51:
                        if qr_store["data"] is None:
                            raise DecodeError("offset %d: QR print with nothing stored" % i)
                        if line:
                            end_line()
                        try:
                            cur.qr.append(qr_store["data"].decode("utf-8"))
                        except UnicodeDecodeError:
                            raise DecodeError("offset %d: QR data is not UTF-8" % i)
                        cur.qr_params.append({"model": qr_store["model"], "module": qr_store["module"],
                                              "ec": qr_store["ec"], "at_line": len(cur.lines)})
                    else:
                        raise DecodeError("offset %d: unknown QR function %d" % (i, fn))
                    i += 5 + plen
                elif (GS, c) in _IGNORED:
                    k = _IGNORED[(GS, c)]
                    need(i, 2 + k, "GS 0x%02x" % c)
                    i += 2 + k
                else:
                    raise DecodeError("offset %d: unknown command GS 0x%02x" % (i, c))
            elif b == FS:
                need(i, 2, "FS command")
                c = data[i + 1]
                if c == 0x26:
                    st.chinese = True
                    i += 2
                elif c == 0x2E:
                    st.chinese = False
                    i += 2
                elif (FS, c) in _IGNORED:
                    k = _IGNORED[(FS, c)]
                    need(i, 2 + k, "FS 0x%02x" % c)
                    i += 2 + k
                else:
                    raise DecodeError("offset %d: unknown command FS 0x%02x" % (i, c))
            elif b == DLE:
                need(i, 3, "DLE command")
                if data[i + 1] != 0x04:
                    raise DecodeError("offset %d: unknown command DLE 0x%02x" % (i, data[i + 1]))
                i += 3
            else:
                raise DecodeError("offset %d: unexpected byte 0x%02x%s" %
                                  (i, b, "" if st.chinese else " (not in Chinese mode)"))
    except DecodeError as e:
        e.offset = i
        if line:
            end_line()
        e.tickets = tickets + ([cur] if cur.lines or cur.qr else [])
        raise
    if line:
        end_line()
    if cur.lines or cur.qr or cur.feeds:  # a trailing status request or bare init is no ticket
        cur.nbytes = n - started
        tickets.append(cur)
    return tickets


def decode_file(path):
    with open(path, "rb") as f:
        return decode(f.read())


def pieces(data):
    """[(offset, tickets, error)]: data split before every ESC @ (the firmware starts each
    ticket with it; GB2312 text and QR payloads cannot contain it) and each part decoded on
    its own. error is None or the DecodeError of that part (its .tickets were still read)."""
    data = bytes(data)
    starts = [0]
    at = data.find(b"\x1b@", 1)
    while at >= 0:
        starts.append(at)
        at = data.find(b"\x1b@", at + 2)
    out = []
    for k, start in enumerate(starts):
        part = data[start:starts[k + 1] if k + 1 < len(starts) else len(data)]
        try:
            out.append((start, decode(part), None))
        except DecodeError as e:
            out.append((start, list(e.tickets), e))
    return out
