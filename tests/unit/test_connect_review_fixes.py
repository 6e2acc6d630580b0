"""Digest uri binding, realms, URI schemes, OPTIONS Allow (review of Connect, items 2-4, 8, 9)."""

from __future__ import annotations

from test_connect_support import Harness, authorize, sip

from routr_ray.config.edgeport import DEFAULT_METHODS
from routr_ray.processors.connect.auth import same_request_uri
from routr_ray.sip.digest import parse_auth_params
from routr_ray.sip.message import Request
from routr_ray.sip.uri import parse_uri

CALLER = ("10.0.0.5", 5060, "UDP")


def invite(ruri: str, method: str = "INVITE") -> Request:
    return sip(method, ruri, from_="sip:1001@sip.local", to=ruri, contact="<sip:1001@10.0.0.5:5060>")


def realm_of(value: str | None) -> str:
    assert value is not None
    return parse_auth_params(value.split(" ", 1)[1])["realm"]


# ---- item 2: the credentials' uri is the Request-URI ---------------------------------------------

async def test_credentials_replayed_with_another_request_uri_are_400() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    req = invite("sip:1002@sip.local")
    good = authorize(req, await h.answer(req), "1001", "1234")
    replay = good.copy()
    assert isinstance(replay, Request)
    replay.uri = "sip:+19005550100@sip.local"
    resp = await h.answer(replay)
    assert resp.status == 400 and "uri" in resp.reason
    out, _ = await h.send(good)  # the genuine request still goes through
    assert isinstance(out, Request) and out.uri == "sip:1002@10.0.0.6:5060"


async def test_digest_uri_with_the_default_port_written_out_is_accepted() -> None:
    h = Harness()
    req = sip("REGISTER", "sip:sip.local:5060", from_="sip:1002@sip.local", to="sip:1002@sip.local",
              contact="<sip:1002@10.0.0.6:5060>")
    good = authorize(req, await h.answer(req), "1002", "1234")  # uri="sip:sip.local:5060", as SIPp writes
    good.uri = "sip:sip.local"
    resp = await h.answer(good)
    assert resp.status == 200


def test_same_request_uri_follows_rfc3261_19_1_4() -> None:
    ruri = parse_uri("sip:%61lice@Example.COM;transport=udp")
    assert same_request_uri("sip:alice@example.com:5060;transport=UDP", ruri)
    assert not same_request_uri("sip:Alice@example.com;transport=udp", ruri)  # user is case-sensitive
    assert not same_request_uri("sip:alice@example.com", ruri)  # transport in one only
    assert not same_request_uri("sip:alice@example.com:5070;transport=udp", ruri)
    assert not same_request_uri("sips:alice@example.com;transport=udp", ruri)
    assert same_request_uri("sip:127.0.0.1:5160", parse_uri("sip:127.0.0.1:5160"))
    assert same_request_uri("sip:sip.local;foo=1", parse_uri("sip:sip.local"))  # other params: both or ignored
    assert not same_request_uri("not a uri", ruri)
    assert same_request_uri("tel:+17066041487", parse_uri("tel:+17066041487"))
    assert not same_request_uri("tel:+17066041488", parse_uri("tel:+17066041487"))


# ---- item 3: credentials for other realms go on ---------------------------------------------------

async def test_only_our_realm_credentials_are_removed() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    req = invite("sip:1002@sip.local")
    good = authorize(req, await h.answer(req), "1001", "1234")
    downstream = ('Digest username="1001", realm="carrier.example", nonce="n1", uri="sip:1002@sip.local", '
                  'response="00000000000000000000000000000000"')
    good.headers.add("Proxy-Authorization", downstream)
    out, _ = await h.send(good)
    assert isinstance(out, Request)
    assert out.headers.get_all("Proxy-Authorization") == [downstream]
    assert "Authorization" not in out.headers


# ---- item 4: 416 ----------------------------------------------------------------------------------

async def test_unsupported_request_uri_scheme_is_416() -> None:
    h = Harness()
    for method in ("INVITE", "MESSAGE", "REGISTER"):
        resp = await h.answer(sip(method, "im:bob@example.com", from_="sip:1001@sip.local",
                                  to="sip:1001@sip.local"))
        assert resp.status == 416, method


# ---- item 8: a Peer's realm is never a host the client chose ------------------------------------------

async def test_peer_realm_is_our_domain_or_the_default_never_the_request_uri_host() -> None:
    h = Harness()
    foreign = await h.answer(sip("REGISTER", "sip:attacker.example", from_="sip:asterisk@attacker.example",
                                 to="sip:asterisk@attacker.example", contact="<sip:asterisk@10.0.0.7>"))
    assert foreign.status == 401 and realm_of(foreign.headers.get("WWW-Authenticate")) == "routr"
    ours = await h.answer(sip("REGISTER", "sip:sip.local", from_="sip:asterisk@sip.local",
                              to="sip:asterisk@sip.local", contact="<sip:asterisk@10.0.0.7>"))
    assert realm_of(ours.headers.get("WWW-Authenticate")) == "sip.local"
    call = await h.answer(sip("INVITE", "sip:1002@10.9.9.9", from_="sip:asterisk@10.9.9.9", to="sip:1002@10.9.9.9"))
    assert call.status == 407 and realm_of(call.headers.get("Proxy-Authenticate")) == "routr"


# ---- item 9: OPTIONS Allow ------------------------------------------------------------------------

async def test_options_allow_lists_only_methods_connect_handles() -> None:
    h = Harness()
    resp = await h.answer(invite("sip:sip.local", method="OPTIONS"))
    allow = [m.strip() for m in (resp.headers.get("Allow") or "").split(",")]
    assert resp.status == 200 and "PUBLISH" not in allow
    assert set(allow) == set(DEFAULT_METHODS)


async def test_digest_uri_naming_this_server_is_accepted_like_sipp_sends_it() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    req = invite("sip:1002@sip.local")
    challenge = await h.answer(req)
    for uri, status in (("sip:10.0.0.1:5060", None), ("sip:192.0.2.9:5060", 400), ("sip:1002@10.0.0.1:5060", 400)):
        signed = req.copy()
        assert isinstance(signed, Request)
        signed.uri = uri  # SIPp signs uri="sip:<remote_ip>:<remote_port>" (its -auth_uri default)
        signed = authorize(signed, challenge, "1001", "1234")
        signed.uri = req.uri
        out, _ = await h.send(signed)
        if status is None:
            assert isinstance(out, Request) and out.uri == "sip:1002@10.0.0.6:5060", uri
        else:
            assert not isinstance(out, Request) and out.status == status, uri


def test_digest_uri_naming_the_address_the_request_arrived_on() -> None:
    from routr_ray.processors.connect.auth import arrival_hosts, names_arrival_address
    from routr_ray.proto.convert import make_message_request

    def arrived(points, external=(), localnets=(), transport="UDP"):  # type: ignore[no-untyped-def]
        msg = make_message_request(invite("sip:1002@sip.local"), edge_port_ref="e", sender=("10.0.0.5", 5060, transport),
                                   listening_points=points, external_addrs=external, localnets=localnets)
        return arrival_hosts(msg)

    wildcard = arrived([("0.0.0.0", 5060, "UDP")], localnets=["10.0.0.1/8"])
    assert names_arrival_address("sip:127.0.0.1:5060", wildcard)  # a wildcard bind answers on loopback too
    assert names_arrival_address("sip:10.0.0.1:5999", wildcard)  # any port (a TLS/TCP relay signs its own)
    assert not names_arrival_address("sip:1001@127.0.0.1:5060", wildcard)  # a user part is a Request-URI, not us
    concrete = arrived([("10.0.0.1", 5060, "UDP"), ("192.168.1.1", 5060, "TCP")], external=["203.0.113.10"],
                       localnets=["172.16.0.1/12"])
    assert names_arrival_address("sip:10.0.0.1", concrete)
    assert names_arrival_address("sip:203.0.113.10:5060", concrete)  # what a client outside the NAT dials
    assert not names_arrival_address("sip:127.0.0.1:5060", concrete)
    assert not names_arrival_address("sip:192.168.1.1:5060", concrete)  # the TCP listening point: not where it arrived
    assert not names_arrival_address("sip:172.16.0.1:5060", concrete)  # a localnet address, but bound elsewhere


def test_behind_a_wildcard_the_digest_uri_must_name_the_address_the_packet_reached() -> None:
    """routr-ray's EdgePort says which address a packet reached (`received_on`, IP_PKTINFO): only that one (and the
    external addresses) names the server in a digest `uri`, not every address of the host."""
    from routr_ray.processors.connect.auth import arrival_hosts, names_arrival_address
    from routr_ray.proto.convert import make_message_request

    msg = make_message_request(invite("sip:1002@sip.local"), edge_port_ref="e", sender=("10.0.0.5", 5060, "UDP"),
                               listening_points=[("0.0.0.0", 5060, "UDP")], external_addrs=["203.0.113.10"],
                               localnets=["192.0.2.1/24", "127.0.0.1/8", "10.0.0.0/8"])
    msg.received_on.host, msg.received_on.port = "192.0.2.1", 5060
    arrived = arrival_hosts(msg)
    assert names_arrival_address("sip:192.0.2.1:5060", arrived)
    assert names_arrival_address("sip:203.0.113.10", arrived)
    assert not names_arrival_address("sip:127.0.0.1:5060", arrived)  # another address of the host: not where it came
