"""Via ``received``/``rport`` on inbound requests, where responses go, and the EdgePort's own addresses.

- RFC 3261 §18.2.1: "the server transport ... MUST add a received parameter" when the sent-by host differs
  from the packet's source address.
- RFC 3581 §4: when the top Via has a bare ``rport``, the server MUST fill it with the source port, and MUST
  add ``received`` even when the host matches.
- What the client wrote in ``received``/``rport`` is never kept: both always name the packet's source, so a
  response can never be steered to a third party (issue 14 item 5).
- RFC 3261 §18.2.2 / RFC 3581 §4: responses on a reliable transport go back over the connection the request
  came on; over UDP to ``received`` (else the sent-by host) and ``rport`` (else the sent-by port, 5060).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from routr_ray.edge.transports.base import Flow, normalize_host
from routr_ray.sip import Request, Via

__all__ = ["LocalAddresses", "apply_received_rport", "default_port", "response_address"]


def default_port(transport: str) -> int:
    """RFC 3261 §19.1.2: 5061 for TLS (sips), 5060 otherwise."""
    return 5061 if transport.upper() in ("TLS", "WSS") else 5060


def apply_received_rport(request: Request, flow: Flow) -> Via | None:
    """Set ``received`` and ``rport`` on the top Via of an inbound request from the packet itself; return the
    updated Via.

    Nothing the client wrote there is believed (issue 14 item 5): ``received`` is always the packet's source
    (RFC 3261 §18.2.1), set whenever the sent-by host differs from it, the client asked for ``rport`` or the
    client wrote a ``received`` of its own (which would otherwise steer our UDP responses to an address of its
    choosing: a reflection). ``rport``, when present, is always the packet's source port (RFC 3581 §4 says the
    client sends it without a value; a value it wrote is replaced).

    Raises the core's ParseError when the Via is malformed; returns None when the request has no Via.
    """
    via = request.top_via
    if via is None:
        return None
    params = via.params
    changed = False
    source = flow.remote_host
    wants_rport = "rport" in params
    if wants_rport and params.get("rport") != str(flow.remote_port):
        params["rport"] = str(flow.remote_port)
        changed = True
    if wants_rport or "received" in params or normalize_host(via.host) != source:
        if params.get("received") != source:
            params["received"] = source
            changed = True
    if changed:
        request.replace_top_via(via)
        return request.top_via
    return via


def response_address(via: Via) -> tuple[str, int]:
    """Where a response to a request whose top Via is ``via`` goes when the connection is gone or the
    transport is UDP (RFC 3261 §18.2.2, RFC 3581 §4)."""
    host = via.params.get("received") or via.host
    rport = via.params.get("rport")
    if rport and rport.isdigit():
        return host, int(rport)
    return host, via.port or default_port(via.transport)


@dataclass(frozen=True)
class LocalAddresses:
    """Every address this EdgePort answers to: listening points (host, port, transport), the external
    addresses and the address a localnet entry names (routr.md §5.2: a localnet entry doubles as "my IP on
    that network"; behind a wildcard the EdgePort passes the host's addresses that way). Used to recognise
    OPTIONS to ourselves, our own Via and Route entries."""

    hosts: frozenset[str]
    ports: frozenset[int]
    points: frozenset[tuple[str, int, str]]

    @classmethod
    def build(
        cls,
        listening_points: Iterable[tuple[str, int, str]],
        external_addrs: Iterable[str] = (),
        localnets: Iterable[str] = (),
    ) -> LocalAddresses:
        hosts: set[str] = set()
        ports: set[int] = set()
        points: set[tuple[str, int, str]] = set()
        wildcard = False
        for host, port, transport in listening_points:
            h = normalize_host(host)
            ports.add(port)
            points.add((h, port, transport.upper()))
            if h in ("0.0.0.0", "::"):
                wildcard = True
            else:
                hosts.add(h)
        for addr in external_addrs:
            hosts.add(normalize_host(addr.split("/")[0]))
        for net in localnets:
            own = own_address_of(str(net))
            if own is not None:
                hosts.add(own)
        if wildcard:
            hosts.update({"127.0.0.1", "::1", "localhost"})
        return cls(frozenset(hosts), frozenset(ports), frozenset(points))

    def is_own(self, host: str, port: int | None) -> bool:
        """``host[:port]`` names this EdgePort (no port means any of our ports; 5060 is the SIP default)."""
        if normalize_host(host) not in self.hosts:
            return False
        return port is None or port in self.ports

    def is_own_host(self, host: str) -> bool:
        return normalize_host(host) in self.hosts


def own_address_of(localnet: str) -> str | None:
    """The address of ours a localnet entry names (Routr: ``10.100.42.127/31`` is that network and our address on
    it; ``10.0.0.0/8``, a network address, names none; a bare address or full-length prefix is one of ours)."""
    try:
        iface = ipaddress.ip_interface(localnet.strip())
    except ValueError:
        return None
    network = iface.network
    if network.prefixlen == network.max_prefixlen or iface.ip != network.network_address:
        return normalize_host(str(iface.ip))
    return None


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
