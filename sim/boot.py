"""The simulated terminal's boot: arguments, flash, config, hal doubles, firmware, control port.

Lives in the ROMFS image with the firmware (sim/main.py is only the stub that mounts it).
"""
import json
import os
import sys

_USAGE = ("usage: sim/run --config FILE --state DIR --broker HOST:PORT --control PORT"
          " [--flash files|lfs] [--printer-baud N] [--echo]")


def _args(argv):
    opts = {"flash": "files", "echo": False, "printer-baud": "115200"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--echo":
            opts["echo"] = True
            i += 1
            continue
        if a in ("--config", "--state", "--broker", "--control", "--flash", "--printer-baud") and i + 1 < len(argv):
            opts[a[2:]] = argv[i + 1]
            i += 2
            continue
        _die("unknown or incomplete argument %r\n%s" % (a, _USAGE))
    for need in ("config", "state", "broker", "control"):
        if need not in opts:
            _die("missing --%s\n%s" % (need, _USAGE))
    host, _, port = opts["broker"].rpartition(":")
    try:
        opts["broker"] = (host or "127.0.0.1", int(port))
        opts["control"] = int(opts["control"])
        opts["baud"] = int(opts["printer-baud"])
        if not 300 <= opts["baud"] <= 921600:
            raise ValueError
    except ValueError:
        _die("--broker must be HOST:PORT, --control a port number and --printer-baud 300..921600")
    if opts["flash"] not in ("files", "lfs"):
        _die("--flash must be 'files' or 'lfs'")
    return opts


def _die(msg, code=2):
    sys.stderr.write("qterm-sim: " + msg + "\n")
    sys.exit(code)


def _mkdirs(path):
    cur = ""
    for part in path.split("/"):
        cur = cur + "/" + part if cur or path.startswith("/") else part
        if part:
            try:
                os.mkdir(cur)
            except OSError:
                pass


def load_config(path, data_root):
    """The technician's file if valid and new; else the device's last good config.

    The file is applied only when its content changed since it was last applied, so a
    config later changed by an authenticated command survives restarts with the same file.
    """
    from firmware import config as cfgmod
    from firmware import store
    import hashlib
    import binascii
    current = data_root + "/config.json"
    cfgmod.apply_pending(data_root)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raw = None
        problem = ["%s: cannot read (%s)" % (path, e)]
    if raw is not None:
        digest = binascii.hexlify(hashlib.sha256(raw).digest()).decode()
        marker = store.read_json(data_root + "/config.source.json") if store.exists(data_root + "/config.source.json") else None
        if marker and marker.get("sha256") == digest and store.exists(current):
            raw = None
            problem = []
        else:
            try:
                cfg = json.loads(raw)
                problem = ["%s: %s" % (path, line) for line in cfgmod.describe(cfgmod.validate(cfg))]
            except ValueError:
                problem = ["%s: not valid JSON" % path]
            if not problem:
                try:
                    old = store.read_json(current)
                except ValueError:
                    old = None
                if old is not None:
                    from firmware import trial
                    keys = trial.changed(old, cfg)
                    if keys:    # a new provisioning file that decides the broker connection
                        trial.start(data_root, keys, old, cfg)
                    old = None
                store.write_json(current, cfg)
                store.write_json(data_root + "/config.source.json", {"sha256": digest})
    try:
        good = store.read_json(current)
    except ValueError:
        good = None
    if (good is None or cfgmod.validate(good)) and raw is None and not problem:
        # The stored copy is damaged but the technician's file (unchanged) is good: use it.
        sys.stderr.write("qterm-sim: %s damaged; applying %s again\n" % (current, path))
        with open(path, "rb") as f:
            good = json.loads(f.read())
        if not cfgmod.validate(good):
            store.write_json(current, good)
    if good is None or cfgmod.validate(good):
        _die("no usable configuration:\n  " + "\n  ".join(problem or ["%s is damaged" % current]))
    for line in problem:
        sys.stderr.write("qterm-sim: config rejected, keeping the last good one: %s\n" % line)
    return cfgmod.normalise(good), problem


def main():
    """Boot the simulated device; returns the coroutine that runs it (the caller drops
    this module first: its code is not needed once the device is up)."""
    opts = _args(sys.argv[1:])
    state = opts["state"]
    if not state.startswith("/"):
        state = os.getcwd() + "/" + state  # a mounted flash image is reachable by absolute path only
    _mkdirs(state)
    data_root = state + "/flash"
    if opts["flash"] == "lfs":
        from sim.flash import mount_image
        data_root = mount_image(state + "/flash.img", data_root).mount_point
    else:
        _mkdirs(data_root)
    cfg, problems = load_config(opts["config"], data_root)
    # The validator is boot-only code: free its bytecode for the day's work.
    from firmware import release
    release("config", "text", "config_keys", "trial")
    cfg["broker"]["host"], cfg["broker"]["port"] = opts["broker"]

    from sim.devices import SimHal
    from sim.control import Control
    from firmware.app import App

    hal = SimHal(state, data_root, echo=opts["echo"], baud=opts["baud"])
    app = App(hal, cfg)
    app.problems.extend(problems)
    cfg = problems = None   # the app keeps what it needs; the whole config stays on flash
    app.boot()
    # The coroutine comes from resident code: nothing of this module must stay referenced.
    return Control(app, hal).run(opts["control"])
