"""The Prometheus alert rules (dashboards/alerts.yml) are valid (`promtool check rules`), fire on the series that
mean trouble and stay quiet on healthy ones (`promtool test rules` on tests/data/alerts/alerts_test.yml), and
only query series some component exports. promtool comes from Debian's `prometheus` package
(scripts/install-test-deps)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.test_observability_dashboard import known_series

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "dashboards" / "alerts.yml"
RULE_TESTS = REPO / "tests" / "data" / "alerts" / "alerts_test.yml"
RAY_OWN = {"ray_node_mem_used", "ray_node_mem_total"}  # Ray's node metrics, beside ours


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: apt-get install -y prometheus (scripts/install-test-deps)")
    return found


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_the_alerts_fire_when_they_should() -> None:
    result = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                            timeout=120, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_query_exported_series() -> None:
    series = known_series()
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"RoutrEdgePortDown", "RoutrServerErrorRatio", "RoutrAuthFailureSurge", "RoutrTrunkUnregistered",
            "RoutrTrunkTargetDown", "RoutrTrunkAllTargetsDown", "RoutrLocationShardDown", "RoutrProcessMemoryHigh", "RoutrProcessCpuSaturated"} <= names
    for rule in rules:
        for name in re.findall(r"\b(ray_[a-z_]+)", rule["expr"]):
            assert name in RAY_OWN or name.removeprefix("ray_") in series, f"{rule['alert']}: {name} is not exported"
