"""DESIGN §2: dependencies point inward; only actors/ and the CLI import Ray."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "routr_ray"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _modules(subdir: str = "") -> list[Path]:
    return sorted(p for p in (PACKAGE / subdir).rglob("*.py") if "gen" not in p.relative_to(PACKAGE).parts)


def _may_import_ray(path: Path) -> bool:
    rel = path.relative_to(PACKAGE).as_posix()
    return rel.startswith("actors/") or rel in {"cli.py", "__main__.py"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_ray_only_in_actors_and_cli(path: Path) -> None:
    if _may_import_ray(path):
        return
    offenders = sorted(n for n in _imports(path) if n == "ray" or n.startswith("ray."))
    assert not offenders, f"{path.relative_to(PACKAGE)} imports {offenders}; Ray belongs in routr_ray/actors/"


INNER_LAYERS = ["edge", "dispatch", "processors", "location", "proto", "config", "media"]


@pytest.mark.parametrize("layer", INNER_LAYERS)
def test_inner_layers_do_not_import_actors_or_cli(layer: str) -> None:
    for path in _modules(layer):
        bad = {n for n in _imports(path) if n.startswith(("routr_ray.actors", "routr_ray.cli"))}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_no_eval_or_exec_in_the_product() -> None:
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec", "compile"}, (
                    f"{path.relative_to(PACKAGE)}:{node.lineno} calls {node.func.id}()"
                )
