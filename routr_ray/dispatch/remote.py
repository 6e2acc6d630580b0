"""Processors and middlewares by address (``addr: host:port``): a grpc.aio client, health-checked.

Any server speaking ``fonoster.routr.processor.v2beta1.Processor/ProcessMessage`` (a Routr processor in any
language, ``routr-ray processor serve``) is reached through one reused channel; each call carries the deadline
of its processor entry and, when configured, a shared token (DESIGN §6b).

Health (``grpc.health.v1.Health/Check``, when the server has it): a background task asks every
``period`` seconds for the Processor service (falling back to ``""`` when the server does not know that name).
While the answer is NOT_SERVING, or the server cannot be reached or does not answer within ``timeout``, calls
fail at once with :class:`ProcessorUnavailable` (the dispatcher answers 503) instead of waiting for the
deadline. A server without the Health service (UNIMPLEMENTED) is only judged by its calls. Until the first
check has answered, calls go through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from routr_ray.observability import tracing
from routr_ray.proto.gen import processor_pb2, processor_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "fonoster.routr.processor.v2beta1.Processor"
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.max_receive_message_length", 4 << 20),
    # reconnect soon after a processor comes back (gRPC's default backoff grows to 120 s)
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
_SERVING = health_pb2.HealthCheckResponse.SERVING


class ProcessorUnavailable(RuntimeError):
    """The processor failed its health check, could not be reached, or answered with a gRPC error."""


class GrpcProcessorClient:
    """``await client.call(request, deadline)`` -> the processor's MessageResponse, or ProcessorUnavailable."""

    def __init__(self, addr: str, *, token: str | None = None, health_period: float = 2.0,
                 health_timeout: float = 1.0) -> None:
        self.addr = addr
        self.health_period = health_period
        self.health_timeout = health_timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._channel = grpc.aio.insecure_channel(addr, options=list(CHANNEL_OPTIONS))
        self._stub: Any = processor_pb2_grpc.ProcessorStub(self._channel)
        self._health: Any = health_pb2_grpc.HealthStub(self._channel)
        self._service = SERVICE_NAME
        self.healthy: bool | None = None  # None: not known yet (or the server has no Health service)
        self.has_health_service = True
        self.health_reason = ""
        self._task: asyncio.Task[None] | None = None

    # calls -------------------------------------------------------------------------------------------
    async def call(self, request: MessageRequest, deadline: float | None) -> MessageResponse:
        self.start_health_checks()
        if self.healthy is False:
            raise ProcessorUnavailable(f"{self.addr}: failing its health check ({self.health_reason})")
        metadata = self._metadata
        if tracing.ON:  # W3C Trace Context as a gRPC header too (what OpenTelemetry's gRPC instrumentation reads)
            parent = request.metadata.get(tracing.W3C_KEY) or request.metadata.get(tracing.TRACEPARENT_KEY)
            if parent:
                metadata = (*(metadata or ()), (tracing.W3C_KEY, parent))
        try:
            response: MessageResponse = await self._stub.ProcessMessage(
                request, timeout=deadline, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise ProcessorUnavailable(f"{self.addr}: grpc {exc.code().name}: {exc.details()}") from exc
        return response

    # health ------------------------------------------------------------------------------------------
    def start_health_checks(self) -> None:
        """Start the background checks (idempotent; needs a running event loop)."""
        if self._task is None and self.health_period > 0:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name=f"health {self.addr}")

    async def _watch(self) -> None:
        while self.has_health_service:
            try:
                await self.check_health()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a check must never end the watch
                log.warning("health check of %s failed unexpectedly: %r", self.addr, exc)
            await asyncio.sleep(self.health_period)

    async def check_health(self) -> bool | None:
        """One ``Health/Check``; updates and returns :attr:`healthy`."""
        request = health_pb2.HealthCheckRequest(service=self._service)
        try:
            response = await self._health.Check(request, timeout=self.health_timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND and self._service:
                self._service = ""  # the server does not register the Processor name: ask about the server
                return await self.check_health()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                self.has_health_service = False  # nothing to watch: its calls alone tell
                self._set(None, "no Health service")
                return None
            self._set(False, f"{code.name}: {exc.details()}")
            return self.healthy
        if response.status == _SERVING:
            self._set(True, "SERVING")
        else:
            self._set(False, health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
        return self.healthy

    def _set(self, healthy: bool | None, reason: str) -> None:
        if healthy != self.healthy:
            level = logging.WARNING if healthy is False else logging.INFO
            log.log(level, "processor %s health: %s", self.addr, reason)
        self.healthy = healthy
        self.health_reason = reason

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._channel.close()


__all__ = ["CHANNEL_OPTIONS", "SERVICE_NAME", "GrpcProcessorClient", "ProcessorUnavailable"]
