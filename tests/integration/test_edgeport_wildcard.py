"""Issue 13: an EdgePort listening on a wildcard address (the shipped `bindAddr: 0.0.0.0`) routes calls, advertising
toward each side the address that side reaches it on; UDP answers leave from the address the request was sent to.

The real Connect processor (config/resources as shipped, memory Location) behind a wildcard EdgePort, phones on
UDP sockets at 127.0.0.1 and at 192.0.2.x: inside scripts/in-netns, lo holds 192.0.2.1/24, so the whole /24 is
local and a phone can bind 192.0.2.10 while the server is reached at 192.0.2.1 (a second, non-loopback address
of the host). The test adds 192.0.2.0/24 to the example ACL: it is not a private range, and the shipped ACL allows
only those.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from routr_ray.config.edgeport import EdgePortConfig, HealthConfig, Transport, TransportProtocol
from routr_ray.edge.directives import NEXT_HOP_KEY
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.proto.convert import from_proto, make_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response
from routr_ray.sip.transaction_messages import build_ack
from tests.support.phones import FAST, Phone, shipped_edge

pytestmark = [pytest.mark.timeout(30), pytest.mark.netns,
              pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1",
                                 reason="needs 192.0.2.1/24 on lo (scripts/in-netns)")]

SERVER_LAN = "192.0.2.1"


@pytest.fixture
async def edge() -> AsyncIterator[EdgePort]:
    async with shipped_edge() as port:
        yield port


async def phones(*hosts: str) -> list[Phone]:
    return [await Phone.open(host) for host in hosts]


async def call(edge: EdgePort, caller: Phone, callee: Phone, caller_server: str, callee_server: str
               ) -> tuple[Request, tuple[str, int], Response, tuple[str, int]]:
    """1001 (caller) registers through `caller_server`, 1002 (callee) through `callee_server`; 1001 calls 1002 with
    digest. Returns the INVITE the callee got (and where from) and the 200 the caller got (and where from)."""
    port = edge.address("udp")[1]
    assert (await callee.register("1002", (callee_server, port))).status == 200
    assert (await caller.register("1001", (caller_server, port))).status == 200
    invite = caller.request("INVITE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id="call-1")
    caller.send(invite, (caller_server, port))
    challenge, _ = await caller.final()
    assert challenge.status == 407
    caller.send(build_ack(invite, challenge), (caller_server, port))
    caller.send(caller.answer_challenge(invite, challenge, "1001"), (caller_server, port))
    received, source = await callee.request_of("INVITE")
    ok = received.make_response(200, to_tag="callee")
    for value in received.headers.get_all("Record-Route"):  # RFC 3261 §12.1.1: the UAS copies them
        ok.headers.add("Record-Route", value)
    ok.headers.add("Contact", f"<sip:1002@{callee.host}:{callee.port}>")
    callee.send(ok, source)
    answer, answered_from = await caller.final()
    assert answer.status == 200, bytes(answer).decode()
    return received, source, answer, answered_from


def own_hosts(message: Request | Response) -> tuple[str, list[str]]:
    """The host of the top Via and of every Record-Route entry."""
    return message.via[0].host, [na.uri.host for na in message.record_routes]


async def test_phones_on_loopback_call_each_other_through_a_wildcard_edgeport(edge: EdgePort) -> None:
    caller, callee = await phones("127.0.0.1", "127.0.0.1")
    try:
        invite, source, answer, answered_from = await call(edge, caller, callee, "127.0.0.1", "127.0.0.1")
        via, record_routes = own_hosts(invite)
        assert via == "127.0.0.1" and record_routes == ["127.0.0.1"]  # one entry: both sides reach 127.0.0.1
        assert "r2" not in invite.record_routes[0].uri.params
        assert source[0] == "127.0.0.1" and answered_from[0] == "127.0.0.1"
        assert [na.uri.host for na in answer.record_routes] == ["127.0.0.1"]
    finally:
        caller.close()
        callee.close()


async def test_phones_on_a_second_address_see_that_address_in_every_header_and_packet(edge: EdgePort) -> None:
    """Phones at 192.0.2.10/11 reach the server at 192.0.2.1. Toward a phone's own address the routing table
    answers with that phone's address (it is local): the EdgePort advertises, and sends from, the address the
    request arrived on instead."""
    caller, callee = await phones("192.0.2.10", "192.0.2.11")
    try:
        invite, source, answer, answered_from = await call(edge, caller, callee, SERVER_LAN, SERVER_LAN)
        via, record_routes = own_hosts(invite)
        assert via == SERVER_LAN and record_routes == [SERVER_LAN]
        assert source[0] == SERVER_LAN, "the INVITE must leave from the address in its Via"
        assert answered_from[0] == SERVER_LAN, "the 200 must come from the address the caller sent to"
    finally:
        caller.close()
        callee.close()


async def test_a_call_between_networks_is_double_record_routed(edge: EdgePort) -> None:
    """The caller reaches the server on 127.0.0.1, the callee registered through 192.0.2.1: each side's route set
    starts with the address it can reach (RFC 3261 §16.6 step 4 with r2=on)."""
    caller, callee = await phones("127.0.0.1", "192.0.2.11")
    try:
        invite, source, answer, _ = await call(edge, caller, callee, "127.0.0.1", SERVER_LAN)
        via, record_routes = own_hosts(invite)
        assert via == SERVER_LAN and record_routes == [SERVER_LAN, "127.0.0.1"]
        assert all(na.uri.params.get("r2") == "on" for na in invite.record_routes)
        assert source[0] == SERVER_LAN
        # the caller's route set (the 200's Record-Route, reversed) starts with the address it can reach
        assert [na.uri.host for na in reversed(answer.record_routes)][0] == "127.0.0.1"
    finally:
        caller.close()
        callee.close()


async def test_options_to_the_address_a_request_arrived_on_is_answered_by_the_edgeport(edge: EdgePort) -> None:
    (phone,) = await phones("192.0.2.10")
    try:
        port = edge.address("udp")[1]
        options = phone.request("OPTIONS", f"sip:{SERVER_LAN}:{port}", "1001", f"sip:{SERVER_LAN}", call_id="opt")
        phone.send(options, (SERVER_LAN, port))
        answer, source = await phone.final()
        assert answer.status == 200 and source == (SERVER_LAN, port)
    finally:
        phone.close()


async def test_answers_leave_from_the_address_the_request_was_sent_to(edge: EdgePort) -> None:
    """All of 127/8 is this host's: a phone at 127.0.0.9 that writes to 127.0.0.5 gets its answers from 127.0.0.5
    (IP_PKTINFO). Without it the kernel would pick 127.0.0.1 by route, and the phone would see a stranger."""
    (phone,) = await phones("127.0.0.9")
    try:
        port = edge.address("udp")[1]
        request = phone.request("REGISTER", "sip:sip.local", "1001", "sip:1001@sip.local", call_id="reg-src")
        phone.send(request, ("127.0.0.5", port))
        challenge, source = await phone.final()
        assert challenge.status == 401 and source == ("127.0.0.5", port)
        phone.send(phone.answer_challenge(request, challenge, "1001"), ("127.0.0.5", port))
        answer, source = await phone.final()
        assert answer.status == 200 and source == ("127.0.0.5", port)
    finally:
        phone.close()


async def test_the_caller_side_record_route_names_the_address_the_caller_wrote_to(edge: EdgePort) -> None:
    """RFC 3261 §16.6 step 4: the caller's route set must start with an address it reaches us on, the one its
    INVITE was sent to (here 127.0.0.5, another loopback address than the callee's side)."""
    caller, callee = await phones("127.0.0.9", "192.0.2.11")
    try:
        invite, _, answer, answered_from = await call(edge, caller, callee, "127.0.0.5", SERVER_LAN)
        assert own_hosts(invite) == (SERVER_LAN, [SERVER_LAN, "127.0.0.5"])
        assert answered_from[0] == "127.0.0.5"
    finally:
        caller.close()
        callee.close()


async def test_a_processor_that_knows_no_address_leaves_the_wildcard_and_the_edgeport_fills_it_in() -> None:
    """A processor (Routr-style, external) that writes the wildcard listening point itself into our Via and
    Record-Route: the EdgePort writes its source address toward the next hop (the routing table's answer:
    127.0.0.1 toward 127.0.0.9) and, in the other entry, the address the request arrived on."""
    callee = await Phone.open("127.0.0.9")
    caller = await Phone.open("192.0.2.10")

    def processor(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        msg = from_proto(mreq.message)
        if isinstance(msg, Response):
            msg.headers.remove_first_value("Via")
            return make_message_response(msg)
        port = mreq.listening_points[0].port
        msg.headers.prepend("Record-Route", f"<sip:0.0.0.0:{port};transport=udp;r2=on;lr>")
        msg.headers.prepend("Record-Route", f"<sip:0.0.0.0:{port};transport=udp;r2=on;lr>")
        msg.headers.prepend("Via", f"SIP/2.0/UDP 0.0.0.0:{port};rport")
        return make_message_response(msg, metadata={NEXT_HOP_KEY: f"sip:127.0.0.9:{callee.port}"})

    config = EdgePortConfig(ref="wild", transports=(Transport(TransportProtocol.UDP, 0, "0.0.0.0"),),
                            health=HealthConfig(enabled=False))
    edge = EdgePort(config, FakeDispatcher(processor), options=EdgePortOptions(timers=FAST))
    await edge.start()
    try:
        port = edge.address("udp")[1]
        caller.send(caller.request("MESSAGE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id="m1"),
                    (SERVER_LAN, port))
        message, source = await callee.request_of("MESSAGE")
        assert own_hosts(message) == ("127.0.0.1", ["127.0.0.1", SERVER_LAN])
        assert source == ("127.0.0.1", port)
    finally:
        await edge.stop()
        caller.close()
        callee.close()
