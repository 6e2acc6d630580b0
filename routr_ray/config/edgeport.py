"""EdgePort config: Routr's `kind: EdgePort` document plus routr-ray's guards.

Routr fields (routr.md §1.1, §5.1): bindAddr, transport[], externalAddrs, localnets, methods,
unknownMethodAction, processor.addr, securityContext (PKCS#12 key stores). routr-ray adds, all optional:

    securityContext: {certificate, privateKey, caCertificate}   # PEM paths, an alternative to keyStore
    accessControlList: {deny: [CIDR], allow: [CIDR]}           # banned sources; allow overrides deny
    rateLimit: {enabled, requestsPerSecond, burst, banSeconds, trusted: [CIDR],
                trunksAndPeers: {requestsPerSecond, burst, networks: [CIDR]}}  # never banned (issue 14)
    limits: {maxMessageSize, maxConnections, maxConnectionsPerSource, idleTimeoutSeconds}
    health: {enabled, port, bindAddr}                           # /healthz, /readyz, /metrics (127.0.0.1:8080)
    workers: N                                                  # processes sharing the ports (SO_REUSEPORT)
    placement: {labels: {key: value}, resources: {name: amount}} # the Ray nodes it runs on (docs/distributed.md)
    processor: {addr, token}                                    # token: sent to a host:port dispatcher
    logLevel: DEBUG | INFO | WARNING | ERROR                    # the EdgePort's log level (default INFO)

`processor.token` defaults to `$ROUTR_RAY_DISPATCHER_TOKEN` (the token the dispatcher's gRPC port asks for, read
when the config is loaded); it is sent only when `processor.addr` is `host:port`. A dispatcher of ours treats a
caller without its token as an outside caller (its `sender` replaced, no internal metadata either way).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from routr_ray.config.problems import Place
from routr_ray.config.values import PRIVATE_NETWORKS, IPNetwork, to_localnets, to_networks


class TransportProtocol(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"
    WS = "ws"
    WSS = "wss"

    @property
    def is_secure(self) -> bool:
        return self in (TransportProtocol.TLS, TransportProtocol.WSS)


DEFAULT_PORTS: dict[TransportProtocol, int] = {
    TransportProtocol.UDP: 5060,
    TransportProtocol.TCP: 5060,
    TransportProtocol.TLS: 5061,
    TransportProtocol.WS: 5062,
    TransportProtocol.WSS: 5063,
}

# The only protocols that may share a port on one address: one is a datagram socket, the other a stream
# listener (RFC 3261 §18: a server listening on UDP 5060 also listens on TCP 5060).
_PORT_SHARING = frozenset({TransportProtocol.UDP, TransportProtocol.TCP})


class UnknownMethodAction(StrEnum):
    DISCARD = "Discard"  # drop silently
    RESPOND = "Respond"  # answer 405 Method Not Allowed with Allow (RFC 3261 §8.2.1)


class TlsClientAuth(StrEnum):
    DISABLED = "Disabled"
    DISABLED_ALL = "DisabledAll"
    REQUIRED = "Required"
    WANTED = "Wanted"


DEFAULT_METHODS: tuple[str, ...] = (
    "REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE",
    "PRACK", "UPDATE", "INFO", "REFER", "SUBSCRIBE", "NOTIFY",
)  # fmt: skip
DEFAULT_PROCESSOR_ADDR = "serve://routr"
DISPATCHER_TOKEN_ENV = "ROUTR_RAY_DISPATCHER_TOKEN"  # as routr_ray.actors.serve_app.TOKEN_ENV


@dataclass(frozen=True)
class Transport:
    protocol: TransportProtocol
    port: int
    bind_addr: str = "0.0.0.0"  # the entry's own bindAddr, else the EdgePort's


@dataclass(frozen=True)
class TlsClientConfig:
    protocols: tuple[str, ...] = ()
    auth_type: TlsClientAuth = TlsClientAuth.DISABLED


@dataclass(frozen=True)
class SecurityContext:
    """TLS material for tls/wss: Routr's PKCS#12 key store, or PEM files. Paths are not opened here."""

    key_store: str | None = None
    trust_store: str | None = None
    key_store_password: str | None = field(default=None, repr=False)
    trust_store_password: str | None = field(default=None, repr=False)
    key_store_type: str = "pkcs12"
    client: TlsClientConfig = TlsClientConfig()
    certificate: str | None = None
    private_key: str | None = None
    ca_certificate: str | None = None

    @property
    def has_pem(self) -> bool:
        return self.certificate is not None and self.private_key is not None


@dataclass(frozen=True)
class SourceFilter:
    """Source networks the EdgePort bans (`deny`) and exempts from the ban (`allow`, more specific wins)."""

    deny: tuple[IPNetwork, ...] = ()
    allow: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class TrunkRateLimit:
    """The limit of the sources of Trunks and Peers (derived from the Connect resources, see
    `routr_ray/config/trunk_sources.py`, plus `networks`): requests over it are dropped, and the source is never
    banned, so spoofed traffic from a trunk's address cannot get the trunk banned."""

    requests_per_second: float = 1000.0
    burst: int = 2000
    networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class RateLimit:
    """Per-source request rate limit (token bucket) with a ban; `trusted` sources are never limited; trunk and
    peer sources have their own limit and are never banned (`trunks_and_peers`)."""

    enabled: bool = True
    requests_per_second: float = 100.0
    burst: int = 200
    ban_seconds: float = 60.0
    trusted: tuple[IPNetwork, ...] = ()
    trunks_and_peers: TrunkRateLimit = TrunkRateLimit()


@dataclass(frozen=True)
class ConnectionLimits:
    max_message_size: int = 65_536
    max_connections: int = 10_000
    max_connections_per_source: int = 100
    idle_timeout_seconds: float = 600.0


@dataclass(frozen=True)
class HealthConfig:
    """/healthz, /readyz and /metrics; loopback unless configured (the metrics name what the server does)."""

    enabled: bool = True
    port: int = 8080
    bind_addr: str = "127.0.0.1"


@dataclass(frozen=True)
class Placement:
    """Where the EdgePort's actors may run (routr-ray's ``spec.placement``): Ray node labels the node must have and
    custom resources the EdgePort takes. A restart (its node lost, the actor crashed) stays within them, so an
    EdgePort keeps the addresses its phones registered at (the nodes with its label have them: a floating IP, a
    port forward). Empty: anywhere."""

    labels: tuple[tuple[str, str], ...] = ()
    resources: tuple[tuple[str, float], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.labels or self.resources)

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.labels] + [f"{k}:{v:g}" for k, v in self.resources]
        return ", ".join(parts) or "any node"


@dataclass(frozen=True)
class EdgePortConfig:
    ref: str = "edgeport-01"
    bind_addr: str = "0.0.0.0"
    transports: tuple[Transport, ...] = (Transport(TransportProtocol.UDP, 5060),)
    external_addrs: tuple[str, ...] = ()
    # ``address/prefix`` as written (host bits kept: Routr's "our address on that network"); unset: private ranges
    localnets: tuple[str, ...] = PRIVATE_NETWORKS
    methods: tuple[str, ...] = DEFAULT_METHODS
    unknown_method_action: UnknownMethodAction = UnknownMethodAction.RESPOND
    processor_addr: str = DEFAULT_PROCESSOR_ADDR
    processor_token: str | None = field(default=None, repr=False)  # sent to a host:port dispatcher
    security_context: SecurityContext | None = None
    access_control_list: SourceFilter = SourceFilter()
    rate_limit: RateLimit = RateLimit()
    limits: ConnectionLimits = ConnectionLimits()
    health: HealthConfig = HealthConfig()
    region: str | None = None
    workers: int = 1
    placement: Placement = Placement()
    log_level: str = "INFO"  # the level of the EdgePort process's loggers (changes in place)

    def transport(self, protocol: TransportProtocol) -> Transport | None:
        return next((t for t in self.transports if t.protocol is protocol), None)


def build_edgeport(document: dict[str, Any], place: Place, environ: Mapping[str, str] | None = None) -> EdgePortConfig:
    """Build from a document that passed the schema; semantic problems are recorded at `place`."""
    spec: dict[str, Any] = document["spec"]
    at = place.child("spec")
    bind_addr = spec.get("bindAddr", "0.0.0.0")
    metadata = document.get("metadata") or {}
    processor = spec.get("processor") or {}
    processor_addr = processor.get("addr", DEFAULT_PROCESSOR_ADDR)
    processor_token = _processor_token(processor, processor_addr, at.child("processor"),
                                       os.environ if environ is None else environ)
    return EdgePortConfig(
        ref=document.get("ref", "edgeport-01"),
        bind_addr=bind_addr,
        transports=_transports(spec["transport"], bind_addr, at.child("transport")),
        external_addrs=tuple(spec.get("externalAddrs", ())),
        localnets=to_localnets(spec.get("localnets")),
        methods=_methods(spec.get("methods", DEFAULT_METHODS), at.child("methods")),
        unknown_method_action=UnknownMethodAction(spec.get("unknownMethodAction", "Respond")),
        processor_addr=processor_addr,
        processor_token=processor_token,
        security_context=_security_context(spec.get("securityContext"), at.child("securityContext")),
        access_control_list=_source_filter(spec.get("accessControlList") or {}),
        rate_limit=_rate_limit(spec.get("rateLimit") or {}),
        limits=_limits(spec.get("limits") or {}),
        health=_health(spec.get("health") or {}),
        workers=int(spec.get("workers", 1)),
        placement=_placement(spec.get("placement") or {}),
        region=metadata.get("region") if isinstance(metadata.get("region"), str) else None,
        log_level=str(spec.get("logLevel", "INFO")).upper(),
    )


def _placement(raw: dict[str, Any]) -> Placement:
    labels = raw.get("labels") or {}
    resources = raw.get("resources") or {}
    return Placement(tuple(sorted((str(k), str(v)) for k, v in labels.items())),
                     tuple(sorted((str(k), float(v)) for k, v in resources.items())))


def _processor_token(raw: dict[str, Any], addr: str, at: Place, environ: Mapping[str, str]) -> str | None:
    """`processor.token`, else `$ROUTR_RAY_DISPATCHER_TOKEN`, for a `host:port` dispatcher; None for serve://."""
    if addr.startswith("serve://"):
        if raw.get("token"):
            at.child("token").warn("ignored: a token is sent to a host:port dispatcher only")
        return None
    return raw.get("token") or environ.get(DISPATCHER_TOKEN_ENV, "").strip() or None


def _transports(entries: list[dict[str, Any]], default_bind: str, at: Place) -> tuple[Transport, ...]:
    """Routr's assertions (routr.md §5.1): one entry per protocol; a port shared by UDP and TCP only."""
    transports: list[Transport] = []
    for index, entry in enumerate(entries):
        protocol = TransportProtocol(entry["protocol"].lower())
        transport = Transport(
            protocol, int(entry.get("port", DEFAULT_PORTS[protocol])), entry.get("bindAddr", default_bind)
        )
        for other in transports:
            if other.protocol is protocol:
                at.child(index, "protocol").error(
                    f"{protocol.value} is configured twice; one entry per protocol"
                )
            elif (other.port, other.bind_addr) == (transport.port, transport.bind_addr) and not (
                {other.protocol, protocol} == _PORT_SHARING
            ):
                at.child(index, "port").error(
                    f"port {transport.port} is already used by {other.protocol.value}; "
                    "only udp and tcp may share a port"
                )
        transports.append(transport)
    return tuple(transports)


def _methods(methods: list[str] | tuple[str, ...], at: Place) -> tuple[str, ...]:
    seen: set[str] = set()
    for index, method in enumerate(methods):
        if method != method.upper():
            at.child(index).warn(
                f"SIP methods are case-sensitive (RFC 3261 §7.1); {method!r} is not {method.upper()!r}"
            )
        if method in seen:
            at.child(index).warn(f"{method} is listed twice")
        seen.add(method)
    return tuple(dict.fromkeys(methods))


def _security_context(raw: dict[str, Any] | None, at: Place) -> SecurityContext | None:
    if raw is None:
        return None
    if ("certificate" in raw) != ("privateKey" in raw):
        missing = "privateKey" if "certificate" in raw else "certificate"
        at.child(missing).error("certificate and privateKey (PEM paths) must be given together")
    client = raw.get("client") or {}
    return SecurityContext(
        key_store=raw.get("keyStore"),
        trust_store=raw.get("trustStore"),
        key_store_password=raw.get("keyStorePassword"),
        trust_store_password=raw.get("trustStorePassword"),
        key_store_type=raw.get("keyStoreType", "pkcs12"),
        client=TlsClientConfig(
            protocols=tuple(client.get("protocols", ())),
            auth_type=TlsClientAuth(client.get("authType", "Disabled")),
        ),
        certificate=raw.get("certificate"),
        private_key=raw.get("privateKey"),
        ca_certificate=raw.get("caCertificate"),
    )


def _source_filter(raw: dict[str, Any]) -> SourceFilter:
    return SourceFilter(deny=to_networks(raw.get("deny")), allow=to_networks(raw.get("allow")))


def _rate_limit(raw: dict[str, Any]) -> RateLimit:
    default = RateLimit()
    trunks: dict[str, Any] = raw.get("trunksAndPeers") or {}
    return RateLimit(
        enabled=raw.get("enabled", default.enabled),
        requests_per_second=float(raw.get("requestsPerSecond", default.requests_per_second)),
        burst=int(raw.get("burst", default.burst)),
        ban_seconds=float(raw.get("banSeconds", default.ban_seconds)),
        trusted=to_networks(raw.get("trusted")),
        trunks_and_peers=TrunkRateLimit(
            requests_per_second=float(trunks.get("requestsPerSecond", default.trunks_and_peers.requests_per_second)),
            burst=int(trunks.get("burst", default.trunks_and_peers.burst)),
            networks=to_networks(trunks.get("networks")),
        ),
    )


def _limits(raw: dict[str, Any]) -> ConnectionLimits:
    default = ConnectionLimits()
    return ConnectionLimits(
        max_message_size=int(raw.get("maxMessageSize", default.max_message_size)),
        max_connections=int(raw.get("maxConnections", default.max_connections)),
        max_connections_per_source=int(
            raw.get("maxConnectionsPerSource", default.max_connections_per_source)
        ),
        idle_timeout_seconds=float(raw.get("idleTimeoutSeconds", default.idle_timeout_seconds)),
    )


def _health(raw: dict[str, Any]) -> HealthConfig:
    default = HealthConfig()
    return HealthConfig(
        enabled=raw.get("enabled", default.enabled),
        port=int(raw.get("port", default.port)),
        bind_addr=raw.get("bindAddr", default.bind_addr),
    )
