"""The RTPEngine middleware's decisions (routr_ray/media/middleware.py) with a recording stand-in for the instance
pool (no sockets; the real RTPEngine is in tests/integration/test_media_relay.py): which ng command for which
message, per-branch offers and labels, answers by label, deletes, and the answers a failed relay gets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from routr_ray.media.middleware import (
    BRANCHES_KEY,
    ECHO_KEY,
    RESPONSES_ALL,
    RESPONSES_KEY,
    RtpEngineMiddleware,
)
from routr_ray.media.ng import NgRejected
from routr_ray.media.pool import CallNotFound, Instance, NoInstance
from routr_ray.proto.convert import from_proto, make_message_request
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response, parse

MessageRequest = processor_pb2.MessageRequest
SDP = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"


class FakeEngines:
    """Records every command; answers with an SDP naming the command and its via-branch."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []  # (how, command)
        self.instance = Instance("rtpengine-1", None)  # type: ignore[arg-type]
        self.fail: dict[str, BaseException] = {}  # by command name
        self.located = True

    def reply(self, command: dict[str, Any]) -> dict[str, Any]:
        failure = self.fail.get(command["command"])
        if failure is not None:
            raise failure
        return {"result": "ok", "sdp": f"v=0\r\ns={command['command']} {command.get('via-branch', '-')}\r\n"}

    async def new_call(self, call_id: str, command: dict[str, Any]) -> tuple[Instance, dict[str, Any]]:
        self.commands.append(("new", command))
        return self.instance, self.reply(command)

    async def on(self, instance: Instance, command: dict[str, Any]) -> dict[str, Any]:
        self.commands.append(("on", command))
        return self.reply(command)

    async def existing_call(self, call_id: str, command: dict[str, Any]) -> tuple[Instance, dict[str, Any]]:
        self.commands.append(("existing", command))
        return self.instance, self.reply(command)

    async def locate(self, call_id: str) -> Instance | None:
        return self.instance if self.located else None

    def forget(self, call_id: str) -> None:
        pass

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def names(self) -> list[str]:
        return [c["command"] for _, c in self.commands]


def forwarded(method: str = "INVITE", *, to_tag: str = "", body: str | None = SDP, our_via: str = "UDP",
              branches: list[dict[str, Any]] | None = None, transport: str = "udp") -> MessageRequest:
    """A request as Connect forwards it: our Via on top without a branch, the caller's below."""
    text = (f"{method} sip:1002@127.0.0.1:5071 SIP/2.0\r\n"
            f"Via: SIP/2.0/{our_via} 127.0.0.1:5060;rport\r\n"
            "Via: SIP/2.0/UDP 203.0.113.7:5062;branch=z9hG4bKcaller;rport=5062;received=203.0.113.7\r\n"
            "From: <sip:1001@sip.local>;tag=ftag\r\n"
            f"To: <sip:1002@sip.local>{';tag=' + to_tag if to_tag else ''}\r\n"
            "Call-ID: call-1\r\n"
            f"CSeq: 2 {method}\r\n"
            "Max-Forwards: 69\r\n")
    if body is not None:
        text += f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    else:
        text += "Content-Length: 0\r\n\r\n"
    metadata = {"routr-ray.processor": "connect", "routr-ray.next-hop": "sip:127.0.0.1:5071"}
    if branches is not None:
        metadata[BRANCHES_KEY] = json.dumps(branches)
    return make_message_request(parse(text.encode()), edge_port_ref="ep", sender=("203.0.113.7", 5062, transport),
                                metadata=metadata)


def response(status: int, *, body: str | None = SDP, label: str | None = "o:b0", method: str = "INVITE",
             caller_transport: str = "WSS") -> MessageRequest:
    """A response after Connect removed its Via: the caller's Via on top."""
    reason = {180: "Ringing", 183: "Session Progress", 200: "OK", 486: "Busy Here", 487: "Request Terminated",
              488: "Not Acceptable Here"}[status]
    text = (f"SIP/2.0 {status} {reason}\r\n"
            f"Via: SIP/2.0/{caller_transport} abc.invalid;branch=z9hG4bKcaller;received=203.0.113.7\r\n"
            "From: <sip:1001@sip.local>;tag=ftag\r\nTo: <sip:1002@sip.local>;tag=ttag\r\nCall-ID: call-1\r\n"
            f"CSeq: 2 {method}\r\nContact: <sip:1002@192.168.1.20:5071>\r\n")
    if body is not None:
        text += f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    else:
        text += "Content-Length: 0\r\n\r\n"
    metadata = {"routr-ray.processor": "connect"}
    if label is not None:
        metadata[ECHO_KEY] = label
    return make_message_request(parse(text.encode()), edge_port_ref="ep", sender=("198.51.100.2", 5071, "udp"),
                                metadata=metadata)


def branch(port: int, transport: str = "WS") -> dict[str, Any]:
    text = (f"INVITE sip:1002@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:5062;rport\r\n"
            "Via: SIP/2.0/UDP 203.0.113.7:5062;branch=z9hG4bKcaller\r\nFrom: <sip:1001@sip.local>;tag=ftag\r\n"
            "To: <sip:1002@sip.local>\r\nCall-ID: call-1\r\nCSeq: 2 INVITE\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(SDP)}\r\n\r\n{SDP}")
    return {"message": text, "group": 0, "routr-ray.next-hop": f"sip:127.0.0.1:{port};transport=ws"}


@pytest.fixture
def relay() -> tuple[RtpEngineMiddleware, FakeEngines]:
    engines = FakeEngines()
    return RtpEngineMiddleware(engines=engines), engines  # type: ignore[arg-type]


async def test_an_offer_per_branch_each_with_its_legs_flags_and_label(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    out = await middleware.process(forwarded(branches=[branch(5072), branch(5073, "UDP")]))
    assert [how for how, _ in engines.commands] == ["new", "on", "on"]  # one instance for the whole call
    first, second, third = (c for _, c in engines.commands)
    assert (first["via-branch"], second["via-branch"], third["via-branch"]) == ("b0", "b1", "b2")
    assert first["call-id"] == "call-1" and first["from-tag"] == "ftag" and first["sdp"] == SDP
    assert first["transport-protocol"] == "RTP/AVP" and second["transport-protocol"] == "UDP/TLS/RTP/SAVPF"
    assert third["transport-protocol"] == "RTP/AVP"
    assert first["flags"][0] == "SIP-source-address" and first["received-from"] == ["IP4", "203.0.113.7"]
    message = from_proto(out.message)
    assert isinstance(message, Request) and message.body == b"v=0\r\ns=offer b0\r\n"
    assert message.headers.get("Content-Length") == str(len(message.body))
    assert out.metadata[ECHO_KEY] == "o:b0" and out.metadata[RESPONSES_KEY] == RESPONSES_ALL
    others = json.loads(out.metadata[BRANCHES_KEY])
    assert [o[ECHO_KEY] for o in others] == ["o:b1", "o:b2"]
    assert [parse(o["message"].encode("latin-1")).body for o in others] == [b"v=0\r\ns=offer b1\r\n",
                                                                            b"v=0\r\ns=offer b2\r\n"]
    assert others[0]["routr-ray.next-hop"] == "sip:127.0.0.1:5072;transport=ws"  # the rest of the entry kept
    assert out.metadata["routr-ray.next-hop"] == "sip:127.0.0.1:5071"


async def test_no_instance_answers_503_to_the_caller_with_its_own_vias(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    engines.fail["offer"] = NoInstance("no RTPEngine instance is up")
    out = await middleware.process(forwarded())
    answer = from_proto(out.message)
    assert isinstance(answer, Response) and answer.status == 503
    assert answer.headers.get("Retry-After") == "5"
    assert [v.host for v in answer.via] == ["203.0.113.7"]  # the Via Connect added for the callee is gone
    assert "media relay" in (answer.headers.get("Warning") or "")
    assert middleware.metrics_text().count(b'outcome="refused_503"} 1.0') == 1


async def test_an_sdp_rtpengine_refuses_is_488(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    engines.fail["offer"] = NgRejected("Failed to parse SDP")
    answer = from_proto((await middleware.process(forwarded())).message)
    assert isinstance(answer, Response) and answer.status == 488


async def test_a_late_offer_labels_the_branches_and_the_2xx_offer_is_swapped(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    out = await middleware.process(forwarded(body=None, branches=[branch(5072)]))
    assert engines.commands == [] and out.metadata[ECHO_KEY] == "l:b0"
    assert json.loads(out.metadata[BRANCHES_KEY])[0][ECHO_KEY] == "l:b1"
    await middleware.process(response(200, label="l:b1"))
    ((how, offer),) = engines.commands
    assert offer["command"] == "offer" and (offer["from-tag"], offer["to-tag"]) == ("ttag", "ftag")
    assert offer["via-branch"] == "b1" and offer["transport-protocol"] == "UDP/TLS/RTP/SAVPF"  # toward the caller
    ack = forwarded("ACK", to_tag="ttag")
    out = await middleware.process(ack)
    answer = engines.commands[-1][1]
    assert answer["command"] == "answer" and (answer["from-tag"], answer["to-tag"]) == ("ttag", "ftag")
    assert from_proto(out.message).body == b"v=0\r\ns=answer -\r\n"


async def test_answers_by_label(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    out = await middleware.process(response(183, label="o:b1"))
    (_, answer), = engines.commands
    assert answer["command"] == "answer" and answer["via-branch"] == "b1" and answer["to-tag"] == "ttag"
    assert answer["transport-protocol"] == "UDP/TLS/RTP/SAVPF"  # the caller is on WSS
    assert from_proto(out.message).body == b"v=0\r\ns=answer b1\r\n"
    await middleware.process(response(200, label="r", caller_transport="UDP"))
    answer = engines.commands[-1][1]
    assert "via-branch" not in answer and answer["transport-protocol"] == "RTP/AVP"


async def test_failures_and_cancels_delete_their_branch_only(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    for status in (486, 487):
        out = await middleware.process(response(status, body=None, label="o:b2"))
        assert from_proto(out.message).status == status  # passed on unchanged
    assert [c for _, c in engines.commands] == [
        {"command": "delete", "call-id": "call-1", "from-tag": "ftag", "via-branch": "b2", "to-tag": "ttag"}] * 2
    engines.commands.clear()
    await middleware.process(response(488, body=None, label="r"))  # a refused re-INVITE: the call goes on
    await middleware.process(response(486, body=None, label=None))  # not ours
    await middleware.process(response(180, body=None))
    await middleware.process(response(200, body=SDP, label="o:b0", method="BYE"))
    assert engines.commands == []


async def test_bye_deletes_the_dialog_and_goes_on_even_when_nothing_is_found(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    out = await middleware.process(forwarded("BYE", to_tag="ttag", body=None))
    assert engines.commands == [("existing", {"command": "delete", "call-id": "call-1", "from-tag": "ftag",
                                              "to-tag": "ttag"})]
    assert from_proto(out.message).method == "BYE"
    engines.fail["delete"] = CallNotFound("call-1")
    out = await middleware.process(forwarded("BYE", to_tag="ttag", body=None))
    assert from_proto(out.message).method == "BYE"


async def test_a_reinvite_is_offered_where_the_call_is(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    out = await middleware.process(forwarded(to_tag="ttag"))
    (how, offer), = engines.commands
    assert how == "on" and offer["to-tag"] == "ttag" and "via-branch" not in offer
    assert out.metadata[ECHO_KEY] == "r"
    engines.located = False  # no instance has it (lost with a dead instance): anchored anew
    await middleware.process(forwarded(to_tag="ttag"))
    assert engines.commands[-1][0] == "new"


async def test_an_answer_that_cannot_be_relayed(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    engines.fail["answer"] = NoInstance("no RTPEngine instance is up")
    early = from_proto((await middleware.process(response(183))).message)
    assert isinstance(early, Response) and early.status == 183 and early.body == b""
    assert early.headers.get("Content-Type") is None
    final = from_proto((await middleware.process(response(200))).message)
    assert isinstance(final, Response) and final.status == 503 and final.body == b""
    assert final.headers.get("To") == "<sip:1002@sip.local>;tag=ttag" and not final.headers.get_all("Contact")
    assert final.headers.get("Retry-After") == "5"


async def test_an_unlabelled_answer_is_never_given_to_rtpengine(relay) -> None:  # type: ignore[no-untyped-def]
    """A 1xx/2xx with SDP whose branch this middleware did not relay (an extra 2xx of a fork relayed after its
    branch ended, or a stray/spoofed one): RTPEngine never sees it (an answer with a new To tag would take over the
    callee side of the call) and its SDP, which bypasses the relay, is removed."""
    middleware, engines = relay
    for status in (183, 200):
        stray = from_proto((await middleware.process(response(status, label=None))).message)
        assert isinstance(stray, Response) and stray.status == status and stray.body == b""
        assert stray.headers.get("Content-Type") is None and stray.headers.get("To") == "<sip:1002@sip.local>;tag=ttag"
    assert engines.commands == []


async def test_without_internal_metadata_calls_with_sdp_are_refused(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    request = forwarded()
    request.metadata.clear()
    answer = from_proto((await middleware.process(request)).message)
    assert isinstance(answer, Response) and answer.status == 500 and "internalMetadata" in (
        answer.headers.get("Warning") or "")
    bye = forwarded("BYE", to_tag="ttag", body=None)
    bye.metadata.clear()
    assert (await middleware.process(bye)).message == bye.message
    assert engines.commands == []


async def test_other_messages_pass_through_untouched(relay) -> None:  # type: ignore[no-untyped-def]
    middleware, engines = relay
    for method in ("MESSAGE", "OPTIONS", "INFO", "REGISTER"):
        request = forwarded(method, body="hello")
        out = await middleware.process(request)
        assert out.message == request.message and RESPONSES_KEY not in out.metadata
    # a request the processor has not forwarded yet (our Via has a branch): the middleware is misplaced
    request = forwarded()
    request.message.via[0].branch = "z9hG4bKalready"
    assert (await middleware.process(request)).message == request.message
    assert engines.commands == []
