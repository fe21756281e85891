"""The simulator's browser panel (tools/panel.py) and its QR encoder (tools/qr.py).

QR: Reed-Solomon against the standard's worked example (ISO/IEC 18004 annex: "01234567",
1-M) and a second published 1-M vector; byte-mode codewords worked by hand; format and version
information against the standard's tables; the symbol's fixed structure read back from the
matrix (finders, timing, dark module, both format copies agreeing and BCH-valid).
Panel: its JSON from a fake control port, the guards of the press endpoint, and an end-to-end
run in headless Chromium against a simulated terminal and a broker.
"""
import json
import os
import socket
import threading
import time
import http.client

import pytest

from tools import panel, qr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- QR -------------------------------------------------------------------------------------

def test_reed_solomon_matches_the_standards_worked_example():
    # ISO/IEC 18004 annex: "01234567" as 1-M, 16 data codewords -> 10 EC codewords
    data = [0x10, 0x20, 0x0C, 0x56, 0x61, 0x80] + [0xEC, 0x11] * 5
    assert qr.rs_remainder(data, 10) == [0xA5, 0x24, 0xD4, 0xC1, 0xED, 0x36, 0xC7, 0x87, 0x2C, 0x55]
    # "HELLO WORLD" 1-M (alphanumeric), the widely published tutorial vector
    data = [0x20, 0x5B, 0x0B, 0x78, 0xD1, 0x72, 0xDC, 0x4D, 0x43, 0x40, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11]
    assert qr.rs_remainder(data, 10) == [0xC4, 0x23, 0x27, 0x77, 0xEB, 0xD7, 0xE7, 0xE2, 0x5D, 0x17]


def test_rs_remainder_is_a_polynomial_division_by_the_generator():
    # degree 2: (x - 1)(x - a) = x^2 + 3x + 2 over GF(256); and the codeword c(x) = d(x)x^n + r(x)
    # must vanish at every root a^0..a^(n-1)
    assert qr.rs_generator(2) == [1, 3, 2]
    data = list(b"qterm A001")
    n = 16
    word = data + qr.rs_remainder(data, n)
    for i in range(n):
        root, acc = qr._EXP[i], 0
        for c in word:
            acc = qr.gf_mul(acc, root) ^ c
        assert acc == 0, i


def test_byte_mode_codewords_by_hand():
    # 0100 | 00000001 | 01000001 | 0000 terminator -> 40 14 10, then EC 11 pads to 16 (1-M)
    assert qr.data_codewords(b"A", 1) == [0x40, 0x14, 0x10] + [0xEC, 0x11] * 6 + [0xEC]
    assert qr.choose_version(14) == 1 and qr.choose_version(15) == 2
    assert qr.choose_version(213) == 10
    with pytest.raises(ValueError):
        qr.choose_version(214)
    assert qr.data_codewords(b"x" * 213, 10)[:3] == [0x40, 0x0D, 0x57]   # 16-bit count from v10


def test_format_and_version_information_match_the_standards_tables():
    table_m = ["101010000010010", "101000100100101", "101111001111100", "101101101001011",
               "100010111111001", "100000011001110", "100111110010111", "100101010100000"]
    assert ["{:015b}".format(qr.format_bits(k)) for k in range(8)] == table_m
    assert qr.version_bits(7) == 0x07C94 and qr.version_bits(10) == 0x0A4D3


def _format_copies(m):
    n = len(m)
    a = [m[i][8] for i in range(6)] + [m[7][8], m[8][8], m[8][7]] + [m[8][14 - i] for i in range(9, 15)]
    b = [m[8][n - 1 - i] for i in range(8)] + [m[n - 15 + i][8] for i in range(8, 15)]
    return sum(v << i for i, v in enumerate(a)), sum(v << i for i, v in enumerate(b))


@pytest.mark.parametrize("text", ["https://hall.example/t/A001", "x", "票" * 40, "y" * 200])
def test_symbol_structure(text):
    m = qr.encode(text)
    n = len(m)
    v = (n - 17) // 4
    assert n == 17 + 4 * qr.choose_version(len(text.encode()))
    finder = [[1 if max(abs(r - 3), abs(c - 3)) in (0, 1, 3) else 0 for c in range(7)] for r in range(7)]
    for r0, c0 in ((0, 0), (0, n - 7), (n - 7, 0)):
        assert [row[c0:c0 + 7] for row in m[r0:r0 + 7]] == finder
    assert [m[6][i] for i in range(8, n - 8)] == [1 - i % 2 for i in range(8, n - 8)]
    assert [m[i][6] for i in range(8, n - 8)] == [1 - i % 2 for i in range(8, n - 8)]
    assert m[n - 8][8] == 1     # the dark module
    a, b = _format_copies(m)
    assert a == b and a in [qr.format_bits(k) for k in range(8)]
    mask = [qr.format_bits(k) for k in range(8)].index(a)
    # the chosen mask is the one with the lowest penalty
    scores = [qr.penalty(qr.encode(text, mask=k)) for k in range(8)]
    assert scores[mask] == min(scores)
    if v >= 7:
        bits = qr.version_bits(v)
        assert [m[i // 3][n - 11 + i % 3] for i in range(18)] == [bits >> i & 1 for i in range(18)]


def _zbar_png(matrix, scale=4, quiet=4):
    """The symbol as a grayscale PNG (sim/frames.png), as a camera would see it on paper."""
    from sim.frames import png
    n = len(matrix)
    size = (n + 2 * quiet) * scale
    rows = []
    for y in range(size):
        yy = y // scale - quiet
        rows.append(bytes(0 if 0 <= yy < n and 0 <= x // scale - quiet < n and matrix[yy][x // scale - quiet]
                          else 255 for x in range(size)))
    return png(size, size, rows, depth=8, color=0)


def test_an_independent_decoder_reads_every_symbol_back(tmp_path):
    """zbarimg (Debian zbar-tools, installed by the test command) reads back what tools/qr.py
    encodes: the ticket's URL under each of the eight masks, UTF-8 text, and random payloads
    of 1..210 bytes (versions 1..10)."""
    import random
    import shutil
    import subprocess
    if shutil.which("zbarimg") is None:
        why = "zbarimg not found: apt-get install -y zbar-tools (sh tools/dev.sh test does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    rnd = random.Random(1)
    url = "https://q.example/v/hall01/term01/2026-12-03/A001"
    cases = [(url, k) for k in range(8)] + [("请 A001 号到 3号窗口", None), ("x" * 210, None)]
    cases += [("".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789/:.-?=&")
                       for _ in range(rnd.randint(1, 210))), None) for _ in range(12)]
    for i, (data, mask) in enumerate(cases):
        path = tmp_path / ("q%d.png" % i)
        path.write_bytes(_zbar_png(qr.encode(data) if mask is None else qr.encode(data, mask)))
        r = subprocess.run(["zbarimg", "-q", "--raw", "-Sbinary", str(path)], capture_output=True, timeout=30)
        assert r.stdout.rstrip(b"\n") == data.encode("utf-8"), (data, mask, r.stdout[:60], r.stderr[-200:])


def test_svg_is_a_square_of_the_symbol_plus_quiet_zone():
    m = qr.encode("A001")
    s = qr.svg(m)
    assert s.startswith("<svg") and 'viewBox="0 0 29 29"' in s
    assert qr.svg_path([[1, 1, 0, 1]], quiet=0) == "M0 0h2v1h-2zM3 0h1v1h-1z"


# --- the panel's JSON -----------------------------------------------------------------------

STATUS_ALL = {"ok": True, "role": "all", "waiting": {"A": 1, "B": 0}, "issued": {"A": 1, "B": 0},
              "counters": {"1": {"state": "open", "serving": None}, "2": {"state": "paused", "serving": "A001"}},
              "outbox": 0, "connected": True}


def test_buttons_follow_the_role():
    names = {"services": {"A": "社保业务 Social Insurance"}, "counters": {"1": "1号窗口 Counter 1"}}
    groups = panel.panel_buttons(STATUS_ALL, names)
    tickets = [k["button"] for k in groups[0]["keys"]]
    assert tickets == ["ticket:A", "ticket:A:priority", "ticket:B", "ticket:B:priority"]
    assert "社保业务" in groups[0]["keys"][0]["label"]
    assert groups[1]["title"] == "1号窗口 Counter 1" and groups[2]["title"].startswith("2号窗口")
    c1 = [(k["button"], k["counter"]) for k in groups[1]["keys"]]
    assert c1[:5] == [(b, "1") for b in ("next", "recall", "skip", "finish", "pause")]
    assert c1[5:] == [("rate%d" % i, "1") for i in (5, 4, 3, 2, 1)]
    counter = {"ok": True, "role": "counter", "hall": {"state": "open", "serving": None}}
    groups = panel.panel_buttons(counter, {"services": {}, "counters": {"2": "2号窗口 Counter 2", "3": "3号窗口 Counter 3"},
                                           "own": "3"})
    assert len(groups) == 1 and groups[0]["title"] == "3号窗口 Counter 3"
    assert [k["button"] for k in groups[0]["keys"]][:2] == ["next", "recall"]
    assert all("counter" not in k for k in groups[0]["keys"])
    assert panel.panel_buttons(dict(STATUS_ALL, role="screen")) == []
    assert panel.panel_buttons({"ok": False, "error": "device out of memory"}) == []


class FakeControl:
    """A control port that answers status/display like an all-role device and logs presses."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.presses = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        f = conn.makefile("rwb")
        for line in f:
            req = json.loads(line)
            if req["op"] == "status":
                rep = STATUS_ALL
            elif req["op"] == "display":
                rep = {"ok": True, "lines": ["", "欢迎光临 请取号", "<b>Welcome</b>"]}
            else:
                self.presses.append(req)
                rep = {"ok": True, "ticket": "A002"}
            f.write(json.dumps(rep).encode() + b"\n")
            f.flush()


@pytest.fixture
def served(tmp_path):
    fake = FakeControl()
    (tmp_path / "voice.log").write_text("请A001号到1号窗口\n", encoding="utf-8")
    server = panel.PanelServer([panel.Device("term01", fake.port, str(tmp_path))], None, 0).start()
    yield server, fake, tmp_path
    server.shutdown()
    fake.sock.close()


def _request(server, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    h = {"Host": "127.0.0.1:%d" % server.server_address[1]}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r


def test_api_panel_json(served):
    server, fake, state = served
    status, data, r = _request(server, "GET", "/api/panel")
    assert status == 200 and "default-src 'none'" in r.getheader("Content-Security-Policy")
    d = json.loads(data)
    dev = d["devices"][0]
    assert dev["name"] == "term01" and dev["role"] == "all" and dev["error"] is None
    assert dev["display"] == {"lines": ["", "欢迎光临 请取号", "<b>Welcome</b>"], "image": None}
    assert dev["voice"] == ["请A001号到1号窗口"] and dev["tickets"] == []
    assert "A:1" in dev["summary"]
    # a display image, when the simulator writes one, is served and cache-busted by mtime
    (state / "display.png").write_bytes(b"\x89PNG fake")
    dev = json.loads(_request(server, "GET", "/api/panel")[1])["devices"][0]
    assert dev["display"]["image"].startswith("/display/0.png?m=")
    status, data, r = _request(server, "GET", dev["display"]["image"])
    assert status == 200 and data == b"\x89PNG fake" and r.getheader("Content-Type") == "image/png"
    assert _request(server, "GET", "/display/7.png")[0] == 404


def test_tickets_decoded_with_their_qr(served):
    server, fake, state = served
    # A ticket as the printer receives it: init, centred text, a QR (GS ( k store + print), cut.
    url = b"https://hall.example/t/A001"
    store = b"\x1d(k" + bytes([(len(url) + 3) & 0xFF, (len(url) + 3) >> 8]) + b"\x31\x50\x30" + url
    data = (b"\x1b@\x1ba\x01A001\nSocial Insurance\n" + store + b"\x1d(k\x03\x00\x31\x51\x30" + b"\n\x1dV\x00")
    (state / "printer.bin").write_bytes(data)
    dev = json.loads(_request(server, "GET", "/api/panel")[1])["devices"][0]
    t = dev["tickets"][0]
    assert t["state"] == "cut" and t["lines"][:2] == ["A001", "Social Insurance"], t
    q = t["qr"][0]
    assert q["text"] == url.decode() and q["size"] == 29 + 8 and q["path"].startswith("M4 4h7")


def test_press_only_from_the_page_itself(served):
    server, fake, state = served
    _request(server, "GET", "/api/panel")       # the page was shown: its buttons are known
    origin = "http://127.0.0.1:%d" % server.server_address[1]
    good = {"Origin": origin, "Content-Type": "application/json"}
    body = json.dumps({"device": 0, "button": "ticket:A"})
    status, data, _ = _request(server, "POST", "/api/press", body, good)
    assert status == 200 and json.loads(data)["ticket"] == "A002"
    assert fake.presses == [{"op": "press", "button": "ticket:A"}]
    body1 = json.dumps({"device": 0, "button": "rate5", "counter": "1"})
    assert _request(server, "POST", "/api/press", body1, good)[0] == 200
    assert fake.presses[-1] == {"op": "press", "button": "rate5", "counter": "1"}
    refused = [
        dict(good, Origin="http://evil.example"),                     # another web site
        {"Content-Type": "application/json"},                         # no Origin at all
        dict(good, **{"Content-Type": "text/plain"}),                 # a "simple" cross-site form post
        dict(good, Host="evil.example:%d" % server.server_address[1]),  # DNS rebinding
    ]
    for h in refused:
        assert _request(server, "POST", "/api/press", body, h)[0] in (403, 415, 421), h
    for bad in ({"device": 0, "button": "raw"}, {"device": 3, "button": "ticket:A"}, {"device": 0}):
        assert _request(server, "POST", "/api/press", json.dumps(bad), good)[0] == 400, bad
    assert len(fake.presses) == 2
    assert _request(server, "GET", "/", headers={"Host": "evil.example"})[0] == 421


def test_events_keep_the_latest():
    ev = panel.Events(None)
    for i in range(panel.EVENTS_SHOWN + 5):
        ev.add("qterm/v1/hall01/term01/evt/ticket.issued",
               json.dumps({"dev": "term01", "seq": i, "ts": 1, "type": "ticket.issued", "data": {"ticket": "A%03d" % i}}))
    ev.add(b"qterm/v1/hall01/term02/evt/x", b"not json")
    assert len(ev.latest) == panel.EVENTS_SHOWN
    assert ev.latest[-1] == {"device": "term02", "seq": None, "ts": None, "type": "x", "data": "{}"}
    assert ev.latest[-2]["seq"] == panel.EVENTS_SHOWN + 4


def test_devices_from_a_hall_json(tmp_path):
    def entry(name, port):
        return {"device": name, "control": port, "pid": 1,
                "argv": ["sim/run", "--config", str(tmp_path / (name + ".json")), "--state", str(tmp_path / name)]}
    (tmp_path / "kiosk.json").write_text(json.dumps({"services": [{"code": "A", "name": {"zh": "社保", "en": "SI"}}],
                                                     "key": "secret"}))
    h = {"kiosk": entry("kiosk", 1), "counters": [dict(entry("c1", 2), id="1")], "screen": entry("screen", 3),
         "broker": "127.0.0.1:1883"}
    (tmp_path / "hall.json").write_text(json.dumps(h))
    devices, broker = panel.devices_from_hall(str(tmp_path / "hall.json"))
    assert [(d.name, d.control, d.state) for d in devices] == [
        ("kiosk", 1, str(tmp_path / "kiosk")), ("c1", 2, str(tmp_path / "c1")), ("screen", 3, str(tmp_path / "screen"))]
    assert devices[0].names["services"] == {"A": "社保 SI"} and broker == "127.0.0.1:1883"


# --- end to end: a simulated terminal, a broker, the panel and a headless browser -------------

def test_panel_in_a_browser_takes_a_ticket_calls_finishes_and_rates():
    from tests.browser import Browser, need_chromium
    from tests.broker import Broker
    from tests.e2e.harness import Sim, fast_config
    need_chromium()
    broker = Broker().start()
    sim = Sim(broker.port, fast_config(), frames=True).start()
    server = panel.PanelServer([panel.Device("term01", sim.port, sim.state, sim.config_path)],
                               "127.0.0.1:%d" % broker.port, 0).start()
    try:
        with Browser() as b:
            b.open(server.url)
            b.wait("!!document.querySelector('[data-button=\"ticket:A\"]')", timeout=10)
            b.wait("document.getElementById('evstate').textContent === 'live'", timeout=10)
            before = b.text("#display-0")
            b.click('[data-button="ticket:A"]')
            b.wait("document.getElementById('tickets-0').textContent.includes('A001')", timeout=10)
            assert b.eval("document.querySelectorAll('#tickets-0 svg path').length") >= 1
            b.wait("document.getElementById('display-0').textContent !== %s || "
                   "!!document.querySelector('#display-0 img')" % json.dumps(before), timeout=10)
            for key in ("next@1", "finish@1", "rate5@1"):
                b.wait("!document.querySelector('[data-button=\"%s\"]').disabled" % key, timeout=10)
                b.click('[data-button="%s"]' % key)
                b.wait("document.getElementById('last-0').textContent.startsWith('%s')" % key.split("@")[0],
                       timeout=15)
            b.wait("document.getElementById('events').textContent.includes('rating.submitted')", timeout=15)
            assert "ticket.issued" in b.text("#events")
            out = os.environ.get("QTERM_ARTIFACTS") or os.path.join(ROOT, "tests", "artifacts")
            b.screenshot(os.path.join(out, "panel.png"))
            assert not b.events("Runtime.exceptionThrown")
    finally:
        server.shutdown()
        sim.proc.kill()
        sim.proc.wait()
        broker.stop()
