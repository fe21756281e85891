"""The firmware's directory on the ESP32 flash filesystem (LittleFS).

Example:
    from hal.esp32.storage import FlashStorage
    st = FlashStorage()          # creates /data if missing
    print(st.root, st.free_bytes())
"""
import os

from hal.storage import Storage


class FlashStorage(Storage):
    def __init__(self, root="/data"):
        self.root = root
        try:
            os.mkdir(root)
        except OSError:      # already there (EEXIST); anything worse shows on first write
            pass

    def free_bytes(self):
        st = os.statvfs(self.root)
        return st[0] * st[3]     # block size * free blocks
