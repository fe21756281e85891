"""What the display shows: messages, the home screen between them, the offline line.

Every role shows through show(); home() is the screen that stays between messages - a hall
role's own (firmware/role_*.py `home`), else the `all` terminal's: its first counter's state,
the rating prompt while a window is open, the last call, the welcome. The words come from
messages.txt and the hall's texts.txt on flash (firmware/messages.py).
"""
from time import ticks_add

from firmware import messages

_SCORE = const(1)      # RatingPad stages (firmware/rating.py)
_REASON = const(2)


def call_lines(langs, ticket, cid):
    """请 A001 号到 1号窗口 办理 / A001 please go to Counter 1: one line per language."""
    cname, second = messages.hall_text("ctr." + cid, cid)
    lines = messages.lines("call", langs, ticket, cname)
    if len(lines) > 1:
        lines[1] = messages.text("call")[1] % (ticket, second)
    return lines


def extra(name, *args):
    """Lines firmware/faces.py composes (the module loaded for them, then released); none
    when short of memory: the screen's own words still show."""
    from firmware import release
    try:
        from firmware import faces
        return getattr(faces, name)(*args)
    except MemoryError:
        return []
    finally:
        release("faces")


def show(app, lines, figure, hold_s):
    """Show a message; with hold_s it gives way to the home screen after that time. The home
    screen (hold_s 0) says so while the broker cannot be reached - citizens are still served
    and nothing is lost ("网络断开 数据已保存 / Offline - data kept") - or while a counter's kiosk
    is away ("叫号暂停 请稍候 / Calling paused - please wait")."""
    app.screen_until = ticks_add(app.hal.clock.ticks_ms(), hold_s * 1000) if hold_s else 0
    lines.insert(0, figure)
    if not hold_s and app.offline:
        lines.extend(messages.lines("net.down", app.langs))
    elif not hold_s and app.role is not None and app.role.away():
        lines.extend(messages.lines("link.down", app.langs))
    app.hal.display.show(lines)


def net_watch(app):
    """The `net` lamp and the home screen follow the broker connection (a failure is known
    only once an attempt failed: last_error says why, in status and the heartbeat)."""
    p = app.publisher
    p.check_clock(app.now())
    offline = not p.connected() and p.last_error() is not None
    if offline != app.offline:
        app.offline = offline
        app.hal.indicator.set("net", not offline)
        if not app.screen_until:
            home(app)


def home(app):
    """The screen between messages (see the module's docstring)."""
    if app.role is not None and app.role.home():
        return
    langs = app.langs
    c = app.hall.counter(app.home)
    pad = app.pads[app.home]
    if c.state == "paused":
        show(app, messages.lines("paused", langs, c.reason), "P", 0)
    elif c.state == "closed":
        show(app, messages.lines("closed", langs), "----", 0)
    elif pad.stage == _SCORE:
        # the five choices, and whose service is rated (on `all` only here: between ratings
        # it keeps the heap a flood of commands needs - README "What each role shows")
        show(app, messages.lines("rate", langs, pad.ticket) + extra("choices", langs)
             + extra("duty", langs, app.home, pad.staff), pad.ticket, 0)
    elif pad.stage == _REASON:
        lines = messages.lines("reason", langs)
        # each reason is labelled with the button that picks it (rate5 = the first reason)
        lines.append(" ".join("[%d]%s" % (5 - i, messages.hall_text("reason.%d" % i, code)[0])
                              for i, code in enumerate(app.cfg["rating"]["codes"])))
        show(app, lines, pad.ticket, 0)
    elif app.call:
        show(app, list(app.call[0]), app.call[1], 0)
    else:
        show(app, messages.lines("welcome", langs), "", 0)
