"""firmware.keyentry: the counter keypad's key map (CPython and MicroPython)."""
from _util import raises
from firmware.keyentry import REASONS, KeyEntry


def _type(ke, keys, now=1000, step=300):
    """Type keys (spaces ignored); every key but the last must answer None."""
    keys = keys.replace(" ", "")
    for ch in keys[:-1]:
        r = ke.key(ch, now)
        assert r is None, (ch, r)
        now += step
    return ke.key(keys[-1], now)


def test_single_keys_are_the_five_staff_keys():
    ke = KeyEntry(("A", "B"))
    assert ke.key("A", 0) == ("op", "next", {})
    assert ke.key("B", 0) == ("op", "recall", {})
    assert ke.key("C", 0) == ("op", "skip", {})
    assert ke.key("D", 0) == ("op", "finish", {})
    assert ke.key("#", 0) == ("op", "pause", {})
    assert ke.key("5", 0) == ("error", "key")     # a digit needs * first
    assert ke.prompt() == ""


def test_functions_give_staff_key_actions_and_args():
    ke = KeyEntry(("B", "A", "C"), staff_prefix="S")
    assert _type(ke, "*1 2 #") == ("op", "transfer", {"to_service": "A"})
    assert _type(ke, "*1 C #") == ("op", "transfer", {"to_service": "C"})
    assert _type(ke, "*2 12 #") == ("op", "transfer", {"to_counter": "12"})
    assert _type(ke, "*3 7 #") == ("op", "call", {"ticket": "B007"})     # the first service
    assert _type(ke, "*3 A 123 #") == ("op", "call", {"ticket": "A123"})
    assert _type(ke, "*4 1005 #") == ("op", "requeue", {"ticket": "B1005"})
    assert _type(ke, "*5 #") == ("op", "park", {})
    assert _type(ke, "*6 C 042 #") == ("op", "unpark", {"ticket": "C042"})
    assert _type(ke, "*7 2 #") == ("op", "pause", {"reason": "meeting"})
    assert _type(ke, "*7 0 #") == ("op", "pause", {"reason": REASONS[0]})
    assert _type(ke, "*8 001 #") == ("op", "signin", {"staff": "S001"})
    assert _type(ke, "*9 #") == ("op", "signout", {})
    assert _type(ke, "*0 #") == ("op", "close", {})
    assert _type(ke, "*A #") == ("op", "walkin", {"service": "B"})
    assert _type(ke, "*A 3 #") == ("op", "walkin", {"service": "C"})
    assert _type(ke, "*A A #") == ("op", "walkin", {"service": "A"})
    assert ke.prompt() == ""


def test_letters_pick_by_prefix_then_by_position():
    ke = KeyEntry(("soc", "med", "tax"), prefixes=("S", "M", "D"))
    assert _type(ke, "*3 D 5 #") == ("op", "call", {"ticket": "D005"})   # prefix D
    assert _type(ke, "*3 B 5 #") == ("op", "call", {"ticket": "M005"})   # 2nd service
    assert _type(ke, "*1 D #") == ("op", "transfer", {"to_service": "tax"})
    assert _type(ke, "*3 C 5 #") == ("op", "call", {"ticket": "D005"})   # 3rd service
    assert _type(ke, "*1 A #") == ("op", "transfer", {"to_service": "soc"})
    two = KeyEntry(("A", "B"))
    assert _type(two, "*3 C") == ("error", "service")                  # no 3rd service
    assert _type(two, "*1 3") == ("error", "service")
    assert _type(two, "*A 0") == ("error", "service")


def test_prompt_shows_what_is_typed():
    ke = KeyEntry(("A", "B"))
    ke.key("*", 0)
    assert ke.prompt() == "*_"
    ke.key("2", 0)
    assert ke.prompt() == "*2 转窗口 _"
    ke.key("3", 0)
    assert ke.prompt() == "*2 转窗口 3_"
    ke.key("#", 0)
    assert ke.prompt() == ""
    _type(ke, "*3 B 12")
    assert ke.prompt() == "*3 特呼 B12_"
    ke.key("*", 0)
    _type(ke, "*3")
    assert ke.prompt() == "*3 特呼 A_"            # the service it will be
    ke.key("*", 0)
    _type(ke, "*5")
    assert ke.prompt() == "*5 挂起 #"
    ke.key("*", 0)
    _type(ke, "*1 B")
    assert ke.prompt() == "*1 转业务 B_"


def test_star_cancels_and_timeout_cancels():
    ke = KeyEntry(("A",), timeout_ms=10000)
    assert _type(ke, "**") is None and ke.prompt() == ""
    assert _type(ke, "*3 12 *") is None and ke.prompt() == ""
    assert ke.key("#", 0) == ("op", "pause", {})        # really idle again
    _type(ke, "*3 12", now=1000)                        # last key at 1900
    assert ke.expire(11000) is False
    assert ke.prompt() == "*3 特呼 A12_"
    assert ke.expire(11900) is True                      # 10 s after the last key
    assert ke.prompt() == ""
    _type(ke, "*3 12", now=20000)
    # a late # only says so: it must not be taken as the pause key
    assert ke.key("#", 30900) == ("error", "timeout")
    assert ke.prompt() == ""
    assert ke.key("#", 31000) == ("op", "pause", {})


def test_bad_entries_are_errors_and_end_the_entry():
    ke = KeyEntry(("A", "B"))
    assert _type(ke, "*B") == ("error", "func")
    assert _type(ke, "*#") == ("error", "func")
    assert _type(ke, "*3 #") == ("error", "empty")
    assert _type(ke, "*3 000 #") == ("error", "number")
    assert _type(ke, "*3 12 A") == ("error", "key")      # the service goes first
    assert _type(ke, "*3 A B") == ("error", "key")
    assert _type(ke, "*2 A") == ("error", "key")
    assert _type(ke, "*5 1") == ("error", "key")
    assert _type(ke, "*1 #") == ("error", "empty")
    assert _type(ke, "*1 1 2") == ("error", "key")
    assert _type(ke, "*7 #") == ("error", "empty")
    assert _type(ke, "*7 12") == ("error", "long")
    assert _type(ke, "*8 #") == ("error", "empty")
    assert ke.prompt() == ""
    assert ke.key("", 0) == ("error", "key")
    assert ke.key("x", 0) == ("error", "key")
    raises(ValueError, KeyEntry, ())


def test_digit_flood_is_bounded():
    ke = KeyEntry(("A",))
    assert _type(ke, "*3 1234 5") == ("error", "long")
    assert _type(ke, "*8 12345678 9") == ("error", "long")
    assert _type(ke, "*2 12345678 #") == ("op", "transfer", {"to_counter": "12345678"})
    _type(ke, "*8 1")
    for i in range(1000):                      # one error, then single-key errors, no growth
        r = ke.key("7", i)
        assert r is None or r == ("error", "long") or r == ("error", "key")
    assert len(ke._buf) == 8 and ke.prompt() == ""
