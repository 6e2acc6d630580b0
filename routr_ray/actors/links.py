"""Ray's side of the internal data plane (:mod:`routr_ray.link`): where link servers listen, and who uses them.

* :class:`LinkRegistry` (``link-registry``, namespace ``routr``): a detached actor mapping a *service* (e.g.
  ``processor-connect``, ``location-shard-0``) to the endpoints of its servers. Servers re-register every
  ``HEARTBEAT_S``; an entry not renewed for ``TTL_S`` is dropped, so a dead replica leaves the list by itself and
  a restarted registry is complete again after one heartbeat.
* :func:`serve_link`: in an actor or replica, starts a :class:`~routr_ray.link.LinkServer` on the node's address
  (an ephemeral port, a fresh random token) and keeps it registered.
* :class:`LinkDirectory`: in a client process, one :class:`~routr_ray.link.LinkPool` per service, refreshed from
  the registry every ``REFRESH_S`` (one small Ray call for all services). :func:`linked` wraps a Ray-call send
  function: it uses the pool when the service has a usable server and the Ray call otherwise (no endpoint yet,
  or none reachable: nothing was sent, so falling back cannot run a batch twice).

The token of each server travels only through the registry, that is through Ray: a host that can reach the port
but is not part of the cluster cannot call it. ``ROUTR_RAY_LINK=0`` turns the data plane off (every hop is a Ray
call, as before); ``ROUTR_RAY_LINK_HOST`` overrides the address servers bind to.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import ray

from routr_ray.actors import NAMESPACE
from routr_ray.link import Endpoint, LinkConnectError, LinkPool, LinkServer
from routr_ray.link.server import Handler
from routr_ray.link.stats import LINK_STATS

log = logging.getLogger(__name__)

REGISTRY_NAME = "link-registry"
LINK_ENV = "ROUTR_RAY_LINK"
HOST_ENV = "ROUTR_RAY_LINK_HOST"
HEARTBEAT_S = 1.0
TTL_S = 4.0
REFRESH_S = 1.0

T = TypeVar("T")
R = TypeVar("R")
EndpointTuple = tuple[str, str, int, bytes]


def link_enabled() -> bool:
    return os.environ.get(LINK_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class LinkRegistry:
    """service -> member -> (endpoint, expiry). Async methods: one event loop, no locking needed."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, tuple[EndpointTuple, float]]] = {}

    async def register(self, service: str, endpoint: EndpointTuple, ttl: float = TTL_S) -> None:
        self._entries.setdefault(service, {})[endpoint[0]] = (endpoint, time.monotonic() + ttl)

    async def unregister(self, service: str, member: str) -> None:
        self._entries.get(service, {}).pop(member, None)

    async def summary(self) -> dict[str, list[tuple[str, int]]]:
        """Every service with the addresses of its live servers, never a token (``routr-ray status``)."""
        now = time.monotonic()
        return {service: sorted((endpoint[1], endpoint[2]) for endpoint, expiry in members.values() if expiry >= now)
                for service, members in sorted(self._entries.items())}

    async def lookup(self, services: Sequence[str]) -> dict[str, list[EndpointTuple]]:
        now = time.monotonic()
        found: dict[str, list[EndpointTuple]] = {}
        for service in services:
            members = self._entries.get(service, {})
            for member in [m for m, (_, expiry) in members.items() if expiry < now]:
                del members[member]
            found[service] = [endpoint for endpoint, _ in members.values()]
        return found


_registry: Any = None


def registry() -> Any:
    """The registry actor, created on first use (detached: it outlives the process that made it)."""
    global _registry
    if _registry is None:
        if not ray.is_initialized():  # never start a Ray of our own as a side effect (a process outside the cluster)
            raise RuntimeError("the link registry needs a running Ray")
        _registry = LinkRegistry.options(  # type: ignore[attr-defined]
            name=REGISTRY_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote()
    return _registry


def forget_registry() -> None:
    """Look the registry up again on next use (after a call to it failed: it may have been re-created)."""
    global _registry
    _registry = None


def _bind_host() -> str:
    host = os.environ.get(HOST_ENV, "").strip()
    if host:
        return host
    try:
        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - not in a Ray worker (tests): loopback
        return "127.0.0.1"


class AdvertisedServer:
    """A started LinkServer and the task keeping it registered under ``service``."""

    def __init__(self, service: str, server: LinkServer, member: str) -> None:
        self.service = service
        self.server = server
        self.member = member
        self._task: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> Endpoint:
        host, port = self.server.address
        return Endpoint(self.member, host, port, self.server.token)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        e = self.endpoint
        entry = (e.member, e.host, e.port, e.token)
        failing = False
        while True:
            try:
                await registry().register.remote(self.service, entry, TTL_S)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the registry restarting: clients fall back to Ray meanwhile
                forget_registry()
                if not failing:
                    log.warning("link: cannot register %s with the registry: %r", self.service, exc)
                failing = True
            await asyncio.sleep(HEARTBEAT_S)

    async def close(self, drain: float = 0.0) -> None:
        """Leave the registry (no client finds this server any more), then, with ``drain``, stop taking calls and
        answer those that arrived (:meth:`LinkServer.drain`: clients are told at once and pick another server;
        clients that do not understand it leave when their next registry refresh drops this server) for at most
        ``drain`` seconds; then close."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        try:
            await registry().unregister.remote(self.service, self.member)
        except Exception:  # noqa: BLE001 - best effort: the entry expires anyway
            pass
        if drain > 0:
            started = time.monotonic()
            finished = await self.server.drain(drain)
            log.info("link: %s drained in %.1fs%s", self.service, time.monotonic() - started,
                     "" if finished else " (timed out: the rest closed)")
        await self.server.close()


async def serve_link(service: str, handler: Handler) -> AdvertisedServer | None:
    """Start a link server for ``service`` in this actor and keep it registered (None when links are off)."""
    if not link_enabled():
        return None
    server = LinkServer(handler, token=secrets.token_bytes(32), host=_bind_host())
    await server.start()
    advertised = AdvertisedServer(service, server, f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    advertised.start()
    log.info("link: %s listening on %s:%d", service, *server.address)
    return advertised


class LinkDirectory:
    """The pools of the services this process calls, refreshed from the registry in the background."""

    def __init__(self, refresh: float = REFRESH_S) -> None:
        self.refresh = refresh
        self._pools: dict[str, LinkPool] = {}
        self._task: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None

    def pool(self, service: str) -> LinkPool:
        pool = self._pools.get(service)
        if pool is None:
            pool = self._pools[service] = LinkPool()
            if self._kick is not None:
                self._kick.set()  # look the new service up now, not at the next refresh
        self._ensure_running()
        return pool

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # started by the first pool() call made on the loop
            self._kick = asyncio.Event()
            self._task = loop.create_task(self._follow())

    async def refresh_now(self) -> None:
        found = await registry().lookup.remote(list(self._pools))
        for service, endpoints in found.items():
            pool = self._pools.get(service)
            if pool is not None:
                pool.update(Endpoint(m, h, p, t) for m, h, p, t in endpoints)
                LINK_STATS.servers[service] = len(pool)

    async def _follow(self) -> None:
        failing = False
        assert self._kick is not None
        while True:
            try:
                await self.refresh_now()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the pools we have; Ray calls remain the fallback
                forget_registry()
                if not failing:
                    log.warning("link: cannot read the registry: %r", exc)
                failing = True
            self._kick.clear()
            try:
                await asyncio.wait_for(self._kick.wait(), self.refresh)
            except TimeoutError:
                pass

    def services(self) -> dict[str, int]:
        """The services this process calls, with the number of servers it knows for each."""
        return {service: len(pool) for service, pool in sorted(self._pools.items())}

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


_directories: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LinkDirectory] = weakref.WeakKeyDictionary()


def directory() -> LinkDirectory:
    """The LinkDirectory of the running event loop (connections belong to a loop: a process that runs
    several loops one after the other, like a test calling ``asyncio.run`` twice, gets fresh ones)."""
    loop = asyncio.get_running_loop()
    found = _directories.get(loop)
    if found is None:
        found = _directories[loop] = LinkDirectory()
    return found


def linked(service: str, encode: Callable[[list[T]], bytes], decode: Callable[[bytes], list[R]],
           fallback: Callable[[list[T]], Awaitable[Sequence[R]]]) -> Callable[[list[T]], Awaitable[Sequence[R]]]:
    """A batch send function over the link to ``service``, with ``fallback`` (the Ray call) when no server of
    it can be reached. With links off, ``fallback`` itself."""
    if not link_enabled():
        return fallback

    async def send(items: list[T]) -> Sequence[R]:
        pool = directory().pool(service)
        if len(pool):
            LINK_STATS.started(service)
            try:
                result = decode(await pool.call(encode(items)))
                LINK_STATS.call(service, "link")
                return result
            except LinkConnectError:
                pass  # nothing was sent
            finally:
                LINK_STATS.finished(service)
        LINK_STATS.call(service, "ray")
        return await fallback(items)

    return send


__all__ = ["HEARTBEAT_S", "LINK_ENV", "REGISTRY_NAME", "AdvertisedServer", "LinkDirectory", "LinkRegistry",
           "directory", "link_enabled", "linked", "registry", "serve_link"]
