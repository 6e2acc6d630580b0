"""Processor selection: which processor handles a MessageRequest (routr.md §1.2, §6; DESIGN §5).

Processors are tried in config order; the first whose ``methods`` contain the request's method and whose
``matchFunc`` is truthy wins. A response (``message.messageType == "responseType"``) goes back to the
processor named in ``metadata[PROCESSOR_METADATA_KEY]`` (the dispatcher stamps that key on what a processor
returns; the EdgePort keeps it with the transaction and sends it back with the responses), or by the same
rule when the key is absent or names no configured processor. The router keeps no per-call state.

A matchFunc that fails while evaluating (where JavaScript would throw, e.g. reading ``requestUri.user`` of
a response) counts as "no match" for that processor; the failure is logged, rate-limited.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from routr_ray.dispatch.matchfunc import MatchFunc, MatchFuncError, MatchFuncRuntimeError, compile_match_func
from routr_ray.observability.ratelimit import RateLimitedLog
from routr_ray.proto.gen import processor_pb2

log = logging.getLogger(__name__)

PROCESSOR_METADATA_KEY = "routr-ray.processor"
"""Metadata key naming the processor that handled a request, so its responses find their way back."""

DEFAULT_MATCH_FUNC = "req => true"
_METHOD_NAMES: dict[int, str] = {v.number: v.name for v in processor_pb2.Method.DESCRIPTOR.values}
_KNOWN_METHODS = frozenset(_METHOD_NAMES.values()) - {"UNKNOWN"}


class ProcessorLike(Protocol):
    """What the router needs of a processor entry (``routr_ray.config.dispatcher.ProcessorConfig`` fits)."""

    @property
    def ref(self) -> str: ...
    @property
    def addr(self) -> str: ...
    @property
    def methods(self) -> Iterable[str]: ...
    @property
    def match_func(self) -> str: ...


@dataclass(frozen=True)
class ProcessorSpec:
    """A processor entry built from plain values (tests, callers without the config loader)."""

    ref: str
    addr: str
    methods: tuple[str, ...]
    match_func: str = DEFAULT_MATCH_FUNC


@dataclass(frozen=True)
class Route:
    """One compiled processor entry: the config object it came from and its matchFunc."""

    spec: Any  # the ProcessorLike given to Router
    methods: frozenset[str]
    match: MatchFunc

    @property
    def ref(self) -> str:
        return str(self.spec.ref)


class DispatchConfigError(ValueError):
    """A processor entry the dispatcher cannot use (bad method name, duplicate ref)."""


def is_response(req: processor_pb2.MessageRequest) -> bool:
    return req.message.WhichOneof("message_type") == "response_type"


def method_name(req: processor_pb2.MessageRequest) -> str:
    """The request's method as Routr's JS sees it (enum name)."""
    return _METHOD_NAMES.get(req.method, str(req.method))


def stamp_processor(metadata: MutableMapping[str, str], ref: str) -> None:
    """Name the processor that handled a request in the metadata returned to the EdgePort."""
    metadata[PROCESSOR_METADATA_KEY] = ref


class Router:
    """Chooses the processor for a MessageRequest. Compiles every matchFunc at construction.

    Raises :class:`MatchFuncError` (naming the processor) or :class:`DispatchConfigError` on a bad entry.
    """

    def __init__(self, processors: Iterable[ProcessorLike]) -> None:
        routes: list[Route] = []
        seen: set[str] = set()
        allowed: dict[str, None] = {}
        for spec in processors:
            ref = spec.ref
            if ref in seen:
                raise DispatchConfigError(f"processor {ref!r}: duplicate ref")
            seen.add(ref)
            methods = tuple(spec.methods)
            unknown = [m for m in methods if m not in _KNOWN_METHODS]
            if unknown:
                raise DispatchConfigError(
                    f"processor {ref!r}: unknown method(s) {', '.join(map(repr, unknown))}; "
                    f"the Processor protocol carries only {', '.join(sorted(_KNOWN_METHODS))}")
            source = getattr(spec, "match_func", None) or DEFAULT_MATCH_FUNC
            routes.append(Route(spec, frozenset(methods), compile_match_func(source, ref)))
            allowed.update(dict.fromkeys(methods))
        self.routes: tuple[Route, ...] = tuple(routes)
        self._by_ref = {r.ref: r for r in routes}
        self.routed_methods: tuple[str, ...] = tuple(allowed)
        """Every method some processor takes, in config order: the ``Allow`` of a 405."""
        self._errors = RateLimitedLog(log, interval=10.0)

    def select(self, req: processor_pb2.MessageRequest) -> Any | None:
        """The processor entry (as given) that handles ``req``, or None when none matches."""
        route = self.select_route(req)
        return None if route is None else route.spec

    def select_route(self, req: processor_pb2.MessageRequest) -> Route | None:
        if req.message.WhichOneof("message_type") == "response_type":
            named = req.metadata.get(PROCESSOR_METADATA_KEY)
            if named:
                route = self._by_ref.get(named)
                if route is not None:
                    return route
        method = _METHOD_NAMES.get(req.method)
        for route in self.routes:
            if method not in route.methods:
                continue
            try:
                if route.match.matches(req):
                    return route
            except MatchFuncRuntimeError as exc:
                self._errors.warning(route.ref, "processor %r: matchFunc failed (treated as no match): %s",
                                     route.ref, exc)
        return None

    def route(self, ref: str) -> Route | None:
        return self._by_ref.get(ref)


__all__ = ["DEFAULT_MATCH_FUNC", "PROCESSOR_METADATA_KEY", "DispatchConfigError", "MatchFuncError",
           "ProcessorLike", "ProcessorSpec", "Route", "Router", "is_response", "method_name",
           "stamp_processor"]
