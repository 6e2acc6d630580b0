"""Batched Location operations as bytes, so one Ray call can carry many (DESIGN §2, §10).

An operation is ``(kind, request_bytes)`` with kind ``add``, ``find`` or ``remove`` and the serialized
``AddRouteRequest`` / ``FindRoutesRequest`` / ``RemoveRoutesRequest``. A result is ``(code, payload)``: code ``OK``
with the serialized reply (``FindRoutesResponse`` for ``find``, empty otherwise), or a ``LocationErrorCode`` name
with the error message as UTF-8. Failures are per operation: one bad AOR does not fail its batch.

A traced operation (issue 21) carries its caller's W3C traceparent after its kind: ``find|00-<trace>-<span>-01``
(:func:`traced`); the shard makes its span of the operation a child of it. Without tracing the kind is bare.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from routr_ray.link.frames import FrameError, pack_list, unpack_list
from routr_ray.location.aor import normalize_aor
from routr_ray.location.errors import LocationError, LocationErrorCode
from routr_ray.location.metrics import LocationMetrics
from routr_ray.location.service import LocationService
from routr_ray.observability import tracing
from routr_ray.proto.gen import location_pb2

log = logging.getLogger(__name__)

R = TypeVar("R")
Op = tuple[str, bytes]
OpResult = tuple[str, bytes]

ADD, FIND, REMOVE = "add", "find", "remove"
PING = "ping"  # answered OK by any shard, whatever it holds: "this shard answers" (readiness probes)
PING_OP: Op = (PING, b"")
OK = "OK"
TRACE_SEP = "|"
_LONGEST_KIND = len(REMOVE)


def traced(op: Op, traceparent: str | None) -> Op:
    """``op`` carrying ``traceparent`` (unchanged without one)."""
    return (op[0] + TRACE_SEP + traceparent, op[1]) if traceparent else op


async def submit_traced(shard: int, op: Op, submit: Callable[[Op], Awaitable[R]]) -> R:
    """``submit(op)`` in a ``location.<kind>`` client span whose traceparent ``op`` carries to the shard (call it
    only when tracing is on; without a sampled current span it is ``submit(op)``)."""
    with tracing.span(f"location.{op[0]}", {"routr.location.shard": shard}, kind="CLIENT") as span:
        if span is not None:
            op = traced(op, tracing.format_traceparent(span))
        return await submit(op)


def split_trace(kind: str) -> tuple[str, str | None]:
    """(bare kind, traceparent or None) of an operation's kind."""
    if len(kind) <= _LONGEST_KIND:
        return kind, None
    bare, _, parent = kind.partition(TRACE_SEP)
    return bare, parent or None


class LocationClient(Protocol):
    """What processors and the gRPC API need from Location, wherever the shards live."""

    async def add_route(self, request: location_pb2.AddRouteRequest) -> None: ...

    async def find_routes(self, request: location_pb2.FindRoutesRequest) -> location_pb2.FindRoutesResponse: ...

    async def remove_routes(self, request: location_pb2.RemoveRoutesRequest) -> None: ...

    async def ping(self) -> None:
        """Return when every shard answers (raise LocationError UNAVAILABLE otherwise): a readiness probe."""
        ...


def encode_add(request: location_pb2.AddRouteRequest) -> Op:
    return ADD, request.SerializeToString()


def encode_find(request: location_pb2.FindRoutesRequest) -> Op:
    return FIND, request.SerializeToString()


def encode_remove(request: location_pb2.RemoveRoutesRequest) -> Op:
    return REMOVE, request.SerializeToString()


def encode_pairs(pairs: Sequence[tuple[str, bytes]]) -> bytes:
    """Operations (or results) as one byte string for the internal data plane (``routr_ray.link``): each pair
    is its ASCII name, a NUL, then its bytes."""
    return pack_list([name.encode("ascii") + b"\x00" + payload for name, payload in pairs])


def decode_pairs(data: bytes) -> list[tuple[str, bytes]]:
    pairs = []
    for item in unpack_list(data):
        name, sep, payload = item.partition(b"\x00")
        if not sep:
            raise FrameError("a location operation without its name")
        pairs.append((name.decode("ascii"), payload))
    return pairs


def decode_result(result: OpResult) -> bytes:
    """Return the payload of a successful result; raise the LocationError it carries otherwise."""
    code, payload = result
    if code == OK:
        return payload
    try:
        error_code = LocationErrorCode[code]
    except KeyError:
        error_code = LocationErrorCode.UNAVAILABLE
    raise LocationError(error_code, payload.decode("utf-8", "replace"))


async def apply_op(service: LocationService, op: Op) -> OpResult:
    kind, payload = op
    if len(kind) > _LONGEST_KIND:
        kind, parent = split_trace(kind)
        if parent is not None and tracing.ON:
            return await _apply_traced(service, kind, payload, parent)
    return await _apply(service, kind, payload)


async def _apply_traced(service: LocationService, kind: str, payload: bytes, parent: str) -> OpResult:
    span = tracing.child_span(f"location.{kind}", parent, {"routr.location.operation": kind,
                                                          "routr.location.shard": service.store.shard_id})
    result = await _apply(service, kind, payload)
    if span is not None:
        tracing.end_span(span, error=None if result[0] == OK else result[0], routr__location__result=result[0])
    return result


async def _apply(service: LocationService, kind: str, payload: bytes) -> OpResult:
    try:
        if kind == ADD:
            await service.handle_add_route(location_pb2.AddRouteRequest.FromString(payload))
            return OK, b""
        if kind == FIND:
            reply = await service.handle_find_routes(location_pb2.FindRoutesRequest.FromString(payload))
            return OK, reply.SerializeToString()
        if kind == REMOVE:
            await service.handle_remove_routes(location_pb2.RemoveRoutesRequest.FromString(payload))
            return OK, b""
        if kind == PING:
            return OK, b""
        return LocationErrorCode.INVALID_ARGUMENT.name, f"unknown location operation {kind!r}".encode()
    except LocationError as exc:
        return exc.code.name, exc.message.encode()
    except Exception as exc:  # a decode error or a bug must not fail the other operations of the batch
        log.exception("location operation %s failed", kind)
        return LocationErrorCode.INVALID_ARGUMENT.name, f"bad {kind} request: {exc}".encode()


async def apply_ops(
    service: LocationService, ops: Sequence[Op], metrics: LocationMetrics | None = None
) -> list[OpResult]:
    """Apply a batch; with `metrics`, count each operation by result and time it.

    Operations on one AOR run in batch order (an add followed by a find of the same AOR sees the add). With a
    durable store, the operations of different AORs run concurrently so their store round trips overlap (a
    batch of 64 registrations costs about one Redis round trip, not 64); their relative order is not kept,
    as their callers sent them concurrently anyway. With the memory store nothing waits, so everything runs
    in order without the cost of tasks.
    """
    if metrics is not None:
        metrics.observe_batch(len(ops))
    if len(ops) < 2 or not service.store.durable:
        return [await _apply_timed(service, op, metrics) for op in ops]
    groups: dict[str, list[int]] = {}
    for index, op in enumerate(ops):
        groups.setdefault(_aor_of(op), []).append(index)
    results: list[OpResult] = [(OK, b"")] * len(ops)

    async def run(indexes: list[int]) -> None:
        for index in indexes:
            results[index] = await _apply_timed(service, ops[index], metrics)

    await asyncio.gather(*(run(indexes) for indexes in groups.values()))
    return results


async def _apply_timed(service: LocationService, op: Op, metrics: LocationMetrics | None) -> OpResult:
    if metrics is None:
        return await apply_op(service, op)
    started = time.perf_counter()
    result = await apply_op(service, op)
    metrics.observe(split_trace(op[0])[0], result[0], time.perf_counter() - started)
    return result


_REQUEST_TYPES: dict[str, Any] = {
    ADD: location_pb2.AddRouteRequest,
    FIND: location_pb2.FindRoutesRequest,
    REMOVE: location_pb2.RemoveRoutesRequest,
}


def _aor_of(op: Op) -> str:
    """The canonical AOR an operation touches ("" when it cannot be read: apply_op reports that)."""
    request_type = _REQUEST_TYPES.get(split_trace(op[0])[0])
    if request_type is None:
        return ""
    try:
        return normalize_aor(request_type.FromString(op[1]).aor)
    except Exception:  # noqa: BLE001 - a bad operation is grouped with the other bad ones
        return ""
