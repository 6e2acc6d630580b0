"""Issue 14: a matchFunc that walks a list inside a walk of a list, over a message with 10,000 header lines, must
not stall the dispatcher. Such a matchFunc is accepted at load (two levels of arrow functions are allowed), so
its evaluation is bounded at run time (routr_ray/dispatch/matchfunc.py MAX_EVAL_STEPS): it stops within
milliseconds, the processor does not match and the next one answers.

On the wire: a client sends the 60 KB MESSAGE over TCP to an in-process EdgePort whose dispatcher is the real
matching runtime (DispatchRuntime, the code that runs in the EdgePort actor and the dispatcher deployment).
Unbounded, the evaluation is 10^8 comparisons (minutes) on the event loop, and the answer never comes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig
from routr_ray.dispatch.runtime import DispatchRuntime
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.proto.convert import from_proto, make_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response, parse
from tests.integration.test_edgeport import FAST, config

pytestmark = pytest.mark.timeout(60)

NESTED = "req => req.message.extensions.some(a => req.message.extensions.some(b => a.value === b.name))"


def answering(reason: str):  # type: ignore[no-untyped-def]
    async def send(batch: list[processor_pb2.MessageRequest]) -> Sequence[processor_pb2.MessageResponse]:
        out = []
        for mreq in batch:
            msg = from_proto(mreq.message)
            assert isinstance(msg, Request)
            out.append(make_message_response(make_response(msg, 200, reason, to_tag="t1")))
        return out

    return send


async def test_a_nested_match_func_over_10k_headers_is_bounded_and_the_next_processor_answers() -> None:
    runtime = DispatchRuntime(lambda name: answering(f"OK from {name}"))
    runtime.apply(DispatcherConfig(processors=(
        ProcessorConfig("nested", "serve://nested", ("MESSAGE",), NESTED),
        ProcessorConfig("fallback", "serve://fallback", ("MESSAGE",), "req => true"),
    )))

    async def dispatch(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        [result] = await runtime.handle_batch([mreq])
        return result if result is not None else processor_pb2.MessageResponse()

    edge = EdgePort(config(), FakeDispatcher(dispatch), options=EdgePortOptions(timers=FAST))
    await edge.start()
    try:
        reader, writer = await asyncio.open_connection(*edge.address("tcp"))
        port = writer.get_extra_info("sockname")[1]
        headers = "".join(f"X{i % 10}:{i % 7}\r\n" for i in range(10_000))
        message = (
            "MESSAGE sip:1002@sip.local SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKnested1\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:1001@sip.local>;tag=a1\r\nTo: <sip:1002@sip.local>\r\n"
            "Call-ID: nested-1@attacker\r\nCSeq: 1 MESSAGE\r\n" + headers + "Content-Length: 0\r\n\r\n"
        ).encode()
        assert 60_000 < len(message) < 65_536  # under the EdgePort's message size cap
        started = time.perf_counter()
        writer.write(message)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        elapsed = time.perf_counter() - started
        answer = parse(head)
        assert isinstance(answer, Response) and answer.status == 200
        assert answer.reason == "OK from fallback"  # the nested matchFunc gave up: not a match
        assert elapsed < 2.0, elapsed
        writer.close()
    finally:
        await edge.stop()
        await runtime.close()
