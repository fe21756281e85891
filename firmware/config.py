"""Device configuration: one validator shared by the firmware and tools/qterm validate.

validate(cfg) returns a list of (json_path, message); an empty list means the firmware
accepts the config. normalise(cfg) fills defaults so the rest of the firmware can index
keys without guessing. Runs under CPython and MicroPython.
"""
from firmware.config_keys import KEYS as _KEYS


ROLES = ("all", "kiosk", "counter", "screen")  # one device does all, or a hall of devices
DEFAULT_REASONS = (
    ("attitude", "态度不好", "Unfriendly staff"),
    ("wait", "等待太久", "Waited too long"),
    ("slow", "效率低", "Slow service"),
    ("unclear", "告知不清", "Unclear information"),
    ("other", "其他", "Other"),
)

DEFAULTS = {
    "role": "all",
    "languages": ["zh", "en"],
    "tz_offset_min": 480,
    "day_reset_hour": 3,
    "heartbeat_s": 60,
    "voice": False,
    "queue": {"max_recalls": 3, "priority_run": 3, "max_waiting": 200, "skipped_keep": 32, "next_guard_s": 3},
    "rating": {"window_s": 30, "reason_window_s": 15},
    "printer": {"cols": 32, "notice": None, "qr_prefix": "", "settle_ms": 800, "large_print": "priority"},
    "broker": {"host": "127.0.0.1", "port": 1883, "keepalive": 30, "tls": False,
               "ca": None, "user": None, "password": None, "confirm_s": 120},
    "outbox": {"max_kb": 256},
    "commands": {"window_s": 300},
}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_text(v):
    return isinstance(v, str) and len(v) > 0


def _hhmm(v):
    """'08:30' -> minutes after midnight, or None when malformed."""
    if not isinstance(v, str) or len(v) != 5 or v[2] != ":":
        return None
    try:
        h = int(v[:2])
        m = int(v[3:])
    except ValueError:
        return None
    if 0 <= h <= 24 and 0 <= m < 60 and h * 60 + m <= 1440:
        return h * 60 + m
    return None


class _Checker:
    def __init__(self):
        self.errors = []

    def err(self, path, msg):
        self.errors.append((path, msg))

    def known(self, obj, kind, path):
        """Report keys of obj that the firmware does not know."""
        allowed = _KEYS[kind]
        for k in obj:
            if k not in allowed and not (isinstance(k, str) and k.startswith("_")):
                self.err(path + k, "unknown key (expected one of: %s)" % ", ".join(allowed))

    def typed(self, obj, key, path, kind, required=True):
        """Return obj[key] if it has the right kind, else record an error and return None."""
        if key not in obj:
            if required:
                self.err(path + key, "missing (expected %s)" % kind)
            return None
        v = obj[key]
        ok = {
            "int": _is_int(v),
            "bool": isinstance(v, bool),
            "text": _is_text(v),
            "object": isinstance(v, dict),
            "list": isinstance(v, list),
        }[kind]
        if not ok:
            self.err(path + key, "expected %s, got %s" % (kind, _kind_of(v)))
            return None
        return v

    def int_range(self, obj, key, path, lo, hi, required=False):
        v = self.typed(obj, key, path, "int", required)
        if v is not None and not (lo <= v <= hi):
            self.err(path + key, "expected an integer from %d to %d, got %d" % (lo, hi, v))
            return None
        return v

    def names(self, obj, key, path, languages, required=True):
        """A bilingual name {"zh": "...", "en": "..."}; the first language is required."""
        v = self.typed(obj, key, path, "object", required)
        if v is None:
            return
        p = path + key + "."
        for lang, text in v.items():
            if not _is_text(text):
                self.err(p + lang, "expected non-empty text")
        if languages and languages[0] not in v:
            self.err(p + languages[0], "missing (the first language is required)")


def _kind_of(v):
    if isinstance(v, bool):
        return "bool"
    if _is_int(v):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "text" if v else "empty text"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "list"
    if v is None:
        return "null"
    return "other"


def _is_hex(s):
    try:
        int(s, 16)
    except ValueError:
        return False
    return len(s) % 2 == 0


def validate(cfg):
    """Every problem of cfg as (json_path, message); [] when the firmware accepts it."""
    c = _Checker()
    if not isinstance(cfg, dict):
        c.err("$", "expected a JSON object")
        return c.errors
    c.known(cfg, "", "")
    v = c.typed(cfg, "version", "", "int")
    if v is not None and v != 1:
        c.err("version", "unsupported version %d (this firmware reads 1)" % v)
    for key in ("site", "device"):
        s = c.typed(cfg, key, "", "text")
        if s is not None and (len(s) > 32 or not _topic_safe(s)):
            c.err(key, "use 1-32 letters, digits, '-' or '_' (it becomes an MQTT topic level)")
    role = cfg.get("role", "all")
    if role not in ROLES:
        c.err("role", "expected one of %s, got %r" % ("/".join(ROLES), role))
    key = c.typed(cfg, "key", "", "text")
    if key is not None and (not _is_hex(key) or len(key) < 32 or len(key) > 128):
        c.err("key", "expected the device key as 32-128 hex digits (16-64 bytes)")
    langs = c.typed(cfg, "languages", "", "list", required=False) or ["zh", "en"]
    for i, lang in enumerate(langs):
        if not _is_text(lang):
            c.err("languages[%d]" % i, "expected a language code like \"zh\"")
    if not langs:
        c.err("languages", "expected at least one language")
    c.names(cfg, "hall", "", langs)
    c.int_range(cfg, "tz_offset_min", "", -720, 840)
    c.int_range(cfg, "day_reset_hour", "", 0, 23)
    c.int_range(cfg, "heartbeat_s", "", 10, 3600)
    if "voice" in cfg:
        c.typed(cfg, "voice", "", "bool")
    # staff names for the counter's face, by staff number: {"S001": {"zh": "王小明", "en": ...}}
    staff = c.typed(cfg, "staff", "", "object", required=False)
    for num in staff or ():
        if len(num) > 16 or not _signed_text(num):
            c.err("staff." + num, "expected a staff number of 1-16 printable characters")
        else:
            c.names(staff, num, "staff.", langs)
    codes = _check_services(c, cfg, langs)
    _check_counters(c, cfg, langs, codes)
    _check_sections(c, cfg, langs)
    if role in ROLES:
        _check_role(c, cfg, role)
    if not c.errors:
        need = ram_needed(cfg)
        if need > RAM_FOR_HALL:
            c.err("services", "this hall needs about %d KiB for its queues (%d services x queue.max_waiting, "
                  "%d counters, outbox.max_kb); the terminal has %d KiB for them: use fewer services or "
                  "counters, or a smaller queue.max_waiting" % (need // 1024, len(cfg["services"]),
                                                                len(cfg["counters"]), RAM_FOR_HALL // 1024))
    return c.errors


# Heap that the parts of the state which grow with the configuration may take (rings,
# counters, rating pads, outbox segment list) next to the firmware in a 96 KiB heap;
# every configuration the validator accepts is run within the budget (tests/e2e/test_memory.py).
RAM_FOR_HALL = 12 * 1024


def ram_needed(cfg):
    """Bytes of heap the hall's queues, counters and outbox index take for cfg (measured on
    the 64-bit unix port: 8 bytes a waiting ticket plus the objects around them)."""
    q = cfg.get("queue") or {}
    waiting = q.get("max_waiting", DEFAULTS["queue"]["max_waiting"])
    skipped = q.get("skipped_keep", DEFAULTS["queue"]["skipped_keep"])
    kb = (cfg.get("outbox") or {}).get("max_kb", DEFAULTS["outbox"]["max_kb"])
    return (len(cfg["services"]) * (8 * waiting + 400) + len(cfg["counters"]) * 700
            + 8 * skipped + (kb // 16 + 1) * 120)


def _topic_safe(s):
    for ch in s:
        if not (ch.isalpha() or ch.isdigit() or ch in "-_") or ord(ch) > 127:
            return False
    return True


def _check_services(c, cfg, langs):
    services = c.typed(cfg, "services", "", "list")
    codes = []
    if services is None:
        return codes
    if not services:
        c.err("services", "expected at least one service")
    prefixes = []
    for i, s in enumerate(services):
        p = "services[%d]." % i
        if not isinstance(s, dict):
            c.err(p[:-1], "expected an object")
            continue
        c.known(s, "service", p)
        code = c.typed(s, "code", p, "text")
        if code is not None:
            if code in codes:
                c.err(p + "code", "duplicate service code %r" % code)
            elif len(code) > 8 or not _topic_safe(code):
                c.err(p + "code", "use 1-8 letters or digits")
            codes.append(code)
        prefix = c.typed(s, "prefix", p, "text")
        if prefix is not None:
            if prefix in prefixes:
                c.err(p + "prefix", "prefix %r used by two services (numbers would collide)" % prefix)
            elif len(prefix) > 2 or not prefix.isalpha() or ord(prefix[0]) > 127:
                c.err(p + "prefix", "expected 1-2 ASCII letters (printed and shown on 7-segment displays)")
            prefixes.append(prefix)
        c.names(s, "name", p, langs)
        hours = c.typed(s, "hours", p, "list", required=False)
        if hours is not None:
            if len(hours) != 2 or _hhmm(hours[0]) is None or _hhmm(hours[1]) is None:
                c.err(p + "hours", "expected [\"HH:MM\", \"HH:MM\"] (opening, closing)")
            elif _hhmm(hours[0]) >= _hhmm(hours[1]):
                c.err(p + "hours", "opening time must be before closing time")
        c.int_range(s, "daily_limit", p, 1, 9999)
        c.int_range(s, "target_min", p, 1, 600)
        c.int_range(s, "avg_service_s", p, 10, 7200)
    return codes


def _check_counters(c, cfg, langs, codes):
    counters = c.typed(cfg, "counters", "", "list")
    if counters is None:
        return
    if not counters:
        c.err("counters", "expected at least one counter")
    ids = []
    for i, k in enumerate(counters):
        p = "counters[%d]." % i
        if not isinstance(k, dict):
            c.err(p[:-1], "expected an object")
            continue
        c.known(k, "counter", p)
        cid = c.typed(k, "id", p, "text")
        if cid is not None:
            if cid in ids:
                c.err(p + "id", "duplicate counter id %r" % cid)
            elif len(cid) > 8 or not _topic_safe(cid):
                c.err(p + "id", "use 1-8 letters or digits")
            ids.append(cid)
        c.names(k, "name", p, langs, required=False)
        svc = c.typed(k, "services", p, "list")
        if svc is not None:
            if not svc:
                c.err(p + "services", "expected at least one service code")
            for j, code in enumerate(svc):
                if code not in codes:
                    c.err(p + "services[%d]" % j, "unknown service code %r" % (code,))
        if "staff" in k and k["staff"] is not None:
            if c.typed(k, "staff", p, "text") is not None and not _signed_text(k["staff"]):
                c.err(p + "staff", "expected printable text of at most 64 characters (it goes into signed events)")


def _check_role(c, cfg, role):
    """What a hall's devices need (firmware/hallnet.py): the kiosk holds the hall key and says
    which device acts for each counter; a counter holds only its own request key; a screen
    names the kiosk it follows. No device but the kiosk may hold the hall key."""
    if role == "kiosk":
        k = c.typed(cfg, "hall_key", "", "text")
        if k is not None and (not _is_hex(k) or len(k) != 64):
            c.err("hall_key", "expected 64 hex digits (32 bytes): counters' request keys derive from it")
        seen = []
        for i, ctr in enumerate(cfg.get("counters") or ()):
            if isinstance(ctr, dict):
                d = c.typed(ctr, "device", "counters[%d]." % i, "text")
                if d is not None and (len(d) > 32 or not _topic_safe(d) or d == cfg.get("device") or d in seen):
                    c.err("counters[%d].device" % i, "expected the counter device's own name (1-32 letters, "
                          "digits, - or _), not the kiosk's and not another counter's")
                seen.append(d)
    elif "hall_key" in cfg:
        c.err("hall_key", "only the kiosk holds the hall key (a counter holds its own request key)")
    if role == "counter" or role == "screen":
        ln = c.typed(cfg, "link", "", "object")
        if ln is None:
            return
        c.known(ln, "link", "link.")
        kiosk = c.typed(ln, "kiosk", "link.", "text")
        if kiosk is not None and (len(kiosk) > 32 or not _topic_safe(kiosk) or kiosk == cfg.get("device")):
            c.err("link.kiosk", "expected the kiosk's device name (1-32 letters, digits, - or _)")
        if role == "counter":
            cid = c.typed(ln, "counter", "link.", "text")
            ids = [k.get("id") for k in cfg.get("counters") or () if isinstance(k, dict)]
            if cid is not None and cid not in ids:
                c.err("link.counter", "unknown counter id %r (expected one of counters[].id)" % cid)
            k = c.typed(ln, "request_key", "link.", "text")
            if k is not None and (not _is_hex(k) or len(k) != 64):
                c.err("link.request_key", "expected 64 hex digits (tools/qterm hall-key derives it)")
        else:
            c.int_range(ln, "calls", "link.", 1, 10)
            for k in ("counter", "request_key"):
                if k in ln:
                    c.err("link." + k, "a screen acts for no counter")
    elif "link" in cfg:
        c.err("link", "only a counter or a screen links to a kiosk")


def _check_sections(c, cfg, langs):
    for section in ("queue", "rating", "printer", "broker", "outbox", "commands", "wifi"):
        if isinstance(cfg.get(section), dict):
            c.known(cfg[section], section, section + ".")
    q = c.typed(cfg, "queue", "", "object", required=False)
    if q is not None:
        c.int_range(q, "max_recalls", "queue.", 1, 9)
        c.int_range(q, "priority_run", "queue.", 1, 20)
        c.int_range(q, "max_waiting", "queue.", 1, 999)
        c.int_range(q, "skipped_keep", "queue.", 1, 200)
        c.int_range(q, "next_guard_s", "queue.", 0, 60)
    r = c.typed(cfg, "rating", "", "object", required=False)
    if r is not None:
        c.int_range(r, "window_s", "rating.", 5, 600)
        c.int_range(r, "reason_window_s", "rating.", 3, 120)
        reasons = c.typed(r, "reasons", "rating.", "list", required=False)
        if reasons is not None:
            if not 1 <= len(reasons) <= 5:
                c.err("rating.reasons", "expected 1 to 5 reasons (one per rating button)")
            for i, rs in enumerate(reasons):
                p = "rating.reasons[%d]." % i
                if not isinstance(rs, dict):
                    c.err(p[:-1], "expected an object")
                    continue
                if c.typed(rs, "code", p, "text") is not None and not _signed_text(rs["code"], 32):
                    c.err(p + "code", "expected printable text of at most 32 characters (it goes into signed events)")
                if langs and not _is_text(rs.get(langs[0])):
                    c.err(p + langs[0], "missing reason text")
    pr = c.typed(cfg, "printer", "", "object", required=False)
    if pr is not None:
        cols = pr.get("cols", 32)
        if cols not in (32, 48):
            c.err("printer.cols", "expected 32 (58 mm paper) or 48 (80 mm paper)")
        if pr.get("notice") is not None:
            c.names(pr, "notice", "printer.", langs)
        if "qr_prefix" in pr and not isinstance(pr["qr_prefix"], str):
            c.err("printer.qr_prefix", "expected text")
        c.int_range(pr, "settle_ms", "printer.", 0, 5000)
        if pr.get("large_print", "off") not in ("off", "priority", "all"):
            c.err("printer.large_print", "expected \"off\", \"priority\" (priority tickets, the default) or \"all\"")
    b = c.typed(cfg, "broker", "", "object", required=False)
    if b is not None:
        host = c.typed(b, "host", "broker.", "text", required=False)
        if host is not None and not _ipv4(host):
            c.err("broker.host", "expected an IPv4 address like 192.168.1.10 (a name lookup would block the terminal)")
        c.int_range(b, "port", "broker.", 1, 65535)
        c.int_range(b, "keepalive", "broker.", 5, 600)
        c.int_range(b, "confirm_s", "broker.", 10, 3600)
        if "tls" in b:
            c.typed(b, "tls", "broker.", "bool")
        for k in ("ca", "server_name", "user", "password", "client_cert", "client_key"):
            if b.get(k) is not None:
                c.typed(b, k, "broker.", "text")
        if (b.get("client_cert") is None) != (b.get("client_key") is None):
            c.err("broker.client_key" if b.get("client_cert") else "broker.client_cert",
                  "a client certificate needs both client_cert and client_key (DER files on the device)")
        elif b.get("client_cert") is not None and not b.get("tls"):
            c.err("broker.client_cert", "a client certificate needs broker.tls true")
        if b.get("password") is not None and not b.get("user"):
            # MQTT 3.1.1 (3.1.2.9): no password without a user name; brokers close the connection
            c.err("broker.password", "a password needs broker.user (MQTT sends none without a user name)")
    o = c.typed(cfg, "outbox", "", "object", required=False)
    if o is not None:
        c.int_range(o, "max_kb", "outbox.", 16, 1024)
    cm = c.typed(cfg, "commands", "", "object", required=False)
    if cm is not None:
        c.int_range(cm, "window_s", "commands.", 10, 3600)
    w = cfg.get("wifi")
    if w is not None:
        if not isinstance(w, dict):
            c.err("wifi", "expected an object")
        else:
            c.typed(w, "ssid", "wifi.", "text")
            c.typed(w, "password", "wifi.", "text", required=False)
            c.typed(w, "hostname", "wifi.", "text", required=False)
    if "ntp" in cfg:
        ntp = c.typed(cfg, "ntp", "", "text")
        host, _, port = (ntp or "").partition(":")
        if ntp is not None and (not _ipv4(host) or (port and not (port.isdigit() and 0 < int(port) < 65536))):
            c.err("ntp", "expected the NTP server's IPv4 address, optionally with :port "
                  "(a name lookup would block the terminal)")


def _signed_text(s, limit=64):
    from firmware import text
    return text.ok(s, limit)


def _ipv4(s):
    parts = s.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or len(p) > 3 or int(p) > 255:
            return False
    return True


def normalised(cfg, k):
    """cfg[k] with its defaults filled in (a new dict for sections)."""
    v = DEFAULTS.get(k)
    if isinstance(v, dict):
        merged = dict(v)
        merged.update(cfg.get(k) or {})
        if k == "rating" and not merged.get("reasons"):
            merged["reasons"] = [{"code": r[0], "zh": r[1], "en": r[2]} for r in DEFAULT_REASONS]
        return merged
    return cfg.get(k, v)


def normalise(cfg):
    """A copy of a valid cfg with every optional key filled from DEFAULTS."""
    out = {}
    for k in DEFAULTS:
        out[k] = normalised(cfg, k)
    for k, v in cfg.items():
        if k not in out:
            out[k] = v
    for s in out["services"]:
        s.setdefault("hours", ["00:00", "24:00"])
        s.setdefault("daily_limit", 999)
        s.setdefault("target_min", 15)
        s.setdefault("avg_service_s", 300)
    for k in out["counters"]:
        k.setdefault("name", {"zh": k["id"] + "号窗口", "en": "Counter " + k["id"]})
        k.setdefault("staff", None)
    return out


def describe(errors):
    """Errors as text lines a technician can act on."""
    return ["%s: %s" % (p, m) for p, m in errors]


# A config.set (firmware/commands.py) is checked and applied at the next boot, in a fresh
# heap: a serving terminal has no room for a second copy of the config plus this validator.
PENDING = "/config.next.json"      # {"id": command id, "patch": {...}}
RESULT = "/config.result.json"     # the outcome, until the app has announced and answered it


def _ca_loads(cfg, root):
    """[] if cfg's broker needs no CA or its CA file loads; else the error (a remote change
    must not point the terminal at a certificate it cannot read)."""
    b = normalised(cfg, "broker")
    if not b.get("tls"):
        return []
    try:
        from firmware import mqtt_link
        why = mqtt_link.tls(b, root)[2]
        return [("broker.ca", why)] if why else []
    finally:
        import sys
        sys.modules.pop("firmware.mqtt_link", None)


def _check_ca(root):
    """Every boot: a CA file changed since the terminal last connected is on trial."""
    from firmware import store, trial
    try:
        cfg = store.read_json(root + "/config.json")
    except ValueError:
        return
    trial.check_ca(root, cfg)


def apply_pending(root):
    """Merge a pending config.set into <root>/config.json if the result validates; record the
    outcome in <root>/config.result.json. Returns the outcome dict or None."""
    from firmware import store
    _check_ca(root)
    try:
        pending = store.read_json(root + PENDING)
    except ValueError:
        pending = {}
    if pending is None:
        return None
    cid = pending.get("id") if isinstance(pending, dict) else None
    patch = pending.get("patch") if isinstance(pending, dict) else None
    out = {"id": cid, "ok": False, "error": "bad_config"}
    try:
        current = store.read_json(root + "/config.json")
    except ValueError:
        current = None
    old = current
    if not isinstance(patch, dict) or not isinstance(current, dict):
        out["detail"] = "pending change or stored config unreadable"
    else:
        merged = dict(current)
        for k, v in patch.items():
            if isinstance(v, dict) and isinstance(current.get(k), dict):
                m = dict(current[k])
                m.update(v)
                merged[k] = m
            else:
                merged[k] = v
        current = None
        errors = validate(merged) or _ca_loads(merged, root)
        if errors:
            out["detail"] = "; ".join(describe(errors))[:200]
        else:
            from firmware import trial
            keys = trial.changed(old, merged)
            if keys:    # the broker connection at stake: on trial (firmware/trial.py)
                trial.start(root, keys, old, merged)
            store.write_json(root + "/config.json", merged)
            out = {"id": cid, "ok": True, "keys": sorted(patch.keys())}
    store.write_json(root + RESULT, out)
    store.remove(root + PENDING)
    return out
