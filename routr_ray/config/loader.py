"""Reading config files and directories into checked, frozen config objects.

What a path means
-----------------
* A **file** holds one document (a mapping with `kind`) or a list of documents. Any kind may appear in
  any file; the `kind` field decides, never the file name.
* A **directory** means its own YAML/JSON/TOML files plus those of its `resources/` subdirectory (no
  deeper). So `config/` (edgeport.yaml, dispatcher.yaml, location.yaml, resources/) and
  `config/resources/` are both directories you can pass.
* Resource refs are resolved within one **unit**: each directory argument is a unit of its own, and all
  file arguments of one call together form one unit (so `validate-config config/resources/*.yaml` works).

Every problem is collected (file, JSON pointer, reason) before anything is returned or raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from routr_ray.config.api import ApiServerConfig, build_api_server
from routr_ray.config.connect_tokens import ConnectTokensConfig, build_connect_tokens
from routr_ray.config.dispatcher import DispatcherConfig, build_dispatcher
from routr_ray.config.documents import UNREADABLE, config_files_in, read_document
from routr_ray.config.edgeport import EdgePortConfig, build_edgeport
from routr_ray.config.errors import ConfigError, ConfigInvalid
from routr_ray.config.location import LocationConfig, build_location
from routr_ray.config.media import MediaRelayConfig, build_media_relay
from routr_ray.config.observability import ObservabilityConfig, build_observability
from routr_ray.config.problems import Place, Problems
from routr_ray.config.registry import RegistryConfig, build_registry
from routr_ray.config.resource_set import Resources, assemble
from routr_ray.config.resources import RESOURCE_BUILDERS, RESOURCE_CLASSES, Built, Unbuilt
from routr_ray.config.schema import SCHEMA_FILE_BY_KIND, check_against_schema, describe

# Routr accepts kind names in lower case too ("agent", "location").
_KIND_BY_LOWER_NAME = {kind.lower(): kind for kind in SCHEMA_FILE_BY_KIND}
_SINGLETON_KINDS = ("MessageDispatcher", "Location", "Registry", "APIServer", "Observability", "MediaRelay",
                   "ConnectTokens")
_T = TypeVar("_T")
# Routr kinds for parts routr-ray does not have (none left: Registry drives the trunk registrar, docs/trunks.md).
_ROUTR_KINDS_NOT_USED: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigSet:
    """Everything found in one unit (usually a config directory)."""

    edgeports: tuple[EdgePortConfig, ...] = ()
    dispatcher: DispatcherConfig | None = None
    location: LocationConfig | None = None
    resources: Resources = Resources()
    registry: RegistryConfig | None = None  # kind: Registry (outbound registration of sendRegister trunks)
    api: ApiServerConfig | None = None  # the provisioning API (routr_ray/api); None: not served
    observability: ObservabilityConfig | None = None
    media: MediaRelayConfig | None = None  # the rtpengine middleware's instances (docs/media.md)
    connect_tokens: ConnectTokensConfig | None = None  # X-Connect-Token web agents (docs/connect.md); None: off
    # the file each EdgePort ("EdgePort/<ref>") and the Location ("Location") came from (for deploy's messages)
    origins: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def file_of(self, what: str, default: str) -> str:
        """The file ``what`` ("EdgePort/<ref>" or "Location") was read from, else ``default``."""
        return next((file for key, file in self.origins if key == what), default)


@dataclass
class _Collected:
    edgeports: list[tuple[EdgePortConfig, Place]] = field(default_factory=list)
    dispatchers: list[tuple[DispatcherConfig, Place]] = field(default_factory=list)
    locations: list[tuple[LocationConfig, Place]] = field(default_factory=list)
    registries: list[tuple[RegistryConfig, Place]] = field(default_factory=list)
    apis: list[tuple[ApiServerConfig, Place]] = field(default_factory=list)
    observabilities: list[tuple[ObservabilityConfig, Place]] = field(default_factory=list)
    media: list[tuple[MediaRelayConfig, Place]] = field(default_factory=list)
    connect_tokens: list[tuple[ConnectTokensConfig, Place]] = field(default_factory=list)
    resources: list[Built | Unbuilt] = field(default_factory=list)


def validate_paths(paths: list[str]) -> list[ConfigError]:
    """Check config files and directories (see the module docstring for what a path means).

    Returns every error; an empty list means valid. Warnings (unknown fields, …) are logged on the
    `routr_ray.config` logger, not returned. Never opens certificate files or resolves host names."""
    problems = Problems()
    files: list[Path] = []
    units: list[list[Path]] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = config_files_in(path)
            if not found:
                Place(problems, text).error("no .yaml, .yml, .json or .toml files in this directory")
            units.append(found)
        elif path.is_file():
            if not files:
                units.append(files)  # all file arguments form one unit, checked where the first one stands
            files.append(path)
        else:
            Place(problems, text).error("no such file or directory")
    for unit in units:
        first_error = len(problems.errors)
        _check_unit(unit, problems)
        problems.errors[first_error:] = _in_reading_order(problems.errors[first_error:], unit)
    problems.log_warnings()
    return problems.errors


def _in_reading_order(errors: list[ConfigError], files: list[Path]) -> list[ConfigError]:
    """Sort by file (in the order read), then by position in the file (`/10` after `/9`)."""
    position = {str(path): index for index, path in enumerate(files)}

    def key(error: ConfigError) -> tuple[int, list[tuple[int, int | str]]]:
        parts = error.pointer.split("/")[1:]
        return position.get(error.file, -1), [(0, int(p)) if p.isdigit() else (1, p) for p in parts]

    return sorted(errors, key=key)


def load_config_dir(directory: str | Path) -> ConfigSet:
    """Load a config directory; raises ConfigInvalid with every error."""
    path = Path(directory)
    problems = Problems()
    if not path.is_dir():
        Place(problems, str(directory)).error("not a directory")
        raise ConfigInvalid(problems.errors)
    return _finish(problems, _check_unit(config_files_in(path), problems))


def load_edgeport(file: str | Path) -> EdgePortConfig:
    return _load_one(file, "EdgePort", lambda found: found.edgeports)


def load_dispatcher(file: str | Path) -> DispatcherConfig:
    return _load_one(file, "MessageDispatcher", lambda found: (found.dispatcher,) if found.dispatcher else ())


def load_location(file: str | Path) -> LocationConfig:
    return _load_one(file, "Location", lambda found: (found.location,) if found.location else ())


def load_resources(*paths: str | Path) -> Resources:
    """Load resource files and/or directories as one set; raises ConfigInvalid with every error."""
    problems = Problems()
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            files += config_files_in(path)
        elif path.is_file():
            files.append(path)
        else:
            Place(problems, str(text)).error("no such file or directory")
    return _finish(problems, _check_unit(files, problems)).resources


def _load_one(file: str | Path, kind: str, pick: Callable[[ConfigSet], Sequence[_T]]) -> _T:
    problems = Problems()
    path = Path(file)
    if not path.is_file():
        Place(problems, str(file)).error("no such file")
        raise ConfigInvalid(problems.errors)
    found = pick(_finish(problems, _check_unit([path], problems)))
    if len(found) != 1:
        raise ConfigInvalid(
            [ConfigError(str(file), "", f"expected exactly one {kind} document, found {len(found)}")]
        )
    return found[0]


def _finish(problems: Problems, config: ConfigSet) -> ConfigSet:
    problems.log_warnings()
    if problems.errors:
        raise ConfigInvalid(problems.errors)
    return config


def _check_unit(files: Iterable[Path], problems: Problems) -> ConfigSet:
    collected = _Collected()
    for path in files:
        place = Place(problems, str(path))
        data = read_document(path, place)
        if data is UNREADABLE:
            continue
        if data is None:
            place.warn("the file is empty")
        elif isinstance(data, list):
            for index, item in enumerate(data):
                _check_document(item, place.child(index), collected)
        else:
            _check_document(data, place, collected)
    singletons = (collected.dispatchers, collected.locations, collected.registries, collected.apis,
                  collected.observabilities, collected.media, collected.connect_tokens)
    for kind, entries in zip(_SINGLETON_KINDS, singletons, strict=True):
        for _, place in entries[1:]:
            first = entries[0][1]
            place.child("kind").error(f"a second {kind}: one is allowed, the first is in {first.file}")
    first_edgeport: dict[str, Place] = {}
    for config, place in collected.edgeports:
        first = first_edgeport.setdefault(config.ref, place)
        if first is not place:
            place.child("ref").error(f"duplicate EdgePort ref {config.ref!r}: already used in {first.file}")
    return ConfigSet(
        edgeports=tuple(config for config, _ in collected.edgeports),
        dispatcher=collected.dispatchers[0][0] if collected.dispatchers else None,
        location=collected.locations[0][0] if collected.locations else None,
        api=collected.apis[0][0] if collected.apis else None,
        resources=assemble(collected.resources),
        registry=collected.registries[0][0] if collected.registries else None,
        observability=collected.observabilities[0][0] if collected.observabilities else None,
        media=collected.media[0][0] if collected.media else None,
        connect_tokens=collected.connect_tokens[0][0] if collected.connect_tokens else None,
        origins=(*((f"EdgePort/{config.ref}", place.file) for config, place in collected.edgeports),
                 *(("Location", place.file) for _, place in collected.locations[:1])),
    )


def _check_document(document: Any, place: Place, collected: _Collected) -> None:
    if not isinstance(document, dict):
        place.error(
            f"expected a mapping with apiVersion, kind, ref, metadata and spec; got {describe(document)}"
        )
        return
    kind_value = document.get("kind")
    if kind_value is None:
        place.child("kind").error("required field is missing")
        return
    kind = _KIND_BY_LOWER_NAME.get(kind_value.lower()) if isinstance(kind_value, str) else None
    if kind_value in _ROUTR_KINDS_NOT_USED:
        place.child("kind").warn(f"Routr's {kind_value} is not part of routr-ray; this document is ignored")
        return
    if kind is None:
        place.child("kind").error(
            f"unknown kind {kind_value!r}; expected one of {', '.join(SCHEMA_FILE_BY_KIND)}"
        )
        return
    if not check_against_schema(kind, document, place):
        if kind in RESOURCE_CLASSES and isinstance(document.get("ref"), str):
            collected.resources.append(Unbuilt(RESOURCE_CLASSES[kind], document["ref"], place))
        return
    if kind == "EdgePort":
        collected.edgeports.append((build_edgeport(document, place), place))
    elif kind == "MessageDispatcher":
        collected.dispatchers.append((build_dispatcher(document, place), place))
    elif kind == "Location":
        collected.locations.append((build_location(document, place), place))
    elif kind == "Registry":
        collected.registries.append((build_registry(document, place), place))
    elif kind == "APIServer":
        collected.apis.append((build_api_server(document, place), place))
    elif kind == "Observability":
        collected.observabilities.append((build_observability(document, place), place))
    elif kind == "MediaRelay":
        collected.media.append((build_media_relay(document, place), place))
    elif kind == "ConnectTokens":
        collected.connect_tokens.append((build_connect_tokens(document, place), place))
    else:
        collected.resources.append(RESOURCE_BUILDERS[kind](document, place))
