"""Give a board its identity: site, device name and its own key, in /data/config.json.

The key (32 random bytes from the host's os.urandom) signs every event the terminal
publishes and authenticates the backend's commands, so the backend needs it too: it is
kept in a local key store (JSON, file mode 0600, the format tools/verify and monitor
read: {"<site>/<device>": {"key": hex, "fingerprint": ...}}) and only its fingerprint
(first 16 hex digits of its sha256) is printed. Hand the key store to the backend over a
safe channel; never mail it.

Order, so that no board ends up with a key nobody has: the config (template + site,
device, key) is validated with the firmware's own validator, the key is saved in the
store, then the config is written to the board as config.json.tmp and renamed into place
and its hash read back. Provisioning a device the store already knows reuses its key
(a new template, same identity); --new-key replaces it (the old one is kept under
"retired" so events it signed still verify by hand).
"""
import binascii
import datetime
import hashlib
import json
import os

from tools.device import Device, ToolError, fingerprint
from tools.validate import check, load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "sim", "config.example.json")
DEVICE_CONFIG = "/data/config.json"


def default_keystore():
    return os.environ.get("QTERM_KEYSTORE") or os.path.join(os.path.expanduser("~"), ".qterm", "keystore.json")


def add_arguments(p):
    p.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0")
    p.add_argument("--site", required=True, help="site (hall) name: 1-32 letters, digits, - or _")
    p.add_argument("--device", required=True, help="device name within the site")
    p.add_argument("--keystore", default=None, metavar="FILE",
                   help="key store file (default: $QTERM_KEYSTORE or ~/.qterm/keystore.json)")
    p.add_argument("--config", default=TEMPLATE, metavar="TEMPLATE",
                   help="config template (default: sim/config.example.json); site, device and key are set here")
    p.add_argument("--new-key", action="store_true", help="replace a key the store already has for this device")
    p.add_argument("--timeout", type=float, default=10, metavar="S", help="seconds to wait for the REPL (default 10)")


def read_keystore(path):
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            store = json.load(f)
    except (OSError, ValueError) as e:
        raise ToolError("key store %s is unreadable (%s): fix or move it; nothing was changed" % (path, e))
    if not isinstance(store, dict):
        raise ToolError("key store %s: expected a JSON object of devices; nothing was changed" % path)
    return store


def write_keystore(path, store):
    """Replace the key store atomically; the file is created 0600 and never exists wider."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, mode=0o700, exist_ok=True)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(store, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def provision(port, site, device, keystore=None, template=TEMPLATE, new_key=False, timeout=10, say=print):
    keystore = keystore or default_keystore()
    cfg = load(template)
    if not isinstance(cfg, dict):
        raise ToolError("%s: expected a JSON object" % template)
    name = "%s/%s" % (site, device)
    store = read_keystore(keystore)
    entry = store.get(name)
    key = None
    if isinstance(entry, dict) and isinstance(entry.get("key"), str) and not new_key:
        try:
            key = binascii.unhexlify(entry["key"])
        except (binascii.Error, ValueError):
            raise ToolError("key store %s: the key of %s is not hex; pass --new-key to replace it" % (keystore, name))
    reused = key is not None
    if key is None:
        key = os.urandom(32)
    cfg = dict(cfg, site=site, device=device, key=binascii.hexlify(key).decode())
    errors = check(cfg)
    if errors:
        lines = ["%s: %s" % (p, m) for p, m in errors]
        raise ToolError("the config for %s (template %s) would be refused by the firmware; nothing was written:\n  %s"
                        % (name, template, "\n  ".join(lines)))
    text = json.dumps(cfg, ensure_ascii=False, indent=1) + "\n"
    with Device(port, timeout).open() as dev:
        if not reused:
            if isinstance(entry, dict) and entry.get("key"):
                entry.setdefault("retired", []).append({"key": entry["key"], "fingerprint": entry.get("fingerprint"),
                                                        "until": _now()})
            new = {"key": cfg["key"], "fingerprint": fingerprint(key), "provisioned": _now()}
            if isinstance(entry, dict) and entry.get("retired"):
                new["retired"] = entry["retired"]
            store[name] = new
            write_keystore(keystore, store)
        else:
            os.chmod(keystore, 0o600)
        try:
            dev.put_text(DEVICE_CONFIG, text)
        except ToolError as e:
            if getattr(e, "no_space", False):
                raise ToolError("the board on %s is full: cannot write %s (%s)" % (port, DEVICE_CONFIG, e.device_error))
            raise
        if dev.sha256(DEVICE_CONFIG) != hashlib.sha256(text.encode("utf-8")).hexdigest():
            raise ToolError("%s on %s reads back different from what was written: provision again" % (DEVICE_CONFIG, port))
    say("provisioned %s on %s: %s written and verified" % (name, port, DEVICE_CONFIG))
    say("key fingerprint %s (%s; kept in %s)" % (fingerprint(key), "existing key" if reused else "new key", keystore))
    return fingerprint(key)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def run(args):
    provision(args.port, args.site, args.device, args.keystore, args.config, args.new_key, args.timeout)
    return 0
