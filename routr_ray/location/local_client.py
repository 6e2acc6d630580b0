"""A LocationClient over in-process LocationService shards (tests, tools, single-process use).

It routes by the same jump hash as the Ray client, through the same byte-level operations, so what passes here
passes over Ray too.
"""

from __future__ import annotations

from collections.abc import Sequence

from routr_ray.location.hashing import shard_for_aor
from routr_ray.location.ops import (
    PING_OP,
    Op,
    OpResult,
    apply_op,
    decode_result,
    encode_add,
    encode_find,
    encode_remove,
    submit_traced,
)
from routr_ray.location.service import LocationService
from routr_ray.observability import tracing
from routr_ray.proto.gen import location_pb2


class LocalLocationClient:
    def __init__(self, shards: Sequence[LocationService]) -> None:
        if not shards:
            raise ValueError("at least one shard is needed")
        self.shards = list(shards)

    async def _call(self, aor: str, op: Op) -> bytes:
        index = shard_for_aor(aor, len(self.shards))
        shard = self.shards[index]

        async def submit(op: Op) -> OpResult:
            return await apply_op(shard, op)

        if tracing.ON:
            return decode_result(await submit_traced(index, op, submit))
        return decode_result(await submit(op))

    async def add_route(self, request: location_pb2.AddRouteRequest) -> None:
        await self._call(request.aor, encode_add(request))

    async def find_routes(self, request: location_pb2.FindRoutesRequest) -> location_pb2.FindRoutesResponse:
        return location_pb2.FindRoutesResponse.FromString(await self._call(request.aor, encode_find(request)))

    async def remove_routes(self, request: location_pb2.RemoveRoutesRequest) -> None:
        await self._call(request.aor, encode_remove(request))

    async def ping(self) -> None:
        for shard in self.shards:
            decode_result(await apply_op(shard, PING_OP))
