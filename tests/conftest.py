from __future__ import annotations

import sys
from pathlib import Path

# Make `tests.support` importable from every test directory.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The acceptance harness (one `routr-ray run` per session, SIPp, sipsak), shared by tests/acceptance and tests/attack.
pytest_plugins = ["tests.support.acceptance"]
