"""Small pure helpers over `Route` messages: identity, expiry, label match, copies."""

from __future__ import annotations

from collections.abc import Mapping

from routr_ray.proto.gen import location_pb2

Route = location_pb2.Route


def route_id(route: Route) -> str:
    """Identity of a binding inside one AOR: (host, port, transport).

    A REGISTER from the same host, port and transport updates the binding instead of adding one
    (Routr's memory store does the same). The host compares case-insensitively (RFC 3261 §19.1.4).
    """
    return f"{route.host.lower()}|{route.port.strip()}|{int(route.transport)}"


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
