"""Our address in a forwarded request when the processor could not know it (wildcard listening points).

A processor picks the address this hop advertises from what the EdgePort told it (``alterations.edge_interface``:
localnets, external addresses, listening points). Behind a wildcard listening point (``0.0.0.0``/``::``) toward a
target on no network it knows, it cannot tell which local address reaches that target, so it writes the wildcard
itself as the host of our Via and Record-Route entries. The EdgePort, which sends the request, fills them in
(as Kamailio's ``mhomed=1`` does):

* the top Via (RFC 3261 §16.6 step 8) and the first Record-Route entry (§16.6 step 4; the one the next hop's side
  of the dialog uses): ``toward``, the address our packets to the next hop leave from;
* the second Record-Route entry of a double record-route (``r2=on``; the one the previous hop's side uses):
  ``back``, the address the request arrived on.

When both become the same address, the two entries become one without ``r2`` (single record-routing suffices).
Only the first two Record-Route entries are looked at, and only a wildcard host is replaced (no other element
writes one); the EdgePort adds no Record-Route of its own.
"""

from __future__ import annotations

from routr_ray.sip import ParseError, Request

__all__ = ["WILDCARD_HOSTS", "fill_own_address", "has_wildcard_via"]

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]"})


def has_wildcard_via(request: Request) -> bool:
    """The top Via names a wildcard host: the processor left our address for us to fill in."""
    try:
        via = request.top_via
    except ParseError:
        return False
    return via is not None and via.host in WILDCARD_HOSTS


def fill_own_address(request: Request, toward: str | None, back: str | None) -> None:
    """Replace the wildcard host of the top Via and of the leading Record-Route entries (see the module
    docstring); ``toward`` and ``back`` are IP literals of this host (IPv6 without brackets). None leaves that
    side as it is: across EdgePorts (peers.py) the one sending fills in ``toward`` and the one that received the
    request ``back``."""
    via = request.top_via
    if toward is not None and via is not None and via.host in WILDCARD_HOSTS:
        via.host = toward
        request.replace_top_via(via)
    try:
        record_routes = request.record_routes
    except ParseError:
        return
    head = record_routes[:2]
    if not any(not entry.wildcard and entry.uri.host in WILDCARD_HOSTS for entry in head):
        return
    hosts = (toward, back)
    filled = []
    for index, entry in enumerate(head):
        entry = entry.copy()
        if not entry.wildcard and entry.uri.host in WILDCARD_HOSTS and hosts[index] is not None:
            uri = entry.uri.copy()
            uri.host = hosts[index]
            entry.uri = uri
        filled.append(entry)
    if len(filled) == 2 and "r2" in filled[0].uri.params and str(filled[0]) == str(filled[1]) and (
            filled[0].uri.host not in WILDCARD_HOSTS):
        uri = filled[0].uri.copy()
        uri.params.pop("r2", None)
        filled[0].uri = uri
        filled = filled[:1]
    for _ in head:
        request.headers.remove_first_value("Record-Route")
    for entry in reversed(filled):
        request.headers.prepend("Record-Route", str(entry))
