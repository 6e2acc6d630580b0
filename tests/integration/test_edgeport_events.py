"""Call events from a live EdgePort (issue 7 item 6): endpoint.registered, call.started, call.ended."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from test_edgeport import FAST, UdpPeer, config, fake_processor, request

from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.observability.call_events import CallEventEmitter
from routr_ray.sip import Response

pytestmark = pytest.mark.timeout(30)


class Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def publish(self, event: object) -> bool:
        self.events.append(event)
        return True

    def names(self) -> list[str]:
        return [getattr(e, "name", None) or getattr(e, "type", None) or type(e).__name__ for e in self.events]


@pytest.fixture
async def edge_and_events() -> AsyncIterator[tuple[EdgePort, Recorder]]:
    recorder = Recorder()
    edge = EdgePort(config(), FakeDispatcher(fake_processor()), options=EdgePortOptions(timers=FAST, cancel_wait=0.4),
                    events=CallEventEmitter(recorder))
    await edge.start()
    yield edge, recorder
    await edge.stop()


async def test_register_answered_200_emits_endpoint_registered(edge_and_events: tuple[EdgePort, Recorder]) -> None:
    edge, recorder = edge_and_events
    client = await UdpPeer.open()
    try:
        client.send(request("REGISTER", "sip:example.com", client.port,
                            extra="Contact: <sip:1001@127.0.0.1>\r\nExpires: 600\r\n"), edge.address("udp"))
        answer = await client.recv()
        assert isinstance(answer, Response) and answer.status == 200
    finally:
        client.close()
    assert recorder.names() == ["endpoint.registered"]


async def test_forwarded_invite_emits_call_started_and_its_failure_call_ended(
    edge_and_events: tuple[EdgePort, Recorder],
) -> None:
    edge, recorder = edge_and_events
    caller, callee = await UdpPeer.open(), await UdpPeer.open()
    try:
        caller.send(request("INVITE", f"sip:1002@127.0.0.1:{callee.port}", caller.port, call_id="ev-1@test"),
                    edge.address("udp"))
        invite = await callee.recv()
        assert recorder.names() == ["call.started"]
        busy = (
            "SIP/2.0 486 Busy Here\r\n"
            + "".join(f"Via: {v}\r\n" for v in invite.headers.get_all("Via"))
            + f"From: {invite.headers.get('From')}\r\nTo: {invite.headers.get('To')};tag=callee\r\n"
            f"Call-ID: {invite.call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        callee.send(busy.encode(), edge.address("udp"))
        final = await caller.recv_final()
        assert final.status == 486
    finally:
        caller.close()
        callee.close()
    assert recorder.names() == ["call.started", "call.ended"]
