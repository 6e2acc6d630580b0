"""Alterations: pure functions that prepare a SIP message for its next hop (routr.md §3.6, DESIGN §4).

Each function takes a ``routr_ray.sip`` message and returns a changed copy; the argument is never modified,
so steps compose freely (:func:`pipe`). Who writes what (DESIGN §4): the EdgePort fills
``listening_points``, ``localnets`` and ``external_addrs`` in every MessageRequest; the processor picks
the advertised address from them (:func:`edge_interface`), adds the top Via **without** a branch (the
EdgePort sets it from its client transaction) and the Record-Route; the EdgePort never adds a Record-Route.

Differences from Routr, on purpose:

* ``r2=on`` is a URI parameter of the Record-Route (``<sip:h:p;transport=tcp;r2=on;lr>``), not a header
  parameter: RFC 3261 §12.1.1 builds the route set from the URIs, so only URI parameters come back in the
  Route headers of later requests (Kamailio's rr module does the same).
* :func:`remove_own_routes` removes the *leading* Route values that name us (RFC 3261 §16.4), not every
  one: a later value naming us again belongs to a spiral and must stay.
* With neither a matching localnet nor an external address, a concrete listening-point address is used
  (Routr raises). Behind a wildcard listening point (``0.0.0.0``/``::``) the EdgePort puts an
  ``address/prefix`` entry per host address in front of the localnets (``edge/host_networks.py``); toward a
  target on none of those networks the wildcard itself is advertised, and the EdgePort that sends the request
  writes the address its packets leave from in its place (``edge/advertise.py``, Kamailio's ``mhomed``).
  :class:`NoInterface` is raised only when the EdgePort has no listening point for the transport.
* :func:`decrease_max_forwards` adds ``Max-Forwards: 70`` when absent (RFC 3261 §16.6 step 3) and raises
  :class:`TooManyHops` at 0 (§16.3 step 2; the SDK answers 483).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, TypeVar

from routr_ray.proto.gen import common_pb2, processor_pb2
from routr_ray.sip.digest import parse_auth_params
from routr_ray.sip.fields import NameAddr
from routr_ray.sip.message import Message, Request
from routr_ray.sip.uri import URI, format_host, parse_uri

M = TypeVar("M", bound=Message)

DEFAULT_MAX_FORWARDS = 70  # RFC 3261 §16.6 step 3
_TRANSPORT_NAMES = {v.number: v.name for v in common_pb2.Transport.DESCRIPTOR.values}
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


class AlterationError(ValueError):
    """A message cannot be prepared for its next hop."""


class NoInterface(AlterationError):
    """No local address to advertise toward a target (no listening point, localnet or external address)."""


class TooManyHops(AlterationError):
    """Max-Forwards is 0: the request must not be forwarded (RFC 3261 §16.3 step 2 -> 483)."""


class Interface(NamedTuple):
    """A network interface: host (IPv6 without brackets), port, upper-case transport (UDP, TCP, TLS, WS, WSS)."""

    host: str
    port: int
    transport: str

    @classmethod
    def of(cls, ni: processor_pb2.NetInterface) -> Interface:
        """From Routr's ``NetInterface`` (transport enum)."""
        return cls(ni.host.strip("[]"), ni.port, _TRANSPORT_NAMES.get(ni.transport, "UDP"))

    def sent_by(self) -> str:
        return f"{format_host(self.host)}:{self.port}"

    @property
    def is_wildcard(self) -> bool:
        """A wildcard host: the EdgePort writes the address it sends from in its place (``edge/advertise.py``)."""
        return self.host in _WILDCARD_HOSTS


# ------------------------------------------------------------------------------------------------
# Choosing the advertised address

@lru_cache(maxsize=256)
def _network(entry: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str | None] | None:
    """A localnet entry as (network, own address or None). Routr's convention (routr.md §3.6): an entry like
    ``10.100.42.127/31`` doubles as "my IP on that network"; ``10.0.0.0/8`` (the network address) names none."""
    try:
        iface = ipaddress.ip_interface(entry.strip())
    except ValueError:
        return None
    network = iface.network
    own = iface.ip
    full = network.max_prefixlen == network.prefixlen
    return network, (str(own) if full or own != network.network_address else None)


@lru_cache(maxsize=1024)
def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _listening_point(points: Iterable[Interface], transport: str) -> Interface | None:
    for lp in points:
        if lp.transport == transport:
            return lp
    return None


def edge_interface(
    target_host: str,
    target_transport: str,
    *,
    listening_points: Iterable[Interface],
    localnets: Iterable[str] = (),
    external_addrs: Iterable[str] = (),
) -> Interface:
    """The address this EdgePort advertises toward ``target_host`` over ``target_transport`` (Routr's
    ``getEdgeInterface``, routr.md §3.6).

    Port and transport: the listening point of that transport. Host: when the target is inside one of
    ``localnets``, the listening point's own address (or, for a wildcard listening point, the localnet
    entry's address); otherwise the first external address; otherwise a concrete listening-point address.
    Behind a wildcard listening point, where none of these names an address, the wildcard host: the EdgePort
    fills in the address it sends from (see the module docstring).
    """
    transport = (target_transport or "UDP").upper()
    lp = _listening_point(listening_points, transport)
    if lp is None:
        raise NoInterface(f"no listening point for transport {transport}")
    concrete = lp.host not in _WILDCARD_HOSTS
    ip = _ip(target_host)
    if ip is not None:
        for entry in localnets:
            net = _network(entry)
            if net is None or ip.version != net[0].version or ip not in net[0]:
                continue
            if concrete:
                return Interface(lp.host, lp.port, transport)
            if net[1] is not None:
                return Interface(net[1], lp.port, transport)
            return Interface(lp.host, lp.port, transport)  # a local target: the EdgePort knows the route to it
    for addr in external_addrs:
        if addr:
            return Interface(addr.strip("[]"), lp.port, transport)
    return Interface(lp.host, lp.port, transport)


def edge_interface_for(req: processor_pb2.MessageRequest, target_host: str, target_transport: str | int) -> Interface:
    """:func:`edge_interface` with the nets the EdgePort put into ``req``."""
    transport = (_TRANSPORT_NAMES.get(target_transport, "UDP") if isinstance(target_transport, int)
                 else target_transport)
    return edge_interface(
        target_host, transport,
        listening_points=[Interface.of(lp) for lp in req.listening_points],
        localnets=req.localnets, external_addrs=req.external_addrs,
    )


@dataclass(frozen=True)
class OwnAddresses:
    """What names this EdgePort in a URI: its listening points, external addresses and localnet addresses."""

    hosts: frozenset[str]
    ports_by_transport: dict[str, frozenset[int]]
    ports: frozenset[int]
    wildcard: bool = False  # a listening point bound to 0.0.0.0 / ::: every local address is ours too

    @classmethod
    def build(cls, listening_points: Iterable[Interface], localnets: Iterable[str] = (),
              external_addrs: Iterable[str] = ()) -> OwnAddresses:
        hosts: set[str] = set()
        by_transport: dict[str, set[int]] = {}
        wildcard = False
        for lp in listening_points:
            if lp.host in _WILDCARD_HOSTS:
                wildcard = True
            else:
                hosts.add(_norm(lp.host))
            by_transport.setdefault(lp.transport, set()).add(lp.port)
        hosts.update(_norm(a) for a in external_addrs if a)
        for entry in localnets:
            net = _network(entry)
            if net is not None and net[1] is not None:
                hosts.add(_norm(net[1]))
        ports = frozenset(p for ps in by_transport.values() for p in ps)
        return cls(frozenset(hosts), {t: frozenset(p) for t, p in by_transport.items()}, ports, wildcard)

    @classmethod
    def of_request(cls, req: processor_pb2.MessageRequest) -> OwnAddresses:
        """The addresses of the EdgePort that sent ``req``, the one it arrived on (``received_on``) included (the
        same few sets for every message: memoized by the listening points, localnets, external addresses and
        arrival address; bounded)."""
        received_on = req.received_on.host
        key = (tuple([lp.SerializeToString() for lp in req.listening_points]), tuple(req.localnets),
               tuple(req.external_addrs), received_on)
        own = _OWN_BY_REQUEST.get(key)
        if own is None:
            external = [*req.external_addrs, received_on] if received_on not in _WILDCARD_HOSTS else req.external_addrs
            own = cls.build([Interface.of(lp) for lp in req.listening_points], req.localnets, external)
            if len(_OWN_BY_REQUEST) >= 256:
                _OWN_BY_REQUEST.clear()
            _OWN_BY_REQUEST[key] = own
        return own

    def names_us(self, uri: URI) -> bool:
        """``uri`` (a Route / Record-Route value) points at this EdgePort: our host, and the port of our
        listening point for its transport (default port when absent: 5061 for sips/TLS, else 5060)."""
        if not uri.is_sip or _norm(uri.host) not in self.hosts:
            return False
        transport = (uri.transport or ("tls" if uri.is_secure else "udp")).upper()
        port = uri.port if uri.port is not None else (5061 if transport in ("TLS", "WSS") else 5060)
        return port in self.ports_by_transport.get(transport, self.ports)


_OWN_BY_REQUEST: dict[tuple[tuple[bytes, ...], tuple[str, ...], tuple[str, ...], str], OwnAddresses] = {}


def _norm(host: str) -> str:
    ip = _ip(host)
    return str(ip) if ip is not None else host.strip("[]").lower()


# ------------------------------------------------------------------------------------------------
# The alterations

def pipe(msg: M, *steps: Callable[[M], M]) -> M:
    """Apply ``steps`` in order: ``pipe(req, decrease_max_forwards, partial(add_self_via, intf=...))``."""
    for step in steps:
        msg = step(msg)
    return msg


def _copy(msg: M) -> M:
    return msg.copy()  # type: ignore[return-value]


def decrease_max_forwards(msg: Request) -> Request:
    """Max-Forwards - 1 (RFC 3261 §16.6 step 3); 70 when absent; :class:`TooManyHops` when it is 0."""
    value = msg.max_forwards
    if value is not None and value <= 0:
        raise TooManyHops("Max-Forwards is 0")
    out = _copy(msg)
    out.headers.set("Max-Forwards", str(DEFAULT_MAX_FORWARDS if value is None else value - 1))
    return out


def self_via(intf: Interface) -> str:
    """The Via value this hop adds: sent-by = advertised address, bare ``rport`` (RFC 3581 §3), no branch."""
    return f"SIP/2.0/{intf.transport} {intf.sent_by()};rport"


def add_self_via(msg: M, intf: Interface) -> M:
    """Prepend our Via (RFC 3261 §16.6 step 8) without ``branch``: the EdgePort's client transaction sets it."""
    out = _copy(msg)
    out.headers.prepend("Via", self_via(intf))
    return out


def remove_top_via(msg: M) -> M:
    """Drop the top Via of a response on its way back (RFC 3261 §16.7 step 3)."""
    out = _copy(msg)
    out.headers.remove_first_value("Via")
    return out


def route_uri(intf: Interface, *, r2: bool = False, params: Iterable[tuple[str, str]] = ()) -> str:
    """``<sip:host:port;transport=x[;r2=on][;name=value...];lr>`` for a Record-Route or Route value."""
    r2_param = ";r2=on" if r2 else ""
    extra = "".join(f";{name}={value}" for name, value in params)
    return f"<sip:{intf.sent_by()};transport={intf.transport.lower()}{r2_param}{extra};lr>"


def add_record_route(msg: M, origin: Interface, target: Interface, *,
                     params: Iterable[tuple[str, str]] = (), origin_params: Iterable[tuple[str, str]] = (),
                     target_params: Iterable[tuple[str, str]] = ()) -> M:
    """Record-Route ourselves (RFC 3261 §16.6 step 4, loose routing ``lr``). ``origin`` is our interface
    toward the previous hop, ``target`` toward the next. When they differ (transport or network bridged),
    two entries with ``r2=on``: ``[target, origin]``, so each side's route set starts with the address it can
    reach (double record-routing). Wildcard interfaces (filled in by the EdgePort, which may find two different
    addresses) always get both entries; the EdgePort makes them one when they are the same. ``params`` are extra
    URI parameters put into every entry (they come back in the Route headers of the dialog's later requests, RFC
    3261 §12.1); ``origin_params`` / ``target_params`` only into that side's entry (two EdgePorts: each entry
    names its own, and two entries are written even for one address)."""
    out = _copy(msg)
    params = tuple(params)
    origin_params, target_params = tuple(origin_params), tuple(target_params)
    if origin == target and not origin.is_wildcard and origin_params == target_params:
        out.headers.prepend("Record-Route", route_uri(origin, params=params + origin_params))
    else:
        out.headers.prepend("Record-Route", route_uri(origin, r2=True, params=params + origin_params))
        out.headers.prepend("Record-Route", route_uri(target, r2=True, params=params + target_params))
    return out


def add_route(msg: M, uri: str | URI) -> M:
    """Prepend a Route value (loose routing to a next hop, Routr's ``addRouteToNextHop``)."""
    text = str(uri)
    out = _copy(msg)
    out.headers.prepend("Route", text if text.startswith("<") else f"<{text}>")
    return out


def remove_own_routes(msg: M, own: OwnAddresses) -> M:
    """Remove the leading Route values that name this EdgePort (RFC 3261 §16.4; one or two with double
    record-routing)."""
    routes = msg.routes
    count = 0
    for na in routes:
        if not own.names_us(na.uri):
            break
        count += 1
    if not count:
        return msg.copy()  # type: ignore[return-value]
    out = _copy(msg)
    for _ in range(count):
        out.headers.remove_first_value("Route")
    return out


def remove_last_route(msg: M) -> M:
    """Drop the last Route value (RFC 3261 §16.4: after a strict router it is the real Request-URI)."""
    routes = msg.routes
    out = _copy(msg)
    if routes:
        out.headers.remove("Route")
        for na in routes[:-1]:
            out.headers.add("Route", str(na))
    return out


def route_to_strict_router(msg: Request) -> Request:
    """RFC 3261 §16.6 step 6: when the first Route value (the next hop) has no ``lr`` it is a strict router: the
    Request-URI goes to the end of the Route set and that first value becomes the Request-URI. Unchanged (a copy)
    when the next hop routes loosely or there is no Route."""
    routes = msg.routes
    if not routes or "lr" in routes[0].uri.params:
        return msg.copy()  # type: ignore[return-value]
    out = _copy(msg)
    out.headers.remove("Route")
    for na in routes[1:]:
        out.headers.add("Route", str(na))
    out.headers.add("Route", f"<{msg.request_uri}>")
    out.request_uri = routes[0].uri.copy()
    return out


def set_request_uri(msg: Request, uri: str | URI) -> Request:
    """Retarget the request (RFC 3261 §16.5/§16.6 step 2), e.g. to the registered Contact."""
    out = _copy(msg)
    if isinstance(uri, URI):
        out.request_uri = uri
    else:
        out.request_uri = parse_uri(uri)
    return out


def remove_authorization(msg: M, realms: Iterable[str] | None = None) -> M:
    """Remove Authorization and Proxy-Authorization toward the next hop. With ``realms``, only credentials
    for those realms (ours) go; others are left for the element that challenged (RFC 3261 §22.3)."""
    out = _copy(msg)
    if realms is None:
        out.headers.remove("Authorization")
        out.headers.remove("Proxy-Authorization")
        return out
    ours = set(realms)
    for name in ("Authorization", "Proxy-Authorization"):
        values = out.headers.get_all(name)
        keep = [v for v in values if _realm_of(v) not in ours]
        if len(keep) != len(values):
            out.headers.remove(name)
            for value in keep:
                out.headers.add(name, value)
    return out


def _realm_of(value: str) -> str | None:
    _, _, rest = value.strip().partition(" ")
    try:
        return parse_auth_params(rest).get("realm")
    except ValueError:
        return None


def fix_invalid_contact(msg: M, flow: Interface | None = None) -> M:
    """Replace a ``.invalid`` Contact host (WebRTC clients, RFC 7118 §5.2) with the address the message
    really came from: ``flow`` (the EdgePort's ``sender``) or else the top Via's ``received``/``rport``."""
    contacts = msg.contacts
    if not any(not c.wildcard and c.uri.host.lower().endswith(".invalid") for c in contacts):
        return msg.copy()  # type: ignore[return-value]
    if flow is None:
        via = msg.top_via
        if via is None:
            return msg.copy()  # type: ignore[return-value]
        rport = via.params.get("rport")
        port = int(rport) if rport and rport.isdigit() else via.port
        flow = Interface(via.received or via.host, port or 5060, via.transport)
    fixed: list[NameAddr] = []
    for na in contacts:
        if not na.wildcard and na.uri.host.lower().endswith(".invalid"):
            na = na.copy()
            uri = na.uri.copy()
            uri.host, uri.port = flow.host, flow.port
            uri.params["transport"] = flow.transport.lower()
            na.uri = uri
        fixed.append(na)
    out = _copy(msg)
    out.headers.set("Contact", ", ".join(str(na) for na in fixed))
    return out


__all__ = [
    "DEFAULT_MAX_FORWARDS", "AlterationError", "Interface", "NoInterface", "OwnAddresses", "TooManyHops",
    "add_record_route", "add_route", "add_self_via", "decrease_max_forwards", "edge_interface",
    "edge_interface_for", "fix_invalid_contact", "pipe", "remove_authorization", "remove_own_routes",
    "remove_last_route", "remove_top_via", "route_to_strict_router", "route_uri", "self_via", "set_request_uri",
]
