"""Where the firmware keeps its files (config, queue state, outbox)."""


class Storage:
    root = None
    """Directory path (str) owned by the firmware; it exists."""

    def free_bytes(self):
        """Bytes still free on the filesystem holding root."""
        raise NotImplementedError
