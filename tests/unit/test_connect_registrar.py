"""Connect registrar (RFC 3261 §10.3) through ConnectProcessor.process with a real in-memory Location."""

from __future__ import annotations

from test_connect_support import Harness, authorize, sip

from routr_ray.proto.gen import location_pb2
from routr_ray.sip.message import Response


def contacts_of(resp: Response) -> dict[str, int]:
    out = {}
    for na in resp.contacts:
        out[na.uri_text] = int(na.params["expires"] or -1)
    return out


async def bindings(h: Harness, aor: str) -> list[location_pb2.Route]:
    found = await h.location.find_routes(location_pb2.FindRoutesRequest(aor=aor))
    return list(found.routes)


async def test_register_is_challenged_with_401_in_the_domain_realm() -> None:
    h = Harness()
    req = sip("REGISTER", "sip:sip.local", from_="sip:1001@sip.local", to="sip:1001@sip.local",
              contact="<sip:1001@10.0.0.5:5060>")
    resp = await h.answer(req)
    assert resp.status == 401
    challenge = resp.headers.get("WWW-Authenticate")
    assert challenge is not None and 'realm="sip.local"' in challenge and "algorithm=MD5" in challenge
    assert await bindings(h, "sip:1001@sip.local") == []


async def test_register_stores_contact_and_nat_corrected_source() -> None:
    h = Harness()
    resp = await h.register(
        "1001", '<sip:1001@192.168.1.20:5060;transport=udp;ob>;+sip.instance="<urn:uuid:abc>";reg-id=1',
        sender=("10.0.0.5", 40000, "UDP"), via="SIP/2.0/UDP 192.168.1.20:5060",
        extra=("X-Session-Count: 3",),
    )
    assert resp.status == 200
    assert contacts_of(resp) == {"sip:1001@192.168.1.20:5060;transport=udp;ob": 3600}
    [route] = await bindings(h, "sip:1001@sip.local")
    assert (route.host, route.port, route.transport) == ("10.0.0.5", "40000", 0)
    assert (route.advertised_host, route.advertised_port) == ("192.168.1.20", "5060")
    assert route.contact_uri == "sip:1001@192.168.1.20:5060;transport=udp;ob"
    assert route.instance_id == "<urn:uuid:abc>" and route.reg_id == 1
    assert route.session_count == 3 and route.edge_port_ref == "edge-01"
    assert len(route.listening_points) == 3 and route.expires == 3600


async def test_wrong_password_gets_a_new_challenge() -> None:
    h = Harness()
    req = sip("REGISTER", "sip:sip.local", from_="sip:1001@sip.local", to="sip:1001@sip.local",
              contact="<sip:1001@10.0.0.5>")
    first = await h.answer(req)
    second = await h.answer(authorize(req, first, "1001", "wrong"))
    assert second.status == 401 and "stale" not in (second.headers.get("WWW-Authenticate") or "")


async def test_unknown_user_gets_the_same_challenge_as_a_known_one() -> None:
    h = Harness()
    known = await h.answer(sip("REGISTER", "sip:sip.local", from_="sip:1001@sip.local", to="sip:1001@sip.local",
                               contact="<sip:1001@10.0.0.5>"))
    unknown_req = sip("REGISTER", "sip:sip.local", from_="sip:9999@sip.local", to="sip:9999@sip.local",
                      contact="<sip:9999@10.0.0.5>")
    unknown = await h.answer(unknown_req)
    assert (unknown.status, unknown.reason) == (known.status, known.reason)
    strip = lambda r: r.headers.get("WWW-Authenticate").split("nonce=")[0]  # noqa: E731
    assert strip(unknown) == strip(known)
    again = await h.answer(authorize(unknown_req, unknown, "9999", "1234"))
    assert again.status == 401


async def test_stale_nonce_gets_challenge_with_stale_true() -> None:
    h = Harness()
    req = sip("REGISTER", "sip:sip.local", from_="sip:1001@sip.local", to="sip:1001@sip.local",
              contact="<sip:1001@10.0.0.5>")
    first = await h.answer(req)
    h.clock.now += 301  # nonce ttl is 300 s
    resp = await h.answer(authorize(req, first, "1001", "1234"))
    assert resp.status == 401 and "stale=true" in (resp.headers.get("WWW-Authenticate") or "")


async def test_expires_header_default_and_maximum() -> None:
    h = Harness()
    resp = await h.register("1001", "<sip:1001@10.0.0.5:5060>", extra=("Expires: 100000",))
    assert contacts_of(resp) == {"sip:1001@10.0.0.5:5060": 7200}
    resp = await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    assert contacts_of(resp) == {"sip:1002@10.0.0.6:5060": 3600}


async def test_contact_expires_param_wins_over_header() -> None:
    h = Harness()
    resp = await h.register("1001", "<sip:1001@10.0.0.5:5060>;expires=300", extra=("Expires: 1000",))
    assert contacts_of(resp) == {"sip:1001@10.0.0.5:5060": 300}


async def test_interval_too_brief_is_423_with_min_expires() -> None:
    h = Harness()
    resp = await h.register("1001", "<sip:1001@10.0.0.5:5060>;expires=30")
    assert resp.status == 423 and resp.headers.get("Min-Expires") == "60"
    assert await bindings(h, "sip:1001@sip.local") == []


async def test_agent_expires_setting_caps_the_interval() -> None:
    h = Harness()
    resp = await h.register("1003", "<sip:1003@10.0.0.5:5060>;expires=3600")
    assert contacts_of(resp) == {"sip:1003@10.0.0.5:5060": 120}


async def test_200_lists_every_binding_with_remaining_expires() -> None:
    h = Harness()
    await h.register("1001", "<sip:1001@10.0.0.5:5060>;expires=600")
    h.clock.now += 100
    resp = await h.register("1001", "<sip:1001@10.0.0.7:5060>;expires=900", sender=("10.0.0.7", 5060, "UDP"))
    assert contacts_of(resp) == {"sip:1001@10.0.0.7:5060": 900, "sip:1001@10.0.0.5:5060": 500}


async def test_multi_contact_register_from_several_addresses() -> None:
    h = Harness()
    resp = await h.register("1001", "<sip:1001@10.0.0.5:5060>;expires=600, <sip:1001@10.0.0.8:5070>;expires=700",
                            sender=("10.0.0.5", 5060, "UDP"))
    assert resp.status == 200
    # RFC 3261 §10.3 step 7: bindings are matched by Contact URI, so two Contacts sent from one address are
    # two bindings, each with its own expires.
    assert contacts_of(resp) == {"sip:1001@10.0.0.5:5060": 600, "sip:1001@10.0.0.8:5070": 700}


async def test_register_without_contact_lists_bindings() -> None:
    h = Harness()
    await h.register("1001", "<sip:1001@10.0.0.5:5060>;expires=600")
    req = sip("REGISTER", "sip:sip.local", from_="sip:1001@sip.local", to="sip:1001@sip.local")
    out, _ = await h.authed(req, "1001", "1234")
    assert isinstance(out, Response) and out.status == 200
    assert contacts_of(out) == {"sip:1001@10.0.0.5:5060": 600}


async def test_expires_zero_removes_the_binding() -> None:
    h = Harness()
    await h.register("1001", "<sip:1001@10.0.0.5:5060>;expires=600")
    resp = await h.register("1001", "<sip:1001@10.0.0.5:5060>", extra=("Expires: 0",))
    assert resp.status == 200 and resp.contacts == []
    assert await bindings(h, "sip:1001@sip.local") == []


async def test_star_unregisters_every_binding() -> None:
    h = Harness()
    await h.register("1001", "<sip:1001@10.0.0.5:5060>")
    await h.register("1001", "<sip:1001@10.0.0.7:5060>", sender=("10.0.0.7", 5060, "UDP"))
    resp = await h.register("1001", "*", extra=("Expires: 0",))
    assert resp.status == 200
    assert await bindings(h, "sip:1001@sip.local") == []


async def test_star_without_expires_zero_is_400() -> None:
    h = Harness()
    resp = await h.register("1001", "*")
    assert resp.status == 400


async def test_max_contacts_is_403_with_reason() -> None:
    h = Harness()
    assert (await h.register("1003", "<sip:1003@10.0.0.5:5060>")).status == 200
    resp = await h.register("1003", "<sip:1003@10.0.0.7:5060>", sender=("10.0.0.7", 5060, "UDP"))
    assert resp.status == 403 and "maximum of 1" in resp.reason
    # a refresh of the existing binding is still accepted
    assert (await h.register("1003", "<sip:1003@10.0.0.5:5060>")).status == 200


async def test_peer_registers_to_its_aor() -> None:
    h = Harness()
    resp = await h.register("asterisk", "<sip:asterisk@10.0.0.20:5060>", password="secret",
                            sender=("10.0.0.20", 5060, "UDP"))
    assert resp.status == 200
    [route] = await bindings(h, "sip:conference@sip.local")
    assert route.contact_uri == "sip:asterisk@10.0.0.20:5060"


async def test_register_from_outside_the_domain_acl_is_403() -> None:
    h = Harness()
    req = sip("REGISTER", "sip:sip.local", from_="sip:1001@sip.local", to="sip:1001@sip.local",
              contact="<sip:1001@8.8.8.8>", via="SIP/2.0/UDP 8.8.8.8:5060")
    resp = await h.answer(req, sender=("8.8.8.8", 5060, "UDP"))
    assert resp.status == 403


async def test_register_requiring_an_unknown_extension_gets_420_before_any_challenge() -> None:
    h = Harness()
    req = sip("REGISTER", "sip:sip.local", from_="sip:1001@sip.local", to="sip:1001@sip.local",
              contact="<sip:1001@10.0.0.5:5060>", extra=("Require: path, foo", "Require: outbound"))
    resp = await h.answer(req)
    assert resp.status == 420  # RFC 3261 §8.2.2.3
    assert resp.headers.get_all("Unsupported") == ["path", "foo"]  # outbound is understood (RFC 5626)
    assert await bindings(h, "sip:1001@sip.local") == []


async def test_options_to_the_server_requiring_an_extension_gets_420() -> None:
    h = Harness()
    resp = await h.answer(sip("OPTIONS", "sip:sip.local", from_="sip:1001@sip.local", to="sip:sip.local",
                              extra=("Require: 100rel",)))
    assert resp.status == 420 and resp.headers.get_all("Unsupported") == ["100rel"]
    resp = await h.answer(sip("OPTIONS", "sip:sip.local", from_="sip:1001@sip.local", to="sip:sip.local"))
    assert resp.status == 200


async def test_a_contact_with_an_empty_transport_parameter_registers() -> None:
    """Issue 13 item 5: SIPp scenarios (Routr's among them) write ``;transport=`` with nothing after it; the binding
    is stored as sent and its transport is the one the REGISTER came over."""
    h = Harness()
    resp = await h.register("1001", "<sip:1001@192.168.1.20:5060;transport=>", sender=("10.0.0.5", 40000, "UDP"),
                            via="SIP/2.0/UDP 192.168.1.20:5060")
    assert resp.status == 200
    assert contacts_of(resp) == {"sip:1001@192.168.1.20:5060;transport=": 3600}
    [route] = await bindings(h, "sip:1001@sip.local")
    assert route.contact_uri == "sip:1001@192.168.1.20:5060;transport=" and route.transport == 0
