"""Connect as a Serve processor deployment: builds :class:`ConnectProcessor` with the Location shard actors,
and keeps the replicas' resources up to date when the files change (issue 6 item 1).

The driver loads the resource files (:class:`ConnectResources`) and hands the loaded set to every replica as an
init argument, so replicas on other nodes need no copy of the files. For reloads it also starts a small named
actor, the *resource board* (:data:`BOARD_NAME`), and a :class:`ResourceWatcher` thread that publishes every new
set that loads cleanly to it; each replica long-polls the board (:class:`FollowedResources`), so a change is in
force on every replica, on every node, a moment after the watcher sees it (polled every 2 s). A bad edit is
logged and the last good set stays. EdgePorts long-poll the board too, for the source networks of the Trunks and
Peers only (:meth:`ResourceBoard.trunk_sources_newer_than`: never banned, see routr_ray/config/trunk_sources.py).

Web agents (``X-Connect-Token``): the driver reads the ConnectTokens document of the config directory and its key
files (:func:`connect_token_options`, ``routr_ray/config/connect_tokens.py``) and hands the public keys' PEM text and
the audience to every replica (``connect_tokens``), so replicas on other nodes need no copy of the key files.

The nonce/dialog key (digest nonces, ``rrk`` dialog tokens) is resolved once by the driver (``ROUTR_RAY_NONCE_KEY``,
else kept in the Location's Redis, else in the state directory: ``routr_ray/util/keystore.py``) and given to every
replica, so any replica verifies any other's nonces and tokens, and a restart keeps live calls.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import ray

from routr_ray.actors import NAMESPACE
from routr_ray.actors.links import directory
from routr_ray.actors.location import ShardedLocationClient, shard_handles
from routr_ray.actors.server_health import RegistrarHealth
from routr_ray.config import Resources, load_config_dir
from routr_ray.config.connect_tokens import to_options as token_options_of
from routr_ray.config.trunk_sources import trunk_and_peer_sources
from routr_ray.processors.connect import ConnectProcessor, StaticResources
from routr_ray.processors.connect.connect_token import ConnectTokenVerifier
from routr_ray.processors.connect.reload import (
    FollowedResources,
    ResourceBoardState,
    ResourceWatcher,
    load_resource_dir,
    resources_dir,
)
from routr_ray.processors.connect.resources_index import ResourceSource
from routr_ray.proto.gen import processor_pb2
from routr_ray.util.server_health import HealthFollower, HealthView

log = logging.getLogger(__name__)

BOARD_NAME = "connect-resource-board"

__all__ = ["BOARD_NAME", "ConnectDeploymentProcessor", "ConnectResources", "ResourceBoard", "ResourceWatcher",
           "connect_options", "connect_token_options"]


@ray.remote(num_cpus=0)
class ResourceBoard:
    """The newest Connect resource set; replicas wait on :meth:`newer_than` (an async actor: many waiters)."""

    def __init__(self, resources: Resources) -> None:
        self.state = ResourceBoardState(resources)

    async def publish(self, resources: Resources) -> int:
        return await self.state.publish(resources)

    async def newer_than(self, version: int, wait_seconds: float) -> tuple[int, Resources] | None:
        return await self.state.newer_than(version, wait_seconds)

    async def trunk_sources_newer_than(self, version: int, wait_seconds: float) -> tuple[int, tuple[Any, ...]] | None:
        """What EdgePorts follow (issue 14 item 8): the source networks of the Trunks and Peers of the newest set,
        as :meth:`newer_than` (only the networks leave this actor: no credentials reach the EdgePorts)."""
        found = await self.state.newer_than(version, wait_seconds)
        if found is None:
            return None
        return found[0], trunk_and_peer_sources(found[1]).networks

    async def version(self) -> int:
        return self.state.version


class ConnectResources:
    """Driver side: the resource set Connect replicas run with, loaded from ``<config_dir>/resources``.

    ``ConnectResources(config_dir)`` loads the files (raises ``ConfigInvalid``) and starts (or, with
    ``detached=True``, reuses) the board actor with that set. :meth:`options` are the init arguments of
    ``serve://connect``; :meth:`watch` starts the watcher thread; :meth:`stop` stops it (and kills the board
    unless it is detached).
    """

    def __init__(self, config_dir: str | Path, *, detached: bool = False, resources: Resources | None = None) -> None:
        self.config_dir = Path(config_dir)
        # resources given (the provisioning API's database, routr_ray/actors/api.py publishes its changes): no files
        self.follow_files = resources is None
        self.resources = resources if resources is not None else load_resource_dir(resources_dir(config_dir))
        self.detached = detached
        options: dict[str, Any] = {"name": BOARD_NAME, "namespace": NAMESPACE}
        if detached:
            options.update(lifetime="detached", get_if_exists=True)
        self.board = ResourceBoard.options(**options).remote(self.resources)
        if detached:  # an existing board (an earlier deploy) gets this set
            ray.get(self.board.publish.remote(self.resources), timeout=30)
        self.watcher: ResourceWatcher | None = None

    def options(self, shard_count: int, nonce_key: str) -> dict[str, Any]:
        """Keyword arguments of :class:`ConnectDeploymentProcessor` (``processor_options["connect"]``)."""
        return {"resources": self.resources, "shard_count": shard_count, "nonce_key": nonce_key, "board": BOARD_NAME,
                "connect_tokens": connect_token_options(self.config_dir)}

    def publish(self, resources: Resources) -> None:
        version = ray.get(self.board.publish.remote(resources), timeout=30)
        self.resources = resources
        log.info("Connect resources version %d published to the replicas", version)

    def watch(self, interval: float = 2.0) -> ResourceWatcher | None:
        """Start polling the files every ``interval`` s; each new good set is published to the replicas."""
        if self.watcher is None and self.follow_files:
            self.watcher = ResourceWatcher(self.config_dir, self.publish, interval=interval,
                                           initial=self.resources).start()
        return self.watcher

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if not self.detached:
            try:
                ray.kill(self.board, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


def connect_options(config_dir: Path, shard_count: int, nonce_key: str) -> dict[str, Any]:
    """Init arguments for a fixed resource set (no reload): prefer :class:`ConnectResources`."""
    return {"resources": load_resource_dir(resources_dir(config_dir)), "shard_count": shard_count,
            "nonce_key": nonce_key, "connect_tokens": connect_token_options(config_dir)}


def connect_token_options(config_dir: str | Path) -> dict[str, Any] | None:
    """The verifier options of the config directory's ConnectTokens document, key files read (None: no document,
    web agents off). Raises ``ConfigInvalid`` naming the file and field of a bad or unreadable key."""
    tokens = load_config_dir(config_dir).connect_tokens
    return token_options_of(tokens) if tokens is not None else None


class _BoardFetch:
    """``fetch(version, wait_seconds)`` for :class:`FollowedResources`: the board looked up by name (again
    after a failure, in case it was replaced)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._board: Any = None

    async def __call__(self, version: int, wait_seconds: float) -> tuple[int, Resources] | None:
        if self._board is None:
            self._board = ray.get_actor(self.name, namespace=NAMESPACE)
        try:
            return await self._board.newer_than.remote(version, wait_seconds)
        except Exception:
            self._board = None
            raise


WARM_LOCATION_S = 2.0


class ConnectDeploymentProcessor:
    """What ``serve://connect`` runs: a ConnectProcessor whose Location is the sharded actors, and whose
    resources follow the board named ``board`` (None: the fixed set ``resources``); ``connect_tokens``: the web
    agents' verifier options (:func:`connect_token_options`; None: the ``X-Connect-Token`` header is ignored).
    With a board it also follows the cluster's server health (``actors/server_health.py``: trunk URIs and peer
    bindings down by keepalive or held down by an EdgePort are tried last)."""

    def __init__(self, resources: Resources, shard_count: int, nonce_key: str, board: str | None = None,
                 connect_tokens: dict[str, Any] | None = None) -> None:
        self.location = location = ShardedLocationClient(shard_handles(shard_count))
        self.followed = FollowedResources(resources, _BoardFetch(board)) if board else None
        source: ResourceSource = self.followed or StaticResources(resources)
        verifier = ConnectTokenVerifier.from_options(connect_tokens) if connect_tokens else None
        self.health = HealthView()
        self.health_follower = (HealthFollower(RegistrarHealth().fetch, self.health.apply, name="Connect server health")
                                if board else None)
        self.processor = ConnectProcessor(source, location, nonce_key=nonce_key.encode(), connect_tokens=verifier,
                                          health=self.health)

    @property
    def metrics_registry(self) -> Any:
        """Connect's metrics, exported by the replica (routr_ray/actors/serve_app.py)."""
        return self.processor.metrics_registry

    async def _follow(self) -> None:
        if self.followed is not None:
            await self.followed.ensure_following()
        if self.health_follower is not None:
            self.health_follower.start()  # once (a no-op while it runs)

    async def start(self) -> None:
        """Called by the replica before its first message: take the board's newest set and index it now, so
        the first messages do not wait for a 1000-agent set to arrive and be indexed (a ~200 ms stall)."""
        await self._follow()
        _ = self.processor.index
        await self._warm_location()

    async def _warm_location(self, within: float = WARM_LOCATION_S) -> None:
        """Reach every Location shard once by the Ray call, learn their link servers, then once more over the links,
        so that a replica started under load (scale-up) does not make its first messages wait for handles, the
        registry and connections (issue 18). Best effort: a shard not up yet is reached later, as before."""
        try:
            async with asyncio.timeout(within):
                await self.location.ping()  # the first call makes each shard's link pool: the directory looks it up
                await directory().refresh_now()
                await self.location.ping()  # now over the links: the connections are open
        except Exception as exc:  # noqa: BLE001 - warming only: the messages reach the shards or get 503 as always
            log.info("Connect: Location not warmed up before the first message (%r)", exc)

    async def process(self, request: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        await self._follow()
        return await self.processor.process(request)

    async def process_batch(self, requests: list[processor_pb2.MessageRequest]) -> list[processor_pb2.MessageResponse]:
        await self._follow()
        return await self.processor.process_batch(requests)

    async def process_serialized(self, payloads: list[bytes]) -> list[bytes]:
        await self._follow()
        return await self.processor.process_serialized(payloads)
