"""The ``routr`` Serve application: the Message Dispatcher (ingress) and the in-cluster processors.

Exactly one Serve application, ``routr``, whose ingress deployment is the dispatcher, so Serve's gRPC proxy
routes ``fonoster.routr.processor.v2beta1.Processor/ProcessMessage`` to it without ``application`` metadata
(Routr clients never send it). In-cluster callers (EdgePorts) use :meth:`DispatcherDeployment.process_batch`
through a DeploymentHandle with ``_by_reference=False``: bytes in, bytes out, one call per batch (DESIGN §10).

Processor addresses (``processors[].addr`` / ``middlewares[].addr`` in the dispatcher config):

* ``serve://<name>``: a processor deployment in this app. ``<name>`` is a built-in (:data:`BUILTIN_PROCESSORS`)
  or a Python import path ``package.module:Class`` of a processor-SDK class. The dispatcher batches per
  processor deployment (adaptive: at once when idle, gathered while a call is in flight);
* ``host:port``: any server speaking ``Processor/ProcessMessage`` (a Routr processor, in any language), through
  a reused, health-checked grpc.aio channel (:mod:`routr_ray.dispatch.remote`).

Config reload without restart: the dispatcher gets its config as Serve ``user_config`` (the plain
``MessageDispatcher`` document, :func:`~routr_ray.config.dispatcher.to_document`) in :meth:`reconfigure`, and
every deployment gets a ``version`` computed from what really needs new replicas (init arguments, the code of
``routr_ray``). So :func:`deploy_app` with a changed matchFunc, methods, order, ``host:port`` address, deadline or
middleware reconfigures the running replicas in place; adding a new ``serve://`` processor or changing the
token restarts the dispatcher replicas (Serve starts the new ones before stopping the old). The launcher calls
:func:`deploy_app` again when dispatcher.yaml changes (:func:`watch_config`).

Token (DESIGN §6b): outside callers of Serve's gRPC port must send ``authorization: Bearer <token>`` or
``x-routr-token: <token>`` when one is set (``ROUTR_RAY_DISPATCHER_TOKEN``, else ``spec.token``); otherwise
anyone who reaches the port can claim any ``sender``: firewall it. In-cluster callers (``process_batch``) are
not asked for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from routr_ray.config.dispatcher import AutoscalingConfig, DispatcherConfig, from_document, to_document
from routr_ray.dispatch.core import DispatchCore, route_deadline
from routr_ray.dispatch.matching import Route, Router
from routr_ray.dispatch.middleware import Middleware, MiddlewareChain
from routr_ray.dispatch.remote import GrpcProcessorClient
from routr_ray.dispatch.watch import DispatcherConfigWatcher
from routr_ray.grpcutil.auth import token_ok
from routr_ray.proto.gen import processor_pb2
from routr_ray.util.batching import AdaptiveBatcher

log = logging.getLogger(__name__)

APP_NAME = "routr"
ROUTE_PREFIX = f"/{APP_NAME}"
DISPATCHER_DEPLOYMENT = "dispatcher"
SERVE_SCHEME = "serve://"
TOKEN_ENV = "ROUTR_RAY_DISPATCHER_TOKEN"
GRPC_SERVICER = "routr_ray.proto.gen.processor_pb2_grpc.add_ProcessorServicer_to_server"
BUILTIN_PROCESSORS = {
    "echo": "routr_ray.processors.echo:EchoProcessor",
    "connect": "routr_ray.actors.connect:ConnectDeploymentProcessor",
}

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
Call = Callable[[MessageRequest, float | None], Awaitable[MessageResponse]]


@dataclasses.dataclass(frozen=True)
class Batching:
    """The dispatcher -> processor-deployment hop (DESIGN §10); ``max_batch=1`` turns batching off."""

    max_batch: int = 64
    max_wait: float = 0.001
    max_in_flight: int = 4


def serve_name(addr: str) -> str | None:
    """The processor name of a ``serve://`` address, or None for ``host:port``."""
    return addr[len(SERVE_SCHEME):] if addr.startswith(SERVE_SCHEME) else None


def deployment_name(name: str) -> str:
    """A Serve deployment name for a processor name (import paths contain ':' and '.')."""
    return "processor-" + name.replace(":", "-").replace(".", "-")


def import_processor(name: str) -> type:
    path = BUILTIN_PROCESSORS.get(name, name)
    module_name, sep, attr = path.partition(":")
    if not sep:
        raise ValueError(f"processor {name!r} is neither built-in ({', '.join(BUILTIN_PROCESSORS)}) "
                         "nor an import path like package.module:Class")
    return getattr(importlib.import_module(module_name), attr)


def dispatcher_token(config: DispatcherConfig, explicit: str | None = None) -> str | None:
    """The token outside callers must send: ``explicit``, else ``$ROUTR_RAY_DISPATCHER_TOKEN``, else ``spec.token``."""
    return explicit or os.environ.get(TOKEN_ENV) or config.token or None


def _batch_send(handle: DeploymentHandle) -> Callable[[list[MessageRequest]], Awaitable[list[MessageResponse]]]:
    by_value = handle.options(_by_reference=False)

    async def send(requests: list[MessageRequest]) -> list[MessageResponse]:
        payloads = await by_value.process_batch.remote([r.SerializeToString() for r in requests])
        return [MessageResponse.FromString(p) for p in payloads]

    return send


def _handle_call(handle: DeploymentHandle, batching: Batching) -> Call:
    send = _batch_send(handle)
    batcher: AdaptiveBatcher[MessageRequest, MessageResponse] = AdaptiveBatcher(
        send, max_batch=batching.max_batch, max_wait=batching.max_wait, max_in_flight=batching.max_in_flight)

    async def call(request: MessageRequest, deadline: float | None) -> MessageResponse:
        return await batcher.submit(request)  # the dispatcher core enforces the deadline

    return call


@serve.deployment(
    name=DISPATCHER_DEPLOYMENT,
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=1000,
    health_check_period_s=10,
)
class DispatcherDeployment:
    """The dispatcher replica. Its routing comes from :meth:`reconfigure` (Serve ``user_config``)."""

    def __init__(
        self,
        processors: dict[str, DeploymentHandle],
        *,
        token: str | None = None,
        outbound_token: str | None = None,
        batching: Batching | None = None,
        health_period: float = 2.0,
        config: dict[str, Any] | None = None,
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self._handles = processors
        self._token = token
        self._outbound_token = outbound_token
        self._batching = batching or Batching()
        self._health_period = health_period
        self._deployment_calls: dict[str, Call] = {}  # by serve name: one batcher per processor deployment
        self._remote: dict[str, GrpcProcessorClient] = {}  # by host:port: one channel each
        self._calls: dict[str, Call] = {}  # by ref
        self._deployment_sends: dict[str, Callable[[list[MessageRequest]], Awaitable[list[MessageResponse]]]] = {}
        self._batch_calls: dict[str, Callable[[list[MessageRequest], float | None],
                                              Awaitable[Sequence[MessageResponse]]]] = {}  # by ref
        self.config: DispatcherConfig | None = None
        self.core: DispatchCore | None = None
        if config is not None:
            self._apply(from_document(config))

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this at start and whenever ``user_config`` (the dispatcher document) changes."""
        stale = self._apply(from_document(user_config))
        for client in self._remote.values():
            client.start_health_checks()
        for client in stale:
            await client.close()

    def _apply(self, config: DispatcherConfig) -> list[GrpcProcessorClient]:
        """Build the router, chain and calls for ``config`` and swap them in; returns the unused channels."""
        router = Router(config.processors)  # compiles every matchFunc; raises before anything is swapped
        calls: dict[str, Call] = {}
        batch_calls: dict[str, Any] = {}
        remote: dict[str, GrpcProcessorClient] = {}
        for entry in (*config.processors, *config.middlewares):
            name = serve_name(entry.addr)
            if name is not None:
                if name not in self._handles:
                    raise ValueError(f"{entry.ref!r}: serve://{name} is not a deployment of this app; deploy the "
                                     "app again (deploy_app) to add a processor deployment")
                if name not in self._deployment_calls:
                    self._deployment_calls[name] = _handle_call(self._handles[name], self._batching)
                    self._deployment_sends[name] = _batch_send(self._handles[name])
                calls[entry.ref] = self._deployment_calls[name]
                batch_calls[entry.ref] = _ignore_deadline(self._deployment_sends[name])
            else:
                client = remote.get(entry.addr) or self._remote.get(entry.addr) or GrpcProcessorClient(
                    entry.addr, token=self._outbound_token, health_period=self._health_period)
                remote[entry.addr] = client
                calls[entry.ref] = client.call
                batch_calls[entry.ref] = _each(client.call)
        default_deadline = config.deadline_seconds
        chain = MiddlewareChain([
            Middleware.from_config(m, _with_deadline(calls[m.ref], m.deadline_seconds or default_deadline),
                                   deadline=default_deadline)
            for m in config.middlewares
        ])
        # An EdgePort batch goes on to each processor as one call, unless batching is off (max_batch=1)
        batched = self._batching.max_batch > 1
        self.core = DispatchCore(router, chain, self._call_processor, deadline=default_deadline,
                                 retry_after=config.retry_after_seconds,
                                 call_batch=self._call_processor_batch if batched else None)
        self._calls = calls
        self._batch_calls = batch_calls
        self.config = config
        stale = [c for addr, c in self._remote.items() if addr not in remote]
        self._remote = remote
        log.info("dispatcher config %r: processors %s, middlewares %s", config.ref,
                 [p.ref for p in config.processors], [m.ref for m in config.middlewares])
        return stale

    async def _call_processor(self, route: Route, request: MessageRequest) -> MessageResponse:
        assert self.core is not None
        return await self._calls[route.ref](request, route_deadline(route, self.core.deadline))

    async def _call_processor_batch(self, route: Route, requests: list[MessageRequest]) -> Sequence[MessageResponse]:
        assert self.core is not None
        return await self._batch_calls[route.ref](requests, route_deadline(route, self.core.deadline))

    def _core(self) -> DispatchCore:
        if self.core is None:
            raise RuntimeError("the dispatcher has no config yet (reconfigure was not called)")
        return self.core

    async def ProcessMessage(self, request: MessageRequest, grpc_context: Any = None) -> MessageResponse:  # noqa: N802
        """The gRPC entry point for outside callers (Serve's gRPC proxy, port 51901)."""
        if self._token and (grpc_context is None or not token_ok(self._token, grpc_context.invocation_metadata())):
            if grpc_context is not None:
                import grpc

                grpc_context.set_code(grpc.StatusCode.UNAUTHENTICATED)
                grpc_context.set_details("missing or wrong token")
            return MessageResponse()
        response = await self._core().handle(request)
        return response if response is not None else MessageResponse()

    async def process_batch(self, payloads: Sequence[bytes]) -> list[bytes]:
        """In-cluster entry point: serialized MessageRequests in, serialized MessageResponses out
        (``b""`` means drop: ACK and responses are never answered)."""
        responses = await self._core().handle_batch([MessageRequest.FromString(p) for p in payloads])
        return [r.SerializeToString() if r is not None else b"" for r in responses]

    async def describe(self) -> dict[str, Any]:
        """This replica's process id, the config it routes with (no token), the health of its ``host:port``
        processors."""
        return {
            "pid": os.getpid(),
            "config": to_document(self.config) if self.config is not None else None,
            "remote_health": {addr: c.healthy for addr, c in self._remote.items()},
        }

    async def check_health(self) -> None:
        self._core()


def _ignore_deadline(send: Callable[[list[MessageRequest]], Awaitable[list[MessageResponse]]]) -> Any:
    async def call(requests: list[MessageRequest], deadline: float | None) -> list[MessageResponse]:
        return await send(requests)  # the dispatcher core enforces the deadline

    return call


def _each(call: Call) -> Any:
    """A batch call over a one-message call (gRPC ProcessMessage is unary): concurrent calls on one channel."""
    async def batch(requests: list[MessageRequest], deadline: float | None) -> list[MessageResponse | None]:
        results = await asyncio.gather(*(call(r, deadline) for r in requests), return_exceptions=True)
        # a message whose call failed comes back as None: the core answers that one alone with 503
        return [None if isinstance(r, BaseException) else r for r in results]

    return batch


def _with_deadline(call: Call, deadline: float | None) -> Callable[[MessageRequest], Awaitable[MessageResponse]]:
    async def bound(request: MessageRequest) -> MessageResponse:
        return await call(request, deadline)

    return bound


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=1000, health_check_period_s=10)
class ProcessorDeployment:
    """Runs one processor-SDK class; ``process_batch`` is bytes in, bytes out."""

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        logging.basicConfig(level=logging.INFO)
        self.processor = import_processor(name)(**(options or {}))

    async def process_batch(self, payloads: Sequence[bytes]) -> list[bytes]:
        # a corrupt item is answered on its own; it does not fail the batch
        return await self.processor.process_serialized(list(payloads))

    async def check_health(self) -> None:
        return None


def _autoscaling_options(autoscaling: AutoscalingConfig | None) -> dict[str, Any]:
    if autoscaling is None:
        return {}
    return {
        "autoscaling_config": {
            "min_replicas": autoscaling.min_replicas,
            "max_replicas": autoscaling.max_replicas,
            "target_ongoing_requests": autoscaling.target_ongoing_requests,
            "upscale_delay_s": autoscaling.upscale_delay_seconds,
            "downscale_delay_s": autoscaling.downscale_delay_seconds,
        }
    }


@cache
def code_fingerprint() -> str:
    """A digest of routr_ray's Python sources: new code gets new replicas even when nothing else changed."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.blake2s()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _version(*parts: Any) -> str:
    """A Serve deployment version: the same inputs give the same version, so only ``user_config`` and other
    lightweight options change between two :func:`deploy_app` calls and the replicas are reconfigured in place."""
    text = json.dumps([code_fingerprint(), *parts], sort_keys=True, default=repr)
    return hashlib.blake2s(text.encode()).hexdigest()[:20]


def check_config(config: DispatcherConfig) -> None:
    """Fail in the driver, with the processor named, before anything is deployed: every matchFunc compiles,
    every method is known, every ``serve://`` processor imports."""
    Router(config.processors)
    for entry in (*config.processors, *config.middlewares):
        name = serve_name(entry.addr)
        if name is not None:
            import_processor(name)


def build_app(
    config: DispatcherConfig,
    *,
    processor_options: dict[str, dict[str, Any]] | None = None,
    token: str | None = None,
    deadline: float | None = None,
    outbound_token: str | None = None,
    batching: Batching | None = None,
    health_period: float = 2.0,
) -> Any:
    """The bound ``routr`` application for ``config``.

    ``processor_options`` maps a processor name (as in ``serve://<name>``) to the keyword arguments of its class.
    ``token`` overrides :func:`dispatcher_token`; ``deadline`` overrides ``config.deadline_seconds``;
    ``outbound_token`` is sent to ``host:port`` processors; ``batching`` tunes the dispatcher -> processor hop.
    """
    if deadline is not None:
        config = dataclasses.replace(config, deadline_seconds=deadline)
    check_config(config)
    processor_options = processor_options or {}
    batching = batching or Batching()
    bound: dict[str, Any] = {}
    for entry in (*config.processors, *config.middlewares):
        name = serve_name(entry.addr)
        if name is None or name in bound:
            continue
        options = processor_options.get(name)
        bound[name] = ProcessorDeployment.options(  # type: ignore[attr-defined]
            name=deployment_name(name), version=_version("processor", name, options), _internal=True,
            **_autoscaling_options(getattr(entry, "autoscaling", None)),
        ).bind(name, options)
    token = dispatcher_token(config, token)
    version = _version("dispatcher", sorted(bound), _digest(token), _digest(outbound_token),
                       dataclasses.astuple(batching), health_period)
    return DispatcherDeployment.options(  # type: ignore[attr-defined]
        user_config=to_document(config), version=version, _internal=True,
        **_autoscaling_options(config.autoscaling),
    ).bind(bound, token=token, outbound_token=outbound_token, batching=batching, health_period=health_period)


def _digest(secret: str | None) -> str | None:
    return None if secret is None else hashlib.blake2s(secret.encode()).hexdigest()


def deploy_app(config: DispatcherConfig, **kwargs: Any) -> DeploymentHandle:
    """Deploy (or update) the ``routr`` app and wait until it runs; ``kwargs`` as for :func:`build_app`.

    Called again with a changed config it re-routes without restarting replicas (see the module docstring):
    this is the reload the launcher does when dispatcher.yaml changes.
    """
    return serve.run(build_app(config, **kwargs), name=APP_NAME, route_prefix=ROUTE_PREFIX)


def watch_config(config_dir: str | Path, current: DispatcherConfig, *, interval: float = 2.0,
                 **kwargs: Any) -> DispatcherConfigWatcher:
    """Start a thread that re-deploys the app (``deploy_app(new, **kwargs)``) when the dispatcher config in
    ``config_dir`` changes; ``stop()`` it on shutdown. Pass the same ``kwargs`` as at startup (e.g.
    ``processor_options``), or the processor deployments are restarted."""
    return DispatcherConfigWatcher(config_dir, lambda new: deploy_app(new, **kwargs), current=current,
                                   interval=interval).start()


def grpc_options(port: int) -> dict[str, Any]:
    return {"port": port, "grpc_servicer_functions": [GRPC_SERVICER]}
