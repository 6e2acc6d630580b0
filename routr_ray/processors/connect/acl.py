"""Access control lists on the packet's real source address (DESIGN §5; routr.md §12 "Domain ACL", "ACL deny").

Routr loads Domain and Peer ACLs but never evaluates them, ignores `deny` on trunks, and checks the top Via
sent-by host the client wrote (routr.md §3.4). Here every list is evaluated on `MessageRequest.sender.host`
(the address the packet came from) with one rule:

* an ACL with no entries (or no ACL) restricts nothing;
* otherwise the most specific (longest-prefix) entry that contains the address decides, and `allow` wins a
  tie between an allow and a deny entry of the same length;
* an address no entry contains is allowed only when the ACL has no `allow` entries (a deny-only list);
  an allow list means "these networks only".

So Routr's `acl-01` (deny 0.0.0.0/1, allow 127.0.0.1/8) admits 127.0.0.1: /8 is more specific than /1.
"""

from __future__ import annotations

from collections.abc import Iterable

from routr_ray.config.resources import AccessControlList
from routr_ray.util.netmatch import IPNetwork, ip_of, longest_match


def acl_allows(acl: AccessControlList | None, host: str) -> bool:
    """True when `host` (a packet source address) passes `acl` (rules in the module docstring)."""
    if acl is None or (not acl.allow and not acl.deny):
        return True
    ip = ip_of(host)
    if ip is None:  # not an address: a non-empty list cannot vouch for it
        return False
    allow = longest_match(ip, acl.allow)
    deny = longest_match(ip, acl.deny)
    if allow < 0 and deny < 0:
        return not acl.allow
    return allow >= deny


def in_networks(host: str, networks: Iterable[IPNetwork]) -> bool:
    ip = ip_of(host)
    return ip is not None and longest_match(ip, networks) >= 0


def is_private(host: str) -> bool:
    """RFC 1918 / RFC 4193 / loopback / link-local address (a Contact that only means something behind NAT)."""
    ip = ip_of(host)
    return ip is not None and (ip.is_private or ip.is_loopback or ip.is_link_local)
