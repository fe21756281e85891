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


def test_a_module_whose_import_failed_is_given_back_to_the_gc():
    """MicroPython leaves a failed import's module in the freed slot of sys.modules' table,
    where the GC still sees it: the ticket layout short of memory pinned ~7 KiB per try."""
    import gc
    from firmware import forget_failed_imports
    gc.collect()
    before = gc.mem_free() if _MP else 0
    try:
        import import_fails_half_way    # noqa: F401 (allocates 16 KiB, then raises)
    except ValueError:
        pass
    assert "import_fails_half_way" not in sys.modules
    forget_failed_imports()
    gc.collect()
    assert not [k for k in sys.modules if not isinstance(k, str)]
    if _MP:
        assert gc.mem_free() > before - 4096, (before, gc.mem_free())
