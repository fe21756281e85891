"""One counter's rating pad (服务评价器): one rating per finished service (一事一评).

finish opens a window bound to the ticket and staff; exactly one score press is taken.
Scores 1-2 open a short reason step in which the same five buttons choose a reason
(rate5 = first reason ... rate1 = fifth). A reason press is taken only REASON_GUARD_MS
after the score press, so a citizen mashing one button does not pick a reason by accident.
Every other press is ignored and counted (reported in heartbeats, never as a rating).
Pure logic: the caller passes monotonic milliseconds and wall-clock seconds.
"""
# The CPython fallbacks are no defs: even unused, their code would take RAM on the device.
try:
    from micropython import const
except ImportError:
    const = int      # the constants here are ints, and int(x) is x

try:
    from time import ticks_add as _add, ticks_diff as _diff
except ImportError:  # CPython: plain integers never wrap
    from operator import add as _add, sub as _diff

IDLE = const(0)
SCORE = const(1)
REASON = const(2)
REASON_GUARD_MS = const(600)


class RatingPad:
    def __init__(self, counter, window_s, reason_window_s, codes):
        self.counter = counter
        self.window_ms = window_s * 1000
        self.reason_ms = reason_window_s * 1000
        self.codes = codes     # reason codes in button order (rate5 = the first)
        self.stage = IDLE
        self.ticket = None     # the service being rated: copied, the hall reuses its slots
        self.service = None
        self.staff = None
        self.opened_ms = 0
        self.deadline_ms = 0
        self.score = 0
        self.score_ms = 0
        self.pressed_at = 0
        self.ignored = 0

    def open(self, window, now_ms, now_ts):
        """Invite a rating for window = [ticket, service, staff, opened_ts] (after a restart the
        window keeps its original opening time, so it never lasts longer than configured)."""
        self.ticket = window[0]
        self.service = window[1]
        self.staff = window[2]
        # Tick arithmetic wraps (ticks_add/ticks_diff); a window older than its length is
        # simply over, which also keeps the offset within what ticks_add accepts.
        elapsed = min(max(0, now_ts - window[3]) * 1000, self.window_ms)
        self.opened_ms = _add(now_ms, -elapsed)
        self.deadline_ms = _add(self.opened_ms, self.window_ms)
        self.stage = SCORE
        self.score = 0

    def close(self):
        self.stage = IDLE
        self.ticket = None

    def fields(self):
        """What every rating event of this window says about the service."""
        return {"ticket": self.ticket, "service": self.service, "counter": self.counter, "staff": self.staff}

    def _data(self, reason, now_ms):
        d = self.fields()
        d["score"] = self.score
        d["reason"] = reason
        d["followup"] = self.score <= 2
        d["ms"] = max(0, _diff(self.score_ms, self.opened_ms))
        return d

    def press(self, score, now_ms):
        """Returns ('submit', data), ('reason', None) or None when the press is ignored."""
        if self.stage == SCORE and _diff(self.deadline_ms, now_ms) > 0:
            self.score = score
            self.score_ms = now_ms
            if score <= 2:
                self.stage = REASON
                self.deadline_ms = _add(now_ms, self.reason_ms)
                return ("reason", None)
            return ("submit", self._data(None, now_ms))
        if self.stage == REASON and _diff(now_ms, self.score_ms) >= REASON_GUARD_MS \
                and _diff(self.deadline_ms, now_ms) > 0:
            i = 5 - score
            code = self.codes[i] if i < len(self.codes) else "other"
            return ("submit", self._data(code, now_ms))
        self.ignored += 1
        return None

    def tick(self, now_ms):
        """('expired', data) when the window ran out unrated, ('submit', data) when the reason
        step ran out (the score stands, reason 'none'), else None."""
        if self.stage == IDLE or _diff(self.deadline_ms, now_ms) > 0:
            return None
        if self.stage == REASON:
            return ("submit", self._data("none", now_ms))
        return ("expired", self.fields())

    def press_ms(self):
        """Milliseconds from invitation to the score press (kept on flash during the reason step)."""
        return max(0, _diff(self.score_ms, self.opened_ms))

    def restore_reason(self, score, press_ms, now_ms):
        """After a power cut during the reason step: the score press is kept, with its
        original time from invitation; the reason step is over (reason "none")."""
        self.score = score
        self.score_ms = _add(self.opened_ms, press_ms)
        self.stage = REASON
        self.deadline_ms = now_ms
