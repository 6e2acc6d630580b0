"""UDP REGISTER round trips per second through the EdgePort with the in-process fake dispatcher.

    python benchmarks/bench_edgeport.py [--seconds 5] [--in-flight 32]

One asyncio client socket keeps ``--in-flight`` REGISTERs outstanding (each answered 200 by the fake processor:
SIP -> MessageRequest -> SIP -> 200 -> MessageResponse -> SIP, as a real hop would convert). Client and EdgePort
share one process and one core, so the figure is a lower bound for the EdgePort alone.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import time

from routr_ray.config.edgeport import EdgePortConfig, HealthConfig, RateLimit, Transport, TransportProtocol
from routr_ray.edge.dispatcher_client import PROCESSOR_METADATA_KEY, FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.proto.convert import from_proto, make_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request

META = {PROCESSOR_METADATA_KEY: "bench"}


def registrar(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
    msg = from_proto(mreq.message)
    assert isinstance(msg, Request)
    return make_message_response(make_response(msg, 200, to_tag="t1"), metadata=META)


def proto_level_registrar(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
    """The 200 made on the protobuf directly (no SIP conversion in the fake): isolates the EdgePort's own cost."""
    resp = processor_pb2.MessageResponse()
    resp.message.CopyFrom(mreq.message)
    resp.message.response_type = 7  # OK
    resp.message.status_code = 200
    resp.message.reason_phrase = "OK"
    resp.metadata.update(META)
    return resp


class Client(asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int], in_flight: int) -> None:
        self.target = target
        self.in_flight = in_flight
        self.transport: asyncio.DatagramTransport | None = None
        self.sent = 0
        self.done = 0
        self.running = True
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def send_one(self) -> None:
        assert self.transport is not None
        n = self.sent
        self.sent += 1
        self.transport.sendto(
            (
                f"REGISTER sip:example.com SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bKb{n}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:1001@example.com>;tag=f{n}\r\nTo: <sip:1001@example.com>\r\n"
                f"Call-ID: bench-{n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@127.0.0.1:{self.port}>\r\n"
                f"Expires: 3600\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            self.target,
        )

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.startswith(b"SIP/2.0 200"):
            self.done += 1
            if self.running:
                self.send_one()

    def error_received(self, exc: Exception) -> None:
        pass


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--proto-level-fake", action="store_true",
                        help="the fake answers on the protobuf without converting to SIP and back")
    parser.add_argument("--tune-gc", action="store_true", help="EdgePortOptions(tune_gc=True): gc.freeze + gen-0 20000")
    args = parser.parse_args()
    config = EdgePortConfig(
        transports=(Transport(TransportProtocol.UDP, 0, "127.0.0.1"),),
        rate_limit=RateLimit(trusted=(ipaddress.ip_network("127.0.0.1/32"),)),
        health=HealthConfig(enabled=False),
    )
    edge = EdgePort(config, FakeDispatcher(proto_level_registrar if args.proto_level_fake else registrar, record=False), options=EdgePortOptions(tune_gc=args.tune_gc))
    await edge.start()
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        lambda: Client(edge.address("udp"), args.in_flight), local_addr=("127.0.0.1", 0)
    )
    for _ in range(args.in_flight):
        client.send_one()
    await asyncio.sleep(1.0)  # warm up
    start_done, started, cpu_started = client.done, time.perf_counter(), time.process_time()
    last_done = client.done
    while time.perf_counter() - started < args.seconds:
        await asyncio.sleep(0.25)
        if client.done == last_done:  # stalled: datagrams were lost, put the window back in flight
            for _ in range(args.in_flight):
                client.send_one()
        last_done = client.done
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    client.running = False
    done = client.done - start_done
    rate = done / elapsed
    batcher = edge.dispatcher.batcher
    print(f"UDP REGISTER round trips through the EdgePort (fake dispatcher, {args.in_flight} in flight): "
          f"{'proto-level fake, ' if args.proto_level_fake else ''}{'tuned gc, ' if args.tune_gc else ''}{rate:,.0f}/s over {elapsed:.1f}s; dispatcher calls {batcher.calls}, "
          f"avg batch {batcher.items / max(batcher.calls, 1):.1f}; "
          f"CPU {cpu / max(done, 1) * 1e6:,.0f} us per round trip (client + EdgePort + fake, one process)")
    transport.close()
    await edge.stop()


if __name__ == "__main__":
    asyncio.run(main())
