"""Firmware crypto and encoding against CPython's own hmac/json, and MicroPython against CPython."""
import hashlib
import hmac
import json
import os
import random
import re
import subprocess

from firmware import canonical
from firmware.envelope import Stamper, chain_hash
from firmware.envelope_check import check
from firmware.hmac256 import HMAC256, hmac_sha256

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")


def test_hmac_matches_cpython_on_random_inputs():
    rnd = random.Random(20240501)
    for n in range(400):
        klen = rnd.choice((0, 1, 16, 31, 32, 63, 64, 65, 100, 128, 129, 300)) if n % 2 else rnd.randrange(0, 200)
        key = bytes(rnd.randrange(256) for _ in range(klen))
        msg = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 500)))
        want = hmac.new(key, msg, hashlib.sha256).digest()
        assert hmac_sha256(key, msg) == want, (klen, len(msg))
        cut = rnd.randrange(0, len(msg) + 1)
        assert HMAC256(key).digest(msg[:cut], msg[cut:]) == want


def _random_text(rnd, controls):
    pool = "abcXYZ019 _-/.:~\x7féü中文非常满意\u00ff\u4e2d\U0001f600\"\\"
    if controls:
        pool += "\n\t\x00\x1f\r"
    return "".join(rnd.choice(pool) for _ in range(rnd.randrange(0, 12)))


def _random_value(rnd, depth, controls):
    kind = rnd.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.choice((True, False))
    if kind == 2:
        return rnd.choice((0, -1, 5, 2 ** 31, -(2 ** 40), rnd.randrange(-10 ** 6, 10 ** 6), 10 ** 30))
    if kind in (3, 4):
        return _random_text(rnd, controls)
    if kind == 5:
        return [_random_value(rnd, depth + 1, controls) for _ in range(rnd.randrange(0, 4))]
    return {_random_text(rnd, controls): _random_value(rnd, depth + 1, controls) for _ in range(rnd.randrange(0, 5))}


_SHORT = {"b": "\\u0008", "t": "\\u0009", "n": "\\u000a", "f": "\\u000c", "r": "\\u000d"}


def _reference(obj):
    """Canonical form built only from CPython's json: its short escapes (\\n...) spelled \\u00XX."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return re.sub(r"\\(.)", lambda m: _SHORT.get(m.group(1), m.group(0)), text).encode()


def test_canonical_equals_cpython_json_where_they_agree():
    # Without control characters, json.dumps(sort_keys, compact, ensure_ascii=False) is the same form.
    rnd = random.Random(7)
    for _ in range(500):
        obj = _random_value(rnd, 0, controls=False)
        ref = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert canonical.dumps(obj) == ref, obj


def test_canonical_with_controls_parses_back():
    rnd = random.Random(8)
    for _ in range(300):
        obj = _random_value(rnd, 0, controls=True)
        out = canonical.dumps(obj)
        assert json.loads(out) == obj
        assert out == _reference(obj), obj


def _run_micropython(script, stdin_text):
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=8M", "-c", script], input=stdin_text.encode(),
                       capture_output=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    return r.stdout.decode().split()


_MP_CANON = """
import sys, json, binascii
sys.path.insert(0, '.')
from firmware import canonical
for line in sys.stdin:
    print(binascii.hexlify(canonical.dumps(json.loads(line))).decode())
"""


def test_canonical_same_bytes_under_micropython():
    rnd = random.Random(9)
    objs = [_random_value(rnd, 0, controls=bool(i % 2)) for i in range(300)]
    # Raw UTF-8 input: MicroPython's json.loads does not join \\ud83d\\ude00 escapes.
    text = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)
    got = _run_micropython(_MP_CANON, text)
    assert len(got) == len(objs)
    for o, h in zip(objs, got):
        assert bytes.fromhex(h) == canonical.dumps(o), o


_MP_STAMP = """
import sys, json, binascii
sys.path.insert(0, '.')
from firmware.envelope import Stamper
s = None
for line in sys.stdin:
    job = json.loads(line)
    if s is None:
        s = Stamper(job['dev'], job['boot'], binascii.unhexlify(job['key']), job['seq'], job['prev'])
        continue
    print(binascii.hexlify(s.stamp(job['type'], job['data'], job['ts'])).decode())
"""


def test_same_events_stamped_under_micropython_equal_cpython_bytes():
    rnd = random.Random(10)
    key = bytes(rnd.randrange(256) for _ in range(80))  # longer than a block: hashed first
    head = {"dev": "大厅-k1", "boot": 3, "key": key.hex(), "seq": 99, "prev": "f" * 32}
    jobs = []
    for i in range(60):
        data = {"ticket": "A%03d" % i, "service": "A", "counter": str(i % 4), "staff": "S0%d" % (i % 3),
                "score": 1 + i % 5, "reason": None if i % 5 > 1 else "态度\"差\"\n", "followup": i % 7 == 0,
                "ms": rnd.randrange(100000), "day": "2024-05-01", "extra": _random_value(rnd, 1, True)}
        jobs.append({"type": "rating.submitted", "data": data, "ts": 1714550000 + i})
    text = json.dumps(head, ensure_ascii=False) + "\n" + "".join(json.dumps(j, ensure_ascii=False) + "\n" for j in jobs)
    got = _run_micropython(_MP_STAMP, text)
    s = Stamper(head["dev"], head["boot"], key, head["seq"], head["prev"])
    prev = head["prev"]
    assert len(got) == len(jobs)
    for job, h in zip(jobs, got):
        mine = s.stamp(job["type"], job["data"], job["ts"])
        assert bytes.fromhex(h) == mine
        env = check(mine, key)
        assert env["prev"] == prev
        body = dict(env)
        del body["mac"]
        mac = hmac.new(key, _reference(body), hashlib.sha256).hexdigest()[:32]
        assert env["mac"] == mac
        prev = hashlib.sha256(mine).hexdigest()[:32]
        assert chain_hash(mine) == prev
