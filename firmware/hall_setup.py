"""Builds the hall from the config, at boot only.

Kept apart from firmware/hall.py so that the config's key names (each a string object in RAM
on the device) are loaded for the build and released with this module (firmware.release).
"""
from firmware.hall import Hall, Service, Counter


def build(cfg):
    """The Hall of a validated, normalised config."""
    q = cfg["queue"]
    # Only the kiosk (and `all`) keeps the queue: a counter or a screen builds the hall for its
    # names and days alone, with rings of one ticket (a 200-ticket ring per service is ~2 KiB).
    cap = q["max_waiting"] if cfg["role"] in ("all", "kiosk") else 1
    services = []
    index = {}                 # service code -> index
    for i, s in enumerate(cfg["services"]):
        opens, closes = s["hours"]
        services.append(Service(i, s["code"], s["prefix"], s["daily_limit"], _minutes(opens),
                                _minutes(closes), s["avg_service_s"], cap))
        index[s["code"]] = i
    counters = []
    for i, k in enumerate(cfg["counters"]):
        counters.append(Counter(i, k["id"], [index[code] for code in k["services"]], k.get("staff")))
    h = Hall(services, counters, q["max_recalls"], q["priority_run"], q["skipped_keep"] if cap > 1 else 1,
             q.get("next_guard_s", 3), cfg["tz_offset_min"], cfg["day_reset_hour"])
    # A kiosk has no rating pads: the counter devices open and close the windows, so a window
    # it opened on service.finished would never see its rating and stay "open" in its state.
    h.rates = cfg["role"] != "kiosk"
    return h


def _minutes(hhmm):
    return int(hhmm[:2]) * 60 + int(hhmm[3:])
