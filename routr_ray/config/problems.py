"""Collecting errors and warnings while checking config documents.

Checks never stop at the first problem: each one records what it found at a `Place` (a file and a JSON
pointer inside it) and carries on, so a user sees every mistake in one run. Errors make a config
invalid; warnings (unknown fields, empty files) are logged and otherwise ignored, as Routr ignores them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from routr_ray.config.errors import ConfigError, join_pointer

log = logging.getLogger("routr_ray.config")


@dataclass
class Problems:
    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[ConfigError] = field(default_factory=list)

    def log_warnings(self) -> None:
        for warning in self.warnings:
            log.warning("%s", warning)


@dataclass(frozen=True)
class Place:
    """A position in a config file that problems can be reported against."""

    problems: Problems
    file: str
    pointer: str = ""

    def child(self, *parts: str | int) -> Place:
        return Place(self.problems, self.file, join_pointer(self.pointer, *parts))

    def error(self, reason: str) -> None:
        self.problems.errors.append(ConfigError(self.file, self.pointer, reason))

    def warn(self, reason: str) -> None:
        self.problems.warnings.append(ConfigError(self.file, self.pointer, reason))

    def __str__(self) -> str:
        return f"{self.file} at {self.pointer or '/'}"
