"""The EdgePort as a detached Ray actor (issue 3 item 8), and the Serve-handle dispatcher client.

``edgeport-<ref>`` in namespace ``routr``: binds its listeners in ``async __init__`` (so Ray re-binds them when it
restarts the actor after a crash: ``max_restarts=-1``), never retries a task (a method that crashed the actor
would crash-loop), takes a fraction of a CPU.

How an EdgePort whose ``processor.addr`` is ``serve://<app>`` dispatches (:data:`DISPATCH_ENV`, or the
``dispatch`` argument of :func:`deploy_edgeport`):

* ``embedded`` (default): :class:`EmbeddedDispatcherClient` runs the dispatcher's own matching
  (:class:`~routr_ray.dispatch.runtime.DispatchRuntime`: same config, same matchFunc compiler, same middlewares)
  inside the EdgePort and calls the processor deployments' handles directly. The config is the one the
  ``dispatcher`` deployment runs with (read from its ``describe`` and re-read every ``refresh`` seconds, so a
  dispatcher.yaml reload reaches the EdgePorts too). One Ray hop per message instead of two; the dispatcher
  deployment stays for outside gRPC callers (Serve's proxy).
* ``dispatcher``: :class:`ServeDispatcherClient`, every message through the dispatcher deployment.

Both carry a whole batch of serialized MessageRequests per call through DeploymentHandles with
``_by_reference=False`` (DESIGN §10).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
from typing import Any

import ray
from ray import serve
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from routr_ray.actors import NAMESPACE
from routr_ray.actors.detached import fingerprint, kill_and_wait, replace_if_changed
from routr_ray.actors.edge_peers import (
    FORWARD,
    PEER_FORWARD,
    PEER_SEND,
    ClusterPeers,
    edge_service,
    worker_actor_name,
)
from routr_ray.actors.links import directory, link_enabled, linked, serve_link
from routr_ray.actors.metrics import RayMetricsBridge, observe_process
from routr_ray.actors.one_loop import one_loop, one_loop_env
from routr_ray.actors.serve_app import (
    APP_NAME,
    DISPATCHER_LINK_SERVICE,
    decode_responses,
    deployment_name,
    deployment_send,
    encode_requests,
    link_service_of,
)
from routr_ray.actors.server_health import RegistrarHealth
from routr_ray.config.changes import ConfigDiff, edgeport_diff
from routr_ray.config.dispatcher import from_document
from routr_ray.config.edgeport import EdgePortConfig, HealthConfig, Placement
from routr_ray.dispatch.metrics import DispatchMetrics
from routr_ray.dispatch.runtime import BatchSend, DispatchRuntime, OutboundTokens
from routr_ray.edge.dispatcher_client import DispatcherClient, client_for_addr
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.edge.metrics import EdgeMetrics
from routr_ray.edge.originate import Originator
from routr_ray.edge.reconfigure import ConfigRefused, apply_log_level
from routr_ray.edge.reconfigure import reconfigure as reconfigure_edge
from routr_ray.edge.shared_hold_down import SharedHoldDown
from routr_ray.edge.tlsutil import TlsConfigError
from routr_ray.edge.transports import Flow, TransportName
from routr_ray.edge.trunk_metrics import TrunkMetrics
from routr_ray.link import unpack_list
from routr_ray.observability.call_events import CallEventEmitter
from routr_ray.observability.publisher import EventPublisher
from routr_ray.observability.sinks import sinks_from_env
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import ParseError, Request, parse

log = logging.getLogger(__name__)

NAME = "edgeport-{ref}"
SERVE_PREFIX = "serve://"
DISPATCH_ENV = "ROUTR_RAY_EDGE_DISPATCH"
EMBEDDED = "embedded"
DISPATCHER_HOP = "dispatcher"
DISPATCH_MODES = (EMBEDDED, DISPATCHER_HOP)
BATCHING_ENV = "ROUTR_RAY_EDGE_BATCHING"
"""``max_batch=64,max_wait=0.001,max_in_flight=4``: the EdgePort -> processor (or dispatcher) batching."""


class _AppLookup:
    """``serve.get_app_handle(app)`` off the event loop (it blocks on the Serve controller, which may still be
    starting), one lookup at a time: a probe that gives up does not leave another blocked thread behind."""

    def __init__(self, app_name: str) -> None:
        self.app_name = app_name
        self._pending: asyncio.Future[Any] | None = None

    async def handle(self) -> Any:
        """The app's ingress handle, by value (``.options`` on the loop: the handle's router lives there)."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(asyncio.to_thread(serve.get_app_handle, self.app_name))
        pending = self._pending
        try:
            found = await asyncio.shield(pending)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._pending = None  # failed (no app yet): the next call asks again
            raise
        self._pending = None
        return found.options(_by_reference=False)


def _note(client: Any, why: str | None) -> bool:
    """Keep why ``client`` is not ready (``not_ready_reason``, "" when ready) and return whether it is."""
    client.not_ready_reason = (why or "")[:300]
    if why:
        log.debug("not ready: %s", why)
    return not why


class ServeDispatcherClient:
    """:class:`DispatcherClient` over the ``routr`` app's ``process_batch`` (bytes in, bytes out)."""

    def __init__(self, app_name: str = APP_NAME) -> None:
        self._app_name = app_name
        self.not_ready_reason = "not probed yet"
        self._lookup = _AppLookup(app_name)
        self._handle: Any = None
        self._send = linked(DISPATCHER_LINK_SERVICE, encode_requests, decode_responses, self._by_handle)

    def _get(self) -> Any:
        if self._handle is None:
            self._handle = serve.get_app_handle(self._app_name).options(_by_reference=False)
        return self._handle

    async def _by_handle(self, batch: list[processor_pb2.MessageRequest]) -> list[processor_pb2.MessageResponse]:
        payloads = await self._get().process_batch.remote([r.SerializeToString() for r in batch])
        # b"" = the dispatcher chose to drop (ACK, responses): an empty MessageResponse says the same.
        return [processor_pb2.MessageResponse.FromString(p) for p in payloads]

    async def process(self, batch: list[processor_pb2.MessageRequest]) -> list[processor_pb2.MessageResponse]:
        # over the dispatcher's link when a replica serves one (docs/link.md), the handle otherwise
        return list(await self._send(batch))

    async def ready(self) -> bool:
        """The dispatcher deployment answers and every processor behind it answers its readiness probe."""
        try:
            if self._handle is None:
                self._handle = await self._lookup.handle()
            why = await self._get().probe.remote()
        except Exception as exc:  # noqa: BLE001 - not deployed (yet), or failing
            why = f"the {self._app_name} dispatcher does not answer: {exc!r}"
        return _note(self, why)

    async def close(self) -> None:
        self._handle = None


class EmbeddedDispatcherClient:
    """:class:`DispatcherClient` that dispatches inside the EdgePort (see the module docstring).

    The routing config comes from the app's dispatcher deployment (``describe``), fetched on first use and
    every ``refresh`` seconds after; until one is there, :meth:`process` raises (the EdgePort answers 503).
    """

    def __init__(self, app_name: str = APP_NAME, *, refresh: float = 2.0, metrics: DispatchMetrics | None = None
                 ) -> None:
        self._app_name = app_name
        self.not_ready_reason = "not probed yet"
        self.refresh = refresh
        self.runtime = DispatchRuntime(self._deployment_send, metrics=metrics)
        self._document: tuple[dict[str, Any], Any] | None = None  # (config document, outbound tokens)
        self._lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._dispatcher: Any = None
        self._lookup = _AppLookup(app_name)

    def _deployment_send(self, name: str) -> BatchSend:
        return deployment_send(serve.get_deployment_handle(deployment_name(name), app_name=self._app_name),
                               link_service_of(name))

    async def _fetch(self) -> None:
        """Read the dispatcher's config and apply it when it changed."""
        if self._dispatcher is None:
            self._dispatcher = await self._lookup.handle()
        description = await self._dispatcher.describe.remote()
        document = description.get("config")
        if document is None:
            raise RuntimeError(f"the {self._app_name} dispatcher has no config yet")
        current = (document, description.get("outbound"))
        if current != self._document:
            config = from_document(document)
            # the tokens the dispatcher sends host:port processors (a rotated one arrives with its redeploy)
            await self.runtime.reconfigure(config, OutboundTokens.from_plain(description.get("outbound")))
            self._document = current
            log.info("embedded dispatch: config %r: processors %s", config.ref, [p.ref for p in config.processors])

    async def _ensure(self) -> None:
        if self.runtime.core is None:
            async with self._lock:
                if self.runtime.core is None:
                    await self._fetch()
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self._fetch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep routing with the last good config
                if not failing:  # once per outage (e.g. the dispatcher being redeployed), not every refresh
                    log.warning("embedded dispatch: cannot refresh the dispatcher config (routing with the last "
                                "one): %r", exc)
                failing = True
            else:
                failing = False

    async def process(self, batch: list[processor_pb2.MessageRequest]) -> list[processor_pb2.MessageResponse]:
        await self._ensure()
        results = await self.runtime.handle_batch(batch)
        # None = the dispatcher chose to drop (ACK, responses): an empty MessageResponse says the same.
        return [r if r is not None else processor_pb2.MessageResponse() for r in results]

    async def ready(self) -> bool:
        """The dispatcher's config is here and every processor it names answers its readiness probe (Connect
        when every Location shard answers): a REGISTER would succeed."""
        try:
            await self._ensure()
            why = await self.runtime.probe()
        except Exception as exc:  # noqa: BLE001 - not deployed (yet), or failing
            why = f"the {self._app_name} dispatcher does not answer: {exc!r}"
        return _note(self, why)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        await self.runtime.close()


def dispatch_mode(explicit: str | None = None) -> str:
    """``explicit``, else ``$ROUTR_RAY_EDGE_DISPATCH``, else ``embedded``; ValueError for anything else."""
    mode = (explicit or os.environ.get(DISPATCH_ENV) or EMBEDDED).strip().lower()
    if mode not in DISPATCH_MODES:
        raise ValueError(f"{DISPATCH_ENV}={mode!r}: expected one of {', '.join(DISPATCH_MODES)}")
    return mode


def edge_options(batching: str | None = None) -> EdgePortOptions:
    """The actor's EdgePortOptions: GC tuned (gc.freeze + a larger gen-0 threshold, process-wide: right for a
    process that only runs the edge) and the batching of ``batching`` (else ``$ROUTR_RAY_EDGE_BATCHING``)."""
    options = EdgePortOptions(tune_gc=True)
    text = batching if batching is not None else os.environ.get(BATCHING_ENV, "")
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        if name in ("max_batch", "max_in_flight"):
            setattr(options, name, int(value))
        elif name == "max_wait":
            options.max_wait = float(value)
        else:
            raise ValueError(f"{BATCHING_ENV}: unknown setting {name!r} (max_batch, max_wait, max_in_flight)")
    if options.max_batch < 1 or options.max_in_flight < 1 or options.max_wait < 0:
        raise ValueError(f"{BATCHING_ENV}: max_batch and max_in_flight must be >= 1, max_wait >= 0")
    return options


def dispatcher_for(addr: str, mode: str | None = None, token: str | None = None,
                   metrics: DispatchMetrics | None = None) -> DispatcherClient:
    """The EdgePort's way to the dispatcher: in the cluster (``serve://``), or ``host:port`` with ``token``;
    ``metrics``: where the embedded dispatch counts (``routr_dispatcher_messages_total``)."""
    if not addr or addr.startswith(SERVE_PREFIX):
        app = (addr[len(SERVE_PREFIX):] if addr else APP_NAME) or APP_NAME
        if dispatch_mode(mode) == EMBEDDED:
            return EmbeddedDispatcherClient(app, metrics=metrics)
        return ServeDispatcherClient(app)
    return client_for_addr(addr, token=token)


class TrunkSourcesFollower:
    """Keeps an EdgePort's Trunk and Peer source networks (never banned, never evicted: issue 14 item 8) current
    when the resources reload: long-polls the Connect resource board (``routr_ray/actors/connect.py``), which
    hands out only the networks. Without a board (Connect not deployed, or not yet) it retries every ``retry``
    seconds and the networks given at deploy stay."""

    def __init__(self, edge: EdgePort, *, retry: float = 5.0, wait: float = 30.0) -> None:
        self.edge = edge
        self.retry = retry
        self.wait = wait
        self.version = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        from routr_ray.actors.connect import BOARD_NAME

        board: Any = None
        failing = False
        while True:
            try:
                if board is None:
                    board = ray.get_actor(BOARD_NAME, namespace=NAMESPACE)
                found = await board.trunk_sources_newer_than.remote(self.version, self.wait)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - no board (yet), or it is restarting: keep what we have
                board = None
                if not failing:
                    log.info("EdgePort: no Connect resource board to follow (%r); the trunk and peer sources "
                             "given at deploy stay", exc)
                failing = True
                await asyncio.sleep(self.retry)
                continue
            failing = False
            if found is not None:
                self.version, networks = found
                self.edge.protect_sources(networks)
                log.info("EdgePort: %d trunk and peer source networks (resources version %d)", len(networks),
                         self.version)


@ray.remote(num_cpus=0.1, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class EdgePortActor:
    async def __init__(self, config: EdgePortConfig, dispatch: str | None = None, batching: str | None = None,
                       worker: int = 0, trunk_sources: tuple[Any, ...] = ()) -> None:
        logging.basicConfig(level=logging.INFO)
        # Ray restarts a crashed actor with the arguments it was created with: a config applied in place since
        # (reconfigure) is kept in the GCS under this actor's id and taken instead
        config = recall_config(config)
        apply_log_level(config.log_level)
        self.config = config
        self._dispatch_arg, self.batching = dispatch, batching
        self._fingerprint = edge_fingerprint(config, dispatch, batching)
        self.dispatch = dispatch_mode(dispatch)
        options = edge_options(batching)
        options.worker, options.workers = worker, config.workers
        # the other workers of this EdgePort and the other EdgePorts of the cluster (edge/peers.py)
        peers = ClusterPeers(config.ref, worker, config.workers)
        options.peers = peers
        if config.workers > 1:
            options.siblings = peers
        metrics = EdgeMetrics()
        # Call events to the sinks named by the environment (log, NATS, Redis pub/sub; none by default: then no
        # event is even built on the SIP path).
        sinks = sinks_from_env()
        self.events = EventPublisher(sinks, registry=metrics.registry)
        await self.events.start()
        observe_process("edgeport", config.ref if config.workers == 1 else f"{config.ref}-{worker}")
        dispatcher = dispatcher_for(config.processor_addr, self.dispatch, config.processor_token,
                                    DispatchMetrics(metrics.registry))
        self.edge = EdgePort(config, dispatcher, options=options,
                             metrics=metrics, events=CallEventEmitter(self.events) if sinks else None)
        self.edge.protect_sources(trunk_sources)  # derived from the resources at deploy; then followed
        self.trunk_sources = TrunkSourcesFollower(self.edge)
        self.trunk_sources.start()
        await self.edge.start()
        # requests this EdgePort sends itself (the trunk registrar's REGISTERs) and the trunks' state on /metrics
        self.originator = Originator(self.edge)
        self.trunk_metrics = TrunkMetrics(self.edge.metrics.registry, self.edge.hold_down.count)
        # servers held down here are skipped by every EdgePort, and theirs here (edge/shared_hold_down.py)
        health = RegistrarHealth()
        self.shared_hold_down = SharedHoldDown(self.edge.hold_down, health.fetch, health.publish)
        self.shared_hold_down.start()
        self.peer_link = await serve_link(edge_service(peers.tag, worker), self.peer_call)
        # The same series as the EdgePort's own /metrics, exported through Ray's metrics pipeline.
        tags = {"edgeport": config.ref} if config.workers == 1 else {"edgeport": config.ref, "worker": str(worker)}
        self.metrics_bridge = RayMetricsBridge(self.edge.metrics.registry, default_tags=tags)
        self.metrics_bridge.start()
        if ray.get_runtime_context().was_current_actor_reconstructed:
            # a restart (a crash, or its node lost): phones registered through it reach it at the addresses it
            # advertised before; on another node those hold only with spec.placement / externalAddrs that say so
            log.warning("EdgePort %s restarted on node %s (%s), placement %s: listening on %s", config.ref,
                        ray.get_runtime_context().get_node_id()[:12], ray.util.get_node_ip_address(),
                        config.placement.describe(), self.describe())
        log.info("EdgePort %s listening: %s (dispatch: %s, batching %d/%gs/%d, loop %s)", config.ref, self.describe(),
                 self.dispatch, options.max_batch, options.max_wait, options.max_in_flight,
                 type(asyncio.get_running_loop()).__module__)

    async def peer_call(self, payload: bytes) -> bytes:
        """A call from another worker of this EdgePort or another EdgePort (``actors/edge_peers.py``), over the
        data plane or, without a link, as a Ray call."""
        kind, transport, host, port, data, extra, last = unpack_list(payload)
        name = TransportName(transport.decode())
        if kind in (FORWARD, PEER_FORWARD):
            flow = Flow(name, host.decode(), int(port), extra.decode(), int(last))
            if kind == FORWARD:
                self.edge.receive_from_sibling(flow, data)
            else:
                self.edge.receive_from_peer(flow, data)
            return b"1"
        if kind == PEER_SEND:
            sent = await self.edge.send_for_peer(name, host.decode(), int(port), data, flow=extra == b"1",
                                                 server_name=last.decode() or None)
        else:
            sent = await self.edge.send_for_sibling(name, host.decode(), int(port), data)
        return b"1" if sent else b"0"

    def describe(self) -> list[tuple[str, str, int]]:
        return [(name.value, *listener.local_address) for name, listener in self.edge.listeners.items()]

    async def ready(self) -> list[tuple[str, str, int]]:
        return self.describe()

    async def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def status_info(self) -> dict[str, Any]:
        """What ``routr-ray status`` shows of this worker: where it runs, its flows and transactions, the link
        services it calls (actors/status.py)."""
        context = ray.get_runtime_context()
        edge = self.edge
        return {
            "node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "listeners": self.describe(), "worker": edge.worker, "workers": self.config.workers,
            "tag": edge.tag, "flows": len(edge.connections),
            "transactions": len(edge.server_txns) + len(edge.client_txns),
            "placement": self.config.placement.describe() if self.config.placement else "",
            "restarted": bool(context.was_current_actor_reconstructed), "draining": edge.draining,
            "links": directory().services() if link_enabled() else {},
        }

    async def fingerprint(self) -> str:
        return self._fingerprint

    async def running_config(self) -> tuple[EdgePortConfig, str, str]:
        """The config in force (the deploy's, or the last one applied in place), the dispatch mode and the
        batching setting: what a redeploy compares its config with (config/changes.py)."""
        return self.config, self.dispatch, self.batching or ""

    async def reconfigure(self, config: EdgePortConfig, file: str = "edgeport.yaml") -> tuple[bool, str]:
        """Apply ``config`` to this running worker in place (edge/reconfigure.py): (True, what changed), or
        (False, why not: file, field, reason) with nothing changed. Kept for a crash restart of this actor."""
        try:
            diff = reconfigure_edge(self.edge, config, file=file)
        except (ConfigRefused, TlsConfigError) as exc:
            return False, str(exc)
        if diff.changed:
            self.config = config
            self._fingerprint = edge_fingerprint(config, self._dispatch_arg, self.batching)
            remember_config(config)
        return True, diff.summary()

    async def dispatch_mode(self) -> str:
        """``embedded`` or ``dispatcher`` (how this EdgePort reaches the processors)."""
        return self.dispatch

    async def send_request(self, data: bytes, target: str,
                           timeout: float | None = None) -> bytes | None:  # noqa: ASYNC109
        """Send an out-of-dialog request from this EdgePort (``edge/originate.py``: its top Via and Contact host
        ``0.0.0.0`` become our address toward ``target``) and return its final response; None without one (within
        ``timeout`` seconds when given: the keepalive's OPTIONS)."""
        try:
            request = parse(data)
        except ParseError:
            return None
        if not isinstance(request, Request):
            return None
        response = await self.originator.send(request, target, timeout)
        return bytes(response) if response is not None else None

    async def trunk_registrations(self, rows: list[dict[str, Any]]) -> None:
        """The trunk registrar's latest state of every registration (``edge/trunk_metrics.py``)."""
        self.trunk_metrics.update(rows)

    async def keepalive_targets(self, rows: list[dict[str, Any]]) -> None:
        """The keepalive's state of every target it pings (``edge/trunk_metrics.py``)."""
        self.trunk_metrics.update_keepalive(rows)

    async def held_down(self) -> list[tuple[str, str, int, float]]:
        """The servers this EdgePort skips first now (``edge/hold_down.py``; tests, operators)."""
        return self.edge.hold_down.down()

    async def check_health(self) -> bool:
        return self.edge.is_alive()

    async def wait_ready(self, seconds: float) -> tuple[bool, str]:
        """(True, "") once a REGISTER would succeed (the end-to-end probe answered: edge/readiness.py), else
        (False, why) after ``seconds``."""
        if await self.edge.wait_ready(seconds):
            return True, ""
        why = getattr(self.edge.dispatcher.client, "not_ready_reason", "") or "its probe failed"
        return False, f"EdgePort {self.config.ref}: {why}"

    async def metrics_flushes(self) -> int:
        return self.metrics_bridge.flushes

    async def drain(self, seconds: float = 5.0) -> int:
        return await self.edge.drain(seconds)

    async def protected_sources(self) -> list[str]:
        """The Trunk and Peer source networks in force (tests, operators)."""
        return [str(n) for n in self.edge.rate.protected_networks]

    async def stop(self) -> None:
        forget_config()
        await self.trunk_sources.stop()
        await self.shared_hold_down.stop()
        if self.peer_link is not None:
            await self.peer_link.close()
        await self.metrics_bridge.stop()
        await self.edge.stop()
        await self.events.stop()


_APPLIED_KEY = "routr:edgeport-config:{actor_id}"


def _applied_key() -> bytes:
    return _APPLIED_KEY.format(actor_id=ray.get_runtime_context().get_actor_id()).encode()


def remember_config(config: EdgePortConfig) -> None:
    """Keep the config applied in place to this actor in the GCS (by its actor id: a replaced EdgePort is another
    actor and never finds it)."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(_applied_key(), pickle.dumps(config), overwrite=True)


def recall_config(config: EdgePortConfig) -> EdgePortConfig:
    """The config last applied in place to this actor (a restart after a crash), else ``config``."""
    from ray.experimental.internal_kv import _internal_kv_get

    try:
        kept = _internal_kv_get(_applied_key())
    except Exception:  # noqa: BLE001 - the GCS cannot say: the deploy's config
        log.warning("EdgePort %s: cannot read the config applied in place; starting with the deploy's", config.ref)
        return config
    if not kept:
        return config
    applied = pickle.loads(kept)  # noqa: S301 - written by remember_config of this very actor
    log.warning("EdgePort %s restarted: with the config applied in place after its deploy", config.ref)
    return applied if isinstance(applied, EdgePortConfig) else config


def forget_config() -> None:
    from ray.experimental.internal_kv import _internal_kv_del

    try:
        _internal_kv_del(_applied_key())
    except Exception:  # noqa: BLE001 - stopping anyway
        pass


def edge_fingerprint(config: EdgePortConfig, dispatch: str | None, batching: str | None) -> str:
    """What a running EdgePort runs with (its secrets only hashed; after an in-place change, the new config's): an
    EdgePort of an older version, which cannot say its config, is replaced when this differs
    (routr_ray/actors/detached.py)."""
    return fingerprint("edgeport", dataclasses.asdict(config), dispatch, batching)


def _replace_changed_edgeport(ref: str, wanted: str, timeout: float) -> None:
    """All workers of EdgePort ``ref`` go when the first runs with another config (the old one may have had
    more workers than the new)."""
    if not replace_if_changed(worker_name(ref, 0), wanted, timeout=timeout):
        return
    worker = 1
    while True:
        try:
            ray.get_actor(worker_name(ref, worker), namespace=NAMESPACE)
        except ValueError:
            return
        kill_and_wait(worker_name(ref, worker), timeout=timeout)
        worker += 1


def worker_name(ref: str, worker: int) -> str:
    """``edgeport-<ref>`` for the first worker (the only one by default), ``edgeport-<ref>-<i>`` for the others."""
    return worker_actor_name(ref, worker)


EDGE_LABELS_ENV = "ROUTR_RAY_EDGE_LABELS"
"""``key=value,...``: the node labels of EdgePorts without a ``spec.placement`` of their own (the cluster files set
``routr-group=edge``: every EdgePort runs on the edge group)."""


def default_placement(config: EdgePortConfig, text: str | None = None) -> EdgePortConfig:
    """``config`` with the placement of :data:`EDGE_LABELS_ENV` (or ``text``) when it has none of its own."""
    text = os.environ.get(EDGE_LABELS_ENV, "") if text is None else text
    if config.placement or not text.strip():
        return config
    labels = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip() or not value.strip():
            raise ValueError(f"{EDGE_LABELS_ENV}: expected key=value[,key=value...], got {item!r}")
        labels.append((key.strip(), value.strip()))
    return dataclasses.replace(config, placement=Placement(tuple(sorted(labels))))


def placement_options(config: EdgePortConfig) -> dict[str, Any]:
    """Ray options pinning the EdgePort's first worker (``spec.placement``): Ray restarts it within them too."""
    options: dict[str, Any] = {}
    if config.placement.labels:
        options["label_selector"] = dict(config.placement.labels)
    if config.placement.resources:
        options["resources"] = dict(config.placement.resources)
    return options


def deployed_config(config: EdgePortConfig, health_port_offset: int = 0) -> EdgePortConfig:
    """``config`` as the actor gets it: the default placement (:data:`EDGE_LABELS_ENV`) and the health port moved
    by ``health_port_offset``."""
    config = default_placement(config)
    if health_port_offset and config.health.enabled:
        health = dataclasses.replace(config.health, port=config.health.port + health_port_offset)
        config = dataclasses.replace(config, health=health)
    return config


def running_edgeport_diff(config: EdgePortConfig, *, dispatch: str | None = None, file: str = "edgeport.yaml",
                          timeout: float = 30.0) -> ConfigDiff | None:
    """How the running EdgePort ``config.ref`` differs from ``config`` (as :func:`deployed_config` made it); None
    when none runs, or it cannot say (dead, restarting, an older version): then a deploy replaces it."""
    try:
        handle = ray.get_actor(worker_name(config.ref, 0), namespace=NAMESPACE)
    except ValueError:
        return None
    try:
        running, running_dispatch, running_batching = ray.get(handle.running_config.remote(), timeout=timeout)
    except Exception:  # noqa: BLE001 - replaced as before
        return None
    wanted = (dispatch_mode(dispatch), os.environ.get(BATCHING_ENV, ""))
    return edgeport_diff(running, config, file=file, deploy_settings=wanted,
                         running_settings=(running_dispatch, running_batching))


def _reconfigure_workers(config: EdgePortConfig, file: str, timeout: float) -> str:
    """Apply ``config`` in place to every worker of the running EdgePort (its worker count is unchanged: another
    one is refused) and return what changed; ValueError with a worker's reason (file: field: reason) when one
    cannot take it (e.g. a certificate file missing on its node)."""
    handles = [ray.get_actor(worker_name(config.ref, i), namespace=NAMESPACE) for i in range(config.workers)]
    results = ray.get([h.reconfigure.remote(config, file) for h in handles], timeout=timeout)
    for ok, text in results:
        if not ok:
            raise ValueError(text)
    return results[0][1]


def deploy_edgeport(config: EdgePortConfig, *, health_port_offset: int = 0, timeout: float = 60.0,
                    dispatch: str | None = None, trunk_sources: tuple[Any, ...] = (),
                    file: str = "edgeport.yaml") -> tuple[Any, list[str]]:
    """:func:`deploy_edgeports`, returning the first worker's handle."""
    handles, lines = deploy_edgeports(config, health_port_offset=health_port_offset, timeout=timeout,
                                      dispatch=dispatch, trunk_sources=trunk_sources, file=file)
    return handles[0], lines


def deploy_edgeports(config: EdgePortConfig, *, health_port_offset: int = 0, timeout: float = 60.0,
                     dispatch: str | None = None, trunk_sources: tuple[Any, ...] = (),
                     file: str = "edgeport.yaml") -> tuple[list[Any], list[str]]:
    """Start (or find) the ``config.workers`` actors of an EdgePort (:func:`worker_name`), sharing its ports
    (routr_ray/edge/workers.py); several EdgePorts on one node get distinct health ports, and worker i of one
    uses its health port + i. ``dispatch``: ``embedded`` or ``dispatcher`` (default:
    ``$ROUTR_RAY_EDGE_DISPATCH``, else embedded), read here in the driver so that the setting reaches the actor
    wherever it runs. All workers of an EdgePort run on the node of the first (its ports are that node's). An
    EdgePort already running with another config is updated in place when every change can be (issue 18:
    config/changes.py, edge/reconfigure.py; its flows, transactions and registrations stay), and
    :class:`ConfigRefused` (``file``: field: reason; nothing changed) when one cannot; with the same config it is
    kept; one that cannot say what it runs (an older version) is replaced. ``trunk_sources``: the source networks
    of the Trunks and Peers (``routr_ray/config/trunk_sources.py``), never banned; each worker then follows the Connect resource board for changes (:class:`TrunkSourcesFollower`)."""
    dispatch = dispatch_mode(dispatch)
    batching = os.environ.get(BATCHING_ENV, "")
    edge_options(batching)  # a bad setting fails here, in the driver
    config = deployed_config(config, health_port_offset)
    # Serve's request router on the actor's own loop: no thread hop per dispatcher call
    extra: dict[str, Any] = one_loop_env("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP") if one_loop() else {}
    diff = running_edgeport_diff(config, dispatch=dispatch, file=file, timeout=timeout)
    updated = ""
    if diff is None:
        _replace_changed_edgeport(config.ref, edge_fingerprint(config, dispatch, batching), timeout)
    elif diff.refusals or diff.replaced:
        raise ConfigRefused(diff)
    elif diff.changed:
        updated = _reconfigure_workers(config, file, timeout)
    first = EdgePortActor.options(  # type: ignore[attr-defined]
        name=worker_name(config.ref, 0), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        **placement_options(config), **extra,
    ).remote(config, dispatch, batching, 0, trunk_sources)
    listening = ray.get(first.ready.remote(), timeout=timeout)
    handles = [first]
    if config.workers > 1:
        node = ray.get(first.node_id.remote(), timeout=timeout)
        # with a spec.placement, softly: a worker whose node was lost restarts on a node of the placement (the
        # first worker's, when one node has the label) instead of waiting for a node that will not come back
        placement = NodeAffinitySchedulingStrategy(node_id=node, soft=bool(config.placement))
        handles += [EdgePortActor.options(  # type: ignore[attr-defined]
            name=worker_name(config.ref, i), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            scheduling_strategy=placement, **placement_options(config), **extra,
        ).remote(config, dispatch, batching, i, trunk_sources) for i in range(1, config.workers)]
        ray.get([h.ready.remote() for h in handles[1:]], timeout=timeout)
    workers = f" ({config.workers} workers)" if config.workers > 1 else ""
    lines = [f"EdgePort {config.ref:<12} {proto.upper():<4} {host}:{port}{workers}" for proto, host, port in listening]
    if updated:
        lines.append(updated)
    health: HealthConfig = config.health
    if health.enabled:
        ports = (f"{health.port}" if config.workers == 1 else f"{health.port}-{health.port + config.workers - 1}")
        lines.append(f"EdgePort {config.ref:<12} HTTP {health.bind_addr}:{ports} (/healthz /readyz /metrics)")
    return handles, lines
