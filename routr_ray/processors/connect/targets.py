"""Which address a request for a registered binding goes to (issue 6 item 2; RFC 3261 §16.5, RFC 5626).

The binding keeps both the Contact URI (`Route.contact_uri`) and the NAT-corrected source of the REGISTER
(`Route.host/port/transport`, from the packet source = Via received/rport, RFC 3261 §18.2.1, RFC 3581).
The request goes to the Contact, unless the binding is a *flow*, in which case it goes to the source over
the connection the callee registered on:

* registered over TCP, TLS, WS or WSS (a connection-oriented transport the callee keeps open; browsers and
  NATed phones cannot accept new connections);
* the Contact has `ob` (RFC 5626 §5: outbound, "reach me through the flow");
* the Contact host ends in `.invalid` (WebRTC clients, RFC 7118 §5);
* the Contact host is a private address that differs from the packet source (a phone behind NAT).

The Request-URI becomes the Contact URI in every case (RFC 3261 §16.5 / §16.6 step 2); only the transport
address changes.
"""

from __future__ import annotations

from routr_ray.processors.connect.acl import ip_of, is_private
from routr_ray.processors.connect.decisions import NextHop
from routr_ray.proto.convert import transport_name
from routr_ray.proto.gen import location_pb2
from routr_ray.sip.errors import ParseError
from routr_ray.sip.uri import URI, parse_uri

STREAM_TRANSPORTS = frozenset({"TCP", "TLS", "WS", "WSS", "SCTP"})
DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "SCTP": 5060, "TLS": 5061, "WS": 80, "WSS": 443}


def default_port(transport: str, secure: bool = False) -> int:
    return 5061 if secure and transport in ("TCP", "TLS") else DEFAULT_PORTS.get(transport, 5060)


def route_port(route: location_pb2.Route) -> int:
    try:
        port = int(route.port.strip())
    except ValueError:
        port = -1
    return port if 0 < port < 65536 else default_port(transport_name(route.transport))


def contact_of(route: location_pb2.Route) -> URI | None:
    if not route.contact_uri:
        return None
    try:
        uri = parse_uri(route.contact_uri)
    except ParseError:
        return None
    return uri if uri.is_sip else None


def is_flow(route: location_pb2.Route, contact: URI | None) -> bool:
    if transport_name(route.transport) in STREAM_TRANSPORTS:
        return True
    if contact is None:
        return True  # only the source is known (a binding written by a Routr client)
    if "ob" in contact.params or contact.host.lower().endswith(".invalid"):
        return True
    source, target = ip_of(route.host), ip_of(contact.host)
    return target is not None and is_private(contact.host) and target != source


def contact_transport(contact: URI) -> str:
    transport = (contact.transport or "").upper()
    if transport:
        return transport
    return "TLS" if contact.is_secure else "UDP"


def target_of(route: location_pb2.Route) -> tuple[NextHop, URI]:
    """The next hop for a binding and the Request-URI to send it with."""
    contact = contact_of(route)
    if is_flow(route, contact):
        transport = transport_name(route.transport)
        hop = NextHop(route.host, route_port(route), transport, flow=True, edge_port_ref=route.edge_port_ref)
    else:
        assert contact is not None
        transport = contact_transport(contact)
        port = contact.port or default_port(transport, contact.is_secure)
        hop = NextHop(contact.host, port, transport, edge_port_ref=route.edge_port_ref)
    if contact is not None:
        return hop, contact
    # Routr-style binding without a Contact: the user at the source address (routr.md §3.5 fixRequestURI).
    uri = URI("sip", route.user or None, route.host, route_port(route))
    if transport != "UDP":
        uri.params["transport"] = transport.lower()
    return hop, uri
