"""Canonical JSON: exact bytes for each rule (runs under CPython and MicroPython)."""
import json

from _util import raises
from firmware.canonical import dump_into, dumps


def test_scalars():
    assert dumps(None) == b"null"
    assert dumps(True) == b"true"
    assert dumps(False) == b"false"
    assert dumps(0) == b"0"
    assert dumps(-7) == b"-7"
    assert dumps(1700000000) == b"1700000000"
    assert dumps(1 << 70) == b"1180591620717411303424"
    assert dumps("") == b'""'


def test_booleans_are_not_integers():
    assert dumps([True, 1, False, 0]) == b"[true,1,false,0]"


def test_floats_rejected():
    raises(ValueError, dumps, 1.5)
    raises(ValueError, dumps, 1.0)
    raises(ValueError, dumps, {"a": [0.0]})


def test_other_types_rejected():
    raises(TypeError, dumps, b"bytes")
    raises(TypeError, dumps, {1: "int key"})
    raises(TypeError, dumps, object())
    raises(TypeError, dumps, {"a": {None: 1}})


def test_keys_sorted_no_whitespace():
    assert dumps({"b": 1, "a": 2, "c": {"z": [], "y": {}}}) == b'{"a":2,"b":1,"c":{"y":{},"z":[]}}'
    assert dumps({}) == b"{}"
    assert dumps([]) == b"[]"
    assert dumps((1, "x")) == b'[1,"x"]'


def test_keys_sorted_by_utf8_bytes():
    d = {"é": 1, "z": 2, "中": 3, "Z": 4, "a": 5, "aa": 6, "\u00ff": 7, "\U0001f600": 8}
    out = dumps(d)
    assert out == ('{"Z":4,"a":5,"aa":6,"z":2,"é":1,"\u00ff":7,"中":3,"\U0001f600":8}').encode()
    keys = list(d)
    enc = [k.encode() for k in keys]
    enc.sort()
    pos = [out.find(b'"' + e + b'"') for e in enc]
    assert pos == sorted(pos)


def test_mandatory_escapes_only():
    assert dumps('a"b') == b'"a\\"b"'
    assert dumps("a\\b") == b'"a\\\\b"'
    assert dumps("\n") == b'"\\u000a"'
    assert dumps("\t\r\b\f") == b'"\\u0009\\u000d\\u0008\\u000c"'
    assert dumps("\x00\x1f") == b'"\\u0000\\u001f"'
    assert dumps("/\x7f") == b'"/\x7f"'
    assert dumps("x\x1fy\"z") == b'"x\\u001fy\\"z"'


def test_non_ascii_raw_utf8():
    assert dumps("非常满意") == "\"非常满意\"".encode()
    assert dumps("é\U0001f600") == b'"\xc3\xa9\xf0\x9f\x98\x80"'


def test_lone_surrogate_rejected():
    # json.loads is how a lone surrogate reaches a str on both interpreters.
    s = json.loads('"a\\ud800b"')
    raises(ValueError, dumps, s)
    raises(ValueError, dumps, {json.loads('"\\udc00"'): 1})


def test_nested_example_from_docstring():
    assert dumps({"b": [1, True, None], "a": "é" + chr(10)}) == '{"a":"é\\u000a","b":[1,true,null]}'.encode()


def test_round_trip_through_json():
    obj = {"ticket": "A001", "score": 5, "reason": None, "followup": False,
           "note": "line1\nline2 \"quoted\" \\ 中文", "list": [1, -2, [], {}]}
    out = dumps(obj)
    assert json.loads(out) == obj
    assert dumps(json.loads(out)) == out


def test_dump_into_appends():
    buf = bytearray(b"x=")
    dump_into(buf, {"k": "v"})
    assert bytes(buf) == b'x={"k":"v"}'
