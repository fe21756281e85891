"""Facts about every event type, in one place (the README's events table is the contract).

facts(type) -> (outbox priority, changes the hall state)
  priority 0  dropped first when the outbox overflows: device.heartbeat, printer.status
  priority 2  never dropped (the citizen's record): ticket.issued, ticket.called,
              service.finished, service.ended, rating.submitted, rating.expired
  priority 1  everything else
  state       ticket.*, service.*, rating.*, counter.*, staff.*, day.reset, clock.set change the
              hall (Hall.apply) and are replayed at boot; ticket.refused, device.*, printer.*,
              command.*, config.*, outbox.*, storage.* only report.
A rule, not a table: each type string held in RAM costs ~50 bytes on a 96 KiB heap.
"""

_KEEP = ("ticket.issued", "ticket.called", "service.finished", "service.ended",
         "rating.submitted", "rating.expired")
_STATEFUL = ("ticket", "service", "rating", "counter", "staff", "day", "clock")


def facts(etype):
    if etype in _KEEP:
        return 2, True
    if etype == "device.heartbeat" or etype == "printer.status":
        return 0, False
    return 1, etype != "ticket.refused" and etype[:etype.find(".")] in _STATEFUL
