"""The trunk registrar's REGISTERs leave through a real EdgePort (edge/originate.py) to a provider on 127.0.0.1:
our Via and Contact get the EdgePort's address, the provider's 401 is answered with the trunk's credentials, the
granted interval is honoured; a provider that never answers is a failed round (Timer F), never a hang."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.edge.originate import Originator
from routr_ray.sip import Request
from routr_ray.sip.digest import DigestAuthenticator, find_credentials
from routr_ray.trunks.registrar import TrunkRegistrar
from routr_ray.trunks.registration import RegistrationSpec, RegState
from tests.integration.test_edgeport import FAST, UdpPeer, config, fake_processor

pytestmark = pytest.mark.timeout(30)
REALM = "provider.test"


@pytest.fixture
async def edge() -> AsyncIterator[EdgePort]:
    port = EdgePort(config(), FakeDispatcher(fake_processor()), options=EdgePortOptions(timers=FAST))
    await port.start()
    yield port
    await port.stop()


def spec_for(port: int) -> RegistrationSpec:
    return RegistrationSpec(trunk_ref="trunk-01", target=f"sip:127.0.0.1:{port}", request_uri=f"sip:127.0.0.1:{port}",
                            aor="sip:trunk01@127.0.0.1", username="trunk01", password="1234", contact_token="TKN")


async def provider(peer: UdpPeer, edge: EdgePort, digest: DigestAuthenticator, grant: int) -> list[Request]:
    """Challenge the first REGISTER, grant the second; returns both."""
    seen = []
    for _ in range(2):
        register = await peer.recv()
        assert isinstance(register, Request)
        seen.append(register)
        creds = find_credentials(register.headers.get_all("Authorization"), REALM)
        if creds is None or not digest.verify(creds, method="REGISTER", realm=REALM, now=0, password="1234").ok:
            extra = [("WWW-Authenticate", value) for value in digest.challenge(REALM, now=0)]
            peer.send(make_response(register, 401, to_tag="p", extra=extra), edge.address("udp"))
        else:
            (contact,) = register.contacts
            peer.send(make_response(register, 200, to_tag="p", extra=[("Contact", f"<{contact.uri}>;expires={grant}")]),
                      edge.address("udp"))
    return seen


async def test_register_through_the_edgeport_with_digest(edge: EdgePort) -> None:
    peer = await UdpPeer.open()
    digest = DigestAuthenticator(b"p" * 32, nonce_ttl=3600)
    try:
        registrar = TrunkRegistrar(Originator(edge).send)
        registrar.update([spec_for(peer.port)])
        answered = asyncio.create_task(provider(peer, edge, digest, grant=30))
        await asyncio.wait_for(registrar.step(), 5)
        first, second = await answered
        host, port = edge.address("udp")
        for register in (first, second):
            via = register.via[0]
            assert (via.host, via.port, via.transport) == (host, port, "UDP") and via.branch.startswith("z9hG4bK")
            (contact,) = register.contacts
            assert (contact.uri.host, contact.uri.port) == (host, port)
            assert "bnc" in contact.uri.params and contact.uri.params["rtk"] == "TKN" and contact.uri.user is None
        assert first.via[0].branch != second.via[0].branch
        (status,) = registrar.statuses()
        assert status.state is RegState.REGISTERED and status.granted == 30
        await asyncio.sleep(FAST.t4 * 2)
        assert not edge.client_txns.values()  # nothing left behind once Timer K (T4 over UDP) has fired
    finally:
        peer.close()


async def test_a_provider_that_never_answers_is_a_failed_round(edge: EdgePort) -> None:
    peer = await UdpPeer.open()
    try:
        registrar = TrunkRegistrar(Originator(edge).send, base_backoff=60)
        registrar.update([spec_for(peer.port)])
        await asyncio.wait_for(registrar.step(), 5)  # Timer F = 64 * T1 = 1.28 s here
        retransmissions = peer.queue.qsize()
        assert retransmissions >= 3  # Timer E: the REGISTER was retransmitted over UDP
        (status,) = registrar.statuses()
        assert status.state is RegState.FAILED and "no response" in status.last_error
    finally:
        peer.close()


async def test_a_provider_outside_our_localnets_sees_the_external_address() -> None:
    """Behind NAT (externalAddrs), a provider on no network of ours gets the external address in Via and
    Contact (it must reach us back there); the request still leaves from our socket."""
    edge = EdgePort(config(external_addrs=("203.0.113.9",), localnets=("10.0.0.0/8",)),
                    FakeDispatcher(fake_processor()), options=EdgePortOptions(timers=FAST))
    await edge.start()
    peer = await UdpPeer.open()
    try:
        registrar = TrunkRegistrar(Originator(edge).send)
        registrar.update([spec_for(peer.port)])
        step = asyncio.create_task(registrar.step())
        register = await peer.recv()
        assert isinstance(register, Request)
        port = edge.address("udp")[1]
        assert (register.via[0].host, register.via[0].port) == ("203.0.113.9", port)
        (contact,) = register.contacts
        assert (contact.uri.host, contact.uri.port) == ("203.0.113.9", port)
        peer.send(make_response(register, 403, to_tag="p"), edge.address("udp"))
        await asyncio.wait_for(step, 5)
        (status,) = registrar.statuses()
        assert status.state is RegState.FAILED and status.last_error.startswith("403")
    finally:
        peer.close()
        await edge.stop()
