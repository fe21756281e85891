"""Call-number display."""


class Display:
    """A pixel display that can show something moving (a line wider than the panel scrolls)
    also has animate(n=1): move it on by n pixels, True while something moves. It keeps
    itself moving (hal/esp32/scroll.py): the firmware only calls show()."""

    def show(self, lines):
        """Show lines, a list of text strings.

        lines[0] is the main figure ("A001 -> 3", or "P" while paused); the rest
        are the words, one line a language, then a role's extra lines (who is on duty,
        the rating choices, waiting counts, earlier calls). A driver shows what its
        hardware can: a 7-segment display only lines[0], a one-row LED sign lines[1].
        """
        raise NotImplementedError
