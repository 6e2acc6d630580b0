"""The dispatcher's gRPC port for outside callers (``bindAddr``, 51901): ``Processor/ProcessMessage`` in front of
the dispatcher, on exactly the host and port configured (DESIGN §6b, §10).

Serve's own gRPC proxy binds ``[::]`` whatever the config says and has no TLS, so it is not used: this grpc.aio
server is ours, and it converts and applies the outside-caller policy, nothing else; ``send`` (in production the
``routr`` app's dispatcher, through the link or a DeploymentHandle: ``routr_ray/actors/front.py``) does the
routing.

* **Token**: with one configured, a caller must send ``authorization: Bearer <token>`` or ``x-routr-token``,
  else UNAUTHENTICATED. A caller that sent it is *trusted*: an EdgePort pointed at this dispatcher by
  ``host:port``, or the operator's own tool. Its request and reply go through unchanged (``sender``, the
  ``routr-ray.*`` metadata the EdgePort keeps with a transaction and the directives it needs).
* **Without a token** the server refuses to listen anywhere but loopback (:func:`start_front_server`), and
  every caller is an *outside caller* (:mod:`routr_ray.dispatch.outside`): its ``sender`` is replaced by the
  address of its gRPC connection, its ``routr-ray.*`` metadata is removed, and the reply carries none (no next
  hop, no trunk credentials).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from routr_ray.dispatch.outside import from_outside, peer_address, to_outside
from routr_ray.grpcutil.auth import refuse_open_port, token_ok
from routr_ray.observability.ratelimit import RateLimitedLog
from routr_ray.proto.gen import processor_pb2, processor_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "fonoster.routr.processor.v2beta1.Processor"
TOKEN_HINT = "spec.token in the MessageDispatcher config, or $ROUTR_RAY_DISPATCHER_TOKEN"
MAX_CONCURRENT_RPCS = 10_000
SERVER_OPTIONS = (
    ("grpc.so_reuseport", 0),  # no other process may bind the same port beside us and take its callers
    ("grpc.max_receive_message_length", 4 << 20),
)

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
Send = Callable[[MessageRequest], Awaitable[MessageResponse | None]]


class DispatcherFront(processor_pb2_grpc.ProcessorServicer):
    """``ProcessMessage`` for outside callers; ``send(request)`` is the dispatcher (None or an empty
    MessageResponse: the dispatcher dropped the message, e.g. an ACK)."""

    def __init__(self, send: Send, *, token: str | None = None) -> None:
        self._send = send
        self.token = token
        self.calls = 0
        self.refused = 0
        self._log = RateLimitedLog(log, interval=10.0)

    async def ProcessMessage(  # noqa: N802 - gRPC method name
        self, request: MessageRequest, context: grpc.aio.ServicerContext
    ) -> MessageResponse:
        trusted = False
        if self.token:
            if not token_ok(self.token, context.invocation_metadata()):
                self.refused += 1
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")
            trusted = True
        if not trusted:
            peer = peer_address(context.peer())
            if peer is None:
                self.refused += 1
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller address unknown")
                raise AssertionError("unreachable")  # abort raises
            request = from_outside(request, peer)
        self.calls += 1
        try:
            response = await self._send(request)
        except Exception as exc:  # noqa: BLE001 - the dispatcher unreachable: the caller may retry
            self._log.warning("send", "dispatcher unavailable for a gRPC caller: %r", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "dispatcher unavailable")
            raise AssertionError("unreachable") from exc
        if response is None:
            response = MessageResponse()
        return response if trusted else to_outside(response)


async def start_front_server(front: DispatcherFront, bind_addr: str) -> grpc.aio.Server:
    """Serve ``front`` (and ``grpc.health.v1``) on ``bind_addr`` and return the started server
    (``server.bound_port``). Raises :class:`~routr_ray.grpcutil.auth.OpenPortRefused` for a non-loopback
    address without a token, OSError when it cannot bind."""
    refuse_open_port(bind_addr, front.token, what="the dispatcher's gRPC port", how=TOKEN_HINT)
    server = grpc.aio.server(options=list(SERVER_OPTIONS), maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS)
    processor_pb2_grpc.add_ProcessorServicer_to_server(front, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_insecure_port(bind_addr)
    except RuntimeError as exc:  # grpcio raises instead of returning 0 on some failures
        raise OSError(f"cannot bind the dispatcher's gRPC port to {bind_addr}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot bind the dispatcher's gRPC port to {bind_addr}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    server.bound_port = port  # type: ignore[attr-defined]
    return server


__all__ = ["DispatcherFront", "SERVICE_NAME", "TOKEN_HINT", "start_front_server"]
