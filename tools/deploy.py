"""Copy a build (tools/qterm build) to a board: only what changed, verified, switched atomically.

The board keeps two firmware slots, /app_a and /app_b; /active names the one boot.py
runs. A deploy never touches the active slot:
  1. read the sha256 of every file in both slots from the device;
  2. stage the build into the inactive slot: files already there are kept, files the
     active slot has are copied on the device, only the rest travel over the cable;
     stale files are removed first;
  3. read every hash back from the device and compare with the build's manifest;
  4. switch: /active.tmp is written and renamed over /active (one atomic rename on
     LittleFS), then boot.py/main.py, staged as .new files, are renamed into place;
  5. reset the board (a virtual device has no reset: it says so).
A cable pulled before step 4 leaves the previous firmware active and bootable; running
deploy again finishes the job, sending only what is still missing. Between the two
renames of step 4 the new slot may boot with the previous main.py, which uses only the
stable App/config/make_hal entry points.
The board's data (/data: config, queue, outbox) is never touched.
"""
import os

from tools.build import DEFAULT_OUT, load_manifest
from tools.device import Device, DeviceError, ToolError

SLOTS = ("/app_a", "/app_b")


def add_arguments(p):
    p.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0")
    p.add_argument("--build", default=DEFAULT_OUT, metavar="DIR", help="build folder (default: build/device)")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board afterwards")
    p.add_argument("--force", action="store_true", help="deploy even when the active slot already holds this build")
    p.add_argument("--timeout", type=float, default=10, metavar="S", help="seconds to wait for the REPL (default 10)")


def _check_mpy(dev, manifest):
    want = manifest.get("mpy", "")
    have = dev.eval("getattr(sys.implementation, '_mpy', 0)")
    major, sub = have & 0xFF, (have >> 8) & 3
    if want.startswith("v") and want != "v%d.%d" % (major, sub):
        raise ToolError("the MicroPython on %s loads .mpy v%d.%d but this build is %s: "
                        "flash a matching MicroPython (1.23 or later reads v6.3)" % (dev.port, major, sub, want))


def _kept(active):
    return "%s stays active" % active if active else "the board still has no firmware"


def _space_needed(plan, sizes, block):
    return sum(((sizes[f] + block - 1) // block + 1) * block for f, _ in plan)


def deploy(port, build_dir=DEFAULT_OUT, reset=True, force=False, timeout=10, say=print):
    """Deploy build_dir to the board on port; returns a dict of what was done."""
    manifest = load_manifest(build_dir)
    wanted = dict((e["file"], e) for e in manifest["files"])
    with Device(port, timeout).open() as dev:
        _check_mpy(dev, manifest)
        active = dev.active_slot()
        stage = "/app_b" if active == "/app_a" else "/app_a"
        current = dev.hashes(active) if active in SLOTS else {}
        roots = [(e, dev.sha256("/" + e["file"])) for e in manifest["root"]]
        root_changes = [e for e, sha in roots if sha != e["sha256"]]
        same = all(f in current and current[f][1] == e["sha256"] for f, e in wanted.items())
        if same and len(current) == len(wanted) and not root_changes and not force:
            say("%s already runs firmware %s from %s: nothing to do (--force to deploy anyway)"
                % (port, manifest["firmware"], active))
            return {"slot": active, "sent": 0, "copied": 0, "kept": len(wanted), "bytes": 0, "changed": False}
        staged = dev.hashes(stage)
        stale = [f for f in staged if f not in wanted or staged[f][1] != wanted[f]["sha256"]]
        for f in stale:
            dev.remove(stage + "/" + f)
        todo = [(f, "device" if f in current and current[f][1] == e["sha256"] else "host")
                for f, e in sorted(wanted.items()) if f not in staged or f in stale]
        sizes = dict((f, e["size"]) for f, e in wanted.items())
        block, total, free = dev.free("/")
        need = _space_needed(todo, sizes, block) + sum(e["size"] + block for e in root_changes)
        if need > free:
            raise ToolError("the board on %s is full: firmware %s needs %d more bytes in %s but only %d of %d "
                            "are free; nothing was switched, %s"
                            % (port, manifest["firmware"], need, stage, free, total, _kept(active)))
        sent = 0
        try:
            for f, source in todo:
                if source == "device":
                    dev.copy(active + "/" + f, stage + "/" + f)
                else:
                    with open(os.path.join(build_dir, "app", f), "rb") as fh:
                        data = fh.read()
                    dev.write_file(stage + "/" + f, data, what="writing %s/%s" % (stage, f))
                    sent += len(data)
            for e in root_changes:
                with open(os.path.join(build_dir, "root", e["file"]), "rb") as fh:
                    dev.write_file("/" + e["file"] + ".new", fh.read())
        except DeviceError as e:
            if e.no_space:
                raise ToolError("the board on %s ran out of space while staging %s (%s); nothing was switched, "
                                "%s" % (port, stage, e.device_error, _kept(active)))
            raise
        except ToolError as e:
            raise ToolError("%s\nnothing was switched, %s; run deploy again to finish (only what is "
                            "missing is sent)" % (e, _kept(active)))
        # Verify what the flash holds, not what we sent.
        after = dev.hashes(stage)
        bad = sorted(f for f, e in wanted.items() if f not in after or after[f][1] != e["sha256"])
        extra = sorted(f for f in after if f not in wanted)
        bad += ["/" + e["file"] + ".new" for e in root_changes
                if dev.sha256("/" + e["file"] + ".new") != e["sha256"]]
        if bad or extra:
            raise ToolError("verification failed on %s: %s read back wrong%s; nothing was switched, %s"
                            % (port, ", ".join(bad) or "no file", " and unexpected " + ", ".join(extra) if extra else "",
                               _kept(active)))
        dev.put_text("/active", stage + "\n")
        for e in root_changes:
            dev.rename("/" + e["file"] + ".new", "/" + e["file"])
        if dev.active_slot() != stage:
            raise ToolError("the switch to %s did not stick on %s: /active reads %r" % (stage, port, dev.read_text("/active")))
        copied = sum(1 for _, s in todo if s == "device")
        say("deployed firmware %s to %s: %s is active (was %s)" % (manifest["firmware"], port, stage, active or "none"))
        say("  %d files: %d sent (%d bytes), %d copied on the device, %d already in place; "
            "%d root file(s) updated; all verified by sha256 read back"
            % (len(wanted), len(todo) - copied, sent, copied, len(wanted) - len(todo), len(root_changes)))
        if not reset:
            say("  not reset (--no-reset): the new firmware runs after the next reset")
        elif dev.virtual:
            say("  virtual device: not reset (the unix port has no reset); restart it to run %s" % stage)
        else:
            dev.t.exec_raw_no_follow("import machine\nmachine.reset()")
            say("  board reset: it boots %s now" % stage)
        return {"slot": stage, "previous": active, "sent": len(todo) - copied, "copied": copied,
                "kept": len(wanted) - len(todo), "bytes": sent, "changed": True}


def run(args):
    deploy(args.port, args.build, reset=not args.no_reset, force=args.force, timeout=args.timeout)
    return 0
