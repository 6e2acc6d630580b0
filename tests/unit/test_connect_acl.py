"""ACL rules of Connect (most specific prefix wins, allow wins a tie, empty restricts nothing) and the
default resource set end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_connect_support import KEY, authorize, net, sip, to_message_request

from routr_ray.config import load_resources
from routr_ray.config.resources import AccessControlList
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.location.service import LocationService
from routr_ray.processors.connect import ConnectProcessor
from routr_ray.processors.connect.acl import acl_allows
from routr_ray.proto.convert import read_message_response
from routr_ray.sip.message import Response

DEFAULT_RESOURCES = Path(__file__).resolve().parents[2] / "config" / "resources"
ROUTR_ACL_01 = AccessControlList("acl-01", "Routr example", allow=net("192.168.1.3/31", "127.0.0.1/8",
                                 "10.111.221.22/31"), deny=net("0.0.0.0/1"))


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1", True),        # allow /8 beats deny /1
    ("10.111.221.23", True),
    ("10.1.1.1", False),        # only the deny /1 matches
    ("200.1.1.1", False),       # nothing matches and there is an allow list
    ("::ffff:127.0.0.1", True),  # IPv4-mapped IPv6
    ("not-an-ip", False),
])
def test_routr_acl_01(host: str, allowed: bool) -> None:
    assert acl_allows(ROUTR_ACL_01, host) is allowed


def test_allow_wins_a_tie_and_specific_deny_beats_broad_allow() -> None:
    acl = AccessControlList("a", "a", allow=net("10.0.0.0/8", "192.0.2.0/24"), deny=net("10.0.0.0/8", "192.0.2.7/32"))
    assert acl_allows(acl, "10.1.2.3")
    assert not acl_allows(acl, "192.0.2.7")
    assert acl_allows(acl, "192.0.2.8")


def test_empty_or_missing_acl_restricts_nothing_and_deny_only_list_denies_only_its_networks() -> None:
    assert acl_allows(None, "8.8.8.8")
    assert acl_allows(AccessControlList("e", "e"), "8.8.8.8")
    deny_only = AccessControlList("d", "d", deny=net("8.8.0.0/16"))
    assert not acl_allows(deny_only, "8.8.8.8") and acl_allows(deny_only, "9.9.9.9")


async def test_default_resource_set_registers_1001_from_loopback_and_refuses_public_sources() -> None:
    resources = load_resources(DEFAULT_RESOURCES)
    location = LocalLocationClient([LocationService(sweep_interval=0)])
    processor = ConnectProcessor(resources, location, nonce_key=KEY)
    req = sip("REGISTER", "sip:sip.local", from_="sip:1001@sip.local", to="sip:1001@sip.local",
              contact="<sip:1001@127.0.0.1:5070>", via="SIP/2.0/UDP 127.0.0.1:5070")
    loopback = ("127.0.0.1", 5070, "UDP")
    first = read_message_response(await processor.process(to_message_request(req, loopback)))
    assert isinstance(first, Response) and first.status == 401
    ok = read_message_response(await processor.process(to_message_request(authorize(req, first, "1001", "1234"),
                                                                          loopback)))
    assert isinstance(ok, Response) and ok.status == 200
    public = read_message_response(await processor.process(to_message_request(req, ("8.8.8.8", 5060, "UDP"))))
    assert isinstance(public, Response) and public.status == 403
