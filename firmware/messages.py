"""Words a citizen or staff member sees, in Chinese and the second language.

The table lives in messages.txt on flash (key, Chinese, second language; tab separated),
so a hall can proof-read every sign in one file and the texts cost no RAM: each lookup
scans the file for one line.
"""

_PATH = __file__[:__file__.rfind("/") + 1] + "messages.txt"   # next to this module


TEXTS = "texts.txt"   # the hall's own words (firmware/texts.py); the app sets the path at boot


def text(key, path=_PATH):
    """(chinese, second language) for key, or None; path: another table of the same form."""
    want = (key + "\t").encode()
    try:
        with open(path, "rb") as f:
            for raw in f:
                if raw.startswith(want):
                    parts = raw.decode().rstrip("\r\n").split("\t")
                    return (parts[1], parts[2] if len(parts) > 2 else parts[1])
    except OSError:
        pass
    return None


def hall_text(key, default=None):
    """(first, second language) of the hall's own words (hall, notice, svc.A, ctr.1, reason.0)."""
    return text(key, TEXTS) or (None if default is None else (default, default))


def lines(key, languages, *args):
    """The message as one line per configured language (at most two)."""
    pair = text(key) or (key, key)
    out = []
    for i in range(min(2, len(languages))):
        line = pair[i]
        if args:
            try:
                line = line % args
            except TypeError:
                pass
        out.append(line)
    return out


def refusal(reason, languages, detail=""):
    """Bilingual words for a refusal code (ticket.refused, a staff key, a command)."""
    pair = text("refused." + reason)
    if pair is None:
        return [reason]
    return lines("refused." + reason, languages, detail) if "%s" in pair[0] else lines("refused." + reason, languages)
