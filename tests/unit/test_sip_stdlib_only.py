"""DESIGN §2/§3: routr_ray/sip is sans-I/O and imports only the standard library (and itself)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SIP = Path(__file__).resolve().parents[2] / "routr_ray" / "sip"
FORBIDDEN = {"asyncio", "socket", "selectors", "threading", "ssl", "subprocess"}


def _imports(path: Path) -> list[tuple[str, int]]:
    """(top-level module, relative level) for every import in the file."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.extend((alias.name.split(".")[0], 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append(((node.module or "").split(".")[0], node.level))
    return out


@pytest.mark.parametrize("path", sorted(SIP.glob("*.py")), ids=lambda p: p.name)
def test_only_stdlib_and_relative_imports(path: Path) -> None:
    for module, level in _imports(path):
        if level > 0:
            continue  # relative: inside routr_ray.sip
        assert module == "__future__" or module in sys.stdlib_module_names, f"{path.name} imports {module}"
        assert module not in FORBIDDEN, f"{path.name} imports {module}: the SIP core is sans-I/O"


def test_the_check_sees_every_module() -> None:
    names = {p.name for p in SIP.glob("*.py")}
    assert {"__init__.py", "parser.py", "message.py", "headers.py", "uri.py", "framing.py"} <= names
    assert ("re", 0) in _imports(SIP / "uri.py")  # the walker does find imports
