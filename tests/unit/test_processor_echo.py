"""The echo processor answers every request with 200 OK, passes responses through, absorbs ACK."""

from __future__ import annotations

import pytest
from test_processor_support import message_request, sip_request, sip_response, wire_response

from routr_ray.processors import EchoProcessor, is_drop, sdk
from routr_ray.proto.gen import sipmessage_pb2


@pytest.mark.parametrize("method", ["OPTIONS", "REGISTER", "INVITE", "MESSAGE", "BYE"])
async def test_echo_answers_200(method: str) -> None:
    resp = await EchoProcessor().process(message_request(sip_request(method)))
    assert resp.message.response_type == sipmessage_pb2.OK and resp.message.status_code == 200
    sip = wire_response(resp)
    assert (sip.status, sip.reason) == (200, "OK")
    assert sip.cseq is not None and sip.cseq.method == method


async def test_echo_passes_responses_through_and_absorbs_ack() -> None:
    echo = EchoProcessor()
    response = message_request(sip_response(486, "Busy Here"))
    assert (await echo.process(response)).message == response.message
    assert is_drop(await echo.process(message_request(sip_request("ACK"))))


async def test_echo_never_converts_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(pm):  # type: ignore[no-untyped-def]
        raise AssertionError("converted")

    monkeypatch.setattr(sdk, "from_proto", boom)
    out = await EchoProcessor().process_batch([message_request(sip_request("OPTIONS"))] * 3)
    assert [r.message.status_code for r in out] == [200, 200, 200]
