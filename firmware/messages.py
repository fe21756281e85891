"""Words a citizen or staff member sees, in Chinese and the second language.

The table lives in messages.txt on flash (key, Chinese, second language; tab separated),
so a hall can proof-read every sign in one file and the texts cost no RAM: each lookup
scans the file for one line.
"""

_PATH = __file__.rsplit("/", 1)[0] + "/messages.txt" if "/" in __file__ else "messages.txt"


def text(key):
    """(chinese, second language) for key, or None."""
    want = key + "\t"
    with open(_PATH, "rb") as f:
        for raw in f:
            if raw.startswith(want.encode()):
                parts = raw.decode().rstrip("\r\n").split("\t")
                return (parts[1], parts[2] if len(parts) > 2 else parts[1])
    return None


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
