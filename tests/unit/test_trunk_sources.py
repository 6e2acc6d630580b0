"""Which sources are a Trunk's or a Peer's (routr_ray/config/trunk_sources.py), and Connect's ban after repeated
authentication failures never falling on them (routr_ray/processors/connect/auth.py FailureTracker `exempt`)."""

from __future__ import annotations

import ipaddress

from routr_ray.config import Resources
from routr_ray.config.resources import (
    AccessControlList,
    Peer,
    Trunk,
    TrunkInbound,
    TrunkOutbound,
    TrunkUri,
)
from routr_ray.config.trunk_sources import TrunkSourceMatcher, trunk_and_peer_sources
from routr_ray.config.values import to_networks
from routr_ray.processors.connect.auth import FailureTracker


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def resources(*, peer_enabled: bool = True) -> Resources:
    return Resources(
        access_control_lists=(
            AccessControlList("acl-provider", "Provider", allow=to_networks(["203.0.113.0/28", "2001:db8:1::5"]),
                              deny=to_networks(["0.0.0.0/0"])),
            AccessControlList("acl-lan", "Our LAN", allow=to_networks(["10.0.0.0/8", "192.168.0.0/16"])),
            AccessControlList("acl-peer", "Media server", allow=to_networks(["10.1.2.3/32"])),
        ),
        trunks=(
            Trunk("trunk-01", "Provider", inbound=TrunkInbound("trunk01.sip.local", "acl-provider"),
                  outbound=TrunkOutbound((TrunkUri("198.51.100.7", 5060, "udp"),
                                          TrunkUri("sip.provider.example", 5060, "udp"),  # a name: not resolved
                                          TrunkUri("198.51.100.8", 5060, "udp", enabled=False)))),
            Trunk("trunk-lan", "LAN gateway", inbound=TrunkInbound("gw.sip.local", "acl-lan")),
        ),
        peers=(
            Peer("peer-01", "Asterisk", "asterisk", "sip:conference@sip.local", contact_addr="10.9.9.9:6060",
                 access_control_list_ref="acl-peer", enabled=peer_enabled),
            Peer("peer-02", "Feature server", "fs", "sip:fs@sip.local", contact_addr="[2001:db8::7]:5060"),
        ),
    )


def test_the_sources_of_trunks_and_peers() -> None:
    sources = trunk_and_peer_sources(resources())
    assert sources.networks == (
        net("203.0.113.0/28"), net("2001:db8:1::5/128"),  # trunk-01's ACL allow entries
        net("198.51.100.7/32"),  # its enabled outbound URI with an IP host
        net("10.1.2.3/32"), net("10.9.9.9/32"),  # peer-01's ACL and contactAddr
        net("2001:db8::7/128"),  # peer-02's contactAddr
    )
    # a LAN-wide allow list is not a trunk's address: not taken (and reported)
    assert sources.skipped == (("trunk-lan", net("10.0.0.0/8")), ("trunk-lan", net("192.168.0.0/16")))
    disabled = trunk_and_peer_sources(resources(peer_enabled=False)).networks
    assert net("10.9.9.9/32") not in disabled and net("10.1.2.3/32") not in disabled
    assert trunk_and_peer_sources(Resources()).networks == ()


def test_the_matcher_follows_the_current_set() -> None:
    current = [resources()]
    matcher = TrunkSourceMatcher(lambda: current[0])
    assert matcher("203.0.113.9") and matcher("10.9.9.9") and not matcher("10.0.0.1")
    current[0] = Resources()  # a reload without trunks
    assert not matcher("203.0.113.9")


def test_connects_ban_never_falls_on_a_trunk_source() -> None:
    now = [0.0]
    current = [resources()]
    tracker = FailureTracker(max_failures=3, clock=lambda: now[0], exempt=TrunkSourceMatcher(lambda: current[0]))
    for _ in range(10):
        tracker.record_failure("203.0.113.9")
        tracker.record_failure("192.0.2.50")
    assert not tracker.is_banned("203.0.113.9")  # the trunk's address: forged failures count for nothing
    assert tracker.is_banned("192.0.2.50")
    current[0] = Resources(access_control_lists=(AccessControlList("a", "a", allow=to_networks(["192.0.2.50"])),),
                           trunks=(Trunk("t", "t", inbound=TrunkInbound("t.sip.local", "a")),))
    assert not tracker.is_banned("192.0.2.50")  # named a trunk's by a reload: its ban ends


def test_the_launcher_hands_the_edgeports_the_shipped_configs_trunk_sources(caplog) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from routr_ray.actors.launcher import trunk_sources
    from routr_ray.config import load_config_dir

    config = load_config_dir(Path(__file__).resolve().parents[2] / "config")
    with caplog.at_level("WARNING", logger="routr_ray.run"):
        networks = trunk_sources(config)
    # the shipped trunk-01: outbound 127.0.0.1; its ACL acl-01 (127.0.0.0/8 and the private networks) is too broad
    assert networks == (net("127.0.0.1/32"),)
    assert "trunk-01: the ACL entry 10.0.0.0/8 is broader than /24" in caplog.text
