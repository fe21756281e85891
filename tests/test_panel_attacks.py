"""Attacks on the browser panel (tools/panel.py): what a hostile page, a hostile publisher or
printer stream, a local process or a hung device does to it. Each test is a finding of an
attack pass and failed before its fix. Helpers from tests/test_panel.py."""
import json
import socket
import threading
import time

import pytest

from tools import panel
from tests.test_panel import FakeControl, _request, served  # noqa: F401  (served: a fixture)


def _good(server):
    return {"Origin": "http://127.0.0.1:%d" % server.server_address[1], "Content-Type": "application/json"}


@pytest.mark.parametrize("body", [{"device": 0, "button": ["ticket:A"]},
                                  {"device": 0, "button": "next", "counter": {"id": "1"}}])
def test_press_with_a_non_string_button_is_a_bad_request(served, body):
    # (button, counter) is looked up in a set: a list or dict in the JSON raises TypeError
    # outside the try, the handler thread dies and the client gets no answer at all
    server, fake, state = served
    _request(server, "GET", "/api/panel")
    status, data, _ = _request(server, "POST", "/api/press", json.dumps(body), _good(server))
    assert status == 400 and fake.presses == []


def _strict(data):
    def refuse(name):
        raise ValueError("not JSON: %s" % name)
    return json.loads(data, parse_constant=refuse)     # what the browser's r.json() accepts


def test_api_panel_stays_json_when_an_event_carries_nan(served):
    # any client of the broker (or a buggy device) can publish {"seq": NaN}: Python reads it,
    # writes it back as NaN, and the page's r.json() throws on every poll for as long as the
    # event is among the latest 50: the whole page says "connection lost" and stops updating
    server, fake, state = served
    server.events.add("qterm/v1/hall01/term09/evt/x", b'{"dev": "term09", "seq": NaN, "ts": Infinity}')
    status, data, _ = _request(server, "GET", "/api/panel")
    assert status == 200
    d = _strict(data)
    assert d["devices"][0]["name"] == "term01" and len(d["events"]) == 1


@pytest.mark.parametrize("tail", [
    b"\x1d(k\x02\x00\x31\x41",          # QR model with no parameter byte
    b"\x1d(k\x02\x00\x31\x50",          # QR store with no m byte
    b"\x1d(k\x03\x00\x31\x45\x00",      # QR error level 0 -> "LMQH"[-48]
])
def test_hostile_printer_bytes_leave_the_panel_up(served, tail):
    # tools/escpos_decode.py indexes params[2] without a length check: IndexError, not a
    # DecodeError, escapes blocks() -> Device.tickets() -> snapshot(): /api/panel gets no answer
    # for any device while these bytes are in printer.bin
    server, fake, state = served
    (state / "printer.bin").write_bytes(b"\x1b@\x1ba\x01A001\n\x1dV\x00" + b"\x1b@" + tail)
    status, data, _ = _request(server, "GET", "/api/panel")
    assert status == 200
    tickets = json.loads(data)["devices"][0]["tickets"]
    assert tickets[-1]["lines"][0] == "A001" and tickets[0]["state"] in ("bad", "open")


def test_a_press_is_not_sent_again_after_the_device_was_slow_to_answer():
    # Device.ask retries on any OSError, a read timeout too: the press already reached the
    # device, which does it when it gets round to it - and then once more. Seen on a hall: a
    # counter stopped for 33 s, one click on "next" called B002, finished it at once and
    # called B003.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    got = []

    def client(conn):
        f = conn.makefile("rwb")
        for line in f:
            got.append(json.loads(line))
            time.sleep(1.5)             # busy: longer than the panel waits
            try:
                f.write(b'{"ok": true}\n')
                f.flush()
            except OSError:
                return

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=client, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        dev = panel.Device("term01", sock.getsockname()[1], "/nonexistent")
        reply = dev.ask({"op": "press", "button": "next"}, timeout=1)
        time.sleep(2)
        assert not reply["ok"]
        assert got == [{"op": "press", "button": "next"}]
    finally:
        sock.close()


def test_one_hung_device_does_not_freeze_the_whole_page(tmp_path):
    # a device that accepts and never answers (SIGSTOPped, or its loop stuck): every
    # /api/panel waits 2 asks x 2 attempts x 10 s = 40 s (measured on a hall with one counter
    # stopped) before it shows any device or event; the page shows nothing new meanwhile
    fake = FakeControl()
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    server = panel.PanelServer([panel.Device("ok", fake.port, str(tmp_path)),
                                panel.Device("hung", hung.getsockname()[1], str(tmp_path))], None, 0).start()
    try:
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=6)
        t = time.monotonic()
        c.request("GET", "/api/panel", headers={"Host": "127.0.0.1"})
        d = json.loads(c.getresponse().read())
        assert time.monotonic() - t < 5
        assert d["devices"][0]["role"] == "all" and d["devices"][1]["error"]
    finally:
        server.shutdown()
        hung.close()
        fake.sock.close()


def _raw(server, data, timeout=5):
    s = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout)
    try:
        s.sendall(data)
        return s.recv(200)
    finally:
        s.close()


def test_a_non_ascii_digit_in_the_image_path_is_not_found(served):
    # '²'.isdigit() is True, int('²') raises: Handler._device in do_GET has no guard
    server, fake, state = served
    assert _raw(server, b"GET /display/\xb2.png HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").startswith(b"HTTP/1.0 404")


def test_a_negative_content_length_does_not_hold_the_connection(served):
    # rfile.read(min(-1, 4096)) reads to EOF: the handler waits for the client forever
    server, fake, state = served
    port = server.server_address[1]
    req = ("POST /api/press HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\n"
           "Content-Type: application/json\r\nContent-Length: -1\r\n\r\n{}" % (port, port)).encode()
    assert _raw(server, req).startswith(b"HTTP/1.0 400")


def test_a_hall_counters_buttons_are_titled_with_its_own_counter(tmp_path):
    # sim/hall gives every counter the hall's whole counters list and its own id in
    # link.counter; the panel titles a counter device's keys with every name of the list:
    # on ctr2's box "1号窗口 Counter 1 2号窗口 Counter 2" (seen on a `--hall 2` panel)
    counters = [{"id": "1", "name": {"zh": "1号窗口", "en": "Counter 1"}},
                {"id": "2", "name": {"zh": "2号窗口", "en": "Counter 2"}}]
    entries = []
    for cid in ("1", "2"):
        cfg = tmp_path / ("ctr%s.json" % cid)
        cfg.write_text(json.dumps({"role": "counter", "counters": counters, "link": {"counter": cid}}))
        entries.append({"id": cid, "device": "ctr" + cid, "control": 1, "pid": 1,
                        "argv": ["sim/run", "--config", str(cfg), "--state", str(tmp_path)]})
    kiosk = {"device": "kiosk", "control": 1, "pid": 1, "argv": []}
    (tmp_path / "hall.json").write_text(json.dumps({"kiosk": kiosk, "counters": entries, "screen": kiosk}))
    devices, _ = panel.devices_from_hall(str(tmp_path / "hall.json"))
    status = {"ok": True, "role": "counter", "hall": {"state": "open", "serving": None}}
    assert panel.panel_buttons(status, devices[2].names)[0]["title"] == "2号窗口 Counter 2"


def test_an_oversized_press_body_gets_an_answer(served):
    server, fake, state = served
    port = server.server_address[1]
    body = b"{" + b" " * 100000 + b"}"
    req = ("POST /api/press HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\n"
           "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (port, port, len(body))).encode()
    s = socket.create_connection(("127.0.0.1", port), 5)
    try:
        s.sendall(req + body[:60000])
        assert s.recv(200).startswith(b"HTTP/1.0 413")
    finally:
        s.close()
    assert fake.presses == []


def test_qterm_ticket_names_hostile_qr_bytes_instead_of_a_traceback(tmp_path):
    import subprocess
    import sys
    from tests.test_panel import ROOT
    f = tmp_path / "printer.bin"
    f.write_bytes(b"\x1b@\x1ba\x01A001\n\x1dV\x00\x1b@\x1d(k\x03\x00\x31\x45\x00")
    r = subprocess.run([sys.executable, "-m", "tools", "ticket", str(f)], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "QR error level 0" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "A001" in r.stdout


def test_a_device_view_that_fails_is_shown_on_its_box_not_a_dead_page(served, monkeypatch):
    server, fake, state = served

    def broken(*a):
        raise RuntimeError("decoder gap")
    monkeypatch.setattr(panel, "blocks", broken)
    (state / "printer.bin").write_bytes(b"\x1b@A001\n\x1dV\x00")
    status, data, _ = _request(server, "GET", "/api/panel")
    d = json.loads(data)
    assert status == 200 and d["devices"][0]["tickets"][0]["state"] == "bad"
    assert "decoder gap" in d["devices"][0]["tickets"][0]["note"]
    monkeypatch.setattr(panel.Device, "view", broken)
    status, data, _ = _request(server, "GET", "/api/panel")
    assert status == 200 and "decoder gap" in json.loads(data)["devices"][0]["error"]
