"""What the keepalive pings (``keepalive.py``): Connect resources and Location bindings -> :class:`PingTarget`.

* A Trunk with ``spec.outbound.keepalive``: each enabled outbound URI (host, port and transport as written: Connect
  skips that URI while it is down).
* A Peer with ``spec.keepalive``: each live binding of its AOR in Location, at the address a request for it goes to
  (``processors/connect/targets.py``: the Contact, or the source of the REGISTER for a flow). Bindings come and go,
  so the caller lists them again every little while (the actor: every few seconds).
"""

from __future__ import annotations

from collections.abc import Iterable

from routr_ray.config import Resources
from routr_ray.config.resources import Peer
from routr_ray.processors.connect.targets import target_of
from routr_ray.proto.gen import location_pb2
from routr_ray.trunks.keepalive import PingTarget

__all__ = ["keepalive_peers", "peer_targets", "trunk_targets"]


def trunk_targets(resources: Resources) -> list[PingTarget]:
    targets = []
    for trunk in resources.trunks:
        outbound = trunk.outbound
        if outbound is None or outbound.keepalive is None:
            continue
        seen = set()
        for uri in outbound.uris:
            target = PingTarget("trunk", trunk.ref, uri.transport.lower(), uri.host.strip("[]"), uri.port,
                                outbound.keepalive)
            if uri.enabled and target.key not in seen:
                seen.add(target.key)
                targets.append(target)
    return targets


def keepalive_peers(resources: Resources) -> list[Peer]:
    return [p for p in resources.peers if p.keepalive is not None and p.enabled]


def peer_targets(peer: Peer, routes: Iterable[location_pb2.Route]) -> list[PingTarget]:
    assert peer.keepalive is not None
    targets = []
    seen = set()
    for route in routes:
        hop, _ = target_of(route)
        target = PingTarget("peer", peer.ref, hop.transport.lower(), hop.host.strip("[]"), hop.port, peer.keepalive,
                            aor=peer.aor, contact=route.contact_uri)
        if target.key not in seen:
            seen.add(target.key)
            targets.append(target)
    return targets
