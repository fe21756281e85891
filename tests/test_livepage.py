"""The live hall page (tools/livepage.py): /api/live over a hall database filled as the collector
would fill it, the HTTP server's manners, and the page itself in headless Chromium updating by
itself while the database changes underneath it."""
import calendar
import http.client
import json
import os
import socket
import tempfile

import pytest

from tests.browser import Browser, need_chromium
from tools import halldb, livepage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAY0, DAY = "2026-12-02", "2026-12-03"
T0 = calendar.timegm((2026, 12, 2, 1, 0, 0))      # 09:00 in a UTC+8 hall
T = calendar.timegm((2026, 12, 3, 1, 0, 0))
KIOSK, C1, C2, SCREEN = "hall1/k1", "hall1/c1", "hall1/c2", "hall1/scr"


class Hall:
    """A hall database written the way the collector writes it: verified events keyed by
    (device, seq), and the latest retained status/state payload per device."""

    def __init__(self, path):
        self.path = path
        self.db = halldb.connect(path)
        self.seq = {}

    def event(self, device, etype, ts, **data):
        seq = self.seq[device] = self.seq.get(device, 0) + 1
        env = {"v": 1, "dev": device.split("/")[1], "boot": 1, "seq": seq, "ts": ts, "type": etype,
               "data": data, "prev": "0" * 32, "mac": "f" * 32}
        raw = json.dumps(env, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        self.db.execute("INSERT INTO events (device, seq, type, ts, boot, prev, hash, data, raw, received) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (device, seq, etype, ts, 1, "0" * 32, "%032x" % seq,
                         json.dumps(data, ensure_ascii=False), raw, ts + 0.5))
        return seq

    def retained(self, device, kind, payload):
        self.db.execute("INSERT OR REPLACE INTO status (device, kind, payload, received) VALUES (?,?,?,?)",
                        (device, kind, json.dumps(payload, ensure_ascii=False), T))

    def rating(self, device, ts, ticket, counter, staff, score, reason=None, day=DAY):
        self.event(device, "rating.submitted", ts, ticket=ticket, service=ticket[0], counter=counter,
                   staff=staff, score=score, reason=reason, followup=score <= 2, ms=4000, day=day)

    def live(self):
        db = livepage.open_ro(self.path)
        try:
            return livepage.live(db)
        finally:
            db.close()


def kiosk_state(waiting_a=3, serving1="A004", state2="open"):
    """The kiosk's retained `state` (firmware/hall.py Hall.summary)."""
    return {"day": DAY, "waiting": {"A": waiting_a, "B": 1}, "issued": {"A": 7, "B": 2},
            "counters": {"1": {"state": "open", "reason": "", "staff": "S001", "serving": serving1},
                         "2": {"state": state2, "reason": "meeting" if state2 == "paused" else "",
                               "staff": "S002", "serving": None}},
            "parked": []}


def online(dev, boot=1):
    return {"state": "online", "dev": dev, "boot": boot, "fw": "0.9", "ts": T}


@pytest.fixture
def hall(tmp_path):
    h = Hall(str(tmp_path / "hall.sqlite"))
    for dev, role in ((KIOSK, "kiosk"), (C1, "counter"), (C2, "counter"), (SCREEN, "screen")):
        h.event(dev, "device.boot", T - 3600, fw="0.9", role=role, boot=1, replayed=0, outbox_pending=0,
                problems=[])
    # yesterday: two very bad ratings that today's figures must not count
    h.rating(C1, T0 + 100, "A009", "1", "S001", 1, "attitude", day=DAY0)
    h.rating(C2, T0 + 200, "A010", "2", "S002", 1, "wait", day=DAY0)
    # today: 5 4 3 2 1 5 -> 满意率 4/6
    for i, (dev, cid, staff, score, reason) in enumerate((
            (C1, "1", "S001", 5, None), (C2, "2", "S002", 4, None), (C1, "1", "S001", 3, None),
            (C2, "2", "S002", 2, "slow"), (C1, "1", "S001", 1, "attitude"), (C2, "2", "S002", 5, None))):
        h.rating(dev, T + 60 * (i + 1), "A%03d" % (i + 1), cid, staff, score, reason)
    for dev in (KIOSK, C1, C2):
        h.retained(dev, "status", online(dev.split("/")[1]))
    h.retained(SCREEN, "status", {"state": "offline", "dev": "scr", "boot": 1})
    h.retained(KIOSK, "state", kiosk_state())
    # a counter's own `state` is its names-only hall: zeros that must not hide the kiosk's queue
    h.retained(C1, "state", {"day": DAY, "waiting": {"A": 0, "B": 0}, "issued": {"A": 0, "B": 0},
                             "counters": {"1": {"state": "closed", "reason": "", "staff": None,
                                                "serving": None, "rating_open": None}}, "parked": []})
    h.event(KIOSK, "device.heartbeat", T + 400, uptime_s=3600, heap_free=30000, outbox=4, ignored=0,
            refused=0, cmd_dropped=0, printer="ok", net=True, mqtt_error=None)
    h.event(KIOSK, "printer.status", T + 500, state="near_end")
    h.event(C1, "device.heartbeat", T + 400, uptime_s=3600, heap_free=30000, outbox=0, ignored=2,
            refused=0, cmd_dropped=0, printer="ok", net=True, mqtt_error=None)
    h.db.execute("INSERT INTO suspect (device, seq, type, verdict, reason, topic, raw, received) "
                 "VALUES (?,?,?,?,?,?,?,?)", (C2, 9, "rating.submitted", "forged", "bad mac",
                                             "qterm/v1/hall1/c2/evt/rating.submitted", b"{}", T))
    return h


# --- /api/live --------------------------------------------------------------------------

def test_today_is_the_devices_business_day_and_only_its_ratings_count(hall):
    d = hall.live()
    assert d["day"] == DAY                      # from the devices' events, not the host clock
    s = d["satisfaction"]
    assert (s["ratings"], s["satisfied"], s["bad"]) == (6, 4, 2)
    assert s["satisfaction_rate"] == round(4 / 6, 4)
    assert s["scores"] == {"5": 2, "4": 1, "3": 1, "2": 1, "1": 1}


def test_bad_ratings_newest_first_with_what_a_manager_follows_up(hall):
    bad = hall.live()["bad_ratings"]
    assert [(b["ticket"], b["score"], b["reason"], b["counter"], b["staff"], b["device"]) for b in bad] == [
        ("A005", 1, "attitude", "1", "S001", C1), ("A004", 2, "slow", "2", "S002", C2)]
    assert bad[0]["ts"] == T + 300 and bad[0]["followup"] is True
    assert all(b["ticket"] not in ("A009", "A010") for b in bad)    # yesterday's are not today's


def test_queue_from_the_kiosks_retained_state(hall):
    d = hall.live()
    assert [(w["device"], w["service"], w["waiting"], w["issued"], w["source"]) for w in d["waiting"]] == [
        (KIOSK, "A", 3, 7, "state"), (KIOSK, "B", 1, 2, "state")]
    assert d["waiting_total"] == 4
    assert [(c["counter"], c["state"], c["staff"], c["serving"]) for c in d["counters"]] == [
        ("1", "open", "S001", "A004"), ("2", "open", "S002", None)]


def test_queue_from_events_when_no_state_was_retained(tmp_path):
    h = Hall(str(tmp_path / "hall.sqlite"))
    h.event(KIOSK, "device.boot", T, fw="0.9", role="kiosk", boot=1, replayed=0, outbox_pending=0, problems=[])
    for n in range(1, 4):
        h.event(KIOSK, "ticket.issued", T + n, ticket="A%03d" % n, n=n, service="A", kind="normal", ahead=n - 1,
                wait_min=0, day=DAY)
    h.event(KIOSK, "ticket.issued", T + 5, ticket="B001", n=1, service="B", kind="normal", ahead=0, wait_min=0,
            day=DAY)
    h.event(KIOSK, "ticket.called", T + 10, ticket="A001", n=1, service="A", origin="A", kind="normal",
            counter="1", staff="S001", waited_s=9, day=DAY)
    h.event(KIOSK, "service.finished", T + 20, ticket="A001", service="A", counter="1", staff="S001",
            kind="normal", waited_s=9, served_s=10, day=DAY)
    h.event(KIOSK, "ticket.called", T + 30, ticket="A002", n=2, service="A", origin="A", kind="normal",
            counter="1", staff="S001", waited_s=28, day=DAY)
    h.event(KIOSK, "counter.paused", T + 40, counter="2", staff="S002", reason="meeting")
    d = h.live()
    assert [(w["service"], w["waiting"], w["issued"], w["source"]) for w in d["waiting"]] == [
        ("A", 1, 3, "events"), ("B", 1, 1, "events")]
    assert [(c["counter"], c["state"], c["serving"]) for c in d["counters"]] == [
        ("1", "open", "A002"), ("2", "paused", None)]
    # the state, once retained, wins over counting events
    h.retained(KIOSK, "state", kiosk_state(waiting_a=9))
    assert h.live()["waiting"][0]["waiting"] == 9


def test_device_health(hall):
    devs = {v["device"]: v for v in hall.live()["devices"]}
    assert sorted(devs) == sorted([KIOSK, C1, C2, SCREEN])
    k = devs[KIOSK]
    assert (k["role"], k["status"], k["outbox"]) == ("kiosk", "online", 4)
    assert k["paper"] == "near_end"             # printer.status came after the heartbeat's "ok"
    assert k["last_event"] == "printer.status" and k["last_event_ts"] == T + 500
    assert devs[SCREEN]["status"] == "offline"
    assert devs[C1]["paper"] is None            # a counter has no printer: its "ok" means nothing
    assert devs[C2]["suspect"] == 1 and devs[C1]["suspect"] == 0
    assert devs[C2]["outbox"] is None           # no heartbeat: unknown, not 0
    # a state payload carrying outbox/printer (as the control-port status does) is the freshest word
    hall.retained(KIOSK, "state", dict(kiosk_state(), outbox=0, printer="out"))
    k = {v["device"]: v for v in hall.live()["devices"]}[KIOSK]
    assert (k["outbox"], k["paper"]) == (0, "out")


def test_a_new_business_day_starts_from_zero(hall):
    hall.event(KIOSK, "day.reset", T + 86400, day="2026-12-04", prev_day=DAY, dropped_waiting=0, dropped_parked=0)
    d = hall.live()
    assert d["day"] == "2026-12-04"
    assert d["satisfaction"]["ratings"] == 0 and d["satisfaction"]["satisfaction_rate"] is None
    assert d["bad_ratings"] == []


def test_empty_database(tmp_path):
    d = Hall(str(tmp_path / "hall.sqlite")).live()
    assert d["day"] is None and d["waiting"] == [] and d["devices"] == [] and d["bad_ratings"] == []


def test_reads_while_the_collector_holds_a_write_open(hall):
    """WAL: a collector mid-transaction never stalls the page, and the page sees only what
    was committed."""
    hall.db.execute("BEGIN IMMEDIATE")
    hall.rating(C1, T + 900, "A099", "1", "S001", 1, "other")
    try:
        d = hall.live()
    finally:
        hall.db.execute("ROLLBACK")
    assert d["satisfaction"]["ratings"] == 6


# --- HTTP -------------------------------------------------------------------------------

def _get(server, path, host=None):
    addr, port = server.server_address[:2]
    c = http.client.HTTPConnection(addr, port, timeout=10)
    c.request("GET", path, headers={"Host": host} if host else {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), body


@pytest.fixture
def server(hall):
    s = livepage.start(hall.path, host="127.0.0.1", port=0)
    yield s
    s.shutdown()


def test_http_serves_page_and_json_on_loopback_only(server, hall):
    assert server.server_address[0] == "127.0.0.1"
    status, ctype, body = _get(server, "/")
    assert status == 200 and ctype.startswith("text/html")
    page = body.decode()
    assert "满意率" in page and "Satisfaction" in page and "/live.js" in page
    assert "http://" not in page and "https://" not in page      # nothing from outside
    status, ctype, body = _get(server, "/live.js")
    assert status == 200 and "/api/live" in body.decode() and "2000" in body.decode()
    status, ctype, body = _get(server, "/api/live")
    assert status == 200 and ctype.startswith("application/json")
    assert json.loads(body)["day"] == DAY
    assert _get(server, "/nothing")[0] == 404
    assert _get(server, "/api/live", host="hall.evil.example:8080")[0] == 421  # DNS rebinding


def test_http_without_database_says_so(tmp_path):
    s = livepage.start(str(tmp_path / "none.sqlite"), port=0)
    try:
        status, _, body = _get(s, "/api/live")
    finally:
        s.shutdown()
    assert status == 503 and "none.sqlite" in json.loads(body)["error"]
    assert not os.path.exists(tmp_path / "none.sqlite")     # read-only: never creates it


def test_shutdown_releases_the_port(hall):
    s = livepage.start(hall.path, port=0)
    port = s.server_address[1]
    s.shutdown()
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
    finally:
        probe.close()


# --- the page in Chromium ---------------------------------------------------------------

def _artifacts():
    d = os.environ.get("QTERM_ARTIFACTS") or os.path.join(ROOT, "tests", "artifacts")
    os.makedirs(d, exist_ok=True)
    return d


def test_page_in_chromium_updates_by_itself(server, hall):
    need_chromium()
    with Browser(width=1400, height=1000) as b:
        try:
            _watch_the_page(b, server, hall)
        except Exception:
            b.screenshot(os.path.join(_artifacts(), "livepage-failed.png"))   # what it showed instead
            raise
        b.screenshot(os.path.join(_artifacts(), "livepage.png"))


def _watch_the_page(b, server, hall):
    """Load the page, check what it shows, change the hall and see the page follow."""
    b.open(server.url)
    b.wait("document.getElementById('rate').textContent === '66.7%'", timeout=10)
    text = b.text
    assert text("#day") == DAY
    assert text("#waiting-total") == "4"
    waiting = b.eval("[...document.querySelectorAll('#waiting tr')].map(r => r.innerText)")
    assert [w.split("\t") for w in waiting] == [["A", "3", "7"], ["B", "1", "2"]]
    counters = b.eval("[...document.querySelectorAll('#counters tr')].map(r => r.innerText)")
    assert "A004" in counters[0] and "S001" in counters[0]
    bad = text("#bad")
    assert "A005" in bad and "attitude" in bad and "A004" in bad and "slow" in bad
    devices = b.eval("[...document.querySelectorAll('#devices tr')].map(r => r.innerText)")
    kiosk = next(r for r in devices if r.startswith(KIOSK))
    assert "在线 Online" in kiosk and "将尽 Low" in kiosk and "\t4\t" in kiosk
    assert any(r.startswith(SCREEN) and "离线 Offline" in r for r in devices)
    assert "实时 Live" in text("#conn")

    # the hall moves on: a new bad rating, counter 2 paused, two more waiting for A
    hall.rating(C2, T + 1000, "A006", "2", "S002", 2, "unclear")
    hall.retained(KIOSK, "state", kiosk_state(waiting_a=5, serving1="A007", state2="paused"))
    b.wait("document.querySelector('#bad tr') && "
           "document.querySelector('#bad tr').innerText.includes('A006')", timeout=6)
    b.wait("document.getElementById('waiting-total').textContent === '6'", timeout=6)
    assert text("#rate") == "57.1%"                  # 4 of 7
    counters = b.eval("[...document.querySelectorAll('#counters tr')].map(r => r.innerText)")
    assert "A007" in counters[0] and "暂停 Paused" in counters[1] and "meeting" in counters[1]
    assert b.events("Runtime.exceptionThrown") == []
