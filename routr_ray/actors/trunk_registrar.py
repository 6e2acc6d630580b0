"""The trunk registrar: one detached actor per cluster that keeps every ``sendRegister`` trunk registered
(issue 15 item 1; the SIP logic is ``routr_ray/trunks``, sans-I/O plus an asyncio driver).

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
from routr_ray.config import Resources
from routr_ray.config.registry import RegistryConfig
from routr_ray.observability.events import trunk_registration
from routr_ray.observability.publisher import EventPublisher
from routr_ray.observability.sinks import sinks_from_env
from routr_ray.processors.connect.reload import FollowedResources
from routr_ray.sip import ParseError, Request, Response, parse
from routr_ray.trunks.contact_token import TrunkContactTokens
from routr_ray.trunks.registrar import TrunkRegistrar
from routr_ray.trunks.registration import RegistrationStatus, RegState
from routr_ray.trunks.specs import registration_specs

__all__ = ["NAME", "TrunkRegistrarActor", "deploy_trunk_registrar", "has_registration_trunks"]

log = logging.getLogger(__name__)

NAME = "trunk-registrar"
SEND_TIMEOUT = 40.0  # Timer F (32 s) plus the Ray call


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


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=100)
class TrunkRegistrarActor:
    async def __init__(self, resources: Resources, nonce_key: str, edge_port_ref: str,
                       settings: RegistryConfig | None = None, board: str | None = None) -> None:
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
        self.registrar.update(registration_specs(resources, self.tokens, self.settings))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.registrar.run())]
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
            await asyncio.sleep(1.0)

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
        if data is None:
            return None
        try:
            response = parse(data)
        except ParseError:
            return None
        return response if isinstance(response, Response) else None

    def _changed(self, status: RegistrationStatus) -> None:
        previous = self._last_state.get(status.trunk_ref)
        self._last_state[status.trunk_ref] = status.state
        if status.state is not previous and status.state in (RegState.REGISTERED, RegState.FAILED):
            self.events.publish(trunk_registration(status.trunk_ref, status.state.value, status.granted,
                                                   status.last_error))
        asyncio.get_running_loop().create_task(self._push_metrics())

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


def has_registration_trunks(resources: Resources) -> bool:
    return any(t.outbound is not None and t.outbound.send_register for t in resources.trunks)


def deploy_trunk_registrar(resources: Resources, nonce_key: str, edge_port_ref: str, *,
                           settings: RegistryConfig | None = None, board: str | None = None,
                           detached: bool = True, timeout: float = 60.0, wait: bool = True) -> Any:
    """Start (or find) the registrar; with ``board``, it follows the resource files' reloads. ``wait=False``
    returns at once (``routr-ray run``: the registrar registers in the background; Ray restarts it if it fails)."""
    options: dict[str, Any] = {"name": NAME, "namespace": NAMESPACE, "get_if_exists": True}
    if detached:
        options["lifetime"] = "detached"
    handle = TrunkRegistrarActor.options(**options).remote(  # type: ignore[attr-defined]
        resources, nonce_key, edge_port_ref, settings, board)
    if wait:
        ray.get(handle.ready.remote(), timeout=timeout)
    return handle
