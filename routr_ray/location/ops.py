"""Batched Location operations as bytes, so one Ray call can carry many (DESIGN §2, §10).

An operation is ``(kind, request_bytes)`` with kind ``add``, ``find`` or ``remove`` and the serialized
``AddRouteRequest`` / ``FindRoutesRequest`` / ``RemoveRoutesRequest``. A result is ``(code, payload)``: code ``OK``
with the serialized reply (``FindRoutesResponse`` for ``find``, empty otherwise), or a ``LocationErrorCode`` name
with the error message as UTF-8. Failures are per operation: one bad AOR does not fail its batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from routr_ray.location.errors import LocationError, LocationErrorCode
from routr_ray.location.service import LocationService
from routr_ray.proto.gen import location_pb2

log = logging.getLogger(__name__)

Op = tuple[str, bytes]
OpResult = tuple[str, bytes]

ADD, FIND, REMOVE = "add", "find", "remove"
OK = "OK"


class LocationClient(Protocol):
    """What processors and the gRPC API need from Location, wherever the shards live."""

    async def add_route(self, request: location_pb2.AddRouteRequest) -> None: ...

    async def find_routes(self, request: location_pb2.FindRoutesRequest) -> location_pb2.FindRoutesResponse: ...

    async def remove_routes(self, request: location_pb2.RemoveRoutesRequest) -> None: ...


def encode_add(request: location_pb2.AddRouteRequest) -> Op:
    return ADD, request.SerializeToString()


def encode_find(request: location_pb2.FindRoutesRequest) -> Op:
    return FIND, request.SerializeToString()


def encode_remove(request: location_pb2.RemoveRoutesRequest) -> Op:
    return REMOVE, request.SerializeToString()


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
        return LocationErrorCode.INVALID_ARGUMENT.name, f"unknown location operation {kind!r}".encode()
    except LocationError as exc:
        return exc.code.name, exc.message.encode()
    except Exception as exc:  # a decode error or a bug must not fail the other operations of the batch
        log.exception("location operation %s failed", kind)
        return LocationErrorCode.INVALID_ARGUMENT.name, f"bad {kind} request: {exc}".encode()


async def apply_ops(service: LocationService, ops: Sequence[Op]) -> list[OpResult]:
    """Apply operations in order (an add followed by a find of the same AOR sees the add)."""
    return [await apply_op(service, op) for op in ops]
