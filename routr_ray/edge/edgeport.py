"""The EdgePort: listeners + guards + NAT + transactions + the dispatcher client (DESIGN §4, issue 3).

Pure asyncio, no Ray (``routr_ray/actors`` wraps it). One message's path:

inbound bytes -> source ACL / ban check (before parsing: a banned flood costs nothing) -> parse (malformed:
400 with a Warning for requests, dropped and counted for ACKs and responses, never answered; one summary log line
per interval) -> per-source rate limit (well-formed requests only) -> method filter -> Via received/rport (RFC 3261
§18.2.1, RFC 3581) ->

* request: ACK matched to an INVITE server transaction is absorbed (hop by hop, §17.2.1); other ACKs go through
  the dispatcher statelessly (§16.11 for the 2xx ACK). CANCEL is answered here (200, or 481 when it matches
  nothing, §9.2) and cancels the pending branch itself (§16.10); it never reaches the dispatcher. A
  retransmission is absorbed by its server transaction (§17.2.3 matching). A new request gets a server
  transaction (100 Trying at once for INVITE, §16.2), then OPTIONS to ourselves -> 200 (503 + Retry-After until
  the end-to-end probe says a REGISTER would succeed, ``readiness.py``), a loop -> 482, Max-
  Forwards 0 -> 483 (§16.3), else a MessageRequest to the dispatcher. Its answer is a response (sent on the
  server transaction) or a request forwarded on a new client transaction: the branch of the top Via (added by
  the processor, without branch) is set here (z9hG4bK + random, §16.6 step 8); no Record-Route is added here.
* response: matched to its client transaction by top Via branch + CSeq method (§17.1.3); 100 and responses to
  our CANCELs stop here (hop by hop); when the processor marked the forwarded request ``routr-ray.responses=
  errors`` (``directives.py``), a 1xx/2xx without a ``.invalid`` Contact goes upstream at once with our Via
  removed (§16.7 step 3), without a dispatcher call; others go through the dispatcher with the handling
  processor's ref in metadata, our Via is removed if the processor left it, and the response goes upstream on
  the server transaction. A dispatcher failure never loses a response: it is relayed without the processor.

Next hop of a forwarded request: ``next_hop.py`` (the processor's ``routr-ray.next-hop``, else the top Route,
else the Request-URI; ``*.invalid`` hosts; names resolved without blocking). ``routr-ray.failover`` URIs are tried
in order, each as the new Request-URI on a new branch, when a branch ends in 503, 408, a timeout, a transport error
or has no usable next hop; only the last answer goes upstream. ``routr-ray.trunk-ref`` stays with the branch and
goes back to the dispatcher in the metadata of its responses. A trunk's 401/407 is answered with the trunk's
credentials when the processor gave them (``gateway_auth.py``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from routr_ray.config.edgeport import EdgePortConfig
from routr_ray.edge.completed import CompletedTransactions
from routr_ray.edge.connections import ConnectionTable
from routr_ray.edge.directives import EMPTY, TRUNK_REF_KEY, HopDirective, read_directive
from routr_ray.edge.dispatcher_client import (
    PROCESSOR_METADATA_KEY,
    BatchingDispatcher,
    DispatcherClient,
    DispatcherUnavailable,
)
from routr_ray.edge.gateway_auth import CSeqOffsets, request_with_credentials, shift_cseq
from routr_ray.edge.guards import MalformedLog, MethodDecision, MethodFilter, RateLimiter, SourceGuard
from routr_ray.edge.health import HealthServer
from routr_ray.edge.metrics import EdgeMetrics
from routr_ray.edge.nat import (
    LocalAddresses,
    apply_received_rport,
    response_address,
)
from routr_ray.edge.next_hop import HopFinder, NextHop, NoRoute
from routr_ray.edge.readiness import Readiness
from routr_ray.edge.resolver import Resolver
from routr_ray.edge.transports import Flow, Listener, TransportLimits, TransportName, create_listener
from routr_ray.edge.txn_runner import RunningTransaction
from routr_ray.edge.workers import Siblings, worker_branch, worker_of_branch
from routr_ray.proto.convert import ConversionError, make_message_request, read_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Headers, ParseError, Request, Response, Via, parse
from routr_ray.sip.timers import TimerConfig
from routr_ray.sip.transaction import (
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    State,
)
from routr_ray.sip.transaction_effects import Timer, TimerCGuard
from routr_ray.sip.transaction_keys import (
    ClientKey,
    TransactionTable,
    cancel_target_key,
    client_key,
    make_branch,
)
from routr_ray.sip.transaction_messages import build_ack, build_cancel, client_key_for, server_key_for

__all__ = ["EdgePort", "EdgePortOptions", "NextHop", "make_response"]

log = logging.getLogger(__name__)

REASONS = {
    100: "Trying", 200: "OK", 400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    420: "Bad Extension", 483: "Too Many Hops", 487: "Request Terminated", 500: "Server Internal Error", 502: "Bad Gateway",
    503: "Service Unavailable", 505: "Version Not Supported", 413: "Request Entity Too Large",
}  # fmt: skip

# RFC 3261 §8.2.6.2: a response copies these from the request (From, Call-ID, CSeq, every Via; To + tag).
# Lower-cased header name (long or compact form) -> its key.
_COPIED = {
    "via": "via", "v": "via", "from": "from", "f": "from", "to": "to", "t": "to",
    "call-id": "call-id", "i": "call-id", "cseq": "cseq",
}  # fmt: skip
_RAW_COPIED = {
    b"via": "Via", b"v": "Via", b"from": "From", b"f": "From", b"to": "To", b"t": "To",
    b"call-id": "Call-ID", b"i": "Call-ID", b"cseq": "CSeq",
}  # fmt: skip


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> Response:
    """A response built by the EdgePort itself (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied as
    raw text; a To tag added to non-100 responses when the request's To has none."""
    headers = Headers()
    for name, value in request.headers.items():
        key = _COPIED.get(name.lower())
        if key is not None:
            if key == "to" and status > 100 and to_tag and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"
            headers.add(name, value)
    for name, value in extra:
        headers.add(name, value)
    headers.add("Content-Length", "0")
    return Response(status, reason or REASONS.get(status, ""), headers)


def _unanswerable(data: bytes) -> str | None:
    """Why a message that did not parse must get no answer: ``"response"`` (RFC 3261 §18.1.2: a response is
    never answered), ``"ack"`` (§17.1.1.3, §17.2.1: an ACK is never answered); None for other requests. Read
    from the raw start line (method names are case-sensitive, §7.1)."""
    start = data.lstrip(b"\r\n")[:16]
    if start.startswith(b"SIP/"):
        return "response"
    if start.startswith(b"ACK ") or start.startswith(b"ACK\t"):
        return "ack"
    return None


def _warning(text: str) -> tuple[str, str]:
    """A ``Warning: 399 routr-ray "..."`` header (RFC 3261 §20.43) saying why a request is refused."""
    safe = text.encode("ascii", "replace").decode()[:100].replace("\r", " ").replace("\n", " ").replace('"', "'")
    return "Warning", f'399 routr-ray "{safe}"'


def _bad_request_bytes(data: bytes, status: int, reason: str) -> bytes | None:
    """A best-effort error response to a request that did not parse: the raw Via/From/To/Call-ID/CSeq lines
    copied (RFC 3261 §8.2.6.2); None when the message is a response or an ACK (never answered) or has no Via."""
    if _unanswerable(data) is not None:
        return None
    head = data.split(b"\r\n\r\n", 1)[0].replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
    lines = head.split(b"\r\n")
    if not lines:
        return None
    copied: list[bytes] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        canonical = _RAW_COPIED.get(name.strip().lower())
        if canonical is not None:
            copied.append(canonical.encode() + b": " + value.strip())
    if not any(c.startswith(b"Via:") for c in copied):
        return None
    safe_reason = reason.encode("ascii", "replace")[:100].replace(b"\r", b" ").replace(b"\n", b" ")
    start = b"SIP/2.0 %d %s" % (status, REASONS.get(status, "Bad Request").encode())
    return start + b"\r\n" + b"\r\n".join(copied) + b"\r\nWarning: 399 routr-ray \"" + safe_reason.replace(
        b'"', b"'"
    ) + b"\"\r\nContent-Length: 0\r\n\r\n"


@dataclass
class EdgePortOptions:
    """Knobs that are not in Routr's EdgePort document (tests shorten the timers)."""

    timers: TimerConfig = field(default_factory=TimerConfig)
    # a cancelled branch whose callee never sends its final response: 487 upstream after this wait
    cancel_wait: float = 4.0
    dispatcher_deadline: float = 5.0
    retry_after: int = 5
    max_batch: int = 64
    max_wait: float = 0.001
    max_in_flight: int = 4
    max_transactions: int = 100_000
    # answered non-INVITE UDP transactions kept (as bytes, about 1 KiB each) for Timer J: 64*T1 times the request
    # rate, ~190,000 at the ~6,000/s one EdgePort process handles; past the bound the oldest go first
    max_completed_transactions: int = 250_000
    # 2xx to INVITE relayed without a transaction (retransmissions after the branch ended) in progress at once
    max_stateless_relays: int = 1_000
    malformed_log_interval: float = 10.0
    # readiness (readiness.py): the end-to-end probe every ready_interval s until it succeeds, then every
    # ready_recheck s, each bounded by ready_timeout s
    ready_interval: float = 0.1
    ready_recheck: float = 5.0
    ready_timeout: float = 5.0
    start_health: bool = True
    # process-wide: gc.freeze() + a larger gen-0 threshold once started (see routr_ray.util.gc_tuning); for a
    # process that runs an EdgePort as its main job (the EdgePortActor), not for tests sharing a process
    tune_gc: bool = False
    # one of `workers` processes sharing the ports (routr_ray/edge/workers.py); the siblings reach the others
    worker: int = 0
    workers: int = 1
    siblings: Siblings | None = None


@dataclass(slots=True)
class ServerContext:
    flow: Flow
    to_tag: str | None = None  # made when the EdgePort itself first answers (most answers are the processor's)
    processor_ref: str | None = None
    branches: list[RunningTransaction] = field(default_factory=list)
    cancelled: bool = False
    cancel_status: int = 487
    cancel_handle: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class ClientContext:
    hop: NextHop
    server: RunningTransaction | None
    is_cancel: bool = False
    cancel_pending: str | None = None  # Reason to send once a provisional arrives (§9.1)
    cancel_sent: bool = False
    directive: HopDirective = EMPTY
    # the processor's request (before our branch) when failover targets remain: the next branch is built from it
    template: Request | None = None
    flow_gone: bool = False  # the hop was a flow no worker of this EdgePort holds any more (480, not 503)
    cseq_offset: int = 0  # this branch's CSeq minus the caller's: re-sent with a trunk's credentials (gateway_auth.py)


def _is_final_sent(txn: RunningTransaction) -> bool:
    status = txn.machine.last_status
    return status is not None and status >= 200


class EdgePort:
    """One EdgePort: ``await start()``, ``await stop()``; inbound messages arrive through :meth:`on_message`."""

    def __init__(
        self,
        config: EdgePortConfig,
        dispatcher: DispatcherClient | BatchingDispatcher,
        *,
        options: EdgePortOptions | None = None,
        metrics: EdgeMetrics | None = None,
        ssl_context: Any = None,
        events: Any = None,
    ) -> None:
        self.config = config
        self.ref = config.ref
        self.options = options or EdgePortOptions()
        opts = self.options
        self.dispatcher = (
            dispatcher
            if isinstance(dispatcher, BatchingDispatcher)
            else BatchingDispatcher(
                dispatcher,
                deadline=opts.dispatcher_deadline,
                max_batch=opts.max_batch,
                max_wait=opts.max_wait,
                max_in_flight=opts.max_in_flight,
            )
        )
        self.metrics = metrics or EdgeMetrics()
        self.ssl_context = ssl_context
        # call events (routr_ray.observability.CallEventEmitter or anything with its methods); None: off
        self.events = events
        self.methods = MethodFilter(config.methods, config.unknown_method_action)
        self.sources = SourceGuard(config.access_control_list)
        self.rate = RateLimiter(config.rate_limit)
        self.malformed = MalformedLog(log, interval=opts.malformed_log_interval)
        self.connections = ConnectionTable(
            max_connections=config.limits.max_connections,
            max_connections_per_source=config.limits.max_connections_per_source,
        )
        self.listeners: dict[TransportName, Listener] = {}
        self.worker = opts.worker
        self.siblings = opts.siblings if opts.workers > 1 else None
        self.server_txns: TransactionTable[Any, RunningTransaction] = TransactionTable(opts.max_transactions)
        self.client_txns: TransactionTable[ClientKey, RunningTransaction] = TransactionTable(opts.max_transactions)
        # answered non-INVITE server transactions on UDP, as bytes, for Timer J (see completed.py)
        self.completed = CompletedTransactions(
            lifetime=opts.timers.initial(Timer.J, False) or 0.0, clock=time.monotonic,
            max_size=opts.max_completed_transactions,
        )
        self.health: HealthServer | None = None
        self.readiness = Readiness(self.dispatcher.ready, interval=opts.ready_interval, recheck=opts.ready_recheck,
                                   timeout=opts.ready_timeout, name=f"EdgePort {self.ref}")
        self.local = LocalAddresses.build(())
        self._listening_points: list[processor_pb2.NetInterface] = []
        self._request_template = processor_pb2.MessageRequest()
        self._localnets = [str(n) for n in config.localnets]
        self._external = list(config.external_addrs)
        self.resolver = Resolver()
        self.hops = HopFinder(self.ref, self.listeners, self.connections, self.resolver,
                              has_siblings=self.siblings is not None)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.draining = False
        self._stateless_relays = 0  # 2xx relayed without a transaction, in progress
        # dialogs whose INVITE was re-sent with a trunk's credentials: the caller's ACK gets the same CSeq offset
        self.cseq_offsets = CSeqOffsets(lifetime=64 * opts.timers.t1)
        self.metrics.track_transactions(
            lambda: len(self.server_txns) + len(self.completed), lambda: len(self.client_txns)
        )
        self.metrics.track_connections(lambda: len(self.connections))

    # lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        limits = TransportLimits(
            max_message_size=self.config.limits.max_message_size,
            idle_timeout=self.config.limits.idle_timeout_seconds,
        )
        try:
            for transport in self.config.transports:
                name = TransportName(transport.protocol.value)
                options: dict[str, Any] = {
                    "limits": limits,
                    "connections": self.connections,
                    "on_stream_error": self._on_stream_error,
                }
                if name.is_secure:
                    options["ssl_context"] = self._server_ssl_context()
                listener = create_listener(name.value, transport.bind_addr, transport.port, self.on_message, **options)
                listener.reuse_port = self.options.workers > 1
                await listener.start()
                self.listeners[name] = listener
            if self.options.start_health and self.config.health.enabled:
                health_port = self.config.health.port
                if health_port and self.options.workers > 1:
                    health_port += self.worker  # each worker's own /metrics: port, port + 1, ...
                self.health = HealthServer(
                    self.config.health.bind_addr,
                    health_port,
                    registry=self.metrics.registry,
                    liveness=self.is_alive,
                    readiness=self.is_ready_now,
                )
                await self.health.start()
        except BaseException:
            await self.stop()
            raise
        points = [(lst.local_address[0], lst.local_address[1], name.via_name) for name, lst in self.listeners.items()]
        self._listening_points = [
            processor_pb2.NetInterface(host=h, port=p, transport=_TRANSPORT_ENUM[t]) for h, p, t in points
        ]
        self._request_template = processor_pb2.MessageRequest(
            listening_points=self._listening_points, external_addrs=self._external, localnets=self._localnets
        )
        self.local = LocalAddresses.build(points, self._external, self._localnets)
        await self.readiness.start()
        if self.options.tune_gc:
            from routr_ray.util.gc_tuning import tune_gc

            tune_gc()

    def _server_ssl_context(self) -> Any:
        if self.ssl_context is None:
            from routr_ray.edge.tlsutil import server_context_from_config

            if self.config.security_context is None:
                log.warning("tls/wss without securityContext: using a self-signed development certificate")
            self.ssl_context = server_context_from_config(self.config.security_context, ["localhost"])
        return self.ssl_context

    async def stop(self) -> None:
        for txn in self.server_txns.values() + self.client_txns.values():
            txn.abandon()
            ctx = txn.context
            if isinstance(ctx, ServerContext) and ctx.cancel_handle is not None:
                ctx.cancel_handle.cancel()
        self.completed.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for listener in self.listeners.values():
            await listener.stop()
        self.listeners.clear()
        if self.health is not None:
            await self.health.stop()
            self.health = None
        await self.readiness.stop()
        await self.dispatcher.close()
        self.malformed.flush(force=True)

    async def drain(self, seconds: float) -> int:
        """Stop taking new requests (they get 503 + Retry-After) and wait up to ``seconds`` for the
        transactions in progress to finish; returns how many were still open."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, seconds)
        while len(self.server_txns) + len(self.client_txns) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return len(self.server_txns) + len(self.client_txns)

    def is_alive(self) -> bool:
        return bool(self.listeners) and all(lst.is_listening for lst in self.listeners.values())

    async def is_ready_now(self) -> bool:
        """``/readyz``: not draining, and the end-to-end probe succeeds now (readiness.py)."""
        return not self.draining and await self.readiness.check()

    async def wait_ready(self, seconds: float | None = None) -> bool:
        """True once the end-to-end probe has succeeded (a REGISTER would), False after ``seconds``."""
        return await self.readiness.wait(seconds)

    def address(self, protocol: str) -> tuple[str, int]:
        """The bound (host, port) of a transport (the real port when 0 was configured)."""
        return self.listeners[TransportName(protocol.lower())].local_address

    @property
    def listening_points(self) -> list[processor_pb2.NetInterface]:
        return list(self._listening_points)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("edgeport task failed", exc_info=task.exception())

    # inbound ---------------------------------------------------------------------------------------
    def on_message(self, data: bytes, flow: Flow) -> None:
        """The listeners' callback: one whole SIP message from ``flow``."""
        host = flow.remote_host
        if self.sources.is_banned(host):
            self.metrics.reject("banned_source")
            return
        if self.rate.is_banned(host):
            self.metrics.reject("rate_limited")
            return
        try:
            message = parse(data)
        except ParseError as exc:
            self._malformed(data, flow, exc)
            return
        if isinstance(message, Response):
            self.metrics.message(_cseq_method(message), "in", flow.transport, message.status)
            self._on_response(message, flow, data)
            return
        assert isinstance(message, Request)
        self.metrics.message(message.method, "in", flow.transport, None)
        if not self.rate.allow(host):
            self.metrics.reject("rate_limited")
            return
        decision = self.methods.check(message.method)
        if decision is not MethodDecision.ACCEPT:
            self.metrics.reject("method_not_allowed")
            if decision is MethodDecision.RESPOND_405 and message.method != "ACK":  # an ACK is never answered
                self._reply_stateless(message, flow, 405, extra=[("Allow", self.methods.allow_header)])
            return
        # parse() has already checked what RFC 3261 §8.1.1 makes mandatory (Via, From, To, Call-ID, CSeq with the
        # request's method, Max-Forwards 0-255): see routr_ray.sip.parser
        try:
            via = apply_received_rport(message, flow)
        except ParseError as exc:
            self._malformed(data, flow, exc)
            return
        if via is not None and via.host.endswith(".invalid") and flow.connection_id is not None:
            if not self.hops.remember_invalid_host(via.host.lower(), flow):
                self.metrics.reject("invalid_host_taken")
        self._on_request(message, flow)

    def _malformed(self, data: bytes, flow: Flow, exc: ParseError) -> None:
        """A message that did not parse: a request other than ACK gets 400 (or what the parser says) with a
        Warning; an ACK or a response is dropped and counted (``malformed_ack``, ``malformed_response``), never
        answered (RFC 3261 §17.1.1.3, §17.2.1, §18.1.2)."""
        kind = _unanswerable(data)
        self.metrics.reject("malformed" if kind is None else f"malformed_{kind}")
        self.malformed.record(flow.remote_host, exc.reason)
        if exc.status is None or kind is not None:
            return
        reply = _bad_request_bytes(data, exc.status, exc.reason)
        if reply is not None:
            self._transmit(NextHop(flow.transport, flow.remote_host, flow.remote_port, flow), reply, None, exc.status)

    def _on_stream_error(self, flow: Flow, exc: ParseError) -> bytes | None:
        self.metrics.reject("malformed")
        self.malformed.record(flow.remote_host, exc.reason)
        return None

    # requests --------------------------------------------------------------------------------------
    def _on_request(self, request: Request, flow: Flow) -> None:
        key = server_key_for(request)
        if request.method == "ACK":
            invite = self.server_txns.get(key) if key is not None else None
            if invite is not None and isinstance(invite.machine, InviteServerTransaction) and (
                invite.machine.state in (State.COMPLETED, State.CONFIRMED)
            ):
                invite.on_ack(request)  # §17.2.1: the ACK for a non-2xx final is absorbed hop by hop
                return
            self._spawn(self._dispatch_stateless(request, flow))
            return
        existing = self.server_txns.get(key)
        if existing is not None:
            existing.on_request(request)  # retransmission: resend the last response
            return
        if key is not None:
            done = self.completed.get(key)
            if done is not None:  # §17.2.2: a retransmission in the Completed state gets the final response again
                self._transmit(done.hop, done.data, None, done.status, method=done.method)
                return
        if request.method == "CANCEL":
            self._on_cancel(request, flow, key)
            return
        txn = self._new_server_txn(request, flow, key)
        if txn is None:
            return
        if request.method == "INVITE":
            # §16.2 / §17.2.1: answer 100 Trying at once so the caller stops retransmitting
            txn.send_response(100, make_response(request, 100))
        if request.method == "OPTIONS" and self._is_for_us(request):
            if not self.readiness.ready or self.draining:
                # issue 13 item 4: listening is not ready; a client probing us must not send its REGISTER yet
                self.metrics.reject("draining" if self.draining else "not_ready")
                self._answer(txn, 503, extra=[("Retry-After", str(self.options.retry_after))])
                return
            require = [t.strip() for t in request.headers.get_all("Require") if t.strip()]
            if require:  # RFC 3261 §8.2.2.3: the UAS of this OPTIONS supports no extension
                self._answer(txn, 420, extra=[("Unsupported", ", ".join(require))])
                return
            self._answer(txn, 200, extra=[("Allow", self.methods.allow_header), ("Accept", "application/sdp")])
            return
        if self._is_loop(request):
            self.metrics.reject("loop_detected")
            self._answer(txn, 482)
            return
        if request.max_forwards == 0:
            self.metrics.reject("too_many_hops")
            self._answer(txn, 483)
            return
        proxy_require = [t.strip() for t in request.headers.get_all("Proxy-Require") if t.strip()]
        if proxy_require:
            # RFC 3261 §16.3 step 5: this proxy supports no option tags, so every one is unsupported
            self.metrics.reject("bad_extension")
            self._answer(txn, 420, extra=[("Unsupported", ", ".join(proxy_require))])
            return
        self._dispatch_request(txn)

    def _new_server_txn(self, request: Request, flow: Flow, key: Any) -> RunningTransaction | None:
        reliable = flow.transport is not TransportName.UDP
        timers = self.options.timers
        machine: InviteServerTransaction | NonInviteServerTransaction
        if request.method == "INVITE":
            machine = InviteServerTransaction(request, reliable=reliable, timers=timers)
        else:
            machine = NonInviteServerTransaction(request, reliable=reliable, timers=timers,
                                                 tu_keeps_completed=not reliable)
        ctx = ServerContext(flow)
        txn = RunningTransaction(machine, key, send=self._send_upstream, tu=self, context=ctx)
        if key is None or not self.server_txns.add(key, txn):
            self.metrics.reject("table_full")
            self._reply_stateless(request, flow, 503, extra=[("Retry-After", str(self.options.retry_after))])
            return None
        txn.start()
        return txn

    def _is_for_us(self, request: Request) -> bool:
        """OPTIONS whose Request-URI has no user part and names one of our addresses (issue 3 item 2)."""
        try:
            uri = request.request_uri
        except ParseError:
            return False
        if uri.scheme not in ("sip", "sips") or uri.user:
            return False
        return self.local.is_own(uri.host, uri.port)

    def _is_loop(self, request: Request) -> bool:
        """RFC 3261 §16.3 step 4: a Via we placed (a branch of one of our live client transactions) on a
        request with the same Request-URI as the one we forwarded is a loop; a changed one is a spiral."""
        for via in request.via[1:]:
            branch = via.branch
            if branch is None:
                continue
            sent = self.client_txns.get(client_key(branch, request.method))
            if sent is not None and sent.request.uri == request.uri:
                return True
        return False

    def _answer(self, txn: RunningTransaction, status: int, extra: Iterable[tuple[str, str]] = ()) -> None:
        ctx: ServerContext = txn.context
        if ctx.to_tag is None and status > 100:
            ctx.to_tag = secrets.token_hex(6)
        response = make_response(txn.request, status, to_tag=ctx.to_tag, extra=extra)
        txn.send_response(status, response)

    def _reply_stateless(
        self, request: Request, flow: Flow, status: int, extra: Iterable[tuple[str, str]] = ()
    ) -> None:
        response = make_response(request, status, to_tag=secrets.token_hex(6), extra=extra)
        try:
            via = apply_received_rport(request, flow)
        except ParseError:
            via = None
        hop = self._upstream_hop(flow, via)
        self._transmit(hop, bytes(response), None, status, method=request.method)

    def _message_request(
        self, message: Request | Response, flow: Flow, metadata: dict[str, str] | None
    ) -> processor_pb2.MessageRequest:
        mreq = make_message_request(
            message,
            edge_port_ref=self.ref,
            sender=processor_pb2.NetInterface(
                host=flow.remote_host, port=flow.remote_port, transport=_PROTO_TRANSPORT[flow.transport]
            ),
            metadata=metadata,
        )
        # listening_points, external_addrs and localnets are the same in every message: one C-level merge
        mreq.MergeFrom(self._request_template)
        return mreq

    async def _submit(self, mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await self.dispatcher.submit(mreq)
        finally:
            self.metrics.dispatcher_latency.observe(loop.time() - started)

    def _dispatch_request(self, txn: RunningTransaction) -> None:
        """Hand a new request to the dispatcher; :meth:`_dispatched` runs when the answer is there (a
        done-callback, not a task per message: this is the hot path)."""
        ctx: ServerContext = txn.context
        request: Request = txn.request
        if self.draining:
            self.metrics.reject("draining")
            self._answer(txn, 503, extra=[("Retry-After", str(self.options.retry_after))])
            return
        try:
            mreq = self._message_request(request, ctx.flow, None)
        except (ConversionError, ParseError, ValueError) as exc:
            self.metrics.reject("malformed")
            self.malformed.record(ctx.flow.remote_host, f"conversion: {exc}")
            self._answer(txn, 400, extra=[_warning(str(exc))])
            return
        try:
            future = self.dispatcher.submit_nowait(mreq)
        except DispatcherUnavailable as exc:
            self._dispatch_failed(txn, exc)
            return
        future.add_done_callback(partial(self._dispatched, txn, self._loop_time()))

    def _loop_time(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else asyncio.get_running_loop().time()

    def _dispatch_failed(self, txn: RunningTransaction, exc: DispatcherUnavailable) -> None:
        log.debug("dispatcher unavailable for %s: %s", txn.request.method, exc)
        self.metrics.reject("dispatcher_failure")
        if not txn.done and not _is_final_sent(txn):
            self._answer(txn, 503, extra=[("Retry-After", str(self.options.retry_after))])

    def _dispatched(
        self, txn: RunningTransaction, started: float, future: asyncio.Future[processor_pb2.MessageResponse]
    ) -> None:
        self.metrics.dispatcher_latency.observe(self._loop_time() - started)
        try:
            try:
                resp = self.dispatcher.result_of(future)
            except DispatcherUnavailable as exc:
                self._dispatch_failed(txn, exc)
                return
            self._answer_or_forward(txn, resp)
        except Exception:
            log.exception("handling the dispatcher's answer failed")

    def _answer_or_forward(self, txn: RunningTransaction, resp: processor_pb2.MessageResponse) -> None:
        ctx: ServerContext = txn.context
        request: Request = txn.request
        if txn.done or _is_final_sent(txn):
            return
        ref = resp.metadata.get(PROCESSOR_METADATA_KEY) if resp.metadata else None
        if ref:
            ctx.processor_ref = ref
        if not resp.HasField("message"):
            self._answer(txn, 500)
            return
        try:
            answer = read_message_response(resp)
        except (ConversionError, ParseError, ValueError) as exc:
            log.warning("dispatcher answered an unusable message: %s", exc)
            self._answer(txn, 500)
            return
        if isinstance(answer, Response):
            if answer.status == 100 and request.method == "INVITE":
                return  # we already sent ours
            txn.send_response(answer.status, answer)
            return
        assert isinstance(answer, Request)
        if ctx.cancelled:
            self._answer(txn, ctx.cancel_status)
            return
        self._spawn(self._forward(answer, txn, read_directive(resp.metadata)))

    async def _dispatch_stateless(self, request: Request, flow: Flow) -> None:
        """ACK for a 2xx (and any ACK matching no transaction): through the dispatcher, then forwarded without a
        transaction (RFC 3261 §16.11, §17.1.1.3 note). Nothing is ever answered to an ACK."""
        try:
            mreq = self._message_request(request, flow, None)
        except (ConversionError, ParseError, ValueError) as exc:
            self.metrics.reject("malformed_ack")
            self.malformed.record(flow.remote_host, f"ACK: {exc}")
            return
        try:
            resp = await self._submit(mreq)
            if not resp.HasField("message"):
                return
            answer = read_message_response(resp)
        except (DispatcherUnavailable, ConversionError, ParseError, ValueError) as exc:
            log.debug("stateless %s dropped: %s", request.method, exc)
            self.metrics.reject("dispatcher_failure")
            return
        if isinstance(answer, Request):
            await self._forward(answer, None, read_directive(resp.metadata))

    # forwarding ------------------------------------------------------------------------------------
    async def _forward(
        self, request: Request, server: RunningTransaction | None, directive: HopDirective = EMPTY,
        cseq_offset: int = 0, template: Request | None = None,
    ) -> None:
        """Send ``request`` (the processor's answer) on a new client transaction; with no server transaction
        (an ACK for a 2xx) statelessly. ``template``: what failover branches and a trunk challenge start from
        (default: ``request`` before our branch); ``cseq_offset``: see ``ClientContext``."""
        try:
            hop = await self.hops.find(request, directive)
        except NoRoute as exc:
            log.debug("no next hop for %s: %s", request.method, exc.reason)
            self.metrics.reject("unroutable")
            if server is not None and not server.done and not _is_final_sent(server):
                if directive.failover and exc.status != 480:
                    self._failover_from(server, request, directive)
                    return
                extra = [("Warning", f'399 routr-ray "{exc.reason}"')]
                if exc.status == 503:
                    extra.append(("Retry-After", str(self.options.retry_after)))
                self._answer(server, exc.status, extra=extra)
            return
        if server is not None and (server.done or _is_final_sent(server)):
            return
        if server is not None and server.context.cancelled:
            self._answer(server, server.context.cancel_status)  # cancelled while we looked for the next hop
            return
        if template is None and (directive.failover or directive.gateway_auth is not None):
            template = request.copy()
        branch = make_branch() if self.options.workers == 1 else worker_branch(self.worker)
        if not self._set_branch(request, branch, hop):
            if server is not None:
                self._answer(server, 500)
            return
        if request.method == "ACK":
            offset = self.cseq_offsets.offset_for(request) if len(self.cseq_offsets) else 0
            if offset:  # the INVITE of this dialog reached the trunk re-sent with credentials (gateway_auth.py)
                shift_cseq(request, offset)
            self._transmit(hop, bytes(request), None, None, method="ACK")
            return
        timers = self.options.timers
        reliable = hop.transport is not TransportName.UDP
        machine: InviteClientTransaction | NonInviteClientTransaction
        timer_c = None
        if request.method == "INVITE":
            machine = InviteClientTransaction(request, reliable=reliable, timers=timers)
            timer_c = TimerCGuard(timers.timer_c)
        else:
            machine = NonInviteClientTransaction(request, reliable=reliable, timers=timers)
        key = client_key(branch, request.method)
        context = ClientContext(hop, server, directive=directive, template=template, cseq_offset=cseq_offset)
        txn = RunningTransaction(
            machine, key, send=self._send_downstream, tu=self, timer_c=timer_c, context=context
        )
        if not self.client_txns.add(key, txn):
            self.metrics.reject("table_full")
            if server is not None:
                self._answer(server, 503, extra=[("Retry-After", str(self.options.retry_after))])
            return
        if server is not None:
            server.context.branches.append(txn)
        txn.start()
        if self.events is not None and server is not None and request.method == "INVITE":
            try:
                self.events.invite_forwarded(request)
            except Exception:  # noqa: BLE001 - an event must never break the SIP path
                log.debug("call event failed", exc_info=True)

    # serial failover (routr-ray.failover: trunk URIs) ---------------------------------------------
    def _may_fail_over(self, txn: RunningTransaction) -> bool:
        ctx: ClientContext = txn.context
        server = ctx.server
        return (
            ctx.template is not None
            and bool(ctx.directive.failover)
            and server is not None
            and not server.done
            and not _is_final_sent(server)
            and not server.context.cancelled
        )

    def _fail_over(self, txn: RunningTransaction) -> None:
        """The branch ended in 503/408/timeout/transport error: try the next failover Request-URI."""
        ctx: ClientContext = txn.context
        assert ctx.server is not None and ctx.template is not None
        self._failover_from(ctx.server, ctx.template, ctx.directive)

    def _failover_from(self, server: RunningTransaction, template: Request, directive: HopDirective) -> None:
        self.metrics.failover()
        uri, rest = directive.failover[0], directive.failover[1:]
        request = template.copy()
        assert isinstance(request, Request)
        request.request_uri = uri.copy()
        log.debug("failing over %s to %s", request.method, uri)
        self._spawn(self._forward(request, server, directive.without_next_hop(rest)))

    def _set_branch(self, request: Request, branch: str, hop: NextHop) -> bool:
        """Set the branch of the processor's top Via (§16.6 step 8) and make its transport the one used
        (§18.1.1). A top Via that already has a branch is not ours: ours is added above it."""
        via = request.top_via
        if via is None:
            return False
        if via.branch is not None:
            log.debug("processor added no Via; forwarding with a Via of our own")
            listener = self.listeners[hop.transport]
            host, port = listener.local_address
            own = Via(hop.transport.via_name, host, port, {"branch": branch, "rport": None})
            request.headers.prepend("Via", str(own))
            return True
        via.params = {"branch": branch, **via.params}
        via.transport = hop.transport.via_name
        request.replace_top_via(via)
        return True

    async def _to_sibling(self, worker: int, flow: Flow, data: bytes) -> None:
        assert self.siblings is not None
        try:
            if await self.siblings.forward(worker, flow, data):
                return
        except Exception as exc:  # noqa: BLE001 - a lost response: the sender retransmits (UDP) or times out
            log.debug("cannot hand a response to worker %d: %r", worker, exc)
        self.metrics.reject("sibling_unreachable")

    # sending ---------------------------------------------------------------------------------------
    def _upstream_hop(self, flow: Flow, via: Any) -> NextHop:
        """Responses go back over the connection of the request (stream) or to received/rport (UDP)."""
        if flow.transport is not TransportName.UDP or via is None:
            return NextHop(flow.transport, flow.remote_host, flow.remote_port, flow)
        host, port = response_address(via)
        return NextHop(flow.transport, host, port)

    def _send_upstream(self, txn: RunningTransaction, message: Any, retransmission: bool) -> None:
        ctx: ServerContext = txn.context
        request: Request = txn.request
        hop = self._upstream_hop(ctx.flow, request.top_via)
        data = bytes(message)
        status = message.status
        self._transmit(hop, data, None, status, method=request.method)
        if status >= 200 and getattr(txn.machine, "tu_keeps_completed", False):
            self.completed.add(txn.key, hop, data, status, request.method)
        if self.events is not None and not retransmission:
            self._emit_answered(txn.request, message)

    def _emit_answered(self, request: Request, response: Any) -> None:
        """Routr's events: REGISTER 200 -> endpoint.registered; INVITE/BYE finals -> call.ended."""
        try:
            if request.method == "REGISTER":
                self.events.register_answered(request, response)
            elif request.method == "INVITE":
                self.events.invite_final(request, response.status)
            elif request.method == "BYE":
                self.events.bye_answered(request, response.status)
        except Exception:  # noqa: BLE001 - an event must never break the SIP path
            log.debug("call event failed", exc_info=True)

    def _send_downstream(self, txn: RunningTransaction, message: Any, retransmission: bool) -> None:
        ctx: ClientContext = txn.context
        self._transmit(ctx.hop, bytes(message), txn, None, method=message.method)

    def _transmit(
        self,
        hop: NextHop,
        data: bytes,
        txn: RunningTransaction | None,
        status: int | None,
        *,
        method: str | None = None,
    ) -> None:
        listener = self.listeners.get(hop.transport)
        if listener is None:
            self._send_failed(txn)
            return
        self.metrics.message(method, "out", hop.transport, status)
        if hop.via_sibling:
            self._spawn(self._transmit_via_sibling(hop, data, txn))
            return
        send_now = getattr(listener, "send_now", None)
        if send_now is not None:
            if not send_now(hop.target, data):
                self._send_failed(txn)
            return
        self._spawn(self._transmit_async(listener, hop, data, txn))

    async def _transmit_async(
        self, listener: Listener, hop: NextHop, data: bytes, txn: RunningTransaction | None
    ) -> None:
        if not await listener.send(hop.target, data, server_name=hop.server_name):
            self._send_failed(txn)

    async def _transmit_via_sibling(self, hop: NextHop, data: bytes, txn: RunningTransaction | None) -> None:
        sent = False
        if self.siblings is not None:
            try:
                sent = await self.siblings.send_on_flow(hop.transport, hop.host, hop.port, data)
            except Exception as exc:  # noqa: BLE001 - as a closed connection
                log.debug("no sibling could send to %s:%d: %r", hop.host, hop.port, exc)
        if not sent:
            if txn is not None and isinstance(txn.context, ClientContext):
                txn.context.flow_gone = True  # as when this worker finds the flow closed: 480
            self._send_failed(txn)

    async def send_for_sibling(self, transport: TransportName, host: str, port: int, data: bytes) -> bool:
        """A sibling's request to send over a connection this worker holds (False: none here)."""
        listener = self.listeners.get(transport)
        conn = self.connections.by_remote(transport, host, port)
        if listener is None or conn is None or conn.closed:
            return False
        return await listener.send(conn.flow, data)

    def receive_from_sibling(self, flow: Flow, data: bytes) -> None:
        """A message another worker received for a transaction of this one: handled as if received here."""
        self.on_message(data, flow)

    def _send_failed(self, txn: RunningTransaction | None) -> None:
        self.metrics.reject("send_failed")
        if txn is not None and not txn.done:
            # asynchronously: the machine may be in the middle of running its effects
            asyncio.get_running_loop().call_soon(txn.on_transport_error)

    # responses -------------------------------------------------------------------------------------
    def _on_response(self, response: Response, flow: Flow, data: bytes = b"") -> None:
        try:
            key = client_key_for(response)
        except ParseError as exc:
            self.metrics.reject("malformed_response")  # dropped: a response is never answered (§18.1.2)
            self.malformed.record(flow.remote_host, exc.reason)
            return
        txn = self.client_txns.get(key) if key is not None else None
        if txn is None and self.siblings is not None and data:
            owner = worker_of_branch(key.branch if key is not None else None)
            if owner is not None and owner != self.worker:  # another worker's transaction (edge/workers.py)
                self._spawn(self._to_sibling(owner, flow, data))
                return
        if txn is None:
            cseq = response.cseq
            if cseq is not None and cseq.method == "INVITE" and 200 <= response.status < 300:
                # a 2xx retransmission after the branch ended: still end to end (§16.7 step 5 / RFC 6026). Each
                # costs a dispatcher call and may be relayed anywhere its Vias say, so a source sending them is
                # rate-limited (and banned) like one sending requests, and only so many are in progress at once.
                if not self.rate.allow(flow.remote_host):
                    self.metrics.reject("rate_limited")
                elif self._stateless_relays >= self.options.max_stateless_relays:
                    self.metrics.reject("overloaded")
                else:
                    self._stateless_relays += 1
                    self._spawn(self._relay_stateless(response, flow))
            else:
                self.metrics.reject("no_transaction")
            return
        txn.on_response(response.status, response)

    async def _process_response(
        self, response: Response, flow: Flow, branch: str | None, metadata: dict[str, str] | None
    ) -> Response:
        """The response after the dispatcher; without the processor when it fails (never lose a response).
        Our Via is removed when the processor left it on top."""
        out: Response = response
        try:
            resp = await self._submit(self._message_request(response, flow, metadata or None))
            if resp.HasField("message"):
                answer = read_message_response(resp)
                if isinstance(answer, Response):
                    out = answer
        except (DispatcherUnavailable, ConversionError, ParseError, ValueError) as exc:
            log.debug("relaying a %d without the dispatcher: %s", response.status, exc)
            self.metrics.reject("dispatcher_failure")
        try:
            top = out.top_via
        except ParseError:
            top = None
        if top is not None and branch is not None and top.branch == branch:
            out.headers.remove_first_value("Via")
        return out

    async def _relay(self, txn: RunningTransaction, response: Response, flow: Flow) -> None:
        ctx: ClientContext = txn.context
        server = ctx.server
        metadata: dict[str, str] = {}
        if server is not None and server.context.processor_ref:
            metadata[PROCESSOR_METADATA_KEY] = server.context.processor_ref
        if ctx.directive.trunk_ref:
            metadata[TRUNK_REF_KEY] = ctx.directive.trunk_ref
        branch = txn.request.top_via.branch
        out = await self._process_response(response, flow, branch, metadata)
        if server is not None:
            self._send_relayed(server, out)

    def _relay_directly(self, txn: RunningTransaction, response: Response) -> None:
        """A 1xx/2xx the processor said it does not need (``routr-ray.responses=errors``): our Via off the top
        (RFC 3261 §16.7 step 3) and upstream, without a dispatcher call."""
        server = txn.context.server
        try:
            top = response.top_via
        except ParseError:
            top = None
        if top is not None and top.branch is not None and top.branch == txn.request.top_via.branch:
            response.headers.remove_first_value("Via")
        if server is not None:
            self._send_relayed(server, response)

    def _send_relayed(self, server: RunningTransaction, out: Response) -> None:
        try:
            via_left = out.top_via is not None
        except ParseError:
            via_left = False
        if not via_left:
            # RFC 3261 §16.7 step 3: a response with no Via left was meant for us; it is not forwarded.
            self.metrics.reject("no_via")
            return
        sent = server.send_response(out.status, out)
        if not sent and 200 <= out.status < 300 and server.request.method == "INVITE":
            # a 2xx that lost the race with our 487 (CANCEL) is still relayed: it creates the dialog (§16.7 step 5)
            self._transmit(self._upstream_hop(server.context.flow, server.request.top_via), bytes(out), None,
                           out.status, method="INVITE")
        if out.status >= 200:
            self._cancel_wait_done(server)

    async def _relay_stateless(self, response: Response, flow: Flow) -> None:
        try:
            await self._relay_stateless_now(response, flow)
        finally:
            self._stateless_relays -= 1

    async def _relay_stateless_now(self, response: Response, flow: Flow) -> None:
        """A 2xx to an INVITE whose branch has ended, relayed end to end. RFC 3261 §18.1.2: a response whose
        top Via is not one we would insert is discarded (a stray response never makes us send anything)."""
        try:
            top = response.top_via
        except ParseError:
            return
        if top is None or top.branch is None or not self.local.is_own(top.host, top.port or 5060):
            self.metrics.reject("no_transaction")
            return
        out = await self._process_response(response, flow, top.branch, None)
        try:
            via = out.top_via
        except ParseError:
            return
        if via is None:
            return
        try:
            transport = TransportName(via.transport.lower())
        except ValueError:
            return
        host, port = response_address(via)
        hop = NextHop(transport, host, port)
        if transport is not TransportName.UDP:
            conn = self.connections.by_remote(transport, host, port)
            if conn is None:
                return
            hop = NextHop(transport, host, port, conn.flow)
        self._transmit(hop, bytes(out), None, out.status, method="INVITE")

    # CANCEL ----------------------------------------------------------------------------------------
    def _on_cancel(self, request: Request, flow: Flow, key: Any) -> None:
        """RFC 3261 §16.10: answer the CANCEL here, then cancel the pending branches ourselves."""
        invite = self.server_txns.get(cancel_target_key(key)) if key is not None else None
        txn = self._new_server_txn(request, flow, key)
        if txn is None:
            return
        if invite is None:
            self.metrics.reject("no_transaction")
            self._answer(txn, 481)
            return
        ctx: ServerContext = txn.context
        # §9.2: the To tag of the CANCEL response matches the INVITE's (made now if the INVITE has none yet)
        ictx: ServerContext = invite.context
        if ictx.to_tag is None:
            ictx.to_tag = secrets.token_hex(6)
        ctx.to_tag = ictx.to_tag
        self._answer(txn, 200)
        if self.events is not None:
            try:
                self.events.cancelled(request)
            except Exception:  # noqa: BLE001 - an event must never break the SIP path
                log.debug("call event failed", exc_info=True)
        if not _is_final_sent(invite):
            self._cancel_invite(invite, 487, None)

    def _cancel_invite(self, invite: RunningTransaction, status: int, reason: str | None) -> None:
        ctx: ServerContext = invite.context
        if ctx.cancelled:
            return
        ctx.cancelled = True
        ctx.cancel_status = status
        for branch in ctx.branches:
            self._cancel_branch(branch, reason)
        # a callee that never answers the CANCEL must not leave the caller hanging
        ctx.cancel_handle = asyncio.get_running_loop().call_later(
            self.options.cancel_wait, self._cancel_wait_expired, invite
        )

    def _cancel_branch(self, branch: RunningTransaction, reason: str | None) -> None:
        cctx: ClientContext = branch.context
        if branch.done or cctx.cancel_sent or branch.machine.last_status is not None and branch.machine.last_status >= 200:
            return
        if branch.machine.state is State.CALLING:
            # §9.1: no CANCEL before a provisional response; sent when one arrives
            cctx.cancel_pending = reason or ""
            return
        cctx.cancel_sent = True
        cancel = build_cancel(branch.request, reason=reason)
        reliable = cctx.hop.transport is not TransportName.UDP
        machine = NonInviteClientTransaction(cancel, reliable=reliable, timers=self.options.timers)
        key = client_key(branch.request.top_via.branch or "", "CANCEL")
        txn = RunningTransaction(
            machine, key, send=self._send_downstream, tu=self, context=ClientContext(cctx.hop, None, is_cancel=True)
        )
        if self.client_txns.add(key, txn):
            txn.start()

    def _cancel_wait_expired(self, invite: RunningTransaction) -> None:
        ctx: ServerContext = invite.context
        ctx.cancel_handle = None
        if not invite.done and not _is_final_sent(invite):
            self._answer(invite, ctx.cancel_status)

    def _cancel_wait_done(self, invite: RunningTransaction) -> None:
        ctx: ServerContext = invite.context
        if ctx.cancel_handle is not None:
            ctx.cancel_handle.cancel()
            ctx.cancel_handle = None

    # transaction user (txn_runner.TransactionUser) -------------------------------------------------
    def txn_deliver(self, txn: RunningTransaction, message: Any) -> None:
        if not txn.is_client:
            if isinstance(message, Request) and message.method == "ACK":
                # RFC 6026 Accepted: an ACK that matched the INVITE (2xx) passes end to end
                self._spawn(self._dispatch_stateless(message, txn.context.flow))
            return
        ctx: ClientContext = txn.context
        if ctx.is_cancel:
            return  # the response to our own CANCEL is hop by hop
        assert isinstance(message, Response)
        if ctx.cseq_offset:  # a branch re-sent with a trunk's credentials: the caller sees its own CSeq
            shift_cseq(message, -ctx.cseq_offset)
            if 200 <= message.status < 300 and txn.is_invite:
                self.cseq_offsets.remember(message, ctx.cseq_offset)
        elif message.status in (401, 407) and ctx.directive.gateway_auth is not None:
            if self._answer_trunk_challenge(txn, message):
                return  # the challenge stops here; the INVITE machine ACKs it (§17.1.1.3)
        if message.status < 200 and ctx.cancel_pending is not None and not ctx.cancel_sent:
            reason, ctx.cancel_pending = ctx.cancel_pending, None
            self._cancel_branch(txn, reason or None)
        if message.status == 100:
            return  # §16.7 step 3: a 100 is not forwarded
        if message.status in FAILOVER_STATUSES and self._may_fail_over(txn):
            self._fail_over(txn)  # the INVITE machine ACKs the 503/408 itself (§17.1.1.3)
            return
        if ctx.directive.edge_relays_success and message.status < 300 and not _has_invalid_contact(message):
            self._relay_directly(txn, message)
            return
        flow = ctx.hop.flow or Flow(ctx.hop.transport, ctx.hop.host, ctx.hop.port, "", 0)
        self._spawn(self._relay(txn, message, flow))

    def _answer_trunk_challenge(self, txn: RunningTransaction, challenge: Response) -> bool:
        """Send the branch's request again with the trunk's credentials (routr_ray/edge/gateway_auth.py); False
        when it cannot be answered (the 401/407 then goes upstream as any final)."""
        ctx: ClientContext = txn.context
        server = ctx.server
        auth = ctx.directive.gateway_auth
        if auth is None or ctx.template is None or server is None or server.done or _is_final_sent(server):
            return False
        if server.context.cancelled:
            return False
        request = request_with_credentials(ctx.template, challenge, *auth)
        if request is None:
            log.debug("trunk %s challenge cannot be answered", ctx.directive.trunk_ref or "?")
            return False
        # failover from this branch starts again from the processor's request (its own CSeq, no credentials)
        self._spawn(self._forward(request, server, ctx.directive, cseq_offset=1, template=ctx.template))
        return True

    def txn_send_ack(self, txn: RunningTransaction, response: Any) -> None:
        ctx: ClientContext = txn.context
        try:
            ack = build_ack(txn.request, response)
        except ValueError:
            return
        self._transmit(ctx.hop, bytes(ack), None, None, method="ACK")

    def txn_timeout(self, txn: RunningTransaction, timer: Timer) -> None:
        if not txn.is_client:
            return  # Timer H: the ACK never came; nothing to tell anyone
        ctx: ClientContext = txn.context
        if ctx.is_cancel:
            return
        server = ctx.server
        if server is None or server.done or _is_final_sent(server):
            return
        # §16.7 step 6 / §16.8: a branch that never answered counts as 408 (Timer B, F, or C without 1xx)
        if timer is Timer.C:
            txn.abandon()
            self.client_txns.remove(txn.key)
        elif self._may_fail_over(txn):
            self._fail_over(txn)
            return
        sctx: ServerContext = server.context
        self._answer(server, sctx.cancel_status if sctx.cancelled else 408)

    def txn_transport_error(self, txn: RunningTransaction) -> None:
        if not txn.is_client:
            return
        ctx: ClientContext = txn.context
        server = ctx.server
        if ctx.is_cancel or server is None or server.done or _is_final_sent(server):
            return
        if ctx.flow_gone:  # the callee's connection is closed: 480, as one worker answers it (_directed_hop)
            self._answer(server, 480, extra=[("Warning", '399 routr-ray "the callee\'s connection is closed"')])
            return
        if self._may_fail_over(txn):
            self._fail_over(txn)
            return
        # §16.7 step 6 / §16.9: a transport error on a branch counts as a 503
        self._answer(server, 503, extra=[("Retry-After", str(self.options.retry_after))])

    def txn_cancel_branch(self, txn: RunningTransaction) -> None:
        """Timer C fired after a provisional response (§16.8): CANCEL the branch; the caller gets the callee's
        487, or 408 after the bounded wait."""
        server = txn.context.server
        if server is not None and not server.done and not _is_final_sent(server):
            self._cancel_invite(server, 408, 'SIP;cause=408;text="Timer C"')
        else:
            self._cancel_branch(txn, 'SIP;cause=408;text="Timer C"')

    def txn_terminated(self, txn: RunningTransaction) -> None:
        if txn.is_client:
            if self.client_txns.get(txn.key) is txn:
                self.client_txns.remove(txn.key)
            server = txn.context.server
            if server is not None and txn in server.context.branches:
                server.context.branches.remove(txn)
            return
        if self.server_txns.get(txn.key) is txn:
            self.server_txns.remove(txn.key)
        self._cancel_wait_done(txn)


def _has_invalid_contact(message: Response) -> bool:
    """A Contact naming a ``.invalid`` host (a WebRTC callee, RFC 7118 §5): the processor fixes it, so such a
    response goes through it even when the EdgePort could relay it alone."""
    return any(".invalid" in value.lower() for value in message.headers.get_lines("Contact"))


def _cseq_method(message: Response) -> str | None:
    try:
        cseq = message.cseq
    except ParseError:
        return None
    return cseq.method if cseq is not None else None


# responses (and their local equivalents: timeout, transport error) after which the next failover URI is tried
FAILOVER_STATUSES = frozenset({408, 503})


_TRANSPORT_ENUM = {"UDP": 0, "TCP": 1, "TLS": 2, "SCTP": 3, "WS": 4, "WSS": 5}
_PROTO_TRANSPORT = {name: _TRANSPORT_ENUM[name.via_name] for name in TransportName}
