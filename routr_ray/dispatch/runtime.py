"""The dispatcher's routing state for one config: a :class:`DispatchCore` with its processor calls.

Shared by the two places that dispatch (DESIGN §10):

* the ``dispatcher`` Serve deployment (``routr_ray/actors/serve_app.py``), for outside gRPC callers on Serve's
  proxy port and for EdgePorts configured to take the dispatcher hop;
* the EdgePort actor's *embedded dispatch* (``routr_ray/actors/edgeport.py``), which runs the same matching with
  the same config and calls the processor deployments directly: one Ray hop per message instead of two.

Pure asyncio, no Ray: the caller supplies ``deployment_send(name)``, the batch call of the ``serve://<name>``
processor deployment (serialized MessageRequests in one call), and this module builds everything else: the
:class:`~routr_ray.dispatch.matching.Router` (every matchFunc compiled), the middleware chain, one reused,
health-checked gRPC channel per ``host:port`` processor, and an adaptive batcher per processor deployment for the
one-message path (middlewares configured).

Internal metadata stays inside (DESIGN §6b): middlewares and ``host:port`` processors are sent requests without
the ``routr-ray.*`` metadata unless their entry has ``internal_metadata`` (:func:`~routr_ray.dispatch.outside.
without_internal`); ``serve://`` processors run in the cluster and get it. Each ``host:port`` call carries the
token of its entry (:class:`OutboundTokens`); a changed token gets a new channel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from routr_ray.dispatch.core import SERVE_SCHEME, DispatchCore, route_deadline
from routr_ray.dispatch.matching import Route, Router
from routr_ray.dispatch.metrics import DispatchMetrics
from routr_ray.dispatch.middleware import Middleware, MiddlewareChain
from routr_ray.dispatch.outside import without_internal
from routr_ray.dispatch.remote import GrpcProcessorClient
from routr_ray.observability import tracing
from routr_ray.processors.sdk import PROBE_KEY, probe_answered_ready, probe_request
from routr_ray.proto.gen import processor_pb2
from routr_ray.util.batching import AdaptiveBatcher

log = logging.getLogger(__name__)

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
Call = Callable[[MessageRequest, float | None], Awaitable[MessageResponse]]
BatchSend = Callable[[list[MessageRequest]], Awaitable[Sequence[MessageResponse]]]
BatchCall = Callable[[list[MessageRequest], float | None], Awaitable[Sequence[MessageResponse | None]]]


@dataclasses.dataclass(frozen=True)
class Batching:
    """The dispatcher -> processor-deployment hop (DESIGN §10); ``max_batch=1`` turns batching off."""

    max_batch: int = 64
    max_wait: float = 0.001
    max_in_flight: int = 4


@dataclasses.dataclass(frozen=True)
class OutboundTokens:
    """The tokens sent to ``host:port`` processors and middlewares: an entry's own (``by_ref``), else ``default``
    (``processorToken`` / ``$ROUTR_RAY_PROCESSOR_TOKEN``). Plain values, so it travels as Serve init arguments
    and in ``describe()`` to the EdgePorts' embedded dispatch (never in ``user_config``, which Serve shows)."""

    default: str | None = dataclasses.field(default=None, repr=False)
    by_ref: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)

    def for_ref(self, ref: str) -> str | None:
        for name, token in self.by_ref:
            if name == ref:
                return token
        return self.default

    @classmethod
    def of(cls, config: Any, default: str | None = None) -> OutboundTokens:
        """From a ``DispatcherConfig``: each entry's ``token``; ``default`` (e.g. the environment) wins over the
        config's ``processor_token``."""
        entries = (*config.processors, *config.middlewares)
        by_ref = tuple((e.ref, e.token) for e in entries if getattr(e, "token", None))
        return cls(default or getattr(config, "processor_token", None) or None, by_ref)

    def to_plain(self) -> dict[str, Any]:
        return {"default": self.default, "by_ref": dict(self.by_ref)}

    @classmethod
    def from_plain(cls, plain: dict[str, Any] | None) -> OutboundTokens:
        plain = plain or {}
        return cls(plain.get("default"), tuple(sorted((plain.get("by_ref") or {}).items())))


class ConfigLike(Protocol):
    """What the runtime reads of a ``routr_ray.config.dispatcher.DispatcherConfig``."""

    @property
    def ref(self) -> str: ...
    @property
    def processors(self) -> Sequence[Any]: ...
    @property
    def middlewares(self) -> Sequence[Any]: ...
    @property
    def deadline_seconds(self) -> float | None: ...
    @property
    def retry_after_seconds(self) -> int: ...


def serve_name(addr: str) -> str | None:
    """The processor name of a ``serve://`` address, or None for ``host:port``."""
    return addr[len(SERVE_SCHEME):] if addr.startswith(SERVE_SCHEME) else None


class DispatchRuntime:
    """Routing for the current config; :meth:`apply` swaps in a new one (nothing is swapped if it fails)."""

    def __init__(
        self,
        deployment_send: Callable[[str], BatchSend],
        *,
        outbound_token: str | None = None,
        tokens: OutboundTokens | None = None,
        batching: Batching | None = None,
        health_period: float = 2.0,
        metrics: DispatchMetrics | None = None,
    ) -> None:
        self._deployment_send = deployment_send
        self.metrics = metrics
        self.tokens = tokens or OutboundTokens(outbound_token)
        self.batching = batching or Batching()
        self._health_period = health_period
        self._sends: dict[str, BatchSend] = {}  # by serve name
        self._deployment_calls: dict[str, Call] = {}  # by serve name: one batcher per processor deployment
        self._remote: dict[tuple[str, str | None], GrpcProcessorClient] = {}  # by (host:port, token): a channel each
        self._calls: dict[str, Call] = {}  # by ref
        self._batch_calls: dict[str, BatchCall] = {}  # by ref
        self.config: Any = None
        self.core: DispatchCore | None = None

    @property
    def remote(self) -> dict[str, GrpcProcessorClient]:
        """The ``host:port`` clients in use, by address."""
        return {addr: client for (addr, _), client in self._remote.items()}

    def _send_for(self, name: str) -> BatchSend:
        send = self._sends.get(name)
        if send is None:
            send = self._sends[name] = self._deployment_send(name)
        return send

    def apply(self, config: ConfigLike, tokens: OutboundTokens | None = None) -> list[GrpcProcessorClient]:
        """Build the router, chain and calls for ``config`` (and ``tokens``, else the current ones) and swap them
        in; returns the channels no longer used (close them). Raises (a bad matchFunc, an unknown ``serve://``
        name) before anything changes."""
        router = Router(config.processors)  # compiles every matchFunc
        tokens = tokens if tokens is not None else self.tokens
        calls: dict[str, Call] = {}
        batch_calls: dict[str, BatchCall] = {}
        remote: dict[tuple[str, str | None], GrpcProcessorClient] = {}
        deployment_calls = dict(self._deployment_calls)
        middleware_refs = {m.ref for m in config.middlewares}
        for entry in (*config.processors, *config.middlewares):
            name = serve_name(entry.addr)
            # only our own in-cluster processors see the internal metadata, unless the entry asks for it
            private = getattr(entry, "internal_metadata", False) or (name is not None
                                                                      and entry.ref not in middleware_refs)
            if name is not None:
                send = self._send_for(name)  # raises for a deployment this app does not have
                if name not in deployment_calls:
                    deployment_calls[name] = _batched_call(send, self.batching)
                call = deployment_calls[name]
                calls[entry.ref] = call if private else _stripped(call)
                batch_calls[entry.ref] = _ignore_deadline(send)
            else:
                key = (entry.addr, tokens.for_ref(entry.ref))
                client = remote.get(key) or self._remote.get(key) or GrpcProcessorClient(
                    entry.addr, token=key[1], health_period=self._health_period)
                remote[key] = client
                call = client.call if private else _stripped(client.call)
                calls[entry.ref] = call
                batch_calls[entry.ref] = _each(call)
        default_deadline = config.deadline_seconds
        chain = MiddlewareChain([
            Middleware.from_config(m, _with_deadline(calls[m.ref], m.deadline_seconds or default_deadline),
                                   deadline=default_deadline)
            for m in config.middlewares
        ])
        # An EdgePort batch goes on to each processor as one call, unless batching is off (max_batch=1)
        batched = self.batching.max_batch > 1
        self.core = DispatchCore(router, chain, self._call_processor, deadline=default_deadline,
                                 retry_after=config.retry_after_seconds,
                                 call_batch=self._call_processor_batch if batched else None, metrics=self.metrics)
        self._deployment_calls = deployment_calls
        self._calls = calls
        self._batch_calls = batch_calls
        self.config = config
        self.tokens = tokens
        stale = [c for key, c in self._remote.items() if key not in remote]
        self._remote = remote
        return stale

    async def reconfigure(self, config: ConfigLike, tokens: OutboundTokens | None = None) -> None:
        """:meth:`apply`, then start the health checks of the ``host:port`` processors and close stale ones."""
        stale = self.apply(config, tokens)
        for client in self._remote.values():
            client.start_health_checks()
        for client in stale:
            await client.close()

    async def _call_processor(self, route: Route, request: MessageRequest) -> MessageResponse:
        assert self.core is not None
        return await self._calls[route.ref](request, route_deadline(route, self.core.deadline))

    async def _call_processor_batch(self, route: Route, requests: list[MessageRequest]) -> Sequence[Any]:
        assert self.core is not None
        return await self._batch_calls[route.ref](requests, route_deadline(route, self.core.deadline))

    def current(self) -> DispatchCore:
        if self.core is None:
            raise RuntimeError("the dispatcher has no config yet")
        return self.core

    async def handle_batch(self, requests: Sequence[MessageRequest]) -> list[MessageResponse | None]:
        return await self.current().handle_batch(requests)

    def probed_entries(self) -> list[Any]:
        """What a REGISTER needs (issue 13 item 4): every processor whose ``methods`` hold REGISTER (its matchFunc
        may pick any of them), and every middleware that is not ``optional``; a config that routes no REGISTER:
        every processor. A processor for other methods that is down (e.g. a MESSAGE service elsewhere) does not
        make the EdgePorts unready: the requests it handles get 503 on their own."""
        if self.config is None:
            return []
        processors = [p for p in self.config.processors if "REGISTER" in tuple(getattr(p, "methods", ()))]
        middlewares = [m for m in self.config.middlewares if not getattr(m, "optional", False)]
        return [*(processors or self.config.processors), *middlewares]

    async def probe(self) -> str | None:
        """Ask the processors and middlewares a REGISTER needs (:meth:`probed_entries`) whether they can handle
        messages now; None when all can, else why not. A ``serve://`` deployment gets a readiness probe by the path
        messages take (Connect answers it when every Location shard answers); a ``host:port`` one counts as ready
        unless its health check fails (Routr's processors know no probe; one without the Health service counts as
        ready)."""
        if self.config is None:
            return "the dispatcher has no config yet"
        names: list[str] = []
        for entry in self.probed_entries():
            name = serve_name(entry.addr)
            if name is None:
                client = self.remote.get(entry.addr)
                if client is None:
                    continue
                if client.healthy is None and client.has_health_service:
                    await client.check_health()  # not checked yet: ask now (bounded by its health timeout)
                if client.healthy is False:
                    return f"processor {entry.ref} ({entry.addr}) fails its health check: {client.health_reason}"
            elif name not in names:
                names.append(name)
        answers = await asyncio.gather(*(self._send_for(name)([probe_request()]) for name in names),
                                       return_exceptions=True)
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                return f"serve://{name} does not answer: {answer!r}"[:300]
            if len(answer) != 1 or not probe_answered_ready(answer[0]):
                said = answer[0].metadata.get(PROBE_KEY, "no probe answer") if len(answer) == 1 else "no answer"
                return f"serve://{name}: {said}"[:300]
        return None

    async def close(self) -> None:
        for client in self._remote.values():
            await client.close()
        self._remote = {}


def _batched_call(send: BatchSend, batching: Batching) -> Call:
    batcher: AdaptiveBatcher[MessageRequest, MessageResponse] = AdaptiveBatcher(
        send, max_batch=batching.max_batch, max_wait=batching.max_wait, max_in_flight=batching.max_in_flight)

    async def call(request: MessageRequest, deadline: float | None) -> MessageResponse:
        return await batcher.submit(request)  # the dispatcher core enforces the deadline

    return call


def _stripped(call: Call) -> Call:
    """``call`` sent a request without internal metadata (a copy: the chain keeps the original); a traced
    message's trace context goes along under the standard key ``traceparent`` (docs/observability.md)."""
    async def stripped(request: MessageRequest, deadline: float | None) -> MessageResponse:
        outgoing = without_internal(request)
        if tracing.ON and outgoing is not request:
            parent = request.metadata.get(tracing.TRACEPARENT_KEY)
            if parent:
                outgoing.metadata[tracing.W3C_KEY] = parent
        return await call(outgoing, deadline)

    return stripped


def _ignore_deadline(send: BatchSend) -> BatchCall:
    async def call(requests: list[MessageRequest], deadline: float | None) -> Sequence[MessageResponse]:
        return await send(requests)  # the dispatcher core enforces the deadline

    return call


def _each(call: Call) -> BatchCall:
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


__all__ = ["Batching", "BatchSend", "DispatchRuntime", "OutboundTokens", "SERVE_SCHEME", "serve_name"]
