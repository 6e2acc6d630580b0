"""The processor pipeline: order, short-circuits, result kinds, ACK/response rules, errors, batches."""

from __future__ import annotations

import asyncio

import pytest
from test_processor_support import message_request, sip_request, sip_response, wire, wire_response

from routr_ray.processors import sdk
from routr_ray.processors.alterations import Interface, add_self_via, decrease_max_forwards
from routr_ray.processors.sdk import Context, Processor, drop, is_drop
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response, parse_uri

OPTIONS = message_request(sip_request("OPTIONS"))


class Recorder(Processor):
    """Records the steps; ``stop_at`` names the step that answers."""

    server_header = "routr-ray-test"

    def __init__(self, stop_at: str | None = None) -> None:
        self.calls: list[str] = []
        self.stop_at = stop_at

    def _step(self, name: str, ctx: Context) -> sdk.Result:
        self.calls.append(name)
        if name == self.stop_at:
            return {"validate": 400, "authenticate": 401, "authorize": 403}[name]
        return None

    def validate(self, ctx: Context) -> sdk.Result:
        return self._step("validate", ctx)

    async def authenticate(self, ctx: Context) -> sdk.Result:  # async and sync steps both work
        await asyncio.sleep(0)
        return self._step("authenticate", ctx)

    def authorize(self, ctx: Context) -> sdk.Result:
        return self._step("authorize", ctx)

    async def handle(self, ctx: Context) -> sdk.Result:
        self.calls.append("handle")
        return ctx.ok()


async def test_pipeline_runs_the_steps_in_order() -> None:
    p = Recorder()
    resp = await p.process(OPTIONS)
    assert p.calls == ["validate", "authenticate", "authorize", "handle"]
    sip = wire_response(resp)
    assert sip.status == 200 and sip.headers.get("Server") == "routr-ray-test"


@pytest.mark.parametrize(("stop_at", "status", "calls"), [
    ("validate", 400, ["validate"]),
    ("authenticate", 401, ["validate", "authenticate"]),
    ("authorize", 403, ["validate", "authenticate", "authorize"]),
])
async def test_a_step_that_answers_ends_the_pipeline(stop_at: str, status: int, calls: list[str]) -> None:
    p = Recorder(stop_at)
    resp = await p.process(OPTIONS)
    assert p.calls == calls
    assert resp.message.status_code == status
    assert wire_response(resp).headers.get("Server") == "routr-ray-test"


def test_only_overridden_steps_are_called() -> None:
    class OnlyAuthz(Processor):
        def authorize(self, ctx: Context) -> sdk.Result:
            return None

    assert OnlyAuthz._hooks == ("authorize",)
    assert Recorder._hooks == ("validate", "authenticate", "authorize")


async def test_missing_mandatory_header_is_400_and_no_via_is_dropped() -> None:
    p = Recorder()
    no_cseq = processor_pb2.MessageRequest()
    no_cseq.CopyFrom(OPTIONS)
    exts = [e for e in no_cseq.message.extensions if e.name != "CSeq"]
    assert len(exts) == len(no_cseq.message.extensions) - 1
    del no_cseq.message.extensions[:]
    no_cseq.message.extensions.extend(exts)
    resp = await p.process(no_cseq)
    assert resp.message.status_code == 400
    assert resp.message.reason_phrase == "Missing CSeq header"
    assert p.calls == []
    no_via = processor_pb2.MessageRequest()
    no_via.CopyFrom(OPTIONS)
    no_via.message.ClearField("via")
    assert is_drop(await p.process(no_via))


async def test_default_handle_is_501() -> None:
    assert (await Processor().process(OPTIONS)).message.status_code == 501


async def test_ack_is_never_answered() -> None:
    p = Recorder()
    resp = await p.process(message_request(sip_request("ACK")))
    assert p.calls == ["validate", "authenticate", "authorize", "handle"]
    assert is_drop(resp) and not resp.HasField("message")


async def test_responses_skip_the_request_steps_and_pass_through() -> None:
    p = Recorder()
    req = message_request(sip_response(180, "Ringing"))
    resp = await p.process(req)
    assert p.calls == []
    assert resp.message == req.message and resp.sender == req.sender


async def test_result_kinds_int_sip_message_and_none() -> None:
    class Kinds(Processor):
        def __init__(self, result: object) -> None:
            self.result = result

        def handle(self, ctx: Context) -> sdk.Result:
            r = self.result
            return r(ctx) if callable(r) else r  # type: ignore[return-value]

    assert (await Kinds(486).process(OPTIONS)).message.status_code == 486
    assert is_drop(await Kinds(None).process(OPTIONS))

    intf = Interface("203.0.113.1", 5060, "UDP")

    def forward(ctx: Context) -> Request:
        msg = ctx.message
        assert isinstance(msg, Request)
        return add_self_via(decrease_max_forwards(msg), intf)

    invite = message_request(sip_request("INVITE"), metadata={"a": "1"})
    resp = await Kinds(forward).process(invite)
    out = wire(resp)
    assert isinstance(out, Request) and out.method == "INVITE"
    assert out.max_forwards == 69 and out.headers.get_all("Via")[0] == "SIP/2.0/UDP 203.0.113.1:5060;rport"
    assert resp.sender == invite.sender and resp.metadata["a"] == "1"


async def test_message_is_converted_at_most_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = sdk.from_proto

    def counting(pm):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(pm)

    monkeypatch.setattr(sdk, "from_proto", counting)

    class ReadsTwice(Processor):
        def validate(self, ctx: Context) -> sdk.Result:
            assert isinstance(ctx.message, Request)
            return None

        def handle(self, ctx: Context) -> sdk.Result:
            return ctx.forward(ctx.message)

    await ReadsTwice().process(OPTIONS)
    assert calls == [1]
    calls.clear()
    await Recorder().process(OPTIONS)  # never reads ctx.message
    assert calls == []


@pytest.mark.parametrize(("exc", "status"), [
    (RuntimeError("boom"), 500),
    (sdk.TooManyHops("Max-Forwards is 0"), 483),
])
async def test_a_failing_step_answers_in_sip(exc: Exception, status: int) -> None:
    class Fails(Processor):
        def handle(self, ctx: Context) -> sdk.Result:
            raise exc

    resp = await Fails().process(OPTIONS)
    assert resp.message.status_code == status
    assert wire_response(resp).headers.get("CSeq") == "314159 OPTIONS"
    assert is_drop(await Fails().process(message_request(sip_request("ACK"))))

    class FailsOnResponses(Processor):
        def handle_response(self, ctx: Context) -> sdk.Result:
            raise exc

    assert is_drop(await FailsOnResponses().process(message_request(sip_response())))


async def test_unparsable_message_is_400() -> None:
    class Reads(Processor):
        def handle(self, ctx: Context) -> sdk.Result:
            return ctx.forward(ctx.message)

    bad = processor_pb2.MessageRequest()
    bad.CopyFrom(OPTIONS)
    bad.message.request_uri.raw = "not a uri"
    bad.message.request_uri.host = ""  # typed fields changed: rendered from them -> "sip:" (bad)
    resp = await Reads().process(bad)
    assert resp.message.status_code == 400


async def test_batch_keeps_order_and_isolates_failures() -> None:
    class PerUser(Processor):
        def handle(self, ctx: Context) -> sdk.Result:
            if ctx.request.metadata.get("fail"):
                raise ValueError("this one")
            return int(ctx.request.metadata["status"])

    reqs = [message_request(sip_request("OPTIONS"), metadata={"status": str(s)}) for s in (200, 404, 486)]
    reqs.insert(1, message_request(sip_request("OPTIONS"), metadata={"fail": "1"}))
    out = await PerUser().process_batch(reqs)
    assert [r.message.status_code for r in out] == [200, 500, 404, 486]


async def test_batch_maps_an_exception_from_an_overridden_process() -> None:
    class Raw(Processor):
        async def process(self, request: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
            if request.metadata.get("fail"):
                raise RuntimeError("raw")
            return drop()

    out = await Raw().process_batch([OPTIONS, message_request(sip_request("OPTIONS"), metadata={"fail": "1"})])
    assert is_drop(out[0]) and out[1].message.status_code == 500


async def test_process_serialized_round_trip_with_a_corrupt_item() -> None:
    class Ok(Processor):
        def handle(self, ctx: Context) -> sdk.Result:
            return ctx.ok()

    out = await Ok().process_serialized([OPTIONS.SerializeToString(), b"\xff\xff\xff"])
    first = processor_pb2.MessageResponse.FromString(out[0])
    assert first.message.status_code == 200 and out[1] == b""


async def test_context_helpers() -> None:
    ctx = Context(message_request(sip_request("INVITE")))
    assert ctx.method == "INVITE" and not ctx.is_response
    assert ctx.sender == Interface("198.51.100.7", 40000, "UDP")
    assert ctx.edge_interface("198.51.100.7", "UDP") == Interface("203.0.113.1", 5060, "UDP")
    assert ctx.own_addresses().names_us(parse_uri("sip:203.0.113.1:5060"))
    resp_ctx = Context(message_request(sip_response(200, "OK", "BYE")))
    assert resp_ctx.is_response and resp_ctx.method == "BYE"
    assert isinstance(resp_ctx.message, Response)
    assert ctx.challenge('Digest realm="x", nonce="y"', proxy=True).message.status_code == 407
    assert ctx.forbidden().message.status_code == 403 and ctx.not_found().message.status_code == 404
    assert ctx.bad_request("no").message.reason_phrase == "no"
    assert ctx.respond(480).message.status_code == 480
    assert is_drop(ctx.drop())
