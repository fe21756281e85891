"""Indicator lamps and buzzer."""

WHAT = ("rate", "thanks", "error", "paper", "net", "link")


class Indicator:
    def set(self, what, on):
        """Light (on=True) or darken one lamp.

        what: "rate" (rating pad lit, waiting for a score), "thanks", "error",
        "paper" (paper low/out), "net" (network up), "link" (a counter:
        the kiosk answers). A lamp the board lacks is
        silently ignored.
        """
        raise NotImplementedError

    def beep(self, ms=80):
        """Sound the buzzer for about ms milliseconds without blocking."""
        raise NotImplementedError
