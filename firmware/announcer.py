"""The call screen's voice queue: which phrase the voice module says next.

A call is stored as the tuple (ticket, counter_texts, recall) in a ring of `limit` slots
allocated once; counter_texts, e.g. (("zh", "3号窗口"), ("en", "Counter 3")), is kept,
not copied. A call is said as one phrase per language, in the order given, back to back:
    zh  请A001号到3号窗口                     recall: 再次呼叫，请A001号到3号窗口
    en  Number A001, please go to Counter 3   recall: Again: Number A001, ...
A language without a phrase here is skipped (the display still shows it). The caller asks
next_text() only when the voice is not busy, so announcements never overlap.

When calls come faster than speech:
- a call for a ticket that is already waiting (not started) updates that entry in place:
  a recall pressed before the call was even heard adds nothing to say, and a transfer
  speaks only the new counter. It keeps its place and is a recall only if both were;
- otherwise, when `limit` calls wait, the oldest waiting call is dropped (the screen still
  shows it) and counted in `dropped`: the newest calls are the ones citizens look up for;
- the call being said always finishes all its languages; a new call waits for it.
"""

_ZH = "请%s号到%s"
_EN = "Number %s, please go to %s"


def phrase(lang, ticket, counter, recall):
    """What the voice says for one language of a call, or None for a language it cannot say."""
    if lang == "zh":
        s = _ZH % (ticket, counter)
        return "再次呼叫，" + s if recall else s
    if lang == "en":
        s = _EN % (ticket, counter)
        return "Again: " + s if recall else s
    return None


class Announcer:
    def __init__(self, limit=6):
        if limit < 1:
            raise ValueError("limit")
        self.limit = limit
        self.dropped = 0
        self._ring = [None] * limit
        self._head = 0          # slot of the oldest waiting call
        self._n = 0             # calls waiting
        self._cur = None        # the call being said
        self._lang = 0          # index of its next language

    def __len__(self):
        """Calls not yet said in full (waiting, and the one being said)."""
        return self._n + (self._cur is not None)

    def add(self, ticket, counter_texts, recall=False):
        ring = self._ring
        for k in range(self._n):
            i = (self._head + k) % self.limit
            c = ring[i]
            if c[0] == ticket:
                ring[i] = (ticket, counter_texts, c[2] and recall)
                return
        if self._n == self.limit:
            ring[self._head] = None
            self._head = (self._head + 1) % self.limit
            self._n -= 1
            self.dropped += 1
        ring[(self._head + self._n) % self.limit] = (ticket, counter_texts, bool(recall))
        self._n += 1

    def next_text(self):
        """The next phrase to say (str), or None when nothing is left."""
        while True:
            cur = self._cur
            if cur is None:
                if not self._n:
                    return None
                cur = self._cur = self._ring[self._head]
                self._ring[self._head] = None
                self._head = (self._head + 1) % self.limit
                self._n -= 1
                self._lang = 0
            texts = cur[1]
            while self._lang < len(texts):
                lang, name = texts[self._lang]
                self._lang += 1
                s = phrase(lang, cur[0], name, cur[2])
                if s is not None:
                    return s
            self._cur = None

    def tickets(self):
        """The tickets of the calls not yet said in full (the one being said, then the waiting)."""
        out = [self._cur[0]] if self._cur is not None else []
        for k in range(self._n):
            out.append(self._ring[(self._head + k) % self.limit][0])
        return out

    def clear(self):
        """Forget every call (a new business day); the phrase being said is not cut."""
        for i in range(self.limit):
            self._ring[i] = None
        self._n = 0
        self._cur = None
