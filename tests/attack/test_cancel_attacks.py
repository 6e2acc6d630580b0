"""CANCEL (issue 14 item 1): Connect never routes a CANCEL. The EdgePort answers one hop by hop (481 when it matches
no INVITE of its own); one that reaches Connect anyway (a dispatcher caller on 51901) gets 481 and never the
trunk's credentials (`routr-ray.gateway-auth`), whatever its Request-URI."""

from __future__ import annotations

import pytest

from routr_ray.proto.convert import make_message_request, read_message_response
from routr_ray.sip import Response, parse
from tests.attack.connect_stack import DOMAIN, PREMIUM, Phone, connect_stack, message, nothing_arrives

pytestmark = pytest.mark.timeout(30)


async def test_a_cancel_with_a_pstn_request_uri_gets_481_and_no_credentials() -> None:
    async with connect_stack() as stack:
        attacker = await Phone.open("1001", stack)
        pstn = f"sip:{PREMIUM}@{DOMAIN}"
        # on the wire: the EdgePort has no INVITE for it
        answer = await attacker.request("CANCEL", pstn, to=pstn, call_id="cancel-1")
        assert answer.status == 481
        # straight into Connect, as a caller of the dispatcher's Processor interface would
        cancel = parse(message("CANCEL", pstn, via=attacker.via, from_=f"<sip:1001@{DOMAIN}>;tag=x", to=f"<{pstn}>",
                               call_id="cancel-2", cseq=1))
        listening = [(lp.host, lp.port, {0: "UDP", 1: "TCP"}.get(lp.transport, "WS"))
                     for lp in stack.edge.listening_points]
        for ruri in (pstn, "sip:+17066041487@trunk01.sip.local", f"sip:1002@{DOMAIN}"):
            cancel.uri = ruri
            mreq = make_message_request(cancel, edge_port_ref="edge-test", sender=("127.0.0.1", attacker.peer.port,
                                                                                    "UDP"),
                                        listening_points=listening)
            resp = await stack.connect.process(mreq)
            out = read_message_response(resp)
            assert isinstance(out, Response) and out.status == 481, ruri
            assert "routr-ray.gateway-auth" not in resp.metadata and b"trunk-password" not in resp.SerializeToString()
        await nothing_arrives(stack.carrier)
        attacker.close()
