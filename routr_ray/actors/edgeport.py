"""The EdgePort as a detached Ray actor (issue 3 item 8), and the Serve-handle dispatcher client.

``edgeport-<ref>`` in namespace ``routr``: binds its listeners in ``async __init__`` (so Ray re-binds them when it
restarts the actor after a crash: ``max_restarts=-1``), never retries a task (a method that crashed the actor
would crash-loop), takes a fraction of a CPU. The dispatcher is reached through a DeploymentHandle with
``_by_reference=False`` carrying a whole batch of serialized MessageRequests per call (DESIGN §10).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import ray
from ray import serve

from routr_ray.actors import NAMESPACE
from routr_ray.actors.metrics import RayMetricsBridge
from routr_ray.actors.serve_app import APP_NAME
from routr_ray.config.edgeport import EdgePortConfig, HealthConfig
from routr_ray.edge.dispatcher_client import DispatcherClient, client_for_addr
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.edge.metrics import EdgeMetrics
from routr_ray.observability.call_events import CallEventEmitter
from routr_ray.observability.publisher import EventPublisher
from routr_ray.observability.sinks import sinks_from_env
from routr_ray.proto.gen import processor_pb2

log = logging.getLogger(__name__)

NAME = "edgeport-{ref}"
SERVE_PREFIX = "serve://"


class ServeDispatcherClient:
    """:class:`DispatcherClient` over the ``routr`` app's ``process_batch`` (bytes in, bytes out)."""

    def __init__(self, app_name: str = APP_NAME) -> None:
        self._app_name = app_name
        self._handle: Any = None

    def _get(self) -> Any:
        if self._handle is None:
            self._handle = serve.get_app_handle(self._app_name).options(_by_reference=False)
        return self._handle

    async def process(self, batch: list[processor_pb2.MessageRequest]) -> list[processor_pb2.MessageResponse]:
        payloads = await self._get().process_batch.remote([r.SerializeToString() for r in batch])
        # b"" = the dispatcher chose to drop (ACK, responses): an empty MessageResponse says the same.
        return [processor_pb2.MessageResponse.FromString(p) for p in payloads]

    async def ready(self) -> bool:
        try:
            self._get()
        except Exception:  # noqa: BLE001 - not deployed (yet)
            return False
        return True

    async def close(self) -> None:
        self._handle = None


def dispatcher_for(addr: str) -> DispatcherClient:
    if not addr or addr.startswith(SERVE_PREFIX):
        app = addr[len(SERVE_PREFIX):] if addr else APP_NAME
        return ServeDispatcherClient(app or APP_NAME)
    return client_for_addr(addr)


@ray.remote(num_cpus=0.1, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class EdgePortActor:
    async def __init__(self, config: EdgePortConfig) -> None:
        logging.basicConfig(level=logging.INFO)
        self.config = config
        # tune_gc: gc.freeze + a larger gen-0 threshold, process-wide: right for a process that only runs the edge.
        metrics = EdgeMetrics()
        # Call events to the sinks named by the environment (log by default; NATS, Redis pub/sub).
        self.events = EventPublisher(sinks_from_env(), registry=metrics.registry)
        await self.events.start()
        self.edge = EdgePort(config, dispatcher_for(config.processor_addr), options=EdgePortOptions(tune_gc=True),
                             metrics=metrics, events=CallEventEmitter(self.events))
        await self.edge.start()
        # The same series as the EdgePort's own /metrics, exported through Ray's metrics pipeline.
        self.metrics_bridge = RayMetricsBridge(self.edge.metrics.registry, default_tags={"edgeport": config.ref})
        self.metrics_bridge.start()
        log.info("EdgePort %s listening: %s", config.ref, self.describe())

    def describe(self) -> list[tuple[str, str, int]]:
        return [(name.value, *listener.local_address) for name, listener in self.edge.listeners.items()]

    async def ready(self) -> list[tuple[str, str, int]]:
        return self.describe()

    async def check_health(self) -> bool:
        return self.edge.is_alive()

    async def metrics_flushes(self) -> int:
        return self.metrics_bridge.flushes

    async def drain(self, seconds: float = 5.0) -> int:
        return await self.edge.drain(seconds)

    async def stop(self) -> None:
        await self.metrics_bridge.stop()
        await self.edge.stop()
        await self.events.stop()


def deploy_edgeport(config: EdgePortConfig, *, health_port_offset: int = 0,
                    timeout: float = 60.0) -> tuple[Any, list[str]]:
    """Start (or find) ``edgeport-<ref>``; several EdgePorts on one node get distinct health ports."""
    if health_port_offset and config.health.enabled:
        health = dataclasses.replace(config.health, port=config.health.port + health_port_offset)
        config = dataclasses.replace(config, health=health)
    handle = EdgePortActor.options(  # type: ignore[attr-defined]
        name=NAME.format(ref=config.ref), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(config)
    listening = ray.get(handle.ready.remote(), timeout=timeout)
    lines = [f"EdgePort {config.ref:<12} {proto.upper():<4} {host}:{port}" for proto, host, port in listening]
    health: HealthConfig = config.health
    if health.enabled:
        lines.append(f"EdgePort {config.ref:<12} HTTP {health.bind_addr}:{health.port} (/healthz /readyz /metrics)")
    return handle, lines
