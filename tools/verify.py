"""Check a capture of qterm events for tampering and loss, and compute satisfaction figures.

    mosquitto_sub -v -t 'qterm/v1/#' > capture.txt
    python -m tools.verify --keys keystore.json capture.txt
    python -m tools.verify --key k1=00112233.. --metrics --json -  < capture.txt

Input lines are `mosquitto_sub -v` output (`<topic> <json>`) or plain JSON lines; lines
that are not events (status, state, cmd, cmd/reply, anything else) are skipped and counted.

Per device it reports (see firmware/envelope.py for the envelope):
- gaps: seq numbers missing between the first and last seen: lost or deleted events
  (an event deleted after the last one seen cannot be told from one not yet sent);
- duplicates: identical re-sends (QoS 1 redelivery), harmless;
- altered: mac mismatch for an event that sits in its place in the chain (its prev
  links to the event before it, and later events exist): content changed after signing;
- forged: any other event with a bad or missing mac, a second event claiming a seq
  already taken, a topic that disagrees with the payload, or no key for the device;
- reordered: events that arrived after one with a higher seq (duplicates excluded);
- chain breaks: prev not equal to the hash of the event before it, both signed.
- dropped: seq numbers missing where the device announced the loss itself with a signed
  outbox.dropped (data.ranges = [[first, last], ...]: its overflow policy, or a damaged
  segment). They are listed but are not tampering; nor is a prev that does not match right
  after such a range (the event it links to is gone).
Without --keys (or --key) the key store of `tools/qterm provision` and `monitor` is read
when it exists ($QTERM_KEYSTORE or ~/.qterm/keystore.json).
Exit status: 0 when every device is clean, 1 on any tampering or unannounced loss (or no
events at all), 2 on usage or input errors.

Satisfaction (--metrics), from rating.submitted, rating.expired and service.finished of
signed events only: 满意率 satisfaction rate = (非常满意 5 + 满意 4 + 基本满意 3) / all
ratings; bad ratings are scores 1-2 (不满意, 非常不满意) with their reason codes and the
follow-up flag; rated share = ratings / finished services; expired ratings (no button
pressed) are not ratings and count only as "expired".

Verifier and Metrics are the importable core (tools/monitor uses them):
    v = Verifier(keys={"k1": b"..."}, metrics=Metrics())
    verdict, env = v.feed(topic, payload_bytes)    # "ok", "duplicate", "bad", "skipped", ...
    v.report() -> dict; v.clean -> bool
"""
import argparse
import binascii
import json
import os
import sys

from firmware import canonical
from firmware.envelope import ZERO_PREV, chain_hash
from firmware.envelope_check import BadMac, parse, verify

_TOPIC_ROOT = ("qterm", "v1")


class _Entry:
    __slots__ = ("seq", "hash", "prev", "status", "reason")

    def __init__(self, seq, hash_, prev, status, reason):
        self.seq = seq
        self.hash = hash_
        self.prev = prev
        self.status = status  # "ok" (mac verified), "unverified" (no key), "bad"
        self.reason = reason


class DeviceLog:
    """What arrived from one device: one entry per seq plus everything that did not fit."""

    def __init__(self, name, key):
        self.name = name
        self.key = key
        self.slots = {}  # seq -> _Entry
        self.extras = []  # entries that arrived for a seq already held by different content
        self.unplaced = []  # (seq or None, reason): event-like messages without a usable envelope
        self.messages = 0
        self.duplicates = 0
        self.late = []
        self.max_seq = 0
        self.boots = set()
        self.noncanonical = 0
        self.announced = []  # (first, last) seq ranges the device said it dropped (signed)

    def announce(self, data):
        """Record the ranges of a verified outbox.dropped event."""
        ranges = data.get("ranges") if isinstance(data, dict) else None
        for r in ranges if isinstance(ranges, list) else ():
            if isinstance(r, list) and len(r) == 2 and all(_count(x) for x in r) and 1 <= r[0] <= r[1]:
                self.announced.append((r[0], r[1]))

    def place(self, entry):
        """File entry under its seq; True if new, False if an identical re-send."""
        cur = self.slots.get(entry.seq)
        if cur is not None:
            if cur.hash == entry.hash:
                self.duplicates += 1
                return False
            for x in self.extras:
                if x.seq == entry.seq and x.hash == entry.hash:
                    self.duplicates += 1
                    return False
            if cur.status == "bad" and entry.status != "bad":
                self.slots[entry.seq] = entry
                self.extras.append(cur)
            else:
                self.extras.append(entry)
        else:
            self.slots[entry.seq] = entry
        if entry.seq < self.max_seq:
            self.late.append(entry.seq)
        self.max_seq = max(self.max_seq, entry.seq)
        return True

    def report(self, chain_only=False):
        slots = self.slots
        seqs = sorted(slots)
        announced = _merged(self.announced)
        gaps = []
        dropped = []
        for a, b in zip(seqs, seqs[1:]):
            if b - a > 1:
                for lo, hi, told in _split(a + 1, b - 1, announced):
                    (dropped if told else gaps).append([lo, hi])
        good = [s for s in seqs if slots[s].status != "bad"]
        last_good = good[-1] if good else None
        breaks = []
        for s in good:
            e = slots[s]
            if s == 1:
                want = ZERO_PREV
            else:
                p = slots.get(s - 1)
                if p is None or p.status == "bad" or _within(s - 1, announced):
                    continue
                want = p.hash
            if e.prev != want:
                breaks.append(s)
        wrong_key = self.key is not None and not good and any(
            slots[s].reason == "mac mismatch" for s in seqs)
        altered = []
        forged = []
        for s in seqs:
            e = slots[s]
            if e.status != "bad":
                continue
            p = slots.get(s - 1)
            links = (s == 1 and e.prev == ZERO_PREV) or (p is not None and p.hash == e.prev)
            if (e.reason == "mac mismatch" and not wrong_key and links
                    and last_good is not None and last_good > s):
                altered.append(s)
            elif wrong_key:
                forged.append({"seq": s, "reason": "mac mismatch: wrong key, or not from this device"})
            else:
                forged.append({"seq": s, "reason": e.reason})
        for e in self.extras:
            if e.status == "bad":
                why = "%s, and seq %d is already taken" % (e.reason, e.seq)
            else:
                why = "second signed event with seq %d (device state rolled back?)" % e.seq
            forged.append({"seq": e.seq, "reason": why})
        for seq, why in self.unplaced:
            forged.append({"seq": seq, "reason": why})
        forged.sort(key=lambda f: (f["seq"] is None, f["seq"] or 0))
        unverified = sum(1 for s in seqs if slots[s].status == "unverified")
        intact = bool(seqs) and not (gaps or breaks or altered or forged)
        no_key = self.key is None and not chain_only
        notes = []
        if no_key:
            notes.append("no key for this device: macs not checked")
        if wrong_key:
            notes.append("no event verifies with the given key")
        if self.noncanonical:
            notes.append("%d payload(s) not in canonical form (reformatted in transit?)" % self.noncanonical)
        if seqs and seqs[0] != 1:
            notes.append("capture starts at seq %d" % seqs[0])
        if dropped:
            notes.append("%d event(s) dropped by the device, as it announced (outbox.dropped): seq %s"
                         % (sum(b - a + 1 for a, b in dropped), _ranges(dropped)))
        return {
            "device": self.name,
            "key": "none" if self.key is None else "known",
            "messages": self.messages,
            "events": len(seqs),
            "first_seq": seqs[0] if seqs else None,
            "last_seq": seqs[-1] if seqs else None,
            "boots": sorted(self.boots, key=str),
            "chain_intact": intact,
            "clean": intact and not self.late and not no_key,
            "gaps": gaps,
            "missing": sum(b - a + 1 for a, b in gaps),
            "dropped": dropped,
            "dropped_count": sum(b - a + 1 for a, b in dropped),
            "duplicates": self.duplicates,
            "altered": altered,
            "forged": forged,
            "reordered": list(self.late),
            "chain_breaks": breaks,
            "unverified": unverified,
            "wrong_key": wrong_key,
            "notes": notes,
        }


def _merged(ranges):
    """Sorted ranges with overlapping or adjacent ones joined."""
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _within(seq, ranges):
    return any(a <= seq <= b for a, b in ranges)


def _split(lo, hi, ranges):
    """lo..hi cut into (first, last, announced) pieces by the merged ranges."""
    out = []
    for a, b in ranges:
        if b < lo or a > hi:
            continue
        if a > lo:
            out.append((lo, a - 1, False))
        out.append((max(a, lo), min(b, hi), True))
        lo = min(b, hi) + 1
        if lo > hi:
            return out
    out.append((lo, hi, False))
    return out


def _topic_kind(topic):
    """(kind, site, device, type) of an MQTT topic; kind "evt" for event topics."""
    parts = topic.split("/")
    if len(parts) < 5 or tuple(parts[:2]) != _TOPIC_ROOT:
        return "other topic", None, None, None
    kind = parts[4]
    if kind == "evt" and len(parts) > 5:
        return "evt", parts[2], parts[3], "/".join(parts[5:])
    if kind in ("status", "state", "cmd"):
        return kind, parts[2], parts[3], None
    return "other topic", parts[2], parts[3], None


class Verifier:
    """Feed it messages as they arrive; ask for report() at any time."""

    def __init__(self, keys=None, chain_only=False, metrics=None):
        self.keys = dict(keys or {})
        self.chain_only = chain_only
        self.metrics = metrics
        self.devices = {}
        self.skipped = {}

    def _skip(self, kind):
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
        return "skipped", None

    def _key_for(self, site, dev):
        if site is not None and site + "/" + dev in self.keys:
            return self.keys[site + "/" + dev]
        if dev in self.keys:
            return self.keys[dev]
        if site is None:
            found = [k for k in self.keys if k.endswith("/" + dev)]
            if len(found) == 1:
                return self.keys[found[0]]
        return None

    def _device(self, site, dev):
        name = dev if site is None else site + "/" + dev
        log = self.devices.get(name)
        if log is None:
            log = self.devices[name] = DeviceLog(name, self._key_for(site, dev))
        return log

    def feed_line(self, line):
        """One line of a capture (bytes or str): `<topic> <json>` or a bare JSON line."""
        if isinstance(line, str):
            line = line.encode()
        line = line.strip()
        if not line:
            return "empty", None
        if line[:1] == b"{":
            return self.feed(None, line)
        parts = line.split(b" ", 1)
        topic = parts[0].decode("utf-8", "replace")
        if "/" not in topic:
            return self._skip("junk")
        return self.feed(topic, parts[1] if len(parts) > 1 else b"")

    def feed(self, topic, payload):
        """One MQTT message (topic None for a bare JSON line); returns (verdict, envelope)."""
        if isinstance(payload, str):
            payload = payload.encode()
        site = dev = etype = None
        if topic is not None:
            kind, site, dev, etype = _topic_kind(topic)
            if kind != "evt":
                return self._skip(kind)
        try:
            env = parse(payload)
        except ValueError as e:
            return self._unusable(payload, site, dev, str(e))
        if dev is None:
            dev = env["dev"]
        log = self._device(site, dev)
        log.messages += 1
        log.boots.add(env["boot"])
        try:
            full = canonical.dumps(env)
        except ValueError as e:
            log.unplaced.append((env["seq"], str(e)))
            return "bad", env
        if full != payload:
            log.noncanonical += 1
        status, reason = "ok", None
        if env["dev"] != dev:
            status, reason = "bad", "topic device %s but payload dev %s" % (dev, env["dev"])
        elif etype is not None and env["type"] != etype:
            status, reason = "bad", "topic type %s but payload type %s" % (etype, env["type"])
        elif log.key is None:
            status = "unverified"
        else:
            try:
                verify(env, log.key)
            except BadMac:
                status, reason = "bad", "mac mismatch"
            except ValueError as e:
                status, reason = "bad", str(e)
        if not log.place(_Entry(env["seq"], chain_hash(full), env["prev"], status, reason)):
            return "duplicate", env
        if env["type"] == "outbox.dropped" and (status == "ok" or (status == "unverified" and self.chain_only)):
            log.announce(env["data"])
        if self.metrics is not None and (status == "ok" or (status == "unverified" and self.chain_only)):
            self.metrics.add(env)
        return status, env

    def _unusable(self, payload, site, dev, why):
        """An event topic, or an event-looking line, whose payload is no valid envelope."""
        try:
            obj = json.loads(payload)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            obj = {}
        if dev is None:
            dev = obj.get("dev")
            if not isinstance(dev, str) or not dev or not ("seq" in obj or "mac" in obj):
                return self._skip("junk" if not obj else "other json")
        log = self._device(site, dev)
        log.messages += 1
        seq = obj.get("seq")
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None
        log.unplaced.append((seq, why))
        if seq is not None and seq > log.max_seq:
            log.max_seq = seq
        return "bad", None

    def report(self):
        devices = [self.devices[n].report(self.chain_only) for n in sorted(self.devices)]
        return {
            "clean": bool(devices) and all(d["clean"] for d in devices),
            "devices": devices,
            "skipped": dict(sorted(self.skipped.items())),
        }

    @property
    def clean(self):
        return self.report()["clean"]


# --- satisfaction figures ---------------------------------------------------------

_DIMENSIONS = ("counter", "staff", "service", "day")
_SATISFIED = (3, 4, 5)  # 非常满意, 满意, 基本满意


class _Group:
    __slots__ = ("finished", "waited", "waited_n", "served", "served_n", "scores",
                 "reasons", "followups", "expired")

    def __init__(self):
        self.finished = self.waited = self.waited_n = self.served = self.served_n = 0
        self.scores = [0] * 6
        self.reasons = {}
        self.followups = 0
        self.expired = 0

    def summary(self):
        ratings = sum(self.scores)
        satisfied = sum(self.scores[s] for s in _SATISFIED)
        return {
            "ratings": ratings,
            "satisfied": satisfied,
            "satisfaction_rate": _ratio(satisfied, ratings),
            "scores": {str(s): self.scores[s] for s in (5, 4, 3, 2, 1)},
            "bad": self.scores[1] + self.scores[2],
            "bad_reasons": dict(sorted(self.reasons.items())),
            "followups": self.followups,
            "expired": self.expired,
            "finished": self.finished,
            "rated_share": _ratio(ratings, self.finished),
            "avg_waited_s": _ratio(self.waited, self.waited_n, 1),
            "avg_served_s": _ratio(self.served, self.served_n, 1),
        }


def _ratio(a, b, digits=4):
    return round(a / b, digits) if b else None


def _count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


class Metrics:
    """Satisfaction figures per counter, staff, service, day and in total."""

    def __init__(self):
        self.total = _Group()
        self.by = {d: {} for d in _DIMENSIONS}
        self.followup_list = []  # bad ratings whose citizen asked to be contacted
        self.invalid = 0

    def _groups(self, data):
        yield self.total
        for d in _DIMENSIONS:
            v = data.get(d)
            key = "?" if v is None else str(v)
            g = self.by[d].get(key)
            if g is None:
                g = self.by[d][key] = _Group()
            yield g

    def add(self, env):
        etype, data = env.get("type"), env.get("data")
        if etype not in ("rating.submitted", "rating.expired", "service.finished") or not isinstance(data, dict):
            return
        if etype == "rating.submitted":
            score = data.get("score")
            if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
                self.invalid += 1
                return
            bad = score <= 2
            if bad and data.get("followup") is True:
                self.followup_list.append({k: data.get(k) for k in
                                           ("day", "ticket", "service", "counter", "staff", "score", "reason")}
                                          | {"dev": env.get("dev"), "seq": env.get("seq")})
        for g in self._groups(data):
            if etype == "service.finished":
                g.finished += 1
                if _count(data.get("waited_s")):
                    g.waited += data["waited_s"]
                    g.waited_n += 1
                if _count(data.get("served_s")):
                    g.served += data["served_s"]
                    g.served_n += 1
            elif etype == "rating.expired":
                g.expired += 1
            else:
                g.scores[score] += 1
                if bad:
                    reason = data.get("reason")
                    reason = "(none)" if reason is None else str(reason)
                    g.reasons[reason] = g.reasons.get(reason, 0) + 1
                    if data.get("followup") is True:
                        g.followups += 1

    def report(self):
        return {
            "definition": "satisfaction_rate = ratings scored 5, 4 or 3 (非常满意/满意/基本满意) / all ratings; "
                          "bad = scores 2 and 1; rated_share = ratings / finished services",
            "total": self.total.summary(),
            "by": {d: {k: self.by[d][k].summary() for k in sorted(self.by[d])} for d in _DIMENSIONS},
            "followup_list": list(self.followup_list),
            "invalid_ratings": self.invalid,
        }


# --- command line -------------------------------------------------------------------

class UsageError(Exception):
    pass


def _parse_hex_key(text, where):
    try:
        key = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        raise UsageError("%s: key is not hex" % where)
    if not key:
        raise UsageError("%s: key is empty" % where)
    return key


def default_keys(path=None):
    """(path, keys) of the key store at path or, without one, of the default store that
    `tools/qterm provision` writes ($QTERM_KEYSTORE or ~/.qterm/keystore.json) if it
    exists; (None, {}) otherwise. verify and monitor both look keys up through here."""
    if path is None:
        from tools.provision import default_keystore
        path = default_keystore()
        if not os.path.exists(path):
            return None, {}
    return path, load_keystore(path)


def load_keystore(path):
    """{"<device>" or "<site>/<device>": {"key": "<hex>", ...} or "<hex>"} -> {name: bytes}."""
    try:
        with open(path, "rb") as f:
            store = json.loads(f.read())
    except OSError as e:
        raise UsageError("cannot read keystore %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise UsageError("keystore %s is not JSON: %s" % (path, e))
    if not isinstance(store, dict):
        raise UsageError("keystore %s: expected a JSON object of devices" % path)
    keys = {}
    for name, entry in store.items():
        if isinstance(entry, dict):
            entry = entry.get("key")
        if not isinstance(entry, str):
            raise UsageError("keystore %s: device %s has no \"key\" string" % (path, name))
        keys[name] = _parse_hex_key(entry, "keystore %s, device %s" % (path, name))
    return keys


def _read_lines(path):
    if path == "-":
        return sys.stdin.buffer.read().splitlines()
    try:
        with open(path, "rb") as f:
            return f.read().splitlines()
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (path, e.strerror or e))


def _pct(x):
    return "-" if x is None else "%.1f%%" % (100 * x)


def _num(x):
    return "-" if x is None else ("%g" % x)


def _table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _ranges(gaps):
    return ", ".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in gaps)


def format_report(rep, source):
    out = ["qterm event check of %s" % source]
    if rep["devices"]:
        rows = [("device", "events", "seq", "chain intact", "missing", "dropped", "duplicates", "altered",
                 "forged", "reordered", "chain breaks", "result")]
        for d in rep["devices"]:
            seq = "-" if d["first_seq"] is None else "%d..%d" % (d["first_seq"], d["last_seq"])
            rows.append((d["device"], d["events"], seq, "yes" if d["chain_intact"] else "NO", d["missing"],
                         d["dropped_count"], d["duplicates"], len(d["altered"]), len(d["forged"]), len(d["reordered"]),
                         len(d["chain_breaks"]), "clean" if d["clean"] else "NOT CLEAN"))
        out += _table(rows)
    else:
        out.append("no qterm events found")
    for d in rep["devices"]:
        name = d["device"]
        if d["gaps"]:
            out.append("%s: missing seq %s (lost or deleted)" % (name, _ranges(d["gaps"])))
        if d["dropped"]:
            out.append("%s: seq %s dropped by the device, as announced by outbox.dropped (not tampering)"
                       % (name, _ranges(d["dropped"])))
        if d["altered"]:
            out.append("%s: altered seq %s (mac mismatch: changed after signing)"
                       % (name, ", ".join(map(str, d["altered"]))))
        for f in d["forged"]:
            out.append("%s: forged/inserted seq %s: %s" % (name, "?" if f["seq"] is None else f["seq"], f["reason"]))
        if d["reordered"]:
            out.append("%s: arrived out of order: seq %s" % (name, ", ".join(map(str, d["reordered"]))))
        if d["chain_breaks"]:
            out.append("%s: prev does not match the event before at seq %s"
                       % (name, ", ".join(map(str, d["chain_breaks"]))))
        if d["duplicates"]:
            out.append("%s: %d duplicate re-send(s), ignored" % (name, d["duplicates"]))
        for n in d["notes"]:
            out.append("%s: %s" % (name, n))
    if rep["skipped"]:
        out.append("skipped lines: " + ", ".join("%s %d" % kv for kv in rep["skipped"].items()))
    out.append("RESULT: " + ("clean" if rep["clean"] else "TAMPERING OR LOSS FOUND"))
    return out


def format_metrics(m):
    out = ["", "satisfaction (满意率 = 非常满意+满意+基本满意 / all ratings; signed events only)"]
    head = ("ratings", "satisfied", "rate", "5", "4", "3", "2", "1", "bad", "followup", "expired",
            "finished", "rated", "avg wait s", "avg service s")

    def row(name, s):
        sc = s["scores"]
        return (name, s["ratings"], s["satisfied"], _pct(s["satisfaction_rate"]), sc["5"], sc["4"], sc["3"],
                sc["2"], sc["1"], s["bad"], s["followups"], s["expired"], s["finished"], _pct(s["rated_share"]),
                _num(s["avg_waited_s"]), _num(s["avg_served_s"]))

    for dim in ("counter", "staff", "service", "day"):
        rows = [(dim,) + head] + [row(k, s) for k, s in m["by"][dim].items()]
        out.append("")
        out += _table(rows)
    out.append("")
    out += _table([("",) + head, row("TOTAL", m["total"])])
    reasons = m["total"]["bad_reasons"]
    if reasons:
        out.append("bad-rating reasons: " + ", ".join("%s %d" % kv for kv in reasons.items()))
    for f in m["followup_list"]:
        out.append("follow up: %s %s service %s counter %s staff %s score %s reason %s (%s seq %s)"
                   % (f["day"], f["ticket"], f["service"], f["counter"], f["staff"], f["score"],
                      f["reason"], f["dev"], f["seq"]))
    if m["invalid_ratings"]:
        out.append("ratings with an invalid score, ignored: %d" % m["invalid_ratings"])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m tools.verify",
        description="Check qterm events (mosquitto_sub -v output or JSON lines) for gaps, duplicates, "
                    "altered, forged and reordered events and broken hash chains; optionally compute "
                    "satisfaction figures. Exit 0 clean, 1 tampering or loss, 2 usage or input error.")
    ap.add_argument("file", metavar="FILE", help="capture file, or - for standard input")
    ap.add_argument("--keys", metavar="KEYSTORE.json",
                    help='device keys: {"<device>" or "<site>/<device>": {"key": "<hex>"}, ...} '
                         "(default: the provision key store, $QTERM_KEYSTORE or ~/.qterm/keystore.json, "
                         "if it exists and no --key is given)")
    ap.add_argument("--key", metavar="DEV=HEX", action="append", default=[],
                    help="a device key in hex (repeatable; DEV may be <site>/<device>)")
    ap.add_argument("--chain-only", action="store_true",
                    help="check seq and hash chain only, without keys (macs are not checked)")
    ap.add_argument("--metrics", action="store_true", help="also compute satisfaction figures")
    ap.add_argument("--json", action="store_true", help="machine-readable JSON output")
    args = ap.parse_args(argv)
    try:
        keys = default_keys(args.keys)[1] if args.keys or not args.key else {}
        for item in args.key:
            name, sep, hexkey = item.partition("=")
            if not sep or not name:
                raise UsageError("--key %s: expected DEV=HEX" % item)
            keys[name] = _parse_hex_key(hexkey, "--key %s" % name)
        lines = _read_lines(args.file)
    except UsageError as e:
        print("verify: %s" % e, file=sys.stderr)
        return 2
    metrics = Metrics() if args.metrics else None
    v = Verifier(keys, chain_only=args.chain_only, metrics=metrics)
    for line in lines:
        v.feed_line(line)
    rep = v.report()
    source = "standard input" if args.file == "-" else args.file
    if args.json:
        doc = dict(rep, source=source)
        if metrics is not None:
            doc["metrics"] = metrics.report()
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        text = format_report(rep, source)
        if metrics is not None:
            text += format_metrics(metrics.report())
        print("\n".join(text))
    if not rep["devices"]:
        print("verify: no qterm events in %s" % source, file=sys.stderr)
    return 0 if rep["clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
