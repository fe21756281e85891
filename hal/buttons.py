"""Buttons: ticket keys, the 5-key rating pad and the staff keypad.

Press names:
  "ticket:<service code>"            service button, short press
  "ticket:<code>:priority"           own priority button, or a service button
                                     held >= 1.5 s
  "rate1".."rate5"                   rate5 = 非常满意, rate1 = 非常不满意
  "next" "recall" "skip" "finish" "pause"
A keypad wired for another counter adds "@<counter id>", e.g. "next@2".
"""


class Buttons:
    async def next_press(self):
        """Wait for the next debounced press and return its name.

        One press = one event; holding a key does not repeat.
        """
        raise NotImplementedError

    def pending(self):
        """Number of presses queued and not yet returned by next_press()."""
        raise NotImplementedError

    def clear(self):
        """Drop queued presses (used while a ticket prints)."""
        raise NotImplementedError

    def handled(self, name, result):
        """The firmware finished with a press (result dict); a driver may light or beep on it."""
