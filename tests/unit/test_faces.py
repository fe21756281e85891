"""firmware/faces: the lines each role's home screen adds - who is on duty, the five rating
choices, waiting counts, earlier calls - from messages.txt and the hall's texts.txt, and the
staff names that feed them (both interpreters)."""
import json

from _util import rmtree, tmpdir
from firmware import config, faces, messages, texts

ZH_EN = ["zh", "en"]


def _with_texts(body, fn):
    d = tmpdir("faces")
    path = messages.TEXTS
    try:
        with open(d + "/texts.txt", "w") as f:
            f.write(body)
        messages.TEXTS = d + "/texts.txt"
        return fn()
    finally:
        messages.TEXTS = path
        rmtree(d)


HALL = ("ctr.1\t1号窗口\tCounter 1\nctr.2\t2号窗口\tCounter 2\nsvc.A\t综合业务\tGeneral\n"
        "svc.B\t社保卡\tSocial security card\nstaff.S001\t王小明\tWang Xiaoming\n")


def test_who_is_on_duty_by_number_with_the_name_the_hall_gave():
    def check():
        assert faces.duty(ZH_EN, "1", "S001") == ["1号窗口 工号 S001 王小明",
                                                  "Counter 1 - staff no. S001 Wang Xiaoming"]
        assert faces.duty(ZH_EN, "2", "S777") == ["2号窗口 工号 S777", "Counter 2 - staff no. S777"]
        assert faces.duty(["zh"], "1", None) == ["1号窗口 未签到"]
        assert faces.duty(ZH_EN, "9", None) == ["9 未签到", "9 - nobody signed in"]   # no name: its id
    _with_texts(HALL, check)


def test_the_five_choices_each_with_its_button():
    assert faces.choices(ZH_EN) == ["5 非常满意 Very satisfied", "4 满意 Satisfied",
                                    "3 基本满意 Fairly satisfied", "2 不满意 Dissatisfied",
                                    "1 非常不满意 Very dissatisfied"]
    assert faces.choices(["zh"]) == ["5 非常满意", "4 满意", "3 基本满意", "2 不满意", "1 非常不满意"]


class _Svc:
    def __init__(self, code, n):
        self.code = code
        self.n = n


class _Hall:
    services = [_Svc("A", 3), _Svc("B", 0), _Svc("C", 12)]

    def waiting_count(self, s):
        return s.n


def test_the_kiosk_shows_each_service_with_its_waiting_count():
    def check():
        assert faces.waiting(ZH_EN, _Hall()) == ["各业务等候人数 Waiting now", "综合业务 General 3",
                                                 "社保卡 Social security card 0", "C 12"]
        assert faces.waiting(["zh"], _Hall())[1] == "综合业务 3"
    _with_texts(HALL, check)


def test_the_call_screen_lists_the_earlier_calls_with_counter_names():
    def check():
        calls = [["A002", "2", False], ["B001", "7", True]]
        assert faces.calls(ZH_EN, calls) == ["最近叫号 Recent calls", "A002 2号窗口 Counter 2", "B001 7"]
    _with_texts(HALL, check)


def test_a_hall_without_texts_still_gets_its_lines():
    def check():
        assert faces.duty(ZH_EN, "1", "S1") == ["1 工号 S1", "1 - staff no. S1"]
        assert faces.waiting(["zh"], _Hall())[1:] == ["A 3", "B 0", "C 12"]
    d = tmpdir("faces")
    path = messages.TEXTS
    messages.TEXTS = d + "/missing.txt"
    try:
        check()
    finally:
        messages.TEXTS = path
        rmtree(d)


def _example():
    with open("sim/config.example.json") as f:
        return json.load(f)


def test_the_hall_texts_carry_optional_staff_names():
    cfg = _example()
    cfg["staff"] = {"S001": {"zh": "王小明", "en": "Wang Xiaoming"}, "S002": {"zh": "李四"}}
    rows = texts.lines(cfg)
    assert ("staff.S001", "王小明", "Wang Xiaoming") in rows and ("staff.S002", "李四", "李四") in rows
    del cfg["staff"]
    assert not [r for r in texts.lines(cfg) if r[0].startswith("staff.")]


def test_the_validator_takes_staff_names_and_names_a_bad_one():
    cfg = _example()
    cfg["staff"] = {"S001": {"zh": "王小明", "en": "Wang Xiaoming"}, "S002": {"zh": "李华"}}
    assert config.validate(cfg) == []
    cfg["staff"] = {"S001": {"en": "Wang"}, "S 2\n": {"zh": "李华"}, "S003": "王"}
    paths = [p for p, _m in config.validate(cfg)]
    assert "staff.S001.zh" in paths and "staff.S 2\n" in paths and "staff.S003" in paths, paths
