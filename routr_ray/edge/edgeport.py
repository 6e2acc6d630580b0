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
else the Request-URI; ``*.invalid`` hosts; names resolved without blocking). A hop of another EdgePort of the
cluster (the callee's flow is there) keeps its transactions here and only its bytes go out there; that EdgePort
hands the responses back by branch (``peers.py``, docs/distributed.md). ``routr-ray.failover`` URIs are tried
in order, each as the new Request-URI on a new branch, when a branch ends in 503, 408, a timeout, a transport error
or has no usable next hop; only the last answer goes upstream. ``routr-ray.trunk-ref`` and ``routr-ray.echo.*``
stay with the branch and go back to the dispatcher in the metadata of its responses. A trunk's 401/407 is answered
with the trunk's credentials when the processor gave them (``gateway_auth.py``).
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
from routr_ray.edge.advertise import WILDCARD_HOSTS, fill_own_address
from routr_ray.edge.completed import CompletedTransactions
from routr_ray.edge.connections import ConnectionTable
from routr_ray.edge.directives import EMPTY, TRUNK_REF_KEY, HopDirective, read_directive
from routr_ray.edge.dispatcher_client import (
    PROCESSOR_METADATA_KEY,
    BatchingDispatcher,
    DispatcherClient,
    DispatcherUnavailable,
)
from routr_ray.edge.forking import (
    CANCEL_REASON_ANSWERED,
    CANCEL_REASON_DECLINED,
    CANCEL_REASON_TIMEOUT,
    Fork,
    ForkedBranch,
    read_branches,
)
from routr_ray.edge.gateway_auth import CSeqOffsets, request_with_credentials, shift_cseq
from routr_ray.edge.guards import MalformedLog, MethodDecision, MethodFilter, RateLimiter, SourceGuard
from routr_ray.edge.health import HealthServer
from routr_ray.edge.hold_down import HoldDown, up_first
from routr_ray.edge.host_networks import host_networks
from routr_ray.edge.metrics import EdgeMetrics
from routr_ray.edge.nat import (
    LocalAddresses,
    apply_received_rport,
    default_port,
    is_ip_literal,
    response_address,
)
from routr_ray.edge.next_hop import HopFinder, NextHop, NoRoute
from routr_ray.edge.peers import BranchOwner, Peers, owned_branch, owner_of_branch
from routr_ray.edge.readiness import Readiness
from routr_ray.edge.resolver import Resolver, ResolverBusy, families_for
from routr_ray.edge.source_address import SourceAddresses
from routr_ray.edge.trace_hooks import client_span, decided, server_span
from routr_ray.edge.transports import Flow, Listener, TransportLimits, TransportName, create_listener
from routr_ray.edge.transports.base import normalize_host
from routr_ray.edge.txn_runner import RunningTransaction
from routr_ray.edge.workers import Siblings, worker_branch
from routr_ray.observability import tracing
from routr_ray.proto.convert import ConversionError, make_message_request, read_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import URI, Headers, ParseError, Request, Response, Via, parse
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
from routr_ray.util.edge_tag import edge_tag

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
    # the other EdgePorts of the cluster (routr_ray/edge/peers.py); None outside a cluster
    peers: Peers | None = None
    # behind a wildcard listening point: how often the host's addresses are read again (host_networks.py)
    address_refresh: float = 30.0


@dataclass(slots=True)
class ServerContext:
    flow: Flow
    to_tag: str | None = None  # made when the EdgePort itself first answers (most answers are the processor's)
    processor_ref: str | None = None
    branches: list[RunningTransaction] = field(default_factory=list)
    cancelled: bool = False
    cancel_status: int = 487
    cancel_handle: asyncio.TimerHandle | None = None
    fork: Fork | None = None  # a forked INVITE (forking.py)
    group_handle: asyncio.TimerHandle | None = None  # the ring timeout of the fork's current group
    span: Any = None  # its trace span while tracing is on (trace_hooks.py), until the final response


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
    group: int = 0  # its group in a fork
    # a request too large for UDP sent over TCP instead (§18.1.1): the UDP request and hop to fall back to
    udp_fallback: tuple[Request, NextHop] | None = None
    ended: bool = False  # a fork has counted this branch's end (once)
    span: Any = None  # its trace span (a child of the server transaction's), until the final response


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
        self.tls_reload: Any = None  # tlsutil.ReloadableServerContext of a context built from the config
        # call events (routr_ray.observability.CallEventEmitter or anything with its methods); None: off
        self.events = events
        self.methods = MethodFilter(config.methods, config.unknown_method_action)
        self.sources = SourceGuard(config.access_control_list)
        self.rate = RateLimiter(config.rate_limit)
        self.malformed = MalformedLog(log, interval=opts.malformed_log_interval)
        self.connections = ConnectionTable(
            max_connections=config.limits.max_connections,
            max_connections_per_source=config.limits.max_connections_per_source,
            is_protected=self.rate.is_protected,  # trunks and peers: never evicted
        )
        # shared by every listener and connection: reconfigure.py changes it in place
        self.transport_limits = TransportLimits(
            max_message_size=config.limits.max_message_size,
            idle_timeout=config.limits.idle_timeout_seconds,
        )
        self.listeners: dict[TransportName, Listener] = {}
        self.worker = opts.worker
        self.siblings = opts.siblings if opts.workers > 1 else None
        self.peers = opts.peers
        self.tag = edge_tag(self.ref)  # what names this EdgePort in branches and Record-Route entries (peers.py)
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
        self._localnets = list(config.localnets)
        self._external = list(config.external_addrs)
        # a wildcard listening point (0.0.0.0 / ::): the host's addresses go in front of the localnets of every
        # MessageRequest (host_networks.py), and the EdgePort fills in the address it sends from (advertise.py)
        self.wildcard = False
        self._host_networks: list[str] = []
        self._host_addresses: frozenset[str] = frozenset()
        self.routes_from = SourceAddresses()  # our source address toward a destination (mhomed)
        self.resolver = Resolver()
        self.hops = HopFinder(self.ref, self.listeners, self.connections, self.resolver,
                              has_siblings=self.siblings is not None, has_peers=self.peers is not None)
        self.hold_down = HoldDown()  # servers that just failed a branch with somewhere else to go (hold_down.py)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.draining = False
        self._stateless_relays = 0  # 2xx relayed without a transaction, in progress
        self._unreachable_budget = _UNREACHABLE_EVENTS  # ICMP unreachable events handled per second
        # dialogs whose INVITE was re-sent with a trunk's credentials: the caller's ACK gets the same CSeq offset
        self.cseq_offsets = CSeqOffsets(lifetime=64 * opts.timers.t1)
        self.metrics.track_transactions(
            lambda: len(self.server_txns) + len(self.completed), lambda: len(self.client_txns)
        )
        self.metrics.track_connections(lambda: len(self.connections))
        self.metrics.track_liveness(self.is_alive)

    # lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        limits = self.transport_limits
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
                if name is TransportName.UDP:
                    listener.on_unreachable = self._on_unreachable  # type: ignore[attr-defined]
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
        self.wildcard = any(host in WILDCARD_HOSTS for host, _, _ in points)
        self._refresh_addresses()
        if self.wildcard:
            self._spawn(self._keep_addresses_current())
        await self.readiness.start()
        if self.options.tune_gc:
            from routr_ray.util.gc_tuning import tune_gc

            tune_gc()

    def _refresh_addresses(self) -> None:
        """The request template and our own addresses; behind a wildcard, with the host's current addresses."""
        points = [(lp.host, lp.port, _TRANSPORT_NAMES[lp.transport]) for lp in self._listening_points]
        if self.wildcard:
            ipv6 = any(host == "::" for host, _, _ in points)
            self._host_networks = host_networks(ipv4=True, ipv6=ipv6)
            self._host_addresses = frozenset(normalize_host(e.partition("/")[0]) for e in self._host_networks)
        localnets = [*self._host_networks, *self._localnets]
        self._request_template = processor_pb2.MessageRequest(
            listening_points=self._listening_points, external_addrs=self._external, localnets=localnets
        )
        self.local = LocalAddresses.build(points, self._external, localnets)

    async def _keep_addresses_current(self) -> None:
        """Addresses come and go (DHCP, VPNs): read them again every ``address_refresh`` seconds."""
        while True:
            await asyncio.sleep(self.options.address_refresh)
            try:
                self._refresh_addresses()
            except Exception:  # noqa: BLE001 - keep the addresses we have
                log.warning("reading the host's addresses failed", exc_info=True)

    def _server_ssl_context(self) -> Any:
        if self.ssl_context is None:
            from routr_ray.edge.tlsutil import ReloadableServerContext, server_context_from_config

            if self.config.security_context is None:
                log.warning("tls/wss without securityContext: using a self-signed development certificate")
            self.ssl_context = server_context_from_config(self.config.security_context, ["localhost"])
            self.tls_reload = ReloadableServerContext(self.ssl_context)
        return self.ssl_context

    def reload_tls(self, context: Any) -> bool:
        """New TLS/WSS handshakes use ``context`` from now on; open connections keep theirs (reconfigure.py).
        False when the listeners' context was given by the caller (``ssl_context=``): it is theirs to change."""
        if self.tls_reload is None:
            log.warning("EdgePort %s: the TLS context was given at start; a new securityContext is not applied",
                        self.ref)
            return False
        self.tls_reload.reload(context)
        return True

    def set_addresses(self, localnets: Iterable[str], external_addrs: Iterable[str]) -> None:
        """New ``localnets``/``externalAddrs``: the next MessageRequest and the next address advertised carry
        them (reconfigure.py)."""
        self._localnets = list(localnets)
        self._external = list(external_addrs)
        self._refresh_addresses()

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

    def protect_sources(self, networks: Iterable[Any]) -> None:
        """The source networks of Trunks and Peers (``routr_ray/config/trunk_sources.py``): never banned by the
        rate limiter (their own limit, ``rateLimit.trunksAndPeers``) and their connections never evicted."""
        self.rate.protect(networks)

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
    def on_message(self, data: bytes, flow: Flow, from_peer: bool = False) -> None:
        """The listeners' callback: one whole SIP message from ``flow``. ``from_peer``: a response another
        EdgePort received for a transaction of this one (peers.py)."""
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
            self._on_response(message, flow, data, from_peer)
            return
        assert isinstance(message, Request)
        if from_peer:  # only responses are handed over
            self.metrics.reject("no_transaction")
            return
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
        # §16.3 step 2: an OPTIONS with Max-Forwards 0 is not forwarded; the proxy answers it as its UAS (§11)
        if request.method == "OPTIONS" and (self._is_for_us(request, flow) or request.max_forwards == 0):
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
        if tracing.ON:
            ctx.span = server_span(request, flow, self.ref)
        txn = RunningTransaction(machine, key, send=self._send_upstream, tu=self, context=ctx)
        if key is None or not self.server_txns.add(key, txn):
            self.metrics.reject("table_full")
            self._reply_stateless(request, flow, 503, extra=[("Retry-After", str(self.options.retry_after))])
            return None
        txn.start()
        return txn

    def _is_for_us(self, request: Request, flow: Flow) -> bool:
        """OPTIONS whose Request-URI has no user part and names one of our addresses (issue 3 item 2), the one
        it arrived on included."""
        try:
            uri = request.request_uri
        except ParseError:
            return False
        if uri.scheme not in ("sip", "sips") or uri.user:
            return False
        if self.local.is_own(uri.host, uri.port):
            return True
        return normalize_host(uri.host) == flow.local_host and (uri.port is None or uri.port in self.local.ports)

    def _is_loop(self, request: Request) -> bool:
        """RFC 3261 §16.3 step 4: a Via we placed (a branch of one of our live client transactions) on a
        request with the same Request-URI as the one we forwarded is a loop; a changed one is a spiral. The top
        Via counts too: a request we sent to an address of our own (a contact naming this proxy) is back at once."""
        for via in request.via:
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
        received_on = mreq.received_on
        received_on.host = flow.local_host
        received_on.port = flow.local_port
        received_on.transport = _PROTO_TRANSPORT[flow.transport]
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
        if ctx.span is not None:
            tracing.inject(ctx.span, mreq.metadata)
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
        if ctx.span is not None:
            decided(ctx.span, resp.metadata)
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
        forked = read_branches(resp.metadata) if request.method == "INVITE" else None
        if forked is not None and forked[2]:
            self._start_fork(txn, answer, read_directive(resp.metadata), *forked)
            return
        self._spawn(self._forward(answer, txn, read_directive(resp.metadata)))

    # forking (forking.py) --------------------------------------------------------------------------
    def _start_fork(self, server: RunningTransaction, first: Request, directive: HopDirective, group: int,
                    timeouts: dict[int, float], others: list[ForkedBranch]) -> None:
        """RFC 3261 §16.6: every branch of the first group now, one client transaction each."""
        fork, now = Fork.of(group, timeouts, others)
        server.context.fork = fork
        self._ring(server, [ForkedBranch(first, directive, group), *now])

    def _ring(self, server: RunningTransaction, branches: list[ForkedBranch]) -> None:
        ctx: ServerContext = server.context
        fork = ctx.fork
        assert fork is not None
        for branch in branches:
            fork.started()
            self._spawn(self._forward(branch.request, server, branch.directive, group=branch.group))
        if ctx.group_handle is not None:
            ctx.group_handle.cancel()
            ctx.group_handle = None
        timeout = fork.timeouts.get(fork.group)
        if timeout is not None:
            ctx.group_handle = asyncio.get_running_loop().call_later(timeout, self._ring_timeout, server, fork.group)

    def _ring_timeout(self, server: RunningTransaction, group: int) -> None:
        """The group rang long enough: each of its branches counts as a 408 now and is CANCELled."""
        ctx: ServerContext = server.context
        ctx.group_handle = None
        for branch in list(ctx.branches):
            bctx: ClientContext = branch.context
            if bctx.group == group and not bctx.ended:
                self._cancel_branch(branch, CANCEL_REASON_TIMEOUT)
                self._branch_ended(server, branch, None, 408)

    def _branch_ended(self, server: RunningTransaction, branch: RunningTransaction | None,
                      response: Response | None, status: int, extra: Iterable[tuple[str, str]] = ()) -> None:
        """A branch of ``server`` ended without a 2xx (``response``, or ``status`` of our own). Unforked: that is
        the caller's answer. Forked: counted; a 6xx cancels the rest; the next group rings, or the best final goes
        upstream once no branch is left (§16.7 steps 5-6)."""
        ctx: ServerContext = server.context
        fork = ctx.fork
        if fork is None:
            if response is not None:
                self._send_final(server, response)
            else:
                self._answer(server, status, extra=extra)
            return
        if branch is not None:
            bctx: ClientContext = branch.context
            if bctx.ended:
                return
            bctx.ended = True
        fork.branch_ended(response, status)
        if status >= 600:
            for other in list(ctx.branches):
                if other is not branch and not other.context.ended:
                    self._cancel_branch(other, CANCEL_REASON_DECLINED)
        if ctx.cancelled:
            fork.waiting.clear()
        ready = fork.next_group()
        if ready:
            self._ring(server, ready)
            return
        if fork.ended and not fork.answered and not server.done and not _is_final_sent(server):
            if ctx.group_handle is not None:
                ctx.group_handle.cancel()
                ctx.group_handle = None
            if ctx.cancelled:
                self._answer(server, ctx.cancel_status)
            else:
                self._send_final(server, fork.final(partial(self._own_response, server)))

    def _own_response(self, server: RunningTransaction, status: int) -> Response:
        ctx: ServerContext = server.context
        if ctx.to_tag is None:
            ctx.to_tag = secrets.token_hex(6)
        return make_response(server.request, status, to_tag=ctx.to_tag)

    def _send_final(self, server: RunningTransaction, response: Response) -> None:
        server.send_response(response.status, response)
        self._cancel_wait_done(server)

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
        cseq_offset: int = 0, template: Request | None = None, group: int = 0, hop: NextHop | None = None,
        keep_udp: bool = False,
    ) -> None:
        """Send ``request`` (the processor's answer) on a new client transaction; with no server transaction
        (an ACK for a 2xx) statelessly. ``template``: what failover branches and a trunk challenge start from
        (default: ``request`` before our branch); ``cseq_offset``: see ``ClientContext``; ``hop``: the next
        RFC 3263 server of the failed branch's name (else the next hop is found here); ``keep_udp``: a request too
        large for UDP that TCP could not deliver, sent over UDP after all (see :meth:`_too_large_for_udp`)."""
        try:
            if hop is None:
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
                self._branch_ended(server, None, None, exc.status, extra)
            return
        if server is not None and (server.done or _is_final_sent(server)):
            return
        if server is not None and server.context.cancelled:
            # cancelled while we looked for the next hop
            self._branch_ended(server, None, None, server.context.cancel_status)
            return
        if server is not None and len(self.hold_down) and self.hold_down.is_down(hop.transport.value, hop.host,
                                                                                 hop.port):
            if hop.alternates:  # a server of this name that is not held down first (hold_down.py)
                hop = up_first(hop, self.hold_down)
            elif directive.failover and self._any_up(directive.failover):  # a trunk URI that failed: the next
                self._failover_from(server, template or request, directive)
                return
        if template is None and (directive.failover or directive.gateway_auth is not None or hop.alternates):
            template = request.copy()
        udp_fallback = None
        if not keep_udp and server is not None and self._too_large_for_udp(request, hop, directive):
            # RFC 3261 §18.1.1: over 1300 bytes (path MTU unknown) a request goes over a congestion-controlled
            # transport; the Via says so. A callee that takes no TCP gets it over UDP after all (txn_transport_error).
            udp_fallback = (request.copy(), hop)
            hop = hop._replace(transport=TransportName.TCP, source=None)
        if self.wildcard:
            hop = self._advertise(request, hop, server)
        branch = self.new_branch()
        if not self._set_branch(request, branch, hop):
            if server is not None:
                self._branch_ended(server, None, None, 500)
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
        context = ClientContext(hop, server, directive=directive, template=template, cseq_offset=cseq_offset,
                                group=group, udp_fallback=udp_fallback)
        txn = RunningTransaction(
            machine, key, send=self._send_downstream, tu=self, timer_c=timer_c, context=context
        )
        if not self.client_txns.add(key, txn):
            self.metrics.reject("table_full")
            if server is not None:
                self._branch_ended(server, None, None, 503, [("Retry-After", str(self.options.retry_after))])
            return
        if server is not None:
            server.context.branches.append(txn)
            if server.context.span is not None:
                context.span = client_span(server.context.span, request, hop.host, hop.port, hop.transport.value,
                                           directive.trunk_ref)
        txn.start()
        if self.events is not None and server is not None and request.method == "INVITE":
            try:
                self.events.invite_forwarded(request)
            except Exception:  # noqa: BLE001 - an event must never break the SIP path
                log.debug("call event failed", exc_info=True)

    def _any_up(self, uris: tuple[URI, ...]) -> bool:
        """One of these failover URIs is not held down (a host name counts as up: it may name a server that is).
        With every one down, a request goes to its servers in order after all, never only to the last."""
        for uri in uris:
            host = uri.host.strip("[]").lower()
            if not is_ip_literal(host):
                return True
            try:
                transport = self.hops.transport_of(uri, "udp")
            except NoRoute:
                continue
            if not self.hold_down.is_down(transport.value, host, uri.port or default_port(transport.via_name)):
                return True
        return False

    def _too_large_for_udp(self, request: Request, hop: NextHop, directive: HopDirective) -> bool:
        """A request for a UDP next hop that is not a flow (a NAT binding must stay on UDP), larger than
        :data:`UDP_MTU_LIMIT` once our branch is in, with a TCP listening point to send it from. The size is summed
        from the body and the header values first (no rendering); only a request near the limit is rendered."""
        if (hop.transport is not TransportName.UDP or hop.flow is not None or directive.flow
                or request.method == "ACK" or TransportName.TCP not in self.listeners):
            return False
        rough = len(request.body) + sum(len(name) + len(value) for name, value in request.headers.items())
        if rough < UDP_MTU_LIMIT - 400:  # start line, ": " and CRLFs, our branch: well under 400 bytes
            return False
        return len(bytes(request)) + 40 > UDP_MTU_LIMIT

    # serial failover (routr-ray.failover: trunk URIs) ---------------------------------------------
    def _may_fail_over(self, txn: RunningTransaction) -> bool:
        ctx: ClientContext = txn.context
        server = ctx.server
        return (
            ctx.template is not None
            and (bool(ctx.directive.failover) or bool(ctx.hop.alternates))
            and server is not None
            and not server.done
            and not _is_final_sent(server)
            and not server.context.cancelled
        )

    def _fail_over(self, txn: RunningTransaction) -> None:
        """The branch ended in 503/408/timeout/transport error: hold its server down, then try the next server
        of the same name (RFC 3263 §4.3), else the next failover Request-URI."""
        ctx: ClientContext = txn.context
        assert ctx.server is not None and ctx.template is not None
        hop = ctx.hop
        self.hold_down.mark(hop.transport.value, hop.host, hop.port)
        if hop.alternates:
            self.metrics.failover()
            request = ctx.template.copy()
            assert isinstance(request, Request)
            following = hop.alternates[0]._replace(alternates=hop.alternates[1:])
            self._spawn(self._forward(request, ctx.server, ctx.directive, template=ctx.template, hop=following))
            return
        self._failover_from(ctx.server, ctx.template, ctx.directive)

    def _failover_from(self, server: RunningTransaction, template: Request, directive: HopDirective) -> None:
        self.metrics.failover()
        uri, rest = directive.failover[0], directive.failover[1:]
        request = template.copy()
        assert isinstance(request, Request)
        request.request_uri = uri.copy()
        log.debug("failing over %s to %s", request.method, uri)
        self._spawn(self._forward(request, server, directive.without_next_hop(rest)))

    def new_branch(self) -> str:
        """The branch of a new client transaction (RFC 3261 §8.1.1.7): naming this EdgePort and worker when
        another one may receive its responses (peers.py, workers.py)."""
        if self.peers is not None:
            return owned_branch(self.tag, self.worker)
        if self.options.workers > 1:
            return worker_branch(self.worker)
        return make_branch()

    def _advertise(self, request: Request, hop: NextHop, server: RunningTransaction | None, *,
                   fill_back: bool = True) -> NextHop:
        """Behind a wildcard listening point: our address toward ``hop`` in the Via and Record-Route the processor
        left for us (advertise.py), and the hop with it as the source of its datagrams (a UDP reply or request
        then leaves from the address we advertise). A hop another EdgePort sends: only the entry naming us (the
        caller's side); that EdgePort fills in the rest. ``fill_back=False``: a request sent for another EdgePort,
        whose own entry it filled."""
        back = None
        if server is not None:
            flow = server.context.flow
            back = flow.local_host if flow.local_host not in WILDCARD_HOSTS else self.routes_from.toward(flow.remote_host)
        if hop.via_edge:
            fill_own_address(request, None, back)
            return hop
        toward = self._own_address_toward(hop, back)
        fill_own_address(request, toward, (back or toward) if fill_back else None)
        if hop.transport is TransportName.UDP:
            via = request.top_via  # what the processor advertised, when it is ours: the packets match it
            advertised = normalize_host(via.host) if via is not None else toward
            return hop._replace(source=advertised if advertised in self._host_addresses else toward)
        return hop

    def _own_address_toward(self, hop: NextHop, back: str | None) -> str:
        """The address our packets to ``hop`` leave from (Kamailio's mhomed): the connection's own address, else
        the routing table's source address; toward an address of this host (or no route), the one the request
        arrived on, else an address of ours of the hop's family."""
        if hop.flow is not None and hop.flow.local_host not in WILDCARD_HOSTS:
            return hop.flow.local_host
        toward = self.routes_from.toward(hop.host)
        if toward is not None:
            return toward
        v6 = ":" in hop.host
        if back is not None and (":" in back) == v6:
            return back
        for entry in self._host_networks:
            address = entry.partition("/")[0]
            if (":" in address) == v6:
                return address
        return "::1" if v6 else "127.0.0.1"

    def _set_branch(self, request: Request, branch: str, hop: NextHop) -> bool:
        """Set the branch of the processor's top Via (§16.6 step 8) and make its transport the one used
        (§18.1.1). A top Via that already has a branch is not ours: ours is added above it."""
        via = request.top_via
        if via is None:
            return False
        if via.branch is not None:
            log.debug("processor added no Via; forwarding with a Via of our own")
            listener = self.listeners.get(hop.transport)
            if listener is None or hop.via_edge:  # another EdgePort sends it: we have no address to write
                return False
            host, port = listener.local_address
            if host in WILDCARD_HOSTS:
                host = hop.source or self._own_address_toward(hop, None)
            own = Via(hop.transport.via_name, host, port, {"branch": branch, "rport": None})
            request.headers.prepend("Via", str(own))
            return True
        via.params = {"branch": branch, **via.params}
        if via.transport.upper() != hop.transport.via_name:
            # the transport changed from the one the processor chose (§18.1.1): so does the port it listens on
            listener = self.listeners.get(hop.transport)
            if listener is not None and via.port is not None:
                via.port = listener.local_address[1]
        via.transport = hop.transport.via_name
        request.replace_top_via(via)
        return True

    async def _to_peer(self, owner: BranchOwner, flow: Flow, data: bytes) -> None:
        assert self.peers is not None and owner.tag is not None
        try:
            if await self.peers.hand_back(owner.tag, owner.worker, flow, data):
                return
        except Exception as exc:  # noqa: BLE001 - a lost response: the sender retransmits (UDP) or times out
            log.debug("cannot hand a response to EdgePort %s worker %d: %r", owner.tag, owner.worker, exc)
        self.metrics.reject("sibling_unreachable")

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
        # from the address the request reached (a wildcard socket would pick one by route)
        return NextHop(flow.transport, host, port, source=flow.local_host)

    def _send_upstream(self, txn: RunningTransaction, message: Any, retransmission: bool) -> None:
        ctx: ServerContext = txn.context
        request: Request = txn.request
        hop = self._upstream_hop(ctx.flow, request.top_via)
        data = bytes(message)
        status = message.status
        self._transmit(hop, data, None, status, method=request.method)
        if status >= 200 and getattr(txn.machine, "tu_keeps_completed", False):
            self.completed.add(txn.key, hop, data, status, request.method)
        if status >= 200 and not retransmission:
            if ctx.span is not None:
                tracing.end_span(ctx.span, status)
                ctx.span = None
            method = request.method
            if method == "INVITE" or method == "BYE":
                self.metrics.call_answered(request, status)
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
        if hop.via_edge:  # the EdgePort that sends it counts it
            self._spawn(self._transmit_via_peer(hop, data, txn))
            return
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
            if not send_now(hop.target, data, hop.source):
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

    async def _transmit_via_peer(self, hop: NextHop, data: bytes, txn: RunningTransaction | None) -> None:
        sent = False
        if self.peers is not None:
            try:
                sent = await self.peers.send(hop.via_edge, hop.transport, hop.host, hop.port, data,
                                             flow=hop.via_edge_flow, server_name=hop.server_name)
            except Exception as exc:  # noqa: BLE001 - as a closed connection / an unreachable hop
                log.debug("EdgePort %s could not send to %s:%d: %r", hop.via_edge, hop.host, hop.port, exc)
        if not sent:
            if hop.via_edge_flow and txn is not None and isinstance(txn.context, ClientContext):
                txn.context.flow_gone = True  # the callee's connection is gone (or its EdgePort with it): 480
            self._send_failed(txn)

    async def send_for_peer(self, transport: TransportName, host: str, port: int, data: bytes, *, flow: bool,
                            server_name: str | None = None) -> bool:
        """Another EdgePort's request to put ``data`` on the wire from here (peers.py): over the connection this
        EdgePort (a worker of it) holds to ``host:port`` when ``flow``, else to that address. Behind a wildcard
        bind, our address toward it goes into the Via and Record-Route entry the processor left for us. False
        when it cannot be sent."""
        listener = self.listeners.get(transport)
        if listener is None:
            return False
        hop = NextHop(transport, host, port, server_name=server_name)
        conn = None
        if flow and transport.is_stream:
            conn = self.connections.by_remote(transport, host, port)
            if conn is not None and not conn.closed:
                hop = hop._replace(flow=conn.flow)
            elif self.siblings is None:
                return False
        elif not is_ip_literal(host):
            try:
                address = await self.resolver.resolve(host, families_for(listener.local_address[0]))
            except ResolverBusy:
                return False
            if address is None:
                return False
            hop = hop._replace(host=address)
        if self.wildcard and (b"0.0.0.0" in data or b"[::]" in data):
            try:
                request = parse(data)
            except ParseError:
                return False
            if isinstance(request, Request):
                hop = self._advertise(request, hop, None, fill_back=False)
                data = bytes(request)
        method = data[:data.find(b" ")].decode("ascii", "replace")
        self.metrics.message(method, "out", transport, None)
        if flow and transport.is_stream and hop.flow is None:
            assert self.siblings is not None  # perhaps accepted by another worker of this EdgePort
            return await self.siblings.send_on_flow(transport, host, port, data)
        send_now = getattr(listener, "send_now", None)
        if send_now is not None:
            return bool(send_now(hop.target, data, hop.source))
        return await listener.send(hop.target, data, server_name=hop.server_name)

    def receive_from_peer(self, flow: Flow, data: bytes) -> None:
        """A response another EdgePort received for a client transaction of this one (peers.py)."""
        self.on_message(data, flow, from_peer=True)

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

    def _on_unreachable(self, destinations: list[tuple[str, int]]) -> None:
        """RFC 3261 §18.4: an ICMP unreachable for a datagram is a transport error for the client transactions
        that sent to that address and have had no answer: a contact that is gone ends its branch now (a fork's
        other branches decide), not at Timer B. At most a few hundred transactions are looked at per event."""
        if self._unreachable_budget <= 0:
            return
        self._unreachable_budget -= 1
        if self._loop is not None and self._unreachable_budget == _UNREACHABLE_EVENTS - 1:
            self._loop.call_later(1.0, self._reset_unreachable_budget)
        refused = {(normalize_host(host), port) for host, port in destinations}
        for txn in self.client_txns.values():
            hop = getattr(txn.context, "hop", None)  # a ClientContext, or the requests we send ourselves (originate.py)
            if (hop is not None and not txn.done and hop.transport is TransportName.UDP
                    and txn.machine.last_status is None and (hop.host, hop.port) in refused):
                self.metrics.reject("unreachable")
                asyncio.get_running_loop().call_soon(txn.on_transport_error)

    def _reset_unreachable_budget(self) -> None:
        self._unreachable_budget = _UNREACHABLE_EVENTS

    def _send_failed(self, txn: RunningTransaction | None) -> None:
        self.metrics.reject("send_failed")
        if txn is not None and not txn.done:
            # asynchronously: the machine may be in the middle of running its effects
            asyncio.get_running_loop().call_soon(txn.on_transport_error)

    # responses -------------------------------------------------------------------------------------
    def _on_response(self, response: Response, flow: Flow, data: bytes = b"", from_peer: bool = False) -> None:
        try:
            key = client_key_for(response)
        except ParseError as exc:
            self.metrics.reject("malformed_response")  # dropped: a response is never answered (§18.1.2)
            self.malformed.record(flow.remote_host, exc.reason)
            return
        txn = self.client_txns.get(key) if key is not None else None
        if txn is None and data and not from_peer and (self.siblings is not None or self.peers is not None):
            owner = owner_of_branch(key.branch if key is not None else None)
            if owner is not None and owner.tag is not None and owner.tag != self.tag and self.peers is not None:
                # another EdgePort's transaction, sent from here (edge/peers.py): ours only if our Via is on top
                if self._via_is_own(response):
                    self._spawn(self._to_peer(owner, flow, data))
                else:
                    self.metrics.reject("no_transaction")
                return
            if (owner is not None and (owner.tag is None or owner.tag == self.tag) and owner.worker != self.worker
                    and self.siblings is not None):  # another worker's transaction (edge/workers.py)
                self._spawn(self._to_sibling(owner.worker, flow, data))
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
                    self._spawn(self._relay_stateless(response, flow, from_peer))
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
        metadata.update(ctx.directive.echo)  # routr-ray.echo.*: what the processor asked to get back (directives.py)
        if server is not None and server.context.span is not None:
            tracing.inject(server.context.span, metadata)  # the processor's span of this response joins the trace
        branch = txn.request.top_via.branch
        out = await self._process_response(response, flow, branch, metadata)
        if server is not None:
            self._send_relayed(server, out, txn)

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
            self._send_relayed(server, response, txn)

    def _send_relayed(self, server: RunningTransaction, out: Response, branch: RunningTransaction | None = None
                      ) -> None:
        try:
            via_left = out.top_via is not None
        except ParseError:
            via_left = False
        if not via_left:
            # RFC 3261 §16.7 step 3: a response with no Via left was meant for us; it is not forwarded.
            self.metrics.reject("no_via")
            return
        fork = server.context.fork
        if fork is not None and out.status >= 200:
            if out.status >= 300:
                self._branch_ended(server, branch, out, out.status)
                return
            if not fork.answered:  # the first 2xx: the other branches are CANCELled (§16.7 step 5)
                fork.answered_2xx()
                for other in list(server.context.branches):
                    if other is not branch and not other.context.ended:
                        self._cancel_branch(other, CANCEL_REASON_ANSWERED)
            if branch is not None and not branch.context.ended:
                branch.context.ended = True
                fork.live -= 1
        sent = server.send_response(out.status, out)
        if not sent and 200 <= out.status < 300 and server.request.method == "INVITE":
            # a 2xx that lost the race with our 487 (CANCEL) is still relayed: it creates the dialog (§16.7 step 5)
            self._transmit(self._upstream_hop(server.context.flow, server.request.top_via), bytes(out), None,
                           out.status, method="INVITE")
        if out.status >= 200:
            self._cancel_wait_done(server)

    async def _relay_stateless(self, response: Response, flow: Flow, from_peer: bool = False) -> None:
        try:
            await self._relay_stateless_now(response, flow, from_peer)
        finally:
            self._stateless_relays -= 1

    def _via_is_own(self, response: Response) -> bool:
        try:
            top = response.top_via
        except ParseError:
            return False
        return top is not None and top.branch is not None and self.local.is_own(top.host, top.port or 5060)

    async def _relay_stateless_now(self, response: Response, flow: Flow, from_peer: bool = False) -> None:
        """A 2xx to an INVITE whose branch has ended, relayed end to end. RFC 3261 §18.1.2: a response whose
        top Via is not one we would insert is discarded (a stray response never makes us send anything). One
        handed over by another EdgePort names that EdgePort on top (it checked that before handing it over)."""
        try:
            top = response.top_via
        except ParseError:
            return
        if top is None or top.branch is None or not (from_peer or self.local.is_own(top.host, top.port or 5060)):
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
        if ctx.fork is not None:
            ctx.fork.waiting.clear()
            if ctx.group_handle is not None:
                ctx.group_handle.cancel()
                ctx.group_handle = None
        for branch in list(ctx.branches):
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
            # §9.1: no CANCEL before a provisional response; sent when one arrives. The INVITE is not sent again
            # meanwhile: a callee that never answered must not start ringing a call that is over.
            cctx.cancel_pending = reason or ""
            branch.stop_retransmissions()
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
        if ctx.span is not None and message.status >= 200:
            tracing.end_span(ctx.span, message.status)
            ctx.span = None
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
        self._branch_ended(server, txn, None, sctx.cancel_status if sctx.cancelled and sctx.fork is None else 408)

    def txn_transport_error(self, txn: RunningTransaction) -> None:
        if not txn.is_client:
            return
        ctx: ClientContext = txn.context
        server = ctx.server
        if ctx.is_cancel or server is None or server.done or _is_final_sent(server):
            return
        if ctx.udp_fallback is not None and txn.machine.last_status is None:
            # no TCP at the callee: the large request goes over UDP after all (it may be fragmented)
            request, hop = ctx.udp_fallback
            if txn in server.context.branches:
                server.context.branches.remove(txn)
            self._spawn(self._forward(request, server, ctx.directive, ctx.cseq_offset, ctx.template, ctx.group,
                                      hop, keep_udp=True))
            return
        if ctx.flow_gone:  # the callee's connection is closed: 480, as one worker answers it (_directed_hop)
            self._branch_ended(server, txn, None, 480,
                               [("Warning", '399 routr-ray "the callee\'s connection is closed"')])
            return
        if self._may_fail_over(txn):
            self._fail_over(txn)
            return
        # §16.7 step 6 / §16.9: a transport error on a branch counts as a 503
        self._branch_ended(server, txn, None, 503, [("Retry-After", str(self.options.retry_after))])

    def txn_cancel_branch(self, txn: RunningTransaction) -> None:
        """Timer C fired after a provisional response (§16.8): CANCEL the branch; the caller gets the callee's
        487, or 408 after the bounded wait."""
        server = txn.context.server
        if server is not None and server.context.fork is not None:  # one branch of a fork: only it ends (408)
            self._cancel_branch(txn, 'SIP;cause=408;text="Timer C"')
            self._branch_ended(server, txn, None, 408)
        elif server is not None and not server.done and not _is_final_sent(server):
            self._cancel_invite(server, 408, 'SIP;cause=408;text="Timer C"')
        else:
            self._cancel_branch(txn, 'SIP;cause=408;text="Timer C"')

    def txn_terminated(self, txn: RunningTransaction) -> None:
        if txn.context.span is not None:  # ended without a final response (timeout, transport error, table)
            tracing.end_span(txn.context.span, error="no final response")
            txn.context.span = None
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
        handle = txn.context.group_handle
        if handle is not None:
            handle.cancel()
            txn.context.group_handle = None


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


# ICMP unreachable events looked at per second (each scans the client transactions): a flood costs little
_UNREACHABLE_EVENTS = 100

# RFC 3261 §18.1.1: larger requests go over TCP when the path MTU is unknown
UDP_MTU_LIMIT = 1300

# responses (and their local equivalents: timeout, transport error) after which the next failover URI is tried
FAILOVER_STATUSES = frozenset({408, 503})


_TRANSPORT_ENUM = {"UDP": 0, "TCP": 1, "TLS": 2, "SCTP": 3, "WS": 4, "WSS": 5}
_PROTO_TRANSPORT = {name: _TRANSPORT_ENUM[name.via_name] for name in TransportName}
_TRANSPORT_NAMES = {number: name for name, number in _TRANSPORT_ENUM.items()}
