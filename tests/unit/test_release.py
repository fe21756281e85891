"""firmware.release: code loaded on demand is forgotten for the GC, but never a module that
another loaded module still holds (both interpreters; CPython keeps everything)."""
import sys

from firmware import release

_MP = sys.implementation.name == "micropython"


def test_a_module_another_holds_stays_until_both_go():
    from firmware import commands     # imports firmware.text at its top
    assert "firmware.text" in sys.modules
    release("text")                   # commands still holds it: a second copy would follow
    assert "firmware.text" in sys.modules
    commands = None
    release("commands", "text")       # released together: both go
    gone = "firmware.commands" not in sys.modules and "firmware.text" not in sys.modules
    assert gone == _MP


def test_releasing_what_is_not_loaded_is_harmless():
    release("no_such_module", "text")
    assert "firmware.no_such_module" not in sys.modules
