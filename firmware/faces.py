"""The lines each role's home screen adds under its message: who is on duty at a window, the
five rating choices, the kiosk's waiting count per service, the call screen's earlier calls.

Loaded for one screen and released (firmware/screens.py `extra`): a screen is composed when
it changes, and these words stay on flash (messages.txt, the hall's texts.txt) - held, or
with their code resident, they cost a counter or the kiosk heap it needs on a busy day.
Each returns a list of lines; one line a language where a line would not fit both.
"""
from firmware import messages


def texts(key):
    """{suffix: (first, second language)} of every hall text under key: one pass over
    texts.txt, however many services or counters there are."""
    out = {}
    want = key.encode()
    try:
        with open(messages.TEXTS, "rb") as f:
            for raw in f:
                if raw.startswith(want):
                    p = raw.decode().rstrip("\r\n").split("\t")
                    out[p[0][len(key):]] = (p[1], p[2] if len(p) > 2 else p[1])
    except OSError:
        pass
    return out


def text(a, b, langs):
    """"a b" in two languages, "a" in one or when the hall gave no second word."""
    return a if len(langs) < 2 or a == b else a + " " + b


def duty(langs, cid, staff):
    """1号窗口 工号 S001 王小明 / Counter 1 staff no. S001 Wang Xiaoming (a name where the
    hall's texts give one); 1号窗口 未签到 / Counter 1 - nobody signed in."""
    ctr = messages.hall_text("ctr." + cid, cid)
    fmt = messages.text("duty" if staff else "duty.none") or ("%s %s", "%s %s")
    name = messages.hall_text("staff." + staff, "") if staff else None
    out = []
    for i in range(min(2, len(langs))):
        line = fmt[i] % ((ctr[i], staff) if staff else (ctr[i],))
        out.append(line + " " + name[i] if name and name[i] else line)
    return out


def choices(langs):
    """The five scores, a line each with the button that gives it: 5 非常满意 Very satisfied."""
    words = messages.text("choices")
    if words is None:
        return []
    first = words[0].split("|")
    second = words[1].split("|")
    return [text(first[i], second[i] if i < len(second) else "", langs)
            for i in range(len(first))]


def waiting(langs, hall):
    """各业务等候人数 Waiting now, then a line a service: 综合业务 General 3."""
    out = [text(*(messages.text("waiting") or ("", "")), langs)]
    names = texts("svc.")
    for s in hall.services:
        n = names.get(s.code) or (s.code, s.code)
        out.append("%s %s" % (text(n[0], n[1], langs), hall.waiting_count(s)))
    return out


def calls(langs, calls):
    """最近叫号 Recent calls, then a line a call before the newest: A001 1号窗口 Counter 1."""
    out = [text(*(messages.text("calls") or ("", "")), langs)]
    names = texts("ctr.")
    for c in calls:
        n = names.get(c[1]) or (c[1], c[1])
        out.append("%s %s" % (c[0], text(n[0], n[1], langs)))
    return out
