"""Connect as a Serve processor deployment: builds :class:`ConnectProcessor` with the Location shard actors,
and keeps the replicas' resources up to date when the files change (issue 6 item 1).

The driver loads the resource files (:class:`ConnectResources`) and hands the loaded set to every replica as an
init argument, so replicas on other nodes need no copy of the files. For reloads a :class:`ResourceWatcher` thread
publishes every new set that loads cleanly to a small named actor, the *resource board* (:data:`BOARD_NAME`); each
replica long-polls the board (:class:`FollowedResources`), so a change is in force on every replica, on every
node, a moment after the watcher sees it (polled every 2 s). A bad edit is logged and the last good set stays.
``run`` creates the board with the first change (until then the init set is the newest: replicas find no board
and look again every :data:`BOARD_ABSENT_RETRY_S` seconds), so it costs no process at start-up (issue 13 item 4);
``deploy`` (``detached=True``) creates or updates it at once, as an earlier deploy's replicas follow it.

The digest nonce key is generated once by the driver (or taken from ``ROUTR_RAY_NONCE_KEY``) and given to every
replica, so any replica verifies any other's nonces.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import ray

from routr_ray.actors import NAMESPACE
from routr_ray.actors.location import ShardedLocationClient, shard_handles
from routr_ray.config import Resources
from routr_ray.processors.connect import ConnectProcessor, StaticResources
from routr_ray.processors.connect.reload import (
    FollowedResources,
    ResourceBoardState,
    ResourceWatcher,
    load_resource_dir,
    resources_dir,
)
from routr_ray.processors.connect.resources_index import ResourceSource
from routr_ray.proto.gen import processor_pb2

log = logging.getLogger(__name__)

BOARD_NAME = "connect-resource-board"
BOARD_ABSENT_RETRY_S = 2.0  # how often a replica looks for a board that does not exist (yet)

__all__ = ["BOARD_NAME", "ConnectDeploymentProcessor", "ConnectResources", "ResourceBoard", "ResourceWatcher",
           "connect_options"]


@ray.remote(num_cpus=0)
class ResourceBoard:
    """The newest Connect resource set; replicas wait on :meth:`newer_than` (an async actor: many waiters)."""

    def __init__(self, resources: Resources) -> None:
        self.state = ResourceBoardState(resources)

    async def publish(self, resources: Resources) -> int:
        return await self.state.publish(resources)

    async def newer_than(self, version: int, wait_seconds: float) -> tuple[int, Resources] | None:
        return await self.state.newer_than(version, wait_seconds)

    async def version(self) -> int:
        return self.state.version


class ConnectResources:
    """Driver side: the resource set Connect replicas run with, loaded from ``<config_dir>/resources``.

    ``ConnectResources(config_dir)`` loads the files (raises ``ConfigInvalid``); with ``detached=True`` it starts
    (or reuses) the board actor with that set at once, else the board is created by the first :meth:`publish`.
    :meth:`options` are the init arguments of ``serve://connect``; :meth:`watch` starts the watcher thread;
    :meth:`stop` stops it (and kills the board unless it is detached).
    """

    def __init__(self, config_dir: str | Path, *, detached: bool = False) -> None:
        self.config_dir = Path(config_dir)
        self.resources = load_resource_dir(resources_dir(config_dir))
        self.detached = detached
        self.board: Any = None
        if detached:  # an existing board (an earlier deploy) gets this set
            self.board = self._create_board(self.resources)
            ray.get(self.board.publish.remote(self.resources), timeout=30)
        self.watcher: ResourceWatcher | None = None

    def _create_board(self, resources: Resources) -> Any:
        options: dict[str, Any] = {"name": BOARD_NAME, "namespace": NAMESPACE}
        if self.detached:
            options.update(lifetime="detached", get_if_exists=True)
        return ResourceBoard.options(**options).remote(resources)

    def options(self, shard_count: int, nonce_key: str) -> dict[str, Any]:
        """Keyword arguments of :class:`ConnectDeploymentProcessor` (``processor_options["connect"]``)."""
        return {"resources": self.resources, "shard_count": shard_count, "nonce_key": nonce_key, "board": BOARD_NAME}

    def publish(self, resources: Resources) -> None:
        if self.board is None:  # the first change: the board starts with it (version 1, newer than the replicas')
            self.board = self._create_board(resources)
            version = ray.get(self.board.version.remote(), timeout=30)
        else:
            version = ray.get(self.board.publish.remote(resources), timeout=30)
        self.resources = resources
        log.info("Connect resources version %d published to the replicas", version)

    def watch(self, interval: float = 2.0) -> ResourceWatcher:
        """Start polling the files every ``interval`` s; each new good set is published to the replicas."""
        if self.watcher is None:
            self.watcher = ResourceWatcher(self.config_dir, self.publish, interval=interval,
                                           initial=self.resources).start()
        return self.watcher

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if not self.detached and self.board is not None:
            try:
                ray.kill(self.board, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


def connect_options(config_dir: Path, shard_count: int, nonce_key: str) -> dict[str, Any]:
    """Init arguments for a fixed resource set (no reload): prefer :class:`ConnectResources`."""
    return {"resources": load_resource_dir(resources_dir(config_dir)), "shard_count": shard_count,
            "nonce_key": nonce_key}


class _BoardFetch:
    """``fetch(version, wait_seconds)`` for :class:`FollowedResources`: the board looked up by name (again
    after a failure, in case it was replaced). No board yet (``run`` creates it with the first change): nothing
    newer, said after at most :data:`BOARD_ABSENT_RETRY_S` of the wait."""

    def __init__(self, name: str, absent_retry: float = BOARD_ABSENT_RETRY_S) -> None:
        self.name = name
        self.absent_retry = absent_retry
        self._board: Any = None

    async def __call__(self, version: int, wait_seconds: float) -> tuple[int, Resources] | None:
        if self._board is None:
            try:
                self._board = await asyncio.to_thread(ray.get_actor, self.name, namespace=NAMESPACE)
            except ValueError:  # not created (yet): the set in force is the newest
                await asyncio.sleep(min(wait_seconds, self.absent_retry))
                return None
        try:
            return await self._board.newer_than.remote(version, wait_seconds)
        except Exception:
            self._board = None
            raise


class ConnectDeploymentProcessor:
    """What ``serve://connect`` runs: a ConnectProcessor whose Location is the sharded actors, and whose
    resources follow the board named ``board`` (None: the fixed set ``resources``)."""

    def __init__(self, resources: Resources, shard_count: int, nonce_key: str, board: str | None = None) -> None:
        location = ShardedLocationClient(shard_handles(shard_count))
        self.followed = FollowedResources(resources, _BoardFetch(board)) if board else None
        source: ResourceSource = self.followed or StaticResources(resources)
        self.processor = ConnectProcessor(source, location, nonce_key=nonce_key.encode())

    async def _follow(self) -> None:
        if self.followed is not None:
            await self.followed.ensure_following()

    async def start(self) -> None:
        """Called by the replica before its first message: take the board's newest set and index it now, so
        the first messages do not wait for a 1000-agent set to arrive and be indexed (a ~200 ms stall)."""
        await self._follow()
        _ = self.processor.index

    async def process(self, request: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        await self._follow()
        return await self.processor.process(request)

    async def process_batch(self, requests: list[processor_pb2.MessageRequest]) -> list[processor_pb2.MessageResponse]:
        await self._follow()
        return await self.processor.process_batch(requests)

    async def process_serialized(self, payloads: list[bytes]) -> list[bytes]:
        await self._follow()
        return await self.processor.process_serialized(payloads)
