"""The hall's own words - hall name, service and counter names, bad-rating reasons, the ticket
notice - kept on flash like the fixed signs of messages.txt and read line by line when shown.
Held as the config's dicts they would take ~5 KiB of a 96 KiB heap all day long.

<root>/texts.txt, one line each: key TAB first language TAB second language
    hall, notice, svc.<code>, ctr.<id>, reason.<n> (n = 0.. in button order), staff.<number>
    (the optional `staff` names, {number: name}: the counter's face shows who is on duty)
Written at boot and when a config change touches them. Boot/config code: loaded, then released.
"""

# What the running firmware reads from its config; the rest (services, counters, queue, key,
# broker, outbox, board, wifi) is copied into the objects built from it at boot.
_KEEP = ("languages", "role", "site", "device", "voice", "heartbeat_s", "commands")


def _names(v, langs):
    if isinstance(v, str):
        return (v, v)
    if not isinstance(v, dict):
        return None
    first = v.get(langs[0]) or ""
    second = v.get(langs[1]) if len(langs) > 1 else None
    return (first, second or first)


def lines(cfg):
    """(key, first, second) for every text of cfg (normalised)."""
    langs = cfg["languages"]
    out = []
    for key, v in (("hall", cfg.get("hall")), ("notice", (cfg.get("printer") or {}).get("notice"))):
        pair = _names(v, langs)
        if pair:
            out.append((key, pair[0], pair[1]))
    for s in cfg.get("services") or ():
        pair = _names(s.get("name"), langs) or (s["code"], s["code"])
        out.append(("svc." + s["code"], pair[0], pair[1]))
    for c in cfg.get("counters") or ():
        pair = _names(c.get("name"), langs) or (c["id"], c["id"])
        out.append(("ctr." + c["id"], pair[0], pair[1]))
    staff = cfg.get("staff")
    for k in staff if isinstance(staff, dict) else ():
        pair = _names(staff[k], langs)
        if pair:
            out.append(("staff." + k, pair[0], pair[1]))
    for i, r in enumerate(cfg["rating"]["reasons"]):
        pair = _names(r, langs)
        out.append(("reason.%d" % i, pair[0] or r["code"], pair[1] or r["code"]))
    return out


def write(cfg, root):
    """texts.txt from cfg, written line by line, temp-then-rename (tabs and line breaks in a
    text become spaces)."""
    import os
    path = root + "/texts.txt"
    with open(path + ".tmp", "w") as f:
        for key, a, b in lines(cfg):
            f.write("%s\t%s\t%s\n" % (key, _flat(a), _flat(b)))
    os.rename(path + ".tmp", path)


def _flat(s):
    return s.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def compact(cfg):
    """The small config the firmware keeps in RAM after boot."""
    out = {}
    for k in _KEEP:
        out[k] = cfg.get(k)
    r = cfg["rating"]
    out["rating"] = {"window_s": r["window_s"], "reason_window_s": r["reason_window_s"],
                     "codes": tuple(x["code"] for x in r["reasons"])}
    p = cfg["printer"]
    out["printer"] = {"cols": p["cols"], "qr_prefix": p.get("qr_prefix") or "",
                      "settle_ms": p.get("settle_ms", 800), "notice": bool(p.get("notice")),
                      "large_print": p.get("large_print", "priority")}
    return out
