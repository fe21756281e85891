import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ["PATH"] = "/usr/sbin:" + os.path.join(ROOT, ".venv", "bin") + ":" + os.environ.get("PATH", "")
