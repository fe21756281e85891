"""Try, then commit: a change that decides whether the terminal can reach its broker.

A change to `broker` or `wifi` (by config.set or a new provisioning file) or a new CA file
is applied on trial. The configuration before it is kept as config.good.json (and the CA as
<ca>.good); if the terminal has not connected within broker.confirm_s, it goes back to them,
restarts and announces `config.reverted` (which keys, why). Connected, the change is
committed and the copies go. Loaded at boot and for those two moments only.

Files in the device's data root:
  config.trial.json     {"keys": [...], "confirm_s": N, "ca": name}  while on trial
  config.good.json      the configuration to go back to
  config.reverted.json  {"keys": [...], "why": "..."} until announced
"""
import os

from firmware import store

TRIAL = "/config.trial.json"
GOOD = "/config.good.json"
REVERTED = "/config.reverted.json"
KEYS = ("broker", "wifi")       # what decides whether the broker can be reached


def changed(old, new):
    """The KEYS that differ between two configurations."""
    return [k for k in KEYS if (old or {}).get(k) != (new or {}).get(k)]


def _ca_name(b):
    """The CA file a broker config b uses, or None without TLS."""
    b = b or {}
    return (b.get("ca") or "ca.der") if b.get("tls") else None


def _path(root, name):
    return name if name.startswith("/") else root + "/" + name


def _confirm_s(cfg):
    return ((cfg or {}).get("broker") or {}).get("confirm_s", 120)


def start(root, keys, old_cfg, new_cfg):
    """Begin a trial of new_cfg (about to be written as config.json); old_cfg is kept to go
    back to. A trial already running keeps its good configuration (the older one connected)."""
    if not store.exists(root + TRIAL):
        store.write_json(root + GOOD, old_cfg)
    store.write_json(root + TRIAL, {"keys": keys, "confirm_s": _confirm_s(new_cfg), "ca": _ca_name(new_cfg.get("broker"))})


def check_ca(root, cfg):
    """At boot: a CA file that differs from the one last connected with is on trial too."""
    name = _ca_name((cfg or {}).get("broker"))
    if name is None:
        return
    path = _path(root, name)
    try:
        with open(path, "rb") as f:
            now = f.read()
        with open(path + ".good", "rb") as f:
            good = f.read()
    except OSError:
        return      # no CA (the publisher says so) or none connected with yet
    if now != good:
        t = _read(root + TRIAL) or {"keys": [], "confirm_s": _confirm_s(cfg)}
        if name not in t["keys"]:
            t["keys"].append(name)
        t["ca"] = name
        store.write_json(root + TRIAL, t)


def pending(root):
    """The trial running (dict) or None."""
    return _read(root + TRIAL)


def commit(root, t):
    """Connected with the configuration on trial: it becomes the good one."""
    name = t.get("ca")
    if name:
        path = _path(root, name)
        try:
            with open(path, "rb") as f, open(path + ".good.tmp", "wb") as g:
                g.write(f.read())
            os.rename(path + ".good.tmp", path + ".good")
        except OSError:
            pass
    store.remove(root + GOOD)
    store.remove(root + TRIAL)


def revert(root, t, why):
    """Not connected in time: the good configuration (and CA) back, the reason kept for the
    announcement after the restart."""
    good = _read(root + GOOD)
    if good is not None:
        store.write_json(root + "/config.json", good)
    name = t.get("ca")
    if name:
        path = _path(root, name)
        try:
            with open(path + ".good", "rb") as f, open(path + ".tmp", "wb") as g:
                g.write(f.read())
            os.rename(path + ".tmp", path)
        except OSError:
            pass
    store.write_json(root + REVERTED, {"keys": t.get("keys") or [], "why": why or "not connected"})
    store.remove(root + GOOD)
    store.remove(root + TRIAL)


def at_boot(app, broker):
    """Announce a revert made before this boot (config.reverted) and return the trial running
    as (trial, uptime_s deadline), or None. broker: the broker config; a CA never connected
    with yet is committed at the first connection (no deadline: nothing to go back to)."""
    root = app.root
    ca = _ca_name(broker)
    r = _read(root + REVERTED)
    if isinstance(r, dict):
        from firmware import text
        app.emit("config.reverted", {"keys": [text.clean(k, 32) for k in r.get("keys") or [] if isinstance(k, str)],
                                     "why": text.clean(r.get("why") or "", 120)})
        store.remove(root + REVERTED)
    t = _read(root + TRIAL)
    if isinstance(t, dict):
        return t, app.uptime_s + (t.get("confirm_s") or 120)
    if ca and not store.exists(_path(root, ca) + ".good"):
        return {"keys": [], "ca": ca}, None
    return None


def _read(path):
    try:
        return store.read_json(path)
    except ValueError:
        return None
