"""The trunk registrar: one detached actor per cluster that keeps every ``sendRegister`` trunk registered
(issue 15 item 1; the SIP logic is ``routr_ray/trunks``, sans-I/O plus an asyncio driver), pings the trunks and
peers that ask for a keepalive, and holds the cluster's server health table.

``trunk-registrar`` in namespace ``routr``, ``max_restarts=-1``: Ray restarts it where it can, and a restarted
registrar registers every trunk again at once (new Call-IDs, RFC 3261 §10.2.4 allows it). Only one exists
(``get_if_exists``), so no provider sees two registrations of one trunk from us.

* **Which trunks**: the Connect resource set, followed on the resource board (``actors/connect.py``) like the
  Connect replicas follow it: a trunk added, changed or removed in the files is registered, re-registered or
  dropped within a few seconds.
* **How it sends**: through the EdgePort named by the Registry settings (default: the first EdgePort),
  ``EdgePortActor.send_request``: the REGISTER leaves from the EdgePort's SIP socket, where the provider can reach
  us back (docs/trunks.md "Why the EdgePort sends the REGISTERs"). One Ray call per REGISTER: a few per trunk per
  refresh interval.
* **What it shows**: :meth:`statuses` (``routr-ray status``), the EdgePort's ``/metrics``
  (``routr_trunk_registration_*``, pushed after every round) and a ``trunk.registration`` event on each change of
  state (the sinks of ``ROUTR_RAY_EVENTS``, as the EdgePort's call events).
* **Keepalive** (``trunks/keepalive.py``, ``trunks/pinger.py``): OPTIONS to every enabled URI of a Trunk with
  ``keepalive`` and every binding of a Peer with ``keepalive`` (listed from the Location shards every few
  seconds), through the same EdgePort (one Ray call per ping); :meth:`keepalives` for ``routr-ray status``, the
  EdgePort's ``/metrics`` (``routr_trunk_target_up``, ``routr_peer_keepalive_targets``).
* **Server health** (``util/server_health.py``): the hold-downs every EdgePort publishes (:meth:`health_mark`)
  and the keepalive's down targets; EdgePorts and Connect replicas follow it (:meth:`health_newer_than`,
  ``actors/server_health.py``). Soft state: a restarted registrar starts with an empty table and a new epoch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray

from routr_ray.actors import NAMESPACE
from routr_ray.actors.connect import _BoardFetch
from routr_ray.actors.edgeport import worker_name
from routr_ray.actors.location import ShardedLocationClient, shard_handles
from routr_ray.config import Resources
from routr_ray.config.registry import RegistryConfig
from routr_ray.observability.events import trunk_registration
from routr_ray.observability.publisher import EventPublisher
from routr_ray.observability.sinks import sinks_from_env
from routr_ray.processors.connect.reload import FollowedResources
from routr_ray.proto.gen import location_pb2
from routr_ray.sip import ParseError, Request, Response, parse
from routr_ray.trunks.contact_token import TrunkContactTokens
from routr_ray.trunks.keepalive import PingTarget, ProbeStatus
from routr_ray.trunks.pinger import KeepalivePinger
from routr_ray.trunks.registrar import TrunkRegistrar
from routr_ray.trunks.registration import RegistrationStatus, RegState
from routr_ray.trunks.specs import registration_specs
from routr_ray.trunks.targets import keepalive_peers, peer_targets, trunk_targets
from routr_ray.util.server_health import ServerHealth

__all__ = ["NAME", "TrunkRegistrarActor", "deploy_trunk_registrar", "has_keepalives", "has_registration_trunks"]

log = logging.getLogger(__name__)

NAME = "trunk-registrar"
SEND_TIMEOUT = 40.0  # Timer F (32 s) plus the Ray call
PEER_BINDINGS_EVERY = 5.0  # seconds between two listings of the keepalive Peers' bindings


def status_row(status: RegistrationStatus, now: float, wall: float) -> dict[str, Any]:
    """One registration as plain data (status, metrics): ``expires_at`` in epoch seconds."""
    expires_in = status.expires_in(now)
    return {
        "trunk": status.trunk_ref,
        "state": status.state.value,
        "granted": status.granted,
        "expires_in": expires_in,
        "expires_at": wall + expires_in if expires_in is not None else None,
        "last_error": status.last_error,
        "failures": status.failures,
        "registrations": status.registrations,
    }


def keepalive_row(status: ProbeStatus, now: float) -> dict[str, Any]:
    """One keepalive target as plain data (status, metrics)."""
    return {"kind": status.kind, "ref": status.ref, "target": status.target, "state": status.state.value,
            "pinged": status.pinged, "failures": status.failures, "last_status": status.last_status,
            "last_error": status.last_error, "for": max(0, int(now - status.since))}


# max_concurrency: every EdgePort worker and Connect replica keeps one long poll of the health table open
@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class TrunkRegistrarActor:
    async def __init__(self, resources: Resources, nonce_key: str, edge_port_ref: str,
                       settings: RegistryConfig | None = None, board: str | None = None,
                       location_shards: int = 0) -> None:
        logging.basicConfig(level=logging.INFO)
        self.settings = settings or RegistryConfig()
        self.edge_port_ref = edge_port_ref
        self.tokens = TrunkContactTokens(nonce_key.encode())
        self.registrar = TrunkRegistrar(self._send, on_change=self._changed,
                                        base_backoff=self.settings.retry_interval,
                                        max_backoff=self.settings.max_backoff)
        self.followed = FollowedResources(resources, _BoardFetch(board)) if board else None
        self._resources = resources
        self._edge: Any = None
        self._last_state: dict[str, RegState] = {}
        self.events = EventPublisher(sinks_from_env())
        await self.events.start()
        self.health = ServerHealth()
        self.pinger = KeepalivePinger(self._ping, on_change=self._keepalive_changed)
        self._location_shards = location_shards
        self._location: Any = None
        self._resources_changed = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()  # pushes in flight (kept referenced until done)
        self.registrar.update(registration_specs(resources, self.tokens, self.settings))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.registrar.run()), loop.create_task(self.pinger.run()),
                       loop.create_task(self._keepalive_targets())]
        if self.followed is not None:
            self._tasks.append(loop.create_task(self._follow()))

    async def _follow(self) -> None:
        """Re-read the trunks whenever the board has a new resource set."""
        assert self.followed is not None
        await self.followed.ensure_following()
        while True:
            current = self.followed.current()
            if current is not self._resources:
                self._resources = current
                self.registrar.update(registration_specs(current, self.tokens, self.settings))
                self._resources_changed.set()
            await asyncio.sleep(1.0)

    # -- keepalive ------------------------------------------------------------------------------------------
    async def _keepalive_targets(self) -> None:
        """What the pinger pings: the trunks' URIs at once after every change of the resources, the keepalive
        Peers' bindings every :data:`PEER_BINDINGS_EVERY` seconds."""
        while True:
            resources = self._resources
            targets = trunk_targets(resources)
            peers = keepalive_peers(resources)
            for peer in peers:
                targets.extend(await self._peer_targets(peer))
            if self.pinger.update(targets):
                self._spawn(self._push_keepalive())
            try:
                await asyncio.wait_for(self._resources_changed.wait(), PEER_BINDINGS_EVERY if peers else 3600.0)
            except TimeoutError:
                pass
            self._resources_changed.clear()

    async def _peer_targets(self, peer: Any) -> list[PingTarget]:
        """The peer's live bindings; those pinged now when Location cannot say (it keeps their state)."""
        if not self._location_shards:
            return []
        try:
            if self._location is None:
                self._location = ShardedLocationClient(shard_handles(self._location_shards))
            found = await self._location.find_routes(location_pb2.FindRoutesRequest(aor=peer.aor))
        except Exception as exc:  # noqa: BLE001 - a shard restarting (LocationError, Ray): try again next time
            log.debug("keepalive: cannot list the bindings of peer %s: %r", peer.ref, exc)
            return [p.target for p in self.pinger.probes.values() if p.target.kind == "peer" and
                    p.target.ref == peer.ref and p.target.settings == peer.keepalive]
        return peer_targets(peer, found.routes)

    async def _ping(self, request: Request, target: str, timeout: float) -> Response | None:  # noqa: ASYNC109
        try:
            data = await asyncio.wait_for(self._edgeport().send_request.remote(bytes(request), target, timeout),
                                          timeout + 10.0)
        except Exception:
            self._edge = None  # restarted or replaced: look it up again next time
            raise
        return _response(data)

    def _keepalive_changed(self) -> None:
        self._spawn(self.health.set_down(self.pinger.down_servers(), self.pinger.down_contacts()))
        self._spawn(self._push_keepalive())

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _push_keepalive(self) -> None:
        try:
            await self._edgeport().keepalive_targets.remote(await self.keepalives())
        except Exception as exc:  # noqa: BLE001 - metrics are best effort; the next change pushes again
            log.debug("cannot push keepalive metrics to EdgePort %s: %r", self.edge_port_ref, exc)

    async def keepalives(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [keepalive_row(s, now) for s in self.pinger.statuses()]

    # -- server health (util/server_health.py) --------------------------------------------------------------
    async def health_newer_than(self, epoch: str, version: int, wait_seconds: float) -> dict[str, Any] | None:
        found = await self.health.newer_than(epoch, version, wait_seconds)
        return found.plain() if found is not None else None

    async def health_mark(self, marks: list[list[Any]]) -> int:
        return await self.health.mark((str(t), str(h), int(p), float(s)) for t, h, p, s in marks)

    def _edgeport(self) -> Any:
        if self._edge is None:
            self._edge = ray.get_actor(worker_name(self.edge_port_ref, 0), namespace=NAMESPACE)
        return self._edge

    async def _send(self, request: Request, target: str) -> Response | None:
        try:
            data = await asyncio.wait_for(self._edgeport().send_request.remote(bytes(request), target),
                                          SEND_TIMEOUT)
        except Exception:
            self._edge = None  # restarted or replaced: look it up again next time
            raise
        return _response(data)

    def _changed(self, status: RegistrationStatus) -> None:
        previous = self._last_state.get(status.trunk_ref)
        self._last_state[status.trunk_ref] = status.state
        if status.state is not previous and status.state in (RegState.REGISTERED, RegState.FAILED):
            self.events.publish(trunk_registration(status.trunk_ref, status.state.value, status.granted,
                                                   status.last_error))
        self._spawn(self._push_metrics())

    async def _push_metrics(self) -> None:
        try:
            await self._edgeport().trunk_registrations.remote(await self.statuses())
        except Exception as exc:  # noqa: BLE001 - metrics are best effort; the next round pushes again
            log.debug("cannot push trunk metrics to EdgePort %s: %r", self.edge_port_ref, exc)

    async def statuses(self) -> list[dict[str, Any]]:
        now, wall = time.monotonic(), time.time()
        return [status_row(s, now, wall) for s in self.registrar.statuses()]

    async def ready(self) -> bool:
        return True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.events.stop()


def _response(data: bytes | None) -> Response | None:
    if data is None:
        return None
    try:
        response = parse(data)
    except ParseError:
        return None
    return response if isinstance(response, Response) else None


def has_registration_trunks(resources: Resources) -> bool:
    return any(t.outbound is not None and t.outbound.send_register for t in resources.trunks)


def has_keepalives(resources: Resources) -> bool:
    return bool(trunk_targets(resources) or keepalive_peers(resources))


def deploy_trunk_registrar(resources: Resources, nonce_key: str, edge_port_ref: str, *,
                           settings: RegistryConfig | None = None, board: str | None = None,
                           location_shards: int = 0, detached: bool = True, timeout: float = 60.0,
                           wait: bool = True) -> Any:
    """Start (or find) the registrar; with ``board``, it follows the resource files' reloads; ``location_shards``:
    how many Location shards there are (the keepalive lists the Peers' bindings there; 0: Peers are not pinged).
    ``wait=False`` returns at once (``routr-ray run``: the registrar registers in the background; Ray restarts it
    if it fails)."""
    options: dict[str, Any] = {"name": NAME, "namespace": NAMESPACE, "get_if_exists": True}
    if detached:
        options["lifetime"] = "detached"
    handle = TrunkRegistrarActor.options(**options).remote(  # type: ignore[attr-defined]
        resources, nonce_key, edge_port_ref, settings, board, location_shards)
    if wait:
        ray.get(handle.ready.remote(), timeout=timeout)
    return handle
