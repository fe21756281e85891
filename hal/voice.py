"""Voice announcer (text to speech)."""


class Voice:
    def say(self, text):
        """Start announcing text (Chinese and/or ASCII); return at once.

        A new announcement may cut the current one short; check busy() first
        to let it finish.
        """
        raise NotImplementedError

    def busy(self):
        """True while an announcement is still playing."""
        raise NotImplementedError
