"""Small pure helpers over `Route` messages: binding identity, expiry, label match, copies."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import unquote

from routr_ray.proto.gen import location_pb2
from routr_ray.sip.errors import ParseError
from routr_ray.sip.uri import format_host, parse_uri

Route = location_pb2.Route


# Binding id prefixes. A legacy (host|port|transport) id starts with a host name or address, which never holds
# "ct:" or "ob:" ("o" and "t" are not hex digits, so not even an IPv6 address does).
CONTACT_PREFIX = "ct:"
OUTBOUND_PREFIX = "ob:"
# RFC 3261 §19.1.4: these URI parameters must match when either URI has them; any other parameter matches
# when only one URI has it, so it cannot be part of a key (that comparison is not transitive).
_SIGNIFICANT_PARAMS = ("maddr", "method", "transport", "ttl", "user")


def route_id(route: Route) -> str:
    """Identity of a binding inside one AOR (its key in memory and in the store).

    1. ``instance_id`` and ``reg_id`` (reg_id > 0) both set: ``ob:<instance>|<reg-id>``. RFC 5626 §6: the
       registrar identifies an outbound binding by AOR, instance-id and reg-id, so a UA that comes back on a new
       flow (new address or Contact) replaces its binding instead of adding one.
    2. ``contact_uri`` set: ``ct:<canonical contact>``. RFC 3261 §10.3 step 7: a registrar matches bindings by
       Contact URI, so several Contacts in one REGISTER from one address are several bindings.
    3. Otherwise (Routr clients send neither): ``<host>|<port>|<transport>``, the source address, as Routr's
       memory store does. The host compares case-insensitively (RFC 3261 §19.1.4).
    """
    if route.instance_id.strip() and route.reg_id > 0:
        return f"{OUTBOUND_PREFIX}{canonical_instance_id(route.instance_id)}|{route.reg_id}"
    if route.contact_uri.strip():
        return CONTACT_PREFIX + canonical_contact(route.contact_uri)
    return address_id(route)


def address_id(route: Route) -> str:
    """The legacy identity: (host, port, transport)."""
    return f"{route.host.lower()}|{route.port.strip()}|{int(route.transport)}"


def canonical_instance_id(instance_id: str) -> str:
    """``+sip.instance`` without quotes or blanks; a ``urn:uuid:`` compares case-insensitively (RFC 4122 §3)."""
    text = instance_id.strip().strip('"').strip()
    return text.lower() if text.lower().startswith(("urn:uuid:", "<urn:uuid:")) else text


@lru_cache(maxsize=8192)
def canonical_contact(contact_uri: str) -> str:
    """A key for the RFC 3261 §19.1.4 comparison of a Contact URI.

    Scheme and host lower-cased, escapes in the user part decoded (the user stays case-sensitive), the
    password and ``?headers`` dropped, an explicit port kept (``sip:a@h`` and ``sip:a@h:5060`` differ), the
    parameters that must match when present (``maddr``, ``method``, ``transport``, ``ttl``, ``user``) kept with
    lower-cased values in a fixed order, every other parameter (``ob``, ``rinstance``, ...) dropped. A URI
    that does not parse is kept verbatim apart from surrounding blanks and angle brackets.
    """
    text = contact_uri.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    try:
        uri = parse_uri(text)
    except ParseError:
        return text
    if not uri.is_sip:
        return str(uri)
    user = "" if uri.user is None else _unescaped(uri.user) + "@"
    port = "" if uri.port is None else f":{uri.port}"
    params = "".join(
        f";{name}" if value is None else f";{name}={value.lower()}"
        for name, value in sorted((k.lower(), v) for k, v in uri.params.items())
        if name in _SIGNIFICANT_PARAMS
    )
    return f"{uri.scheme}:{user}{format_host(_canonical_host(uri.host))}{port}{params}"


def _unescaped(user: str) -> str:
    """%HH escapes decoded (RFC 3261 §19.1.4) unless they are not UTF-8 (the key must stay encodable)."""
    try:
        return unquote(user, errors="strict")
    except UnicodeDecodeError:
        return user


def _canonical_host(host: str) -> str:
    if ":" in host:  # an IPv6 address: one spelling for 2001:DB8::0001 and 2001:db8::1
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            return host.lower()
    return host.lower()


def expires_at_ms(route: Route) -> int:
    """Epoch ms after which the route is dead (Routr: expires - (now - registered_on)/1000 <= 0)."""
    return route.registered_on + route.expires * 1000


def labels_match(route: Route, wanted: Mapping[str, str]) -> bool:
    """True when the route's labels contain every requested key with the same value."""
    if not wanted:
        return True
    labels = route.labels
    for key, value in wanted.items():
        if key not in labels or labels[key] != value:
            return False
    return True


def copy_route(route: Route) -> Route:
    clone = Route()
    clone.CopyFrom(route)
    return clone
