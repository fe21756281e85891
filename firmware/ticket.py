"""Layout of the printed queue ticket (排队小票), streamed straight to the printer.

    [hall, bold, centred]            XX市政务服务中心 / second language
    --------------------------------
    [service, double size if large]  社保业务 / second language
    [mark, bold]                     【绿色通道 Priority】 or 【预约 Appointment】
    [number, double size, bold]      A001
                                     前面还有 3 人 / 3 ahead
                                     预计等候 约 12 分钟 / about 12 min
                                     取号时间 2026-11-25 14:50
    --------------------------------
    [notice, left, double if large]  请留意叫号，过号请重新取号。
    [QR, centred]                    扫码查看排队进度 / Scan to follow the queue
    feed + partial cut

Chinese and the second language share a line ("zh / en") when they fit, else
each gets its own. Missing translations, counts or QR are simply left out.
A large-print ticket (t["large"], for elderly citizens) prints the service and the notice at
double size, wrapped to half the columns; without it the bytes are those of the plain ticket.
"""
from firmware import calendar, messages
from firmware.escpos import CENTRE, LEFT, EscPos, display_width

# second-language wording; a language not listed here prints Chinese only
_LABELS = {
    "en": {
        "priority": "Priority",
        "appointment": "Appointment",
        "ahead": "%s ahead",
        "wait": "about %s min",
        "scan": "Scan to follow the queue",
    },
}
_NO_LABELS = {}
_ZH = {
    "priority": "绿色通道",
    "appointment": "预约",
    "ahead": "前面还有 %s 人",
    "wait": "预计等候 约 %s 分钟",
    "scan": "扫码查看排队进度",
    "time": "取号时间 ",
}


def _tr(names, lang):
    """The lang text of a {"zh":..,"en":..} dict (a plain str counts as Chinese)."""
    if not names or not lang:
        return None
    if isinstance(names, str):
        return names if lang == "zh" else None
    return names.get(lang)


def _pair(p, zh, other):
    if other and display_width(zh) + 3 + display_width(other) <= p.line_cols:
        p.text(zh)
        p.text(" / ")
        p.line(other)
        return
    p.wrapped(zh)
    if other:
        p.wrapped(other)


def _both(p, names, lang2, big=False):
    if big:
        p.size(2, 2)    # wrapped() then breaks at half the columns
    zh = _tr(names, "zh")
    other = _tr(names, lang2)
    if zh:
        p.wrapped(zh)
    if other:
        p.wrapped(other)
    if big:
        p.size(1, 1)


def print_ticket(write, t, cols, gb):
    """Stream ticket t (see module docstring for the fields) to write() at cols columns."""
    lang2 = t.get("lang2")
    if lang2 == "zh":
        lang2 = None
    labels = _LABELS.get(lang2) or _NO_LABELS
    p = EscPos(write, cols, gb)
    p.init()
    p.chinese(True)
    p.align(CENTRE)

    p.emphasis(True)
    _both(p, t.get("hall"), lang2)
    p.emphasis(False)
    p.rule()

    large = t.get("large")
    _both(p, t.get("service"), lang2, large)
    kind = t.get("kind")
    if kind == "priority" or kind == "appointment":
        p.emphasis(True)
        other = labels.get(kind)
        if other and display_width(_ZH[kind]) + 5 + display_width(other) <= p.line_cols:
            p.line("【" + _ZH[kind] + " " + other + "】")
        else:
            _pair(p, "【" + _ZH[kind] + "】", other)
        p.emphasis(False)

    number = t.get("number")
    if number:
        p.size(2, 2)
        p.emphasis(True)
        p.wrapped(number)
        p.emphasis(False)
        p.size(1, 1)

    ahead = t.get("ahead")
    if ahead is not None:
        other = labels.get("ahead")
        _pair(p, _ZH["ahead"] % ahead, other % ahead if other else None)
    wait = t.get("wait_min")
    if wait is not None:
        other = labels.get("wait")
        _pair(p, _ZH["wait"] % wait, other % wait if other else None)
    when = t.get("time")
    if when:
        p.text(_ZH["time"])
        p.line(when)

    notice = t.get("notice")
    if notice:
        p.rule()
        p.align(LEFT)
        _both(p, notice, lang2, large)
        p.align(CENTRE)

    qr = t.get("qr")
    if qr:
        p.lf()
        try:
            p.qr(qr, module=6 if cols <= 32 else 8)
            _pair(p, _ZH["scan"], labels.get("scan"))
        except ValueError:
            pass  # an oversized payload costs the QR, never the citizen's ticket
    p.align(LEFT)
    p.cut(feed=4)


def render(app, d):
    """The ESC/POS bytes of the ticket of issue event d at terminal app (about 600 bytes)."""
    from firmware.gb2312 import Gb2312
    pcfg = app.cfg["printer"]
    langs = app.langs
    info = {"hall": _names("hall", langs), "service": _names("svc." + d["service"], langs),
            "number": d["ticket"], "kind": d["kind"], "ahead": d["ahead"], "wait_min": d["wait_min"],
            "time": calendar.stamp(app.now(), app.hall.tz),
            "notice": _names("notice", langs) if pcfg["notice"] else None,
            "lang2": langs[1] if len(langs) > 1 else None,
            # large_print "all", or "priority" for a priority ticket (the kind names the mode)
            "large": pcfg["large_print"] in ("all", d["kind"]),
            "qr": "%s%s/%s/%s" % (pcfg["qr_prefix"], app.cfg["device"], app.hall.day, d["ticket"])}
    sheet = _Sheet(app.sheet)
    with Gb2312() as gb:
        print_ticket(sheet.write, info, pcfg["cols"], gb)
    return memoryview(sheet.buf)[:sheet.n]


class _Sheet:
    """The ticket's bytes gathered in the terminal's own buffer (allocated at boot while the
    heap was whole), so laying a ticket out needs no large free block; a ticket longer than
    the buffer (very long configured texts) moves to a bytearray of its own."""

    def __init__(self, buf):
        self.buf = buf
        self.n = 0

    def write(self, data):
        n = self.n
        k = len(data)
        buf = self.buf
        if n + k > len(buf):
            big = bytearray(2 * (n + k))
            big[:n] = buf[:n]
            self.buf = buf = big
        buf[n:n + k] = data     # no allocation: a slice store of the same length
        self.n = n + k


def _names(key, langs):
    """{language: text} of one of the hall's own words (firmware/texts.py)."""
    pair = messages.hall_text(key)
    if pair is None:
        return None
    out = {langs[0]: pair[0]}
    if len(langs) > 1:
        out[langs[1]] = pair[1]
    return out
