from __future__ import annotations

import subprocess
import sys

from routr_ray import __version__


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "routr_ray", *args], capture_output=True, text=True, timeout=60)


def test_version_is_printed() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"routr-ray {__version__}"


def test_no_command_prints_help_and_fails() -> None:
    result = _run()
    assert result.returncode == 2
    assert "validate-config" in result.stdout
