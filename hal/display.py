"""Call-number display."""


class Display:
    def show(self, lines):
        """Show lines, a list of 1..4 text strings.

        lines[0] is the main figure ("A001 -> 3", or "P" while paused); the rest
        are secondary lines (service name, waiting count ...). A driver shows what
        its hardware can: a 7-segment display shows only lines[0].
        """
        raise NotImplementedError
