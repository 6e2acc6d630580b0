"""A processor as a standalone grpc.aio server: ``routr-ray processor serve MODULE:CLASS --port N``.

Speaks ``fonoster.routr.processor.v2beta1.Processor/ProcessMessage`` (routr.md §2.2), so the dispatcher
(``addr: host:port``) or a Routr dispatcher can reach it, and serves ``grpc.health.v1.Health`` beside it
(SERVING for ``""`` and for the Processor service). An optional shared token (``authorization: Bearer <t>``
or ``x-routr-token: <t>`` metadata, DESIGN §6b) refuses other callers with UNAUTHENTICATED: a caller can set
any ``sender``, which processors trust for ACLs, and reads the directives in the answers. Without a token the
server listens on loopback only (a non-loopback address is refused at start).

A SIP message the processor cannot handle is answered in SIP (400/500, see :class:`~sdk.Processor`); a
gRPC error means the server itself failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from routr_ray.grpcutil.auth import refuse_open_port, token_ok
from routr_ray.processors.sdk import Processor
from routr_ray.proto.gen import processor_pb2, processor_pb2_grpc

SERVICE_NAME = "fonoster.routr.processor.v2beta1.Processor"
DEFAULT_PORT = 51904  # Routr's processors (routr.md §12)
TOKEN_HINT = "$ROUTR_RAY_PROCESSOR_TOKEN; the dispatcher sends it as processorToken"

log = logging.getLogger(__name__)


class ProcessorServicer(processor_pb2_grpc.ProcessorServicer):
    def __init__(self, processor: Processor, token: str | None = None) -> None:
        self._processor = processor
        self._token = token

    async def ProcessMessage(  # noqa: N802 - gRPC method name
        self, request: processor_pb2.MessageRequest, context: grpc.aio.ServicerContext
    ) -> processor_pb2.MessageResponse:
        if not token_ok(self._token, context.invocation_metadata()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")
        return await self._processor.process(request)


def load_processor(spec: str) -> Processor:
    """``"package.module:ClassName"`` -> an instance (no arguments) of that :class:`Processor` subclass.

    Only imports the module and looks the attribute up: nothing from the string is evaluated.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr or not attr.isidentifier():
        raise ValueError(f"processor {spec!r}: expected MODULE:CLASS, e.g. routr_ray.processors.echo:EchoProcessor")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"processor {spec!r}: cannot import {module_name!r}: {exc}") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Processor)):
        raise ValueError(f"processor {spec!r}: {attr!r} is not a routr_ray.processors.Processor subclass")
    return cls()


def _as_processor(target: Processor | type[Processor] | str) -> Processor:
    if isinstance(target, str):
        return load_processor(target)
    if isinstance(target, type):
        return target()
    return target


async def start_processor_server(
    target: Processor | type[Processor] | str, bind_addr: str, *, token: str | None = None
) -> grpc.aio.Server:
    """Start the server on ``bind_addr`` (``host:port``; port 0 picks one, see ``server.bound_port``) and
    return it. Raises OSError when it cannot bind, ValueError for a bad ``MODULE:CLASS`` or a non-loopback
    ``bind_addr`` without a token (:class:`~routr_ray.grpcutil.auth.OpenPortRefused`)."""
    refuse_open_port(bind_addr, token, what="the processor", how=TOKEN_HINT)
    processor = _as_processor(target)
    start = getattr(processor, "start", None)
    if start is not None:  # as a Serve replica does: warm up (e.g. the media relay starts its health pings)
        await start()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    processor_pb2_grpc.add_ProcessorServicer_to_server(ProcessorServicer(processor, token), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_insecure_port(bind_addr)
    except RuntimeError as exc:  # grpcio raises instead of returning 0 on some failures
        raise OSError(f"cannot bind the processor to {bind_addr}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot bind the processor to {bind_addr}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    server.bound_port = port  # type: ignore[attr-defined]
    server.health_servicer = health_servicer  # type: ignore[attr-defined]
    return server


async def serve_processor(
    target: Processor | type[Processor] | str,
    bind_addr: str,
    *,
    token: str | None = None,
    grace: float = 5.0,
) -> None:
    """Run a processor server until SIGINT/SIGTERM (or cancellation); health goes NOT_SERVING, then
    in-flight calls get ``grace`` seconds. The CLI's ``processor serve`` calls this with ``asyncio.run``."""
    server = await start_processor_server(target, bind_addr, token=token)
    log.info("processor %s serving %s on %s", target, SERVICE_NAME, bind_addr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread / Windows
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        hs = server.health_servicer  # type: ignore[attr-defined]
        await hs.enter_graceful_shutdown()
        await server.stop(grace)


__all__ = ["DEFAULT_PORT", "SERVICE_NAME", "ProcessorServicer", "load_processor", "serve_processor",
           "start_processor_server"]
