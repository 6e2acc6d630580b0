"""The EdgePorts of a cluster wired to each other: the other workers of one EdgePort (``edge/workers.py``) and the
other EdgePorts (``edge/peers.py``), over the internal data plane (docs/link.md), a Ray call when no link reaches.

Every EdgePort worker serves one link, :func:`edge_service` (``edgeport@<tag>#<worker>``, the tag from
``routr_ray/util/edge_tag.py``), which answers four calls, each a packed list (``link.pack_list``):

* ``forward`` / ``peer-forward``: a message received by another worker / another EdgePort for a client transaction
  of this worker (``transport, remote host, remote port, data, local host, local port``); answered ``1``;
* ``send``: a sibling asks this worker to write ``data`` on a connection it holds (``transport, host, port, data``);
* ``peer-send``: another EdgePort asks this EdgePort to put a request on the wire (``transport, host, port, data,
  flow 1/0, TLS server name``); sent to worker 0, which asks its siblings when another worker holds the flow.

``send``/``peer-send`` answer ``1`` when sent, ``0`` when not. With links off (``ROUTR_RAY_LINK=0``) or none
reachable, the same payload goes through a Ray call to the worker actor's ``peer_call``; the tag is mapped back to
the EdgePort's ref from the named actors of namespace ``routr`` (read at most once a second, on a miss).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray

from routr_ray.actors import NAMESPACE
from routr_ray.actors.links import directory, link_enabled
from routr_ray.edge.transports import Flow, TransportName
from routr_ray.link import LinkConnectError, pack_list
from routr_ray.util.edge_tag import edge_tag

log = logging.getLogger(__name__)

FORWARD, PEER_FORWARD, SEND, PEER_SEND = b"forward", b"peer-forward", b"send", b"peer-send"
ACTOR_PREFIX = "edgeport-"
REFS_REFRESH_S = 1.0


def edge_service(tag: str, worker: int) -> str:
    """The link service of one EdgePort worker."""
    return f"edgeport@{tag}#{worker}"


def worker_actor_name(ref: str, worker: int) -> str:
    """``edgeport-<ref>`` for the first worker, ``edgeport-<ref>-<i>`` for the others (the actors' names)."""
    return f"{ACTOR_PREFIX}{ref}" if worker == 0 else f"{ACTOR_PREFIX}{ref}-{worker}"


def flow_items(flow: Flow) -> list[bytes]:
    return [flow.transport.value.encode(), flow.remote_host.encode(), str(flow.remote_port).encode()]


class ClusterPeers:
    """:class:`~routr_ray.edge.workers.Siblings` and :class:`~routr_ray.edge.peers.Peers` of one EdgePort worker."""

    def __init__(self, ref: str, worker: int, workers: int) -> None:
        self.tag = edge_tag(ref)
        self.worker = worker
        self.siblings = [i for i in range(workers) if i != worker]
        self._refs: dict[str, str] = {edge_tag(ref): ref}  # tag -> ref, for the Ray-call fallback
        self._refs_read = 0.0
        self._refs_lock = asyncio.Lock()  # one lookup at a time: a burst waits for it instead of finding nothing
        self._actors: dict[tuple[str, int], Any] = {}

    # ---- the Siblings protocol -------------------------------------------------------------------
    async def forward(self, worker: int, flow: Flow, data: bytes) -> bool:
        if worker not in self.siblings:
            return False
        payload = pack_list([FORWARD, *flow_items(flow), data, flow.local_host.encode(), str(flow.local_port).encode()])
        return await self._call(self.tag, worker, payload) == b"1"

    async def send_on_flow(self, transport: TransportName, host: str, port: int, data: bytes) -> bool:
        payload = pack_list([SEND, transport.value.encode(), host.encode(), str(port).encode(), data, b"", b"0"])
        for worker in self.siblings:
            if await self._call(self.tag, worker, payload) == b"1":
                return True
        return False

    # ---- the Peers protocol ----------------------------------------------------------------------
    async def send(self, tag: str, transport: TransportName, host: str, port: int, data: bytes, *, flow: bool,
                   server_name: str | None = None) -> bool:
        payload = pack_list([PEER_SEND, transport.value.encode(), host.encode(), str(port).encode(), data,
                             b"1" if flow else b"0", (server_name or "").encode()])
        return await self._call(tag, 0, payload) == b"1"

    async def hand_back(self, tag: str, worker: int, flow: Flow, data: bytes) -> bool:
        payload = pack_list([PEER_FORWARD, *flow_items(flow), data, flow.local_host.encode(),
                             str(flow.local_port).encode()])
        return await self._call(tag, worker, payload) == b"1"

    # ---- transport -------------------------------------------------------------------------------
    async def _call(self, tag: str, worker: int, payload: bytes) -> bytes | None:
        if link_enabled():
            pool = directory().pool(edge_service(tag, worker))
            if len(pool):
                try:
                    return await pool.call(payload)
                except LinkConnectError:
                    pass  # nothing was sent: the Ray call below
        actor = await self._actor(tag, worker)
        if actor is None:
            return None
        try:
            return await actor.peer_call.remote(payload)  # type: ignore[no-any-return]
        except Exception:
            self._actors.pop((tag, worker), None)  # dead or replaced: look it up again next time
            raise

    async def _actor(self, tag: str, worker: int) -> Any:
        key = (tag, worker)
        handle = self._actors.get(key)
        if handle is not None:
            return handle
        ref = await self._ref_of(tag)
        if ref is None:
            return None
        try:
            handle = await asyncio.to_thread(ray.get_actor, worker_actor_name(ref, worker), namespace=NAMESPACE)
        except ValueError:
            return None
        self._actors[key] = handle
        return handle

    async def _ref_of(self, tag: str) -> str | None:
        ref = self._refs.get(tag)
        if ref is not None:
            return ref
        async with self._refs_lock:
            if tag not in self._refs and time.monotonic() - self._refs_read > REFS_REFRESH_S:
                try:
                    names = await asyncio.to_thread(ray.util.list_named_actors, True)
                except Exception as exc:  # noqa: BLE001 - the GCS unreachable: nothing to call
                    log.debug("cannot list the EdgePorts: %r", exc)
                    return None
                finally:
                    self._refs_read = time.monotonic()
                for entry in names:
                    name = entry.get("name", "") if isinstance(entry, dict) else str(entry)
                    namespace = entry.get("namespace") if isinstance(entry, dict) else NAMESPACE
                    if namespace == NAMESPACE and name.startswith(ACTOR_PREFIX):
                        candidate = name[len(ACTOR_PREFIX):]
                        self._refs.setdefault(edge_tag(candidate), candidate)
            return self._refs.get(tag)


__all__ = ["FORWARD", "PEER_FORWARD", "PEER_SEND", "SEND", "ClusterPeers", "edge_service", "worker_actor_name"]
