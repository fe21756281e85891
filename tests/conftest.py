import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ["PATH"] = "/usr/sbin:" + os.path.join(ROOT, ".venv", "bin") + ":" + os.environ.get("PATH", "")
# Simulated devices draw no display picture in tests (no watcher process, no display.txt: less
# load on 2 cores, the device heap as it was); tests of the picture and the panel turn it on.
os.environ.setdefault("QTERM_FRAMES", "0")


# ---- more goes for a test refused for memory (role `all`'s thin margin at 96K) ------------
# The budget item of issue 13 is open: under two test workers, one press or command among
# hundreds can still be refused for memory - clearly, nothing half-applied (README "Resource
# use"). Such a failure, and only such, is run again (up to twice); every one is listed at the
# end of the run, so the limit stays in sight. A test refused three times fails.
_SHORT = ("'refused': 'memory'", "device out of memory", "'low_memory'", "refused: memory")
_TRIES = int(os.environ.get("QTERM_MEMORY_TRIES") or 3)   # up to two more (1: see the first failure)


def _short_of_memory(reports):
    for r in reports:
        if r.failed and r.when == "call":
            text = str(r.longrepr)
            return next((line for line in text.splitlines() if any(s in line for s in _SHORT)), None)
    return None


def pytest_runtest_protocol(item, nextitem):
    if not item.nodeid.startswith("tests/e2e/"):
        return None     # everything else: pytest's own protocol
    from _pytest.runner import runtestprotocol
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = runtestprotocol(item, nextitem=nextitem, log=False)
    whys = []
    for _ in range(_TRIES - 1):
        why = _short_of_memory(reports)
        if why is None:
            break
        whys.append(why.strip()[:200])
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
    for r in reports:
        if r.when == "call":
            for why in whys:
                r.sections.append(("refused for memory, run again", why))
                r.user_properties.append(("memory_rerun", why))
    for r in reports:
        item.ihook.pytest_runtest_logreport(report=r)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_terminal_summary(terminalreporter):
    rows = []
    for key in ("passed", "failed"):
        for r in terminalreporter.stats.get(key, []):
            for k, v in getattr(r, "user_properties", ()):
                if k == "memory_rerun" and r.when == "call":
                    rows.append("%s (%s): %s" % (r.nodeid, r.outcome, v))
    if rows:
        terminalreporter.section("run again after a refusal for memory (issue 13: role all at 96K)")
        for row in rows:
            terminalreporter.line(row)
