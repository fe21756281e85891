"""Small files on flash, written temp-then-rename so a power cut leaves old or new, never half."""
import json
import os


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def write_atomic(path, data):
    """Replace path with data (bytes or str) so a reader sees the old or the new file, never a mix."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.rename(tmp, path)


def write_json(path, obj):
    """Like write_atomic, written piece by piece: a config or a hall snapshot never exists
    as one big string, only its largest single value does (json.dump would stream, but
    only into native files)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        _dump(f, obj)
    os.rename(tmp, path)


def _dump(f, obj):
    if isinstance(obj, dict):
        sep = "{"
        for k, v in obj.items():
            f.write(sep)
            f.write(json.dumps(k))
            f.write(":")
            _dump(f, v)
            sep = ","
        f.write("}" if sep == "," else "{}")
    elif isinstance(obj, (list, tuple)):
        sep = "["
        for v in obj:
            f.write(sep)
            _dump(f, v)
            sep = ","
        f.write("]" if sep == "," else "[]")
    else:
        f.write(json.dumps(obj))


def read_json(path):
    """Parsed JSON of path; None when missing; ValueError naming the file when it is damaged."""
    try:
        f = open(path, "rb")
    except OSError:
        return None
    with f:
        raw = f.read()
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError("%s is damaged (not valid JSON)" % path)
