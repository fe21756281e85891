"""firmware/screens.py's words and the hall texts they name (both interpreters): every line a
role shows comes from messages.txt or texts.txt, one line a language."""
import sys

from firmware import messages, texts
from firmware.keyentry import REASONS
from _util import tmpdir

if sys.implementation.name != "micropython":   # screens.py is device code: ticks_add, const
    import builtins
    import time
    builtins.const = getattr(builtins, "const", lambda x: x)
    time.ticks_add = getattr(time, "ticks_add", lambda a, b: a + b)
from firmware import screens

ZH_EN = ["zh", "en"]


def _texts(rows):
    d = tmpdir("screens")
    path = d + "/texts.txt"
    with open(path, "w") as f:
        for row in rows:
            f.write("\t".join(row) + "\n")
    messages.TEXTS = path


def test_the_five_choices_and_every_pause_reason_have_words_in_both_languages():
    want = ["非常不满意", "不满意", "基本满意", "满意", "非常满意"]
    for n in range(1, 6):
        zh, en = messages.text("score.%d" % n)
        assert zh == want[n - 1] and en and en != zh
    for r in REASONS:   # the keypad's *7 r reasons, and the backend's
        zh, en = messages.text("pause." + r)
        assert zh and en, r


def test_lines_take_each_languages_own_name():
    _texts([("ctr.1", "1号窗口", "Counter 1"), ("svc.A", "综合业务", "General")])
    assert screens.call_lines(ZH_EN, "A001", "1") == ["请 A001 号到 1号窗口 办理", "A001 please go to Counter 1"]
    assert screens.call_lines(["zh"], "A001", "1") == ["请 A001 号到 1号窗口 办理"]
    assert screens.call_lines(ZH_EN, "A002", "9") == ["请 A002 号到 9 办理", "A002 please go to 9"]
    assert screens.both("waiting", ZH_EN, (messages.hall_text("svc.A"), 0)) == ["综合业务 等候 0 人", "General: 0 waiting"]
    assert screens.paused(ZH_EN, "meeting") == ["暂停服务 开会", "Service paused meeting"]
    assert screens.paused(ZH_EN, "") == ["暂停服务", "Service paused"]
    assert screens.paused(ZH_EN, "lunch") == ["暂停服务 lunch", "Service paused lunch"]   # a backend's own word


def test_staff_line_names_the_staff_member_where_the_hall_gives_a_name():
    _texts([("ctr.1", "1号窗口", "Counter 1"), ("staff.S001", "王小明", "Wang Xiaoming")])
    ctr = messages.hall_text("ctr.1")
    assert screens.both("staff", ZH_EN, (ctr, "S001", messages.hall_text("staff.S001", ""))) == \
        ["1号窗口 工号 S001 王小明", "Counter 1 - staff no. S001 Wang Xiaoming"]
    assert screens.both("staff", ZH_EN, (ctr, "S002", messages.hall_text("staff.S002", ""))) == \
        ["1号窗口 工号 S002", "Counter 1 - staff no. S002"]
    assert screens.both("staff.none", ["zh"], (ctr,)) == ["1号窗口 未签到"]


def test_hall_texts_carry_optional_staff_names():
    cfg = {"languages": ZH_EN, "services": [], "counters": [], "rating": {"reasons": []},
           "staff": {"S001": {"zh": "王小明", "en": "Wang Xiaoming"}, "S002": "李四"}}
    rows = texts.lines(cfg)
    assert ("staff.S001", "王小明", "Wang Xiaoming") in rows and ("staff.S002", "李四", "李四") in rows
    del cfg["staff"]
    assert not [r for r in texts.lines(cfg) if r[0].startswith("staff.")]
