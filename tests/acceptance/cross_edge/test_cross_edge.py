"""Issue 17 "Done when": two EdgePorts in one config dir (the extras server: edgeport-01 UDP/TCP 15060 from
edgeport.yaml, edgeport-02 TCP 17060 / WS 17062 from edgeport2.yaml). 1002 registers over TCP (a SIPp that
keeps its one connection) or WS (a WebSocket phone of this test) at edgeport-02; 1001 (SIPp over UDP) calls it at
edgeport-01; the call completes, and the BYE comes from either side. Every message to 1002 goes over its own
connection to edgeport-02; every message to 1001 comes from edgeport-01's address."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import pytest

from tests.support.acceptance import EXTRAS, Sipp, SippProcess
from tests.support.cross_edge import DialogSide, StreamPhone, answer

EDGE2_TCP, EDGE2_WS = EXTRAS.ports[6060], EXTRAS.ports[6062]
EDGE1_UDP = EXTRAS.sip_port


def wait_registered(callee: SippProcess, timeout: float = 15.0) -> None:
    log = callee.work / "messages.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and re.search(r"^SIP/2\.0 200 ", log.read_text(errors="replace"), flags=re.MULTILINE):
            return
        if callee.process.poll() is not None:
            raise AssertionError(callee.result().report())
        time.sleep(0.1)
    raise AssertionError(f"1002 did not register at edgeport-02 within {timeout:.0f}s:\n{callee.result().report()}")


@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
def test_udp_caller_at_edgeport_01_calls_a_tcp_callee_at_edgeport_02(sipp_extras: Sipp, hangs_up: str) -> None:
    # SIPp maps what it receives to a call by Call-ID: both use this one (see cross_edge/callee_tcp.xml)
    call_id = f"xedge-{uuid.uuid4().hex[:10]}@127.0.0.1"
    callee = sipp_extras.start("cross_edge/callee_tcp.xml", transport="t1", remote=("127.0.0.1", EDGE2_TCP),
                               auth=("1002", sipp_extras.password("1002")), timeout_s=30,
                               extra=("-set", "hangs_up", hangs_up, "-cid_str", call_id))
    wait_registered(callee)
    scenario = "agent_call/uac.xml" if hangs_up == "caller" else "agent_call/uac_callee_hangs_up.xml"
    caller = sipp_extras.run(scenario, service="1002", keys={"caller": "1001"},
                             auth=("1001", sipp_extras.password("1001")), extra=("-cid_str", call_id))
    answered = callee.result(timeout=30)
    sipp_extras.assert_ok(caller, answered)
    (invite,) = answered.received("INVITE")
    # toward 1002 everything names edgeport-02 (its connection is there); the caller's side names edgeport-01
    assert re.search(rf"^Via: SIP/2\.0/TCP 127\.0\.0\.1:{EDGE2_TCP};", invite, flags=re.MULTILINE), invite
    record_routes = re.findall(r"^Record-Route: <(sip:[^>]+)>", invite, flags=re.MULTILINE)
    assert len(record_routes) == 2, invite
    assert record_routes[0].startswith(f"sip:127.0.0.1:{EDGE2_TCP};transport=tcp;") and ";rre=" in record_routes[0]
    assert record_routes[1].startswith(f"sip:127.0.0.1:{EDGE1_UDP};transport=udp;") and ";rre=" in record_routes[1]
    assert "0.0.0.0" not in invite
    if hangs_up == "callee":
        (bye,) = caller.received("BYE")
        assert re.search(rf"^Via: SIP/2\.0/UDP 127\.0\.0\.1:{EDGE1_UDP};", bye, flags=re.MULTILINE), bye
    else:
        assert answered.received("BYE")


@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
def test_udp_caller_at_edgeport_01_calls_a_websocket_callee_at_edgeport_02(sipp_extras: Sipp, hangs_up: str) -> None:
    scenario = "agent_call/uac.xml" if hangs_up == "caller" else "agent_call/uac_callee_hangs_up.xml"

    async def play() -> tuple[str, object]:
        phone = await StreamPhone.open("WS", ("127.0.0.1", EDGE2_WS))
        caller: SippProcess | None = None
        try:
            assert (await phone.register("1002")).status == 200
            caller = sipp_extras.start(scenario, service="1002", keys={"caller": "1001"},
                                       auth=("1001", sipp_extras.password("1001")))
            invite, source = await phone.request_of("INVITE", timeout=15)
            answer(phone, invite, 180, source)
            ok = answer(phone, invite, 200, source)
            await phone.request_of("ACK", timeout=10)
            if hangs_up == "caller":
                bye, _ = await phone.request_of("BYE", timeout=10)
                phone.send(bye.make_response(200))
            else:
                phone.send(DialogSide.callee(phone, invite, ok).request("BYE"))
                final, _ = await phone.final(timeout=10)
                assert final.status == 200 and final.cseq is not None and final.cseq.method == "BYE"
            return bytes(invite).decode(), await asyncio.to_thread(caller.result)  # the loop keeps sending
        finally:
            await phone.unregister("1002")  # a binding left behind would ring in later calls (forking)
            await phone.close()
            if caller is not None and caller.process.poll() is None:
                caller.process.kill()

    invite, result = asyncio.run(play())
    sipp_extras.assert_ok(result)  # type: ignore[arg-type]
    assert re.search(rf"^Via: SIP/2\.0/WS 127\.0\.0\.1:{EDGE2_WS};", invite, flags=re.MULTILINE), invite
    record_routes = re.findall(r"^Record-Route: <(sip:[^>]+)>", invite, flags=re.MULTILINE)
    assert record_routes[0].startswith(f"sip:127.0.0.1:{EDGE2_WS};transport=ws;"), invite
    assert record_routes[1].startswith(f"sip:127.0.0.1:{EDGE1_UDP};transport=udp;"), invite
