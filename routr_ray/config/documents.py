"""Reading config files (YAML, JSON or TOML, like Routr's `readConfigFile`) and listing directories.

Nothing here interprets the content: a file becomes plain Python data, or a recorded error.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from routr_ray.config.problems import Place

YAML_SUFFIXES = frozenset({".yaml", ".yml"})
JSON_SUFFIXES = frozenset({".json"})
TOML_SUFFIXES = frozenset({".toml"})
CONFIG_SUFFIXES = YAML_SUFFIXES | JSON_SUFFIXES | TOML_SUFFIXES
RESOURCES_SUBDIRECTORY = "resources"


class _Unreadable:
    """Marks a file whose content could not be read; the reason is already recorded."""


UNREADABLE = _Unreadable()


def config_files_in(directory: Path) -> list[Path]:
    """The config files of a directory: its own YAML/JSON/TOML files, then those of its `resources/`.

    Hidden files are skipped; neither level is searched any deeper, so unrelated YAML (cluster files,
    CI files) next to a config directory is never mistaken for config.
    """
    found = _own_config_files(directory)
    resources = directory / RESOURCES_SUBDIRECTORY
    if resources.is_dir():
        found += _own_config_files(resources)
    return found


def _own_config_files(directory: Path) -> list[Path]:
    return sorted(
        entry
        for entry in directory.iterdir()
        if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in CONFIG_SUFFIXES
    )


def read_document(path: Path, place: Place) -> Any:
    """Parse one file. Returns its data, or `UNREADABLE` after recording why at `place`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        place.error(f"cannot read the file: {exc}")
        return UNREADABLE
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        return _parse_json(text, place)
    if suffix in TOML_SUFFIXES:
        return _parse_toml(text, place)
    return _parse_yaml(text, place)  # YAML is the default, as in Routr


def _parse_json(text: str, place: Place) -> Any:
    def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                place.error(f"JSON syntax: the key {key!r} appears twice in one object")
            result[key] = value
        return result

    try:
        return json.loads(text, object_pairs_hook=reject_duplicates)
    except json.JSONDecodeError as exc:
        place.error(f"JSON syntax error at line {exc.lineno} column {exc.colno}: {exc.msg}")
        return UNREADABLE


def _parse_toml(text: str, place: Place) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        place.error(f"TOML syntax error: {exc}")
        return UNREADABLE


class _StrictSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error, not "last one wins"."""

    def __init__(self, stream: str, place: Place) -> None:
        super().__init__(stream)
        self.place = place

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                self.place.error(f"YAML: the key {key!r} appears twice in one mapping (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, place: Place) -> Any:
    loader = _StrictSafeLoader(text, place)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        place.error(f"YAML syntax error{where}: {problem}")
        return UNREADABLE
    finally:
        loader.dispose()
