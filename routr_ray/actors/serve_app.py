"""The ``routr`` Serve application: the Message Dispatcher (ingress) and the in-cluster processors.

Exactly one Serve application, ``routr``, whose ingress deployment is the dispatcher, so Serve's gRPC proxy
routes ``fonoster.routr.processor.v2beta1.Processor/ProcessMessage`` to it without ``application`` metadata
(Routr clients never send it). In-cluster callers (EdgePorts) use :meth:`DispatcherDeployment.process_batch`
through a DeploymentHandle with ``_by_reference=False``: bytes in, bytes out, one call per batch (DESIGN §10).

Processor addresses (``processors[].addr`` / ``middlewares[].addr`` in the dispatcher config):

* ``serve://<name>``: a processor deployment in this app. ``<name>`` is a built-in (:data:`BUILTIN_PROCESSORS`)
  or a Python import path ``package.module:Class`` of a processor-SDK class;
* ``host:port``: any server speaking ``Processor/ProcessMessage`` (a Routr processor, in any language).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from routr_ray.config.dispatcher import AutoscalingConfig, DispatcherConfig
from routr_ray.dispatch.core import DispatchCore
from routr_ray.dispatch.matching import Route, Router
from routr_ray.dispatch.middleware import Middleware, MiddlewareChain
from routr_ray.edge.dispatcher_client import GrpcDispatcherClient, failure_of
from routr_ray.grpcutil.auth import token_ok
from routr_ray.proto.gen import processor_pb2
from routr_ray.util.batching import AdaptiveBatcher

log = logging.getLogger(__name__)

APP_NAME = "routr"
DISPATCHER_DEPLOYMENT = "dispatcher"
SERVE_SCHEME = "serve://"
GRPC_SERVICER = "routr_ray.proto.gen.processor_pb2_grpc.add_ProcessorServicer_to_server"
BUILTIN_PROCESSORS = {
    "echo": "routr_ray.processors.echo:EchoProcessor",
    "connect": "routr_ray.actors.connect:ConnectDeploymentProcessor",
}

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
Call = Callable[[MessageRequest], Awaitable[MessageResponse]]


class ProcessorFailed(RuntimeError):
    """A processor answered with a failure marker or could not be reached."""


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


def _handle_call(handle: DeploymentHandle, *, max_batch: int = 64, max_wait: float = 0.001) -> Call:
    by_value = handle.options(_by_reference=False)

    async def send(requests: list[MessageRequest]) -> list[MessageResponse]:
        payloads = await by_value.process_batch.remote([r.SerializeToString() for r in requests])
        return [MessageResponse.FromString(p) for p in payloads]

    batcher: AdaptiveBatcher[MessageRequest, MessageResponse] = AdaptiveBatcher(
        send, max_batch=max_batch, max_wait=max_wait)

    async def call(request: MessageRequest) -> MessageResponse:
        return await batcher.submit(request)

    return call


def _grpc_call(addr: str, deadline: float, token: str | None) -> Call:
    client = GrpcDispatcherClient(addr, deadline=deadline,
                                  metadata=(("authorization", f"Bearer {token}"),) if token else ())

    async def call(request: MessageRequest) -> MessageResponse:
        (response,) = await client.process([request])
        reason = failure_of(response)
        if reason is not None:
            raise ProcessorFailed(f"{addr}: {reason}")
        return response

    return call


@serve.deployment(
    name=DISPATCHER_DEPLOYMENT,
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=1000,
    health_check_period_s=10,
)
class DispatcherDeployment:
    def __init__(
        self,
        config: DispatcherConfig,
        processors: dict[str, DeploymentHandle],
        *,
        token: str | None = None,
        deadline: float = 5.0,
        outbound_token: str | None = None,
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self._token = token
        calls: dict[str, Call] = {}
        for entry in (*config.processors, *config.middlewares):
            name = serve_name(entry.addr)
            if name is not None:
                calls[entry.ref] = _handle_call(processors[name])
            else:
                calls[entry.ref] = _grpc_call(entry.addr, deadline, outbound_token)
        self._calls = calls
        chain = MiddlewareChain([Middleware.from_config(m, calls[m.ref]) for m in config.middlewares])
        self.core = DispatchCore(Router(config.processors), chain, self._call_processor, deadline=deadline)

    async def _call_processor(self, route: Route, request: MessageRequest) -> MessageResponse:
        return await self._calls[route.ref](request)

    async def ProcessMessage(self, request: MessageRequest, grpc_context: Any = None) -> MessageResponse:  # noqa: N802
        """The gRPC entry point for outside callers (Serve's gRPC proxy, port 51901)."""
        if self._token and grpc_context is not None and not token_ok(
            self._token, grpc_context.invocation_metadata()
        ):
            import grpc

            grpc_context.set_code(grpc.StatusCode.UNAUTHENTICATED)
            grpc_context.set_details("missing or wrong token")
            return MessageResponse()
        response = await self.core.handle(request)
        return response if response is not None else MessageResponse()

    async def process_batch(self, payloads: Sequence[bytes]) -> list[bytes]:
        """In-cluster entry point: serialized MessageRequests in, serialized MessageResponses out
        (``b""`` means drop: ACK and responses are never answered)."""
        responses = await asyncio.gather(*(self.core.handle(MessageRequest.FromString(p)) for p in payloads))
        return [r.SerializeToString() if r is not None else b"" for r in responses]

    async def check_health(self) -> None:
        return None


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


def build_app(
    config: DispatcherConfig,
    *,
    processor_options: dict[str, dict[str, Any]] | None = None,
    token: str | None = None,
    deadline: float = 5.0,
) -> Any:
    """The bound ``routr`` application for ``config``.

    ``processor_options`` maps a processor name (as in ``serve://<name>``) to the keyword arguments of its class.
    """
    processor_options = processor_options or {}
    bound: dict[str, Any] = {}
    for entry in (*config.processors, *config.middlewares):
        name = serve_name(entry.addr)
        if name is None or name in bound:
            continue
        import_processor(name)  # fail here, in the driver, with a clear message
        options = _autoscaling_options(getattr(entry, "autoscaling", None))
        bound[name] = ProcessorDeployment.options(name=deployment_name(name), **options).bind(
            name, processor_options.get(name))
    return DispatcherDeployment.options(**_autoscaling_options(config.autoscaling)).bind(
        config, bound, token=token, deadline=deadline)


def grpc_options(port: int) -> dict[str, Any]:
    return {"port": port, "grpc_servicer_functions": [GRPC_SERVICER]}
