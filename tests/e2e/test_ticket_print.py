"""The printed ticket through the simulator: what printer.bin would put in a citizen's hand
(decoded by tests/escpos_decode.py, independent of the firmware's builder), paper states,
one press = one ticket, and power cuts around issuing and printing.
"""
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import time


from tests.e2e.harness import Sim, command, events, example_config, fast_config
from tests.escpos_decode import DecodeError, decode

KEY = example_config()["key"]
TZ_S = 480 * 60
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INIT = b"\x1b@"   # ESC @ starts every ticket; GB2312 and the ASCII QR payload never contain it


def columns(text):
    """Printed width in half-width columns: ASCII 1, a GB2312 character 2."""
    return sum(1 if ord(ch) < 0x80 else 2 for ch in text)


def widest(ticket):
    return max(columns(ln) * ticket.sizes[i][0] for i, ln in enumerate(ticket.lines))


def local_stamp(epoch):
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch + TZ_S))


def screen(sim):
    return " | ".join(sim.ask({"op": "display"})["lines"])


def device_time(sim):
    return sim.ask({"op": "clock", "advance_s": 0})["time"]


def index(lines, text):
    assert text in lines, "%r not printed; ticket lines: %r" % (text, lines)
    return lines.index(text)


# ---- what the ticket says -------------------------------------------------------------------

def test_ticket_shows_hall_service_number_ahead_wait_time_notice_qr_and_cut(hall):
    cfg = example_config()
    t0 = device_time(hall)
    assert hall.press("ticket:A")["ticket"] == "A001"
    assert hall.press("ticket:A")["ticket"] == "A002"
    assert hall.press("ticket:B")["ticket"] == "B001"
    t1 = device_time(hall)
    day = hall.status()["day"]
    data = hall.printer_bytes()
    tickets = decode(data)
    assert len(tickets) == 3 and all(t.cut and t.cut_kind == "partial" for t in tickets), tickets
    assert sum(t.nbytes for t in tickets) == len(data)

    t = tickets[1]
    lines = t.lines
    order = [index(lines, "市民服务中心"), index(lines, "Citizen Service Center"),
             index(lines, "社保业务"), index(lines, "Social Insurance"),
             index(lines, "A002"),
             index(lines, "前面还有 1 人 / 1 ahead"),
             index(lines, "预计等候 约 3 分钟 / about 3 min")]
    stamps = ["取号时间 " + local_stamp(x) for x in (t0, t1)]
    when = [i for i, ln in enumerate(lines) if ln in stamps]
    assert when, "no date/time line like %r in %r" % (stamps[0], lines)
    order += [when[0], index(lines, cfg["printer"]["notice"]["zh"]), index(lines, cfg["printer"]["notice"]["en"])]
    assert order == sorted(order), "ticket parts out of order: %r" % lines
    assert order[0] in t.bold and lines.index("A002") in t.bold
    assert t.big_lines() == ["A002"] and t.sizes[lines.index("A002")] == (2, 2)
    # the QR carries the ticket id behind the configured URL prefix, printed after the notice
    assert len(t.qr) == 1 and t.qr[0].startswith(cfg["printer"]["qr_prefix"]), t.qr
    assert t.qr[0].endswith("/A002") and day in t.qr[0], t.qr
    assert t.qr_params[0]["at_line"] > order[-1] and t.qr_params[0]["module"] == 6
    assert "扫码查看排队进度" in lines
    assert widest(t) <= 32, "a 58 mm ticket is 32 columns: %r" % lines
    assert t.nbytes <= 2048, t.nbytes

    b = tickets[2]
    assert "医保业务" in b.lines and "Medical Insurance" in b.lines and b.big_lines() == ["B001"]
    assert "前面还有 0 人 / 0 ahead" in b.lines and b.qr[0].endswith("/B001")


def test_ticket_on_80mm_paper_uses_48_columns(broker):
    cfg = fast_config()
    cfg["printer"] = dict(cfg["printer"], cols=48, notice={
        "zh": "请留意叫号，过号请到服务台重新登记。本票仅限当日使用，请妥善保管。",
        "en": "Please listen for your number; if you miss it, ask at the service desk."})
    sim = Sim(broker.port, cfg).start()
    try:
        for _ in range(3):
            sim.press("ticket:B")
        t = decode(sim.printer_bytes())[-1]
        assert t.cut and t.big_lines() == ["B003"]
        assert "市民服务中心" in t.lines and "Medical Insurance" in t.lines
        assert "前面还有 2 人 / 2 ahead" in t.lines and "预计等候 约 7 分钟 / about 7 min" in t.lines
        assert "-" * 48 in t.lines, "rules run the full 80 mm width"
        assert 32 < widest(t) <= 48, t.lines
        # the notice wraps at 48 columns, not 32, and loses no character
        assert cfg["printer"]["notice"]["zh"] in "".join(t.lines), t.lines
        first = [ln for ln in t.lines if ln.startswith("请留意叫号")][0]
        assert 32 < columns(first) <= 48, first
        assert t.qr[0].endswith("/B003") and t.qr_params[0]["module"] == 8
        assert t.nbytes <= 2048
    finally:
        sim.cleanup()


def test_priority_and_appointment_tickets_carry_their_mark(hall, sub):
    assert hall.press("ticket:A:priority")["ticket"] == "A001"
    hall.wait_drained()
    r = command(hall, sub, KEY, "ticket.appointment", {"service": "A", "appt": "YY-1", "print": True})
    assert r["ok"] and r["result"]["ticket"] == "A002", r
    pri, appt = decode(hall.printer_bytes())
    i = index(pri.lines, "【绿色通道 Priority】")
    assert i in pri.bold and i < pri.lines.index("A001")
    assert "【预约 Appointment】" in appt.lines and appt.big_lines() == ["A002"] and appt.cut


def test_a_printed_appointment_the_printer_cannot_print_is_refused_and_journalled(hall, sub):
    """A printed appointment by command is laid out after the command code is given back
    (App._appointment): a refusal there still answers the command and journals it as its own."""
    hall.wait_drained()
    assert hall.ask({"op": "paper", "state": "out"})["ok"]
    r = command(hall, sub, KEY, "ticket.appointment", {"service": "A", "appt": "YY-2", "print": True})
    assert r["ok"] is False and r["error"] == "paper_out", r
    hall.wait_drained()
    rej = [e["data"] for e in events(sub, "command.rejected")]
    assert rej and rej[-1]["op"] == "ticket.appointment" and rej[-1]["reason"] == "paper_out", rej
    assert hall.ask({"op": "paper", "state": "ok"})["ok"]
    r = command(hall, sub, KEY, "ticket.appointment", {"service": "A", "appt": "YY-2", "print": True})
    assert r["ok"] and r["result"]["ticket"] == "A001", r      # the refused one took no number
    assert "【预约 Appointment】" in decode(hall.printer_bytes())[0].lines


def _qterm_ticket(sim):
    """`tools/qterm ticket` on the simulator's state dir: [[line, ...] per ticket], as a person reads it."""
    r = subprocess.run([os.path.join(ROOT, "tools", "qterm"), "ticket", sim.state], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = []
    for ln in r.stdout.splitlines():
        if ln.startswith("--- ticket "):
            out.append([])
        elif out and ln.strip():
            out[-1].append(ln)
    return out


def _big(lines):
    return [ln.split(None, 1)[1] for ln in lines if ln.startswith("[big]")]


def test_large_print_priority_by_default_then_all_by_config_set(hall, sub):
    """A priority ticket prints its service name and notice at double size (printer.large_print
    defaults to "priority"); a normal one only its number. config.set turns it on for every ticket
    and refuses a value it does not know, naming the key."""
    notice = example_config()["printer"]["notice"]
    assert hall.press("ticket:A:priority")["ticket"] == "A001"
    assert hall.press("ticket:A")["ticket"] == "A002"
    pri, normal = _qterm_ticket(hall)
    assert _big(pri)[:3] == ["社保业务", "Social Insurance", "A001"], pri
    assert "".join(_big(pri)[3:]).replace(" ", "") == (notice["zh"] + notice["en"]).replace(" ", ""), pri
    assert _big(normal) == ["A002"], normal
    for t in decode(hall.printer_bytes()):
        assert t.nbytes <= 1024 and widest(t) <= 32, t.lines   # app.sheet; 58 mm paper
    hall.wait_drained()
    r = command(hall, sub, KEY, "config.set", {"patch": {"printer": {"large_print": "loud"}}}, timeout=15)
    assert r["ok"] is False and r["error"] == "bad_config" and "printer.large_print" in r["detail"], r
    hall.reconnect()
    r = command(hall, sub, KEY, "config.set", {"patch": {"printer": {"large_print": "all"}}}, timeout=15)
    assert r["ok"], r
    hall.reconnect()
    assert hall.press("ticket:B")["ticket"] == "B001"
    last = _qterm_ticket(hall)[-1]
    assert _big(last)[:4] == ["医保业务", "Medical", "Insurance", "B001"], last   # 16 columns at double width


def test_characters_outside_gb2312_print_as_a_visible_mark(broker):
    cfg = fast_config(hall={"zh": "市民服务中心囧", "en": "Citizen Service Center"})
    cfg["printer"] = dict(cfg["printer"], notice={"zh": "请留意叫号😀", "en": "Listen for your number"})
    sim = Sim(broker.port, cfg).start()
    try:
        assert sim.press("ticket:A")["ticket"] == "A001"
        t = decode(sim.printer_bytes())[0]
        assert "市民服务中心□" in t.lines and "请留意叫号□" in t.lines, t.lines
        assert t.big_lines() == ["A001"] and t.cut
    finally:
        sim.cleanup()


# ---- paper ----------------------------------------------------------------------------------

def test_paper_out_near_end_offline_and_back(hall, sub):
    def paper(state):
        assert hall.ask({"op": "paper", "state": state})["ok"]

    paper("out")
    r = hall.press("ticket:A")
    assert r["ok"] is False and r["refused"] == "paper_out", r
    shown = screen(hall)
    assert "打印机缺纸" in shown and "out of paper" in shown, shown
    assert hall.status()["printer"] == "out" and hall.ask({"op": "display"})["indicator"].get("paper") is True
    assert hall.printer_bytes() == b""

    paper("near_end")
    r = hall.press("ticket:A")
    assert r["ok"] and r["ticket"] == "A001", "no number was used by the refusal: %r" % r
    assert decode(hall.printer_bytes())[0].big_lines() == ["A001"]
    assert hall.status()["printer"] == "near_end"

    paper("offline")
    r = hall.press("ticket:A")
    assert r["ok"] is False and r["refused"] == "printer_offline", r
    shown = screen(hall)
    assert "打印机故障" in shown and "Printer fault" in shown, shown

    paper("ok")
    assert hall.press("ticket:A")["ticket"] == "A002"
    assert hall.status()["printer"] == "ok" and hall.ask({"op": "display"})["indicator"].get("paper") is False
    assert [t.big_lines() for t in decode(hall.printer_bytes())] == [["A001"], ["A002"]]

    hall.wait_drained()
    assert [e["data"]["state"] for e in events(sub, "printer.status")] == ["out", "near_end", "offline", "ok"]
    assert [e["data"]["reason"] for e in events(sub, "ticket.refused")] == ["paper_out", "printer_offline"]
    assert [e["data"]["ticket"] for e in events(sub, "ticket.issued")] == ["A001", "A002"]
    s = hall.status()
    assert s["issued"]["A"] == 2 and s["stats"]["refused"] == 2


# ---- one press, one ticket -------------------------------------------------------------------

class Finger:
    """A second control connection, so a press can be made while another is in progress."""

    def __init__(self, sim):
        self.sock = socket.create_connection(("127.0.0.1", sim.port), 5)
        self.sock.settimeout(30)
        self.file = self.sock.makefile("rwb")

    def send(self, req):
        self.file.write(json.dumps(req).encode() + b"\n")
        self.file.flush()

    def reply(self):
        line = self.file.readline()
        return json.loads(line) if line else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _two_quick_presses(broker, second):
    """Press ticket:A, and `second` 0.2 s later while the ticket prints (settle 800 ms)."""
    sim = Sim(broker.port, example_config()).start()
    first_f, second_f = Finger(sim), Finger(sim)
    try:
        first_f.send({"op": "press", "button": "ticket:A"})
        time.sleep(0.2)
        second_f.send({"op": "press", "button": second})
        replies = [first_f.reply(), second_f.reply()]
        return sim, replies
    finally:
        first_f.close()
        second_f.close()


def test_one_press_one_ticket_while_printing(broker, sub):
    for second in ("ticket:A", "ticket:B"):
        sim, replies = _two_quick_presses(broker, second)
        try:
            got = sorted(replies, key=lambda r: "ticket" in r)
            assert got[0] == {"ok": True, "ignored": "printing"}, replies
            assert got[1]["ok"] and got[1]["ticket"] == "A001", replies
            assert len(decode(sim.printer_bytes())) == 1
            s = sim.status()
            assert s["issued"] == {"A": 1, "B": 0}, s
            # the next press after printing is a new ticket
            assert sim.press(second)["ticket"] in ("A002", "B001")
        finally:
            sim.cleanup()


def test_the_press_that_printed_is_told_its_ticket(broker, sub):
    """The ticket belongs to the first press; the press made while it printed is the ignored one."""
    sim, replies = _two_quick_presses(broker, "ticket:A")
    try:
        assert replies[0].get("ticket") == "A001" and replies[1] == {"ok": True, "ignored": "printing"}, (
            "first press reply %r, second press reply %r" % tuple(replies))
    finally:
        sim.cleanup()


# ---- power cuts -----------------------------------------------------------------------------

def _chunks(segment):
    """The tickets printed during one power-on: (decoded Ticket or None, raw bytes), a torn last one included."""
    out = []
    for part in segment.split(INIT)[1:]:
        raw = INIT + part
        try:
            ts = decode(raw)
        except DecodeError:
            ts = []   # cut mid-command by the power cut
        out.append((ts[0] if ts else None, raw))
    return out


def _printed_number(ticket, raw, labels):
    """The number a (maybe torn) ticket shows, or None if the cut came before it was printed."""
    if ticket is not None and ticket.big_lines():
        return ticket.big_lines()[0]
    for label in labels:
        if (b"\x1d!\x11" + label.encode()) in raw or ("\x1d!\x11\x1bE\x01" + label).encode() in raw:
            return label
    return None


def _flash(sim):
    """What is on the device's flash right now (names, sizes, times): changes on every write."""
    sig = []
    for dirpath, _, files in os.walk(os.path.join(sim.state, "flash")):
        for name in files:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            sig.append((dirpath, name, st.st_size, st.st_mtime_ns))
    return sorted(sig)


def _cut_when(sim, changed, timeout=5.0):
    """SIGKILL the device the moment changed() is true (or at the timeout)."""
    deadline = time.time() + timeout
    while not changed() and time.time() < deadline:
        pass
    sim.proc.send_signal(signal.SIGKILL)
    sim.kill()


def test_power_cuts_never_repeat_a_number(broker, sub):
    sim = Sim(broker.port, fast_config()).start()
    rng = random.Random(20261125)
    told = []        # tickets a citizen was told about (the press reply)
    segments = []    # printer bytes of each power-on
    mark = 0
    # journal: cut right after the ticket.issued record reaches flash, before printing;
    # printing: cut once the first ticket bytes reach the printer; queued: four presses at once;
    # calling: a staff call and a ticket press queued together; reply: after the citizen is told.
    plan = ["journal", "printing", "reply", "journal", "queued", "calling", "printing", "journal",
            "delay", "queued", "journal", "calling", "delay", "printing", "journal"]
    try:
        for moment in plan:
            fingers = []
            sim.wait_drained(timeout=20)
            flash0, paper0 = _flash(sim), len(sim.printer_bytes())

            def press(button):
                f = Finger(sim)
                fingers.append(f)
                f.send({"op": "press", "button": button})

            if moment == "reply":
                told.append(sim.press("ticket:" + rng.choice("AB"))["ticket"])
                sim.kill()
            elif moment in ("journal", "printing", "delay"):
                press("ticket:" + rng.choice("AB"))
                if moment == "journal":
                    _cut_when(sim, lambda: _flash(sim) != flash0)
                elif moment == "printing":
                    _cut_when(sim, lambda: len(sim.printer_bytes()) > paper0)
                else:
                    time.sleep(rng.choice([0.001, 0.003, 0.01]))
                    sim.kill()
            elif moment == "queued":
                for code in "ABAB":
                    press("ticket:" + code)
                _cut_when(sim, lambda: _flash(sim) != flash0)
            else:
                told.append(sim.press("ticket:A")["ticket"])
                sim.wait_drained(timeout=20)
                flash0 = _flash(sim)
                press("next")
                press("ticket:B")
                _cut_when(sim, lambda: _flash(sim) != flash0)
            for f in fingers:
                f.close()
            data = sim.printer_bytes()
            segments.append(data[mark:])
            mark = len(data)
            sim.start()
        for code in "ABA":
            told.append(sim.press("ticket:" + code)["ticket"])
        segments.append(sim.printer_bytes()[mark:])
        final = sim.wait_drained(timeout=20)
        deadline = time.time() + 10
        while max([e["seq"] for e in events(sub)] or [0]) < final["seq"] and time.time() < deadline:
            time.sleep(0.05)
    finally:
        sim.cleanup()

    issued = events(sub, "ticket.issued")
    labels = [e["data"]["ticket"] for e in issued]
    assert len({e["data"]["day"] for e in issued}) == 1
    assert len(labels) == len(set(labels)), "a number was issued twice: %r" % labels
    for code in "AB":
        mine = sorted(e["data"]["n"] for e in issued if e["data"]["service"] == code)
        assert mine == list(range(1, len(mine) + 1)), "numbers of %s skip or repeat: %r" % (code, mine)
        assert final["issued"][code] == len(mine)
    for t in told:
        assert t in labels, "%s was handed to a citizen but its ticket.issued is lost" % t

    # the queue on the device matches what the backend saw: issued - called
    called = events(sub, "ticket.called")
    for code in "AB":
        n_issued = sum(1 for e in issued if e["data"]["service"] == code)
        n_called = sum(1 for e in called if e["data"]["origin"] == code)
        assert final["waiting"][code] == n_issued - n_called, (code, final["waiting"], n_issued, n_called)

    # every event arrived once per seq, contiguous, each chained to the one before
    payloads = {}
    for ln in sub.lines():
        topic, _, payload = ln.partition(" ")
        if "/term01/evt/" in topic:
            payloads.setdefault(json.loads(payload)["seq"], payload.encode())
    seqs = sorted(payloads)
    assert seqs == list(range(1, seqs[-1] + 1)), "seq gaps: %r" % sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
    assert seqs[-1] == final["seq"]
    for s in seqs[1:]:
        assert json.loads(payloads[s])["prev"] == hashlib.sha256(payloads[s - 1]).hexdigest()[:32], s

    # nothing is printed that was not issued first, and no number is printed twice
    printed, torn = [], 0
    for seg in segments:
        for ticket, raw in _chunks(seg):
            number = _printed_number(ticket, raw, labels)
            if ticket is None or not ticket.cut:
                torn += 1
            if number is not None:
                assert number in labels, "%s printed but never issued" % number
                printed.append(number)
    assert len(printed) == len(set(printed)), "a number printed twice: %r" % printed
    unprinted = len(set(labels) - set(printed))
    print("power cuts: %d, tickets issued %d, torn prints %d, issued but never printed %d" % (
        len(plan), len(labels), torn, unprinted))
