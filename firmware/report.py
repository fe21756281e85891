"""What the terminal says about itself: the status answer (control port, status command) and
the heartbeat event. Loaded for the call and released: the figures are built rarely."""
import gc


def status(app):
    cfg = app.cfg
    # a counter's or screen's own hall is only names and days: the kiosk's queue is in "hall"
    s = app.hall.summary() if cfg["role"] in ("all", "kiosk") else {"day": app.hall.day}
    s["role"] = cfg["role"]
    s["device"] = cfg["device"]
    s["boot"] = app.boot_no
    s["seq"] = app.stamper.seq
    s["outbox"] = app.outbox.pending()
    pub = app.publisher
    s["connected"] = pub.connected() if pub else False
    s["mqtt_error"] = pub.last_error() if pub else None
    s["net"] = app.hal.net.up()
    s["printer"] = app.paper
    s["clock_synced"] = getattr(app.hal.clock, "synced", False)
    s["time"] = app.now()
    s["uptime_s"] = app.uptime_s
    s["fault"] = app.fault
    s["rating"] = dict((cid, ("idle", "score", "reason")[p.stage]) for cid, p in app.pads.items())
    s["stats"] = dict(app.stats)
    if app.role is not None:
        s["hall"] = app.role.status()
    gc.collect()
    s["heap"] = {"free": gc.mem_free(), "alloc": gc.mem_alloc()}
    return s


def heartbeat(app):
    gc.collect()
    st = app.stats
    app.emit("device.heartbeat", {"uptime_s": app.uptime_s, "heap_free": gc.mem_free(),
                                  "outbox": app.outbox.pending(), "ignored": st["ignored"],
                                  "refused": st["refused"], "cmd_dropped": st["cmd_dropped"],
                                  "printer": app.paper, "net": app.hal.net.up(),
                                  "mqtt_error": _why(app)})


def _why(app):
    """The broker connection's last failure in words (None while connected and well), safe to
    sign: it may carry text from the TLS library."""
    w = app.publisher.last_error() if app.publisher else None
    if w is None:
        return None
    from firmware import text
    return text.clean(w, 120)
