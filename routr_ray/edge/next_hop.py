"""Where a forwarded request goes: the EdgePort's next-hop rules (DESIGN §4; the metadata keys: directives.py).

* The processor's ``routr-ray.next-hop`` wins. With ``routr-ray.next-hop.flow`` the request must reuse the
  connection the callee registered over (RFC 5626 §5.3: a proxy never re-opens a flow): 480 when it is gone, and
  over a sibling worker when another worker of this EdgePort may hold it.
* ``routr-ray.next-hop.edge-port-ref`` (or ``routr-ray.next-hop.edge-tag``) naming another EdgePort: that EdgePort
  sends it (``peers.py``; the hop is marked ``via_edge``, its host resolved there). An EdgePort with no peers wired
  (outside a cluster) answers 503 for a flow another EdgePort holds and sends anything else itself.
* Without a directive: the top Route (loose routing, RFC 3261 §16.6 step 7), else the Request-URI.
* Transport: the URI's ``transport`` parameter, else TLS for ``sips:``, else the transport of the processor's
  top Via (it names the egress interface, routr.md §3.6), else UDP.
* Host: ``*.invalid`` (a WebSocket or TCP client, RFC 7118 §5) is the connection that client last sent from (see
  :meth:`HopFinder.remember_invalid_host`); IP literals as they are; names resolved without blocking
  (``resolver.py``; 503 when too many lookups are in progress); a name without a port is located by RFC 3263
  (``locate.py``: NAPTR -> SRV -> A/AAAA), and the servers after the first ride along as ``alternates``, which
  the EdgePort tries in order when a branch fails (§4.3).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple

from routr_ray.edge.connections import ConnectionTable
from routr_ray.edge.directives import EMPTY, HopDirective
from routr_ray.edge.locate import DnsRecords, ServerLocator
from routr_ray.edge.nat import default_port, is_ip_literal
from routr_ray.edge.resolver import Resolver, ResolverBusy, families_for
from routr_ray.edge.transports import Flow, Listener, TransportName
from routr_ray.sip import URI, ParseError, Request
from routr_ray.util.edge_tag import edge_tag

__all__ = ["HopFinder", "NextHop", "NoRoute"]

log = logging.getLogger(__name__)

MAX_INVALID_HOSTS = 100_000


class NextHop(NamedTuple):
    """Where a forwarded request goes: a transport and an address, or a flow we hold (a named tuple: one is
    made for every response sent)."""

    transport: TransportName
    host: str
    port: int
    flow: Flow | None = None
    server_name: str | None = None  # the host name a TLS next hop's certificate is checked against
    via_sibling: bool = False  # a connection another worker of this EdgePort holds (routr_ray/edge/workers.py)
    source: str | None = None  # UDP behind a wildcard bind: the local address the datagrams leave from
    alternates: tuple[NextHop, ...] = ()  # further servers of the same name (RFC 3263 §4.3), tried in order
    via_edge: str = ""  # the tag of another EdgePort that puts it on the wire (peers.py)
    via_edge_flow: bool = False  # ... only over a connection it holds (a flow: RFC 5626)

    @property
    def target(self) -> Flow | tuple[str, int]:
        return self.flow if self.flow is not None else (self.host, self.port)


class NoRoute(Exception):
    """A forwarded request cannot be sent: answer ``status`` upstream (``reason`` goes in a Warning)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HopFinder:
    """The next hop of the requests one EdgePort (worker) forwards."""

    def __init__(self, ref: str, listeners: Mapping[TransportName, Listener], connections: ConnectionTable,
                 resolver: Resolver, *, has_siblings: bool = False, has_peers: bool = False,
                 locator: ServerLocator | None = None) -> None:
        self.ref = ref
        self.tag = edge_tag(ref)
        self.has_peers = has_peers
        self.locator = locator or ServerLocator(DnsRecords.from_env())
        self.listeners = listeners
        self.connections = connections
        self.resolver = resolver
        self.has_siblings = has_siblings
        self._invalid_hosts: OrderedDict[str, Flow] = OrderedDict()

    def remember_invalid_host(self, host: str, flow: Flow) -> bool:
        """RFC 7118 §5: requests for ``host`` (a client's ``.invalid`` Via name, lower-case) go over the connection
        it last sent from. A name held by another live connection from another address is not taken over
        (False): anybody can write any Via, and the first connection keeps its calls (a client that reconnects
        from its own address, or after its old connection is gone, gets the name back)."""
        hosts = self._invalid_hosts
        held = hosts.get(host)
        if (
            held is not None
            and held.connection_id != flow.connection_id
            and held.remote_host != flow.remote_host
            and held.connection_id is not None
            and self.connections.by_id(held.connection_id) is not None
        ):
            return False
        hosts[host] = flow
        hosts.move_to_end(host)
        if len(hosts) > MAX_INVALID_HOSTS:
            hosts.popitem(last=False)
        return True

    async def find(self, request: Request, directive: HopDirective = EMPTY) -> NextHop:
        """Where ``request`` goes (raises NoRoute with the status to answer)."""
        hop_uri = directive.next_hop
        if hop_uri is not None:
            return await self._directed(hop_uri, directive)
        try:
            routes = request.routes
            uri = routes[0].uri if routes else request.request_uri
            via = request.top_via
        except ParseError as exc:
            raise NoRoute(502, f"unusable Route or Request-URI: {exc.reason}") from None
        return await self.for_uri(uri, via.transport.lower() if via is not None else "udp")

    async def _directed(self, uri: URI, directive: HopDirective) -> NextHop:
        peer = directive.edge_tag or (edge_tag(directive.edge_port_ref) if directive.edge_port_ref else "")
        if peer and peer != self.tag:
            if self.has_peers:
                return self._via_peer(uri, peer, directive.flow)
            if directive.flow:
                raise NoRoute(503, f"callee registered through EdgePort {directive.edge_port_ref or peer}")
        if not directive.flow:
            return await self.for_uri(uri, "udp")
        transport = self.transport_of(uri, "udp")
        host = uri.host.lower()
        port = uri.port or default_port(transport.via_name)
        if transport is TransportName.UDP:
            # a UDP flow (RFC 5626 §3.4): the NAT binding the callee registered from, reached from our socket
            return NextHop(transport, host, port)
        conn = self.connections.by_remote(transport, host, port)
        if conn is None or conn.closed:
            if self.has_siblings:  # perhaps accepted by another worker of this EdgePort
                return NextHop(transport, host, port, via_sibling=True)
            raise NoRoute(480, "the callee's connection is closed")
        return NextHop(transport, host, port, conn.flow)

    @staticmethod
    def _via_peer(uri: URI, peer: str, flow: bool) -> NextHop:
        """A hop another EdgePort sends (we may have no listener of its transport: no check here)."""
        if uri.scheme not in ("sip", "sips"):
            raise NoRoute(502, f"unsupported URI scheme {uri.scheme}")
        param = uri.params.get("transport")
        name = param.lower() if param else "tls" if uri.scheme == "sips" else "udp"
        try:
            transport = TransportName(name)
        except ValueError:
            raise NoRoute(502, f"unsupported transport {name}") from None
        host = uri.host.lower().strip("[]")
        port = uri.port or default_port(transport.via_name)
        return NextHop(transport, host, port, server_name=None if is_ip_literal(host) else host, via_edge=peer,
                       via_edge_flow=flow)

    def transport_of(self, uri: URI, default: str) -> TransportName:
        if uri.scheme not in ("sip", "sips"):
            raise NoRoute(502, f"unsupported URI scheme {uri.scheme}")
        param = uri.params.get("transport")
        name = param.lower() if param else "tls" if uri.scheme == "sips" else default
        try:
            transport = TransportName(name)
        except ValueError:
            raise NoRoute(502, f"unsupported transport {name}") from None
        if transport not in self.listeners:
            raise NoRoute(502, f"no {name} listener")
        return transport

    async def for_uri(self, uri: URI, default_transport: str) -> NextHop:
        """The hop of ``uri``: its transport (see the module docstring) and its host, resolved."""
        transport = self.transport_of(uri, default_transport)
        host = uri.host.lower()
        port = uri.port or default_port(transport.via_name)
        if host.endswith(".invalid"):
            flow = self._invalid_hosts.get(host)
            if flow is None:
                raise NoRoute(480, "the callee's connection is closed")
            return NextHop(flow.transport, flow.remote_host, flow.remote_port, flow)
        if is_ip_literal(host):
            return NextHop(transport, host.strip("[]"), port)
        if uri.port is None and "." in host.rstrip("."):
            located = await self._located(uri, host)
            if located:
                return located[0]._replace(alternates=tuple(located[1:]))
        local_host = self.listeners[transport].local_address[0]
        try:
            address = await self.resolver.resolve(host, families_for(local_host))
        except ResolverBusy:
            raise NoRoute(503, "too many DNS lookups in progress") from None
        if address is None:
            raise NoRoute(502, f"cannot resolve {host}")
        return NextHop(transport, address, port, server_name=host)

    async def _located(self, uri: URI, host: str) -> list[NextHop]:
        """RFC 3263 servers of ``host`` we have a listener for ([] when DNS has no NAPTR/SRV for it)."""
        listener = self.listeners.get(TransportName.UDP) or next(iter(self.listeners.values()), None)
        if listener is None:
            return []
        param = uri.params.get("transport")
        located = await self.locator.locate(
            host, secure=uri.scheme == "sips", transport=param.lower() if param else None,
            supported=frozenset(name.value for name in self.listeners),
            families=families_for(listener.local_address[0]),
        )
        return [NextHop(TransportName(item.transport), item.host, item.port, server_name=host)
                for item in located if TransportName(item.transport) in self.listeners]
