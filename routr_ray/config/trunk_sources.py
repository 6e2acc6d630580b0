"""The source addresses of Trunks and Peers, derived from the Connect resources (issue 14 item 8).

Spoofed UDP from a trunk's address (or a burst of real traffic from a busy trunk) must not get the trunk banned:
sources named here are never banned by the EdgePort's rate limiter (they get their own, higher limit,
``rateLimit.trunksAndPeers``) nor by Connect's ban after repeated authentication failures, and the connection
table never evicts their connections.

A source is named by:

* a Trunk's ``inbound.accessControlListRef``: the ``allow`` entries of that ACL;
* a Trunk's enabled ``outbound.uris`` whose host is an IP address;
* an enabled Peer's ``accessControlListRef`` (its ``allow`` entries) and ``contactAddr`` when it is an IP address.

An ``allow`` entry broader than /24 (IPv4) or /64 (IPv6) is **not** taken: such a list names a network of
endpoints ("our LAN", Routr's sample ``acl-01`` allowing 10.0.0.0/8 and 192.168.0.0/16), not a provider's
signalling hosts, and exempting it would exempt every agent on it. It is reported in ``skipped`` (the launcher
logs it); name such a range in the EdgePort's ``rateLimit.trunksAndPeers.networks`` to protect it anyway. Host
names are not resolved here: name a trunk by address (ACL or URI) to protect it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from routr_ray.config.resource_set import Resources
from routr_ray.config.resources import AccessControlList
from routr_ray.config.values import IPNetwork
from routr_ray.util.netmatch import NetworkSet

__all__ = ["MIN_PREFIX", "TrunkSourceMatcher", "TrunkSources", "trunk_and_peer_sources"]

MIN_PREFIX = {4: 24, 6: 64}  # an allow entry must be at least this specific to count as a trunk's or peer's address


@dataclass(frozen=True)
class TrunkSources:
    networks: tuple[IPNetwork, ...] = ()
    skipped: tuple[tuple[str, IPNetwork], ...] = ()  # (resource ref, network) too broad to be taken


def _host_network(host: str) -> IPNetwork | None:
    try:
        ip = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return None
    return ipaddress.ip_network(ip)


def _contact_host(contact_addr: str) -> str:
    text = contact_addr.strip()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    host, colon, port = text.rpartition(":")
    return host if colon and port.isdigit() and ":" not in host else text


def trunk_and_peer_sources(resources: Resources) -> TrunkSources:
    """Every network named as a Trunk's or a Peer's source (module docstring), deduplicated, in config order."""
    found: dict[IPNetwork, None] = {}
    skipped: list[tuple[str, IPNetwork]] = []

    def from_acl(owner: str, ref: str | None) -> None:
        acl = resources.get(AccessControlList, ref)
        for network in acl.allow if acl is not None else ():
            if network.prefixlen >= MIN_PREFIX[network.version]:
                found[network] = None
            else:
                skipped.append((owner, network))

    for trunk in resources.trunks:
        if trunk.inbound is not None:
            from_acl(trunk.ref, trunk.inbound.access_control_list_ref)
        for uri in trunk.outbound.uris if trunk.outbound is not None else ():
            network = _host_network(uri.host) if uri.enabled else None
            if network is not None:
                found[network] = None
    for peer in resources.peers:
        if not peer.enabled:
            continue
        from_acl(peer.ref, peer.access_control_list_ref)
        network = _host_network(_contact_host(peer.contact_addr)) if peer.contact_addr else None
        if network is not None:
            found[network] = None
    return TrunkSources(tuple(found), tuple(skipped))


class TrunkSourceMatcher:
    """``matcher(host)``: is ``host`` a Trunk's or a Peer's source in the resources ``current()`` returns now?
    (The networks are derived again only when ``current()`` hands out a new set, e.g. after a reload.)"""

    def __init__(self, current: Callable[[], Resources]) -> None:
        self._current = current
        self._resources: Resources | None = None
        self._set = NetworkSet()

    def __call__(self, host: str) -> bool:
        resources = self._current()
        if resources is not self._resources:
            self._set = NetworkSet(trunk_and_peer_sources(resources).networks)
            self._resources = resources
        return host in self._set
