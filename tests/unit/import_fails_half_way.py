"""A module whose import fails after it has allocated (tests/unit/test_release.py)."""
BIG = bytearray(16384)
raise ValueError("this module never finishes importing")
