"""Location shards as named Ray actors, a batching client that routes to them, and the gRPC API actor.

* ``location-shard-<i>`` (i in 0..N-1): an async actor owning one :class:`LocationService`; it starts reloading
  its slice from the store in ``__init__``, a page at a time, retried with backoff while the store is down, and
  serves meanwhile (writes go through; a FindRoutes that finds nothing yet is UNAVAILABLE, so callers answer 503 +
  Retry-After instead of "not registered"). Its constructor never fails on a dead Redis (a failed constructor
  is a dead actor: Ray does not restart it). It is restarted by Ray after a crash (``max_restarts=-1``; no task
  retries, so a call that kills it cannot crash-loop).
* :class:`ShardedLocationClient`: jump-hashes each AOR to its shard and batches operations per shard (one Ray call
  per shard per batch, DESIGN §10). A dead or restarting shard surfaces as ``UNAVAILABLE``.
* ``location-api``: an actor running the ``fonoster.routr.location.v2beta1.Location`` grpc.aio server
  (not a Serve app: Serve has one gRPC port for all apps), on the node of the process that deploys it. A deploy
  with another address, shard count or token replaces it (``routr_ray/actors/detached.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from routr_ray.actors import NAMESPACE
from routr_ray.actors.detached import driver_node_strategy, fingerprint, replace_if_changed
from routr_ray.actors.links import linked, serve_link
from routr_ray.actors.metrics import RayMetricsBridge, observe_process
from routr_ray.config.changes import ShardLayout
from routr_ray.config.location import TOKEN_ENV
from routr_ray.link import LinkError
from routr_ray.link.client import LinkRemoteError
from routr_ray.location.errors import LocationError, LocationErrorCode
from routr_ray.location.hashing import shard_for_aor
from routr_ray.location.metrics import LocationMetrics
from routr_ray.location.ops import (
    PING_OP,
    Op,
    OpResult,
    apply_ops,
    decode_pairs,
    decode_result,
    encode_add,
    encode_find,
    encode_pairs,
    encode_remove,
    submit_traced,
)
from routr_ray.location.service import LocationService
from routr_ray.location.stores import create_store
from routr_ray.observability import tracing
from routr_ray.proto.gen import location_pb2
from routr_ray.util.batching import AdaptiveBatcher, BatchQueueFull
from routr_ray.util.gc_tuning import tune_gc

log = logging.getLogger(__name__)

SHARD_NAME = "location-shard-{index}"
API_NAME = "location-api"
CALL_TIMEOUT_S = 5.0
# How long an operation waits for a shard that died to be back (under the dispatcher's 5 s deadline: the request
# still gets its 503 from Connect, not a dispatcher timeout, when the shard does not come back).
SHARD_HOLD_S = 3.0


class ShardGone(Exception):
    """The call to a shard failed because the shard is gone (dead, restarting): it may come back."""


@ray.remote(num_cpus=0.05, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class LocationShardActor:
    async def __init__(
        self, index: int, count: int, provider: str = "memory", parameters: str | None = None
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self.index = index
        self.count = count
        store = create_store(provider, parameters, shard_id=index)
        self.service = LocationService(store, shard_index=index, shard_count=count)
        self.metrics = LocationMetrics(index)
        self.metrics.watch(lambda: self.service.binding_count, lambda: self.service.aor_count,
                           ready=lambda: not self.service.loading, by_domain=self.service.bindings_by_domain)
        observe_process("location-shard", str(index))
        self.metrics_bridge = RayMetricsBridge(self.metrics.registry, default_tags={"shard": str(index)})
        self.metrics_bridge.start()
        self.provider = provider
        self.store_digest = store_digest(parameters)
        self.service.start_loading()  # in the background, retried with backoff: the shard serves meanwhile
        self._loaded = asyncio.get_running_loop().create_task(self._after_load())
        self.link = await serve_link(SHARD_NAME.format(index=index), self._link_call)
        log.info("location shard %d/%d serving (%s store; loading its slice)", index, count, provider)

    async def _after_load(self) -> None:
        loaded = await self.service.loaded()
        tune_gc()  # the loaded bindings are never re-scanned by gen-2 passes
        log.info("location shard %d/%d loaded (%s store, %d bindings)", self.index, self.count, self.provider, loaded)

    async def apply(self, ops: list[Op]) -> list[OpResult]:
        return await apply_ops(self.service, ops, self.metrics)

    async def _link_call(self, payload: bytes) -> bytes:
        return encode_pairs(await apply_ops(self.service, decode_pairs(payload), self.metrics))

    async def metrics_text(self) -> bytes:
        """This shard's Prometheus metrics (``routr_location_*``) in text exposition format."""
        return self.metrics.exposition()

    async def stats(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "count": self.count,
            "bindings": self.service.binding_count,
            "aors": self.service.aor_count,
            "durable": self.service.store.durable,
            "loading": self.service.loading,
        }

    async def ready(self) -> bool:
        return True

    async def layout(self) -> tuple[int, str, str]:
        """(shard count, provider, digest of the store parameters) this shard runs with: a redeploy that asks for
        another is refused (config/changes.py)."""
        return self.count, self.provider, self.store_digest


def store_digest(parameters: str | None) -> str:
    """A digest of the store's parameters (a Redis URL may hold a password: never kept in the clear)."""
    return fingerprint("location-store", parameters or "")


def running_layout(timeout: float = 30.0) -> ShardLayout | None:
    """What the running shards were started with (shard 0 says); None without shards, or shards that cannot say
    (an older version)."""
    try:
        handle = ray.get_actor(SHARD_NAME.format(index=0), namespace=NAMESPACE)
        count, provider, store = ray.get(handle.layout.remote(), timeout=timeout)
    except Exception:  # noqa: BLE001 - none, or an older version: nothing to compare
        return None
    return ShardLayout(count, provider, store)


def shard_handles(count: int) -> list[Any]:
    return [ray.get_actor(SHARD_NAME.format(index=i), namespace=NAMESPACE) for i in range(count)]


def create_shards(count: int, provider: str = "memory", parameters: str | None = None) -> list[Any]:
    """Create (or find) the N detached shard actors without waiting for them: their names are registered when
    this returns (named actors are registered synchronously), so others can look them up while they start. They
    are spread over the nodes (Ray's SPREAD: best effort, so one node still takes them all): losing a node loses
    the fewest shards at once, each reloading its slice from Redis where Ray restarts it."""
    return [
        LocationShardActor.options(  # type: ignore[attr-defined]
            name=SHARD_NAME.format(index=i), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            scheduling_strategy="SPREAD",
        ).remote(i, count, provider, parameters)
        for i in range(count)
    ]


def deploy_shards(
    count: int, provider: str = "memory", parameters: str | None = None, *, timeout: float = 60.0
) -> list[Any]:
    """Create (or find) the N detached shard actors and wait until every one has loaded its slice."""
    handles = create_shards(count, provider, parameters)
    ray.get([h.ready.remote() for h in handles], timeout=timeout)
    return handles


class ShardedLocationClient:
    """LocationClient over the shard actors, batching per shard."""

    def __init__(
        self, handles: Sequence[Any], *, max_batch: int = 64, max_wait: float = 0.001, timeout: float = CALL_TIMEOUT_S,
        hold: float = SHARD_HOLD_S,
    ) -> None:
        if not handles:
            raise ValueError("at least one shard handle is needed")
        self.hold = hold
        self._handles = list(handles)
        self._batchers = [
            AdaptiveBatcher(self._sender(h, i), max_batch=max_batch, max_wait=max_wait, timeout=timeout)
            for i, h in enumerate(self._handles)
        ]

    @staticmethod
    def _sender(handle: Any, index: int):  # noqa: ANN205 - a closure over the handle
        async def send(ops: list[Op]) -> list[OpResult]:
            return await handle.apply.remote(ops)

        # over the shard's link when it serves one (routr_ray/actors/links.py), the Ray call otherwise
        return linked(SHARD_NAME.format(index=index), encode_pairs, decode_pairs, send)

    @property
    def shard_count(self) -> int:
        return len(self._handles)

    async def _call(self, aor: str, op: Op) -> bytes:
        return await self._on_shard(shard_for_aor(aor, len(self._handles)), op)

    async def _on_shard(self, index: int, op: Op) -> bytes:
        """``op`` on shard ``index``. A shard that died (its process killed or crashed: the Ray call or its link
        fails) is restarted by Ray within seconds and reloads its slice: the operation is held and sent again
        (pauses from 50 ms doubling to 0.5 s) for up to ``SHARD_HOLD_S``, then UNAVAILABLE (issue 18 item 5).
        Sending it twice is harmless: every Location operation is idempotent (an AddRoute binds the same route,
        a RemoveRoutes of what is gone does nothing). A store that is down is not held: the shard answers
        UNAVAILABLE itself, at once."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.hold
        pause = 0.05
        while True:
            try:
                return await self._once(index, op)
            except ShardGone as exc:
                if loop.time() + pause > give_up:
                    raise LocationError(LocationErrorCode.UNAVAILABLE, f"location shard unavailable: {exc}") from exc
                await asyncio.sleep(pause)
                pause = min(2 * pause, 0.5)

    async def _once(self, index: int, op: Op) -> bytes:
        batcher = self._batchers[index]
        try:
            if tracing.ON:  # a client span, its traceparent carried by the operation to the shard
                result = await submit_traced(index, op, batcher.submit)
            else:
                result = await batcher.submit(op)
        except LinkRemoteError as exc:  # the shard is there and answered ERROR: not a restart to wait for
            raise LocationError(LocationErrorCode.UNAVAILABLE, f"location shard unavailable: {exc!r}") from exc
        except (RayActorError, LinkError) as exc:
            raise ShardGone(repr(exc)) from exc
        except (RayError, TimeoutError, BatchQueueFull) as exc:
            raise LocationError(LocationErrorCode.UNAVAILABLE, f"location shard unavailable: {exc!r}") from exc
        return decode_result(result)

    async def ping(self) -> None:
        """Every shard answers, by the path real operations take (its link, else a Ray call)."""
        await asyncio.gather(*(self._on_shard(i, PING_OP) for i in range(len(self._handles))))

    async def add_route(self, request: location_pb2.AddRouteRequest) -> None:
        await self._call(request.aor, encode_add(request))

    async def find_routes(self, request: location_pb2.FindRoutesRequest) -> location_pb2.FindRoutesResponse:
        return location_pb2.FindRoutesResponse.FromString(await self._call(request.aor, encode_find(request)))

    async def remove_routes(self, request: location_pb2.RemoveRoutesRequest) -> None:
        await self._call(request.aor, encode_remove(request))


@ray.remote(num_cpus=0.05, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class LocationApiActor:
    """Serves the Location gRPC API on ``bind_addr``, routing to the shard actors."""

    async def __init__(self, bind_addr: str, shard_count: int, token: str | None = None) -> None:
        from routr_ray.location.grpc_api import start_location_server

        self._fingerprint = api_fingerprint(bind_addr, shard_count, token)
        self.client = ShardedLocationClient(shard_handles(shard_count))
        deadline = asyncio.get_running_loop().time() + BIND_ATTEMPTS_S
        while True:  # a replaced API's process may hold the port for a moment after it was killed
            try:
                self.server = await start_location_server(self.client, bind_addr, token)
                break
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.port = self.server.bound_port

    async def ready(self) -> int:
        return self.port

    async def fingerprint(self) -> str:
        return self._fingerprint


BIND_ATTEMPTS_S = 10.0


def api_fingerprint(bind_addr: str, shard_count: int, token: str | None) -> str:
    return fingerprint("location-api", bind_addr, shard_count,
                       hashlib.blake2s(token.encode()).hexdigest() if token else None)


def deploy_api(
    bind_addr: str, shard_count: int, token: str | None = None, *, timeout: float = 60.0, name: str = API_NAME
) -> Any:
    """Create the gRPC API actor (or keep the running one when its address, shard count and token are the ones
    asked for: a redeploy with a new token replaces it) and wait until it listens.

    `token` is the shared token callers must send (``authorization: Bearer <token>`` or ``x-routr-token``); None
    falls back to the ``ROUTR_RAY_LOCATION_TOKEN`` environment variable of this process. Without either the API
    only listens on a loopback address: :class:`~routr_ray.grpcutil.auth.OpenPortRefused` otherwise.
    """
    handle = create_api(bind_addr, shard_count, token, name=name, timeout=timeout)
    try:
        ray.get(handle.ready.remote(), timeout=timeout)
    except Exception:
        ray.kill(handle, no_restart=True)  # an API that cannot bind would be restarted forever
        raise
    return handle


def create_api(bind_addr: str, shard_count: int, token: str | None = None, *, name: str = API_NAME,
               timeout: float = 60.0) -> Any:
    """:func:`deploy_api` without waiting: ``ray.get(handle.ready.remote())`` says when it listens (a running API
    with other settings is replaced first, which waits up to ``timeout``)."""
    from routr_ray.grpcutil.auth import refuse_open_port
    from routr_ray.location.grpc_api import TOKEN_HINT

    token = token or os.environ.get(TOKEN_ENV, "").strip() or None
    refuse_open_port(bind_addr, token, what="the Location gRPC API", how=TOKEN_HINT)  # before any actor starts
    replace_if_changed(name, api_fingerprint(bind_addr, shard_count, token), timeout=timeout)
    return LocationApiActor.options(  # type: ignore[attr-defined]
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        scheduling_strategy=driver_node_strategy(),
    ).remote(bind_addr, shard_count, token)
