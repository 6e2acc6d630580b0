"""What the loader reports: one `ConfigError` per problem, all of them at once.

An error names the file, the JSON pointer (RFC 6901) of the field inside that file and the reason, so
`str(error)` reads `config/edgeport.yaml: /spec/transport/2/port: expected an integer, got the string '5061'`.
The pointer of a whole document is the empty string; it prints as `/`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigError:
    file: str
    pointer: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.pointer or '/'}: {self.reason}"


class ConfigInvalid(Exception):
    """Raised by the `load_*` functions when a config has errors; carries every one of them."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors: tuple[ConfigError, ...] = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


def pointer_of(parts: Iterable[str | int]) -> str:
    """The JSON pointer (RFC 6901 §3) of a path: `~` is written `~0` and `/` is written `~1`."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def join_pointer(base: str, *parts: str | int) -> str:
    return base + pointer_of(parts)
