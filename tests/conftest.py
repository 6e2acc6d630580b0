from __future__ import annotations

import sys
from pathlib import Path

# Make `tests.support` importable from every test directory.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
