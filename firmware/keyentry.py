"""The counter keypad's key map (呼叫器): key chars in, staff operations out.

What staff learn (keys 0-9, A-D, *, #):
  A 叫号 next   B 重呼 recall   C 过号 skip   D 办结 finish   # 暂停/恢复 pause (toggles)
  * starts a function: * digit, what it asks for, then # to confirm; the display shows
  what is typed. * again cancels; so does a pause of 10 s (the next key then only says so).
  *1 s #       转业务  transfer the citizen being served to service s
  *2 n #       转窗口  transfer to counter n (its id, as on its sign)
  *3 [S] nnn # 特呼    call ticket nnn out of turn
  *4 [S] nnn # 重排    put skipped ticket nnn back in line (过号重排)
  *5 #         挂起    park the citizen being served
  *6 [S] nnn # 取回    take parked ticket nnn back
  *7 r #       暂停    pause with reason r: 0 休息 1 用餐 2 开会 3 外出 4 培训
                       5 故障 6 请示 7 交接 8 后台 9 其他
  *8 nnnn #    签到    sign in as staff number nnnn
  *9 #         签退    sign out
  *0 #         关窗    close the counter for the day
  *A [S] #     无号    serve a walk-in without a ticket (A = next, *A = next without ticket)
Services: S is a letter key: the service whose ticket prefix is that letter, else the
1st..4th service; left out, it is the first (the counter's own). *1 and *A also take a
digit 1-9: the n-th service. Ticket numbers are typed without leading zeros ("*3 7 #"
calls A007) and have at most 4 digits.

Services are numbered as given: pass the counter's own services first, then the hall's
others, so the first is the counter's main service and every service can be a transfer
target. Bounded: digits go into one preallocated 8-byte buffer; a longer entry is an error.
Pure logic: the caller passes monotonic milliseconds.
"""
try:
    from micropython import const
except ImportError:
    const = int

try:
    from time import ticks_diff as _diff
except ImportError:  # CPython: plain integers never wrap
    from operator import sub as _diff

_IDLE_KEYS = "ABCD#"
_IDLE_OPS = ("next", "recall", "skip", "finish", "pause")
_FN = "1234567890A"
_OPS = ("transfer", "transfer", "call", "requeue", "park", "unpark", "pause", "signin",
        "signout", "close", "walkin")
_NAMES = ("转业务", "转窗口", "特呼", "重排", "挂起", "取回", "暂停", "签到", "签退",
          "关窗", "无号")
# what each function takes after its digit
_SVC = const(1)      # one service key (letter or digit), required
_CTR = const(2)      # a counter id: 1-8 digits
_TKT = const(3)      # [service letter] 1-4 digits
_NONE = const(4)     # nothing
_CODE = const(5)     # one digit
_STAFF = const(6)    # 1-8 digits
_WALK = const(7)     # [service letter or digit]
_KIND = b"\x01\x02\x03\x03\x04\x03\x05\x06\x04\x04\x07"
_MAXLEN = b"\x00\x00\x08\x04\x00\x01\x08\x00"    # digits allowed, by kind
REASONS = ("break", "meal", "meeting", "errand", "training", "fault", "consult",
           "handover", "paperwork", "other")


class KeyEntry:
    def __init__(self, services=("A",), prefixes=None, staff_prefix="", reasons=REASONS,
                 timeout_ms=10000):
        """services: codes, numbered from 1; prefixes: their ticket prefixes (default the
        codes); staff_prefix goes before typed staff digits (e.g. "S": *8 001 # -> S001);
        reasons: the 10 words *7 0..9 stand for."""
        if not services:
            raise ValueError("no services")
        self.services = tuple(services)
        self.prefixes = tuple(prefixes) if prefixes else self.services
        self.staff_prefix = staff_prefix
        self.reasons = reasons
        self.timeout_ms = timeout_ms
        self._buf = bytearray(8)
        self._reset()
        self._last = 0

    def _reset(self):
        self._fn = -2        # -2 idle, -1 after "*", else index in _FN
        self._svc = -1       # chosen service index, -1 = none yet
        self._n = 0          # digits in _buf

    def expire(self, now_ms):
        """Drop an entry left unfinished for timeout_ms; True if one was dropped (the
        caller clears the prompt from the display)."""
        if self._fn != -2 and _diff(now_ms, self._last) >= self.timeout_ms:
            self._reset()
            return True
        return False

    def key(self, ch, now_ms):
        """One key: None while typing (or after a cancel), ("op", action, args) for
        App.staff_key, or ("error", code): key, func, service, empty, long, number, timeout.
        An error ends the entry."""
        if self.expire(now_ms):
            self._last = now_ms
            return ("error", "timeout")
        self._last = now_ms
        if len(ch) != 1:
            return self._error("key")
        fn = self._fn
        if fn == -2:
            i = _IDLE_KEYS.find(ch)
            if i >= 0:
                return ("op", _IDLE_OPS[i], {})
            if ch == "*":
                self._fn = -1
                return None
            return ("error", "key")
        if ch == "*":        # ** cancels, and so does * anywhere in an entry
            self._reset()
            return None
        if fn == -1:
            i = _FN.find(ch)
            if i < 0:
                return self._error("func")
            self._fn = i
            return None
        if ch == "#":
            return self._done()
        kind = _KIND[fn]
        if ch in ("A", "B", "C", "D"):
            if kind not in (_SVC, _TKT, _WALK) or self._svc >= 0 or self._n:
                return self._error("key")
            return self._pick(self._letter(ch))
        if not "0" <= ch <= "9":
            return self._error("key")
        if kind == _SVC or kind == _WALK:
            if self._svc >= 0:
                return self._error("key")
            return self._pick(ord(ch) - 49)
        if self._n >= _MAXLEN[kind]:
            return self._error("key" if kind == _NONE else "long")
        self._buf[self._n] = ord(ch)
        self._n += 1
        return None

    def _error(self, code):
        self._reset()
        return ("error", code)

    def _letter(self, ch):
        for i in range(len(self.prefixes)):
            if self.prefixes[i].upper() == ch:
                return i
        return "ABCD".find(ch)

    def _pick(self, i):
        if not 0 <= i < len(self.services):
            return self._error("service")
        self._svc = i
        return None

    def _digits(self):
        return bytes(self._buf[:self._n]).decode()

    def _done(self):
        fn = self._fn
        kind = _KIND[fn]
        svc = self._svc if self._svc >= 0 else 0
        if kind == _SVC:
            if self._svc < 0:
                return self._error("empty")
            args = {"to_service": self.services[svc]}
        elif kind == _WALK:
            args = {"service": self.services[svc]}
        elif kind == _NONE:
            args = {}
        elif not self._n:
            return self._error("empty")
        elif kind == _TKT:
            num = int(self._digits())
            if not num:
                return self._error("number")
            args = {"ticket": "%s%03d" % (self.prefixes[svc], num)}
        elif kind == _CODE:
            args = {"reason": self.reasons[self._buf[0] - 48]}
        elif kind == _CTR:
            args = {"to_counter": self._digits()}
        else:
            args = {"staff": self.staff_prefix + self._digits()}
        self._reset()
        return ("op", _OPS[fn], args)

    def prompt(self):
        """What is being typed, for the display: "" when idle, e.g. "*3 特呼 B12_"."""
        fn = self._fn
        if fn == -2:
            return ""
        if fn == -1:
            return "*_"
        kind = _KIND[fn]
        if kind == _NONE:
            typed = "#"
        elif kind == _SVC:
            typed = (self.services[self._svc] if self._svc >= 0 else "") + "_"
        elif kind == _WALK:
            typed = self.services[max(self._svc, 0)] + "_"
        elif kind == _TKT:
            typed = self.prefixes[max(self._svc, 0)] + self._digits() + "_"
        else:
            typed = self._digits() + "_"
        return "*%s %s %s" % (_FN[fn], _NAMES[fn], typed)
