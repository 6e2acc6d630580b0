"""UDP REGISTER round trips per second through the EdgePort with the in-process fake dispatcher.

    python benchmarks/bench_edgeport.py [--seconds 5] [--in-flight 32] [--sockets 16] [--workers 1]
                                        [--proto-level-fake] [--no-tune-gc] [--asyncio-loop] [--same-process]

The EdgePort runs as in production (uvloop, the loop a Ray actor runs on; ``EdgePortOptions(tune_gc=True)`` as
the EdgePort actor sets it) with a fake dispatcher in its own process: every REGISTER is answered 200 by the
fake (SIP -> MessageRequest -> SIP -> 200 -> MessageResponse -> SIP, as a real processor hop would convert;
``--proto-level-fake`` answers on the protobuf directly and isolates the EdgePort's own cost). The SIP client
runs in a second process and keeps ``--in-flight`` REGISTERs outstanding, spread over ``--sockets`` UDP
sockets (as many phones would), so the figure is the EdgePort's; the CPU per round trip is the EdgePort's
processes' alone. ``--workers N`` runs the EdgePort as N processes sharing its port (``spec.workers``,
SO_REUSEPORT: the kernel spreads the client sockets over them). ``--same-process`` puts the client on the
EdgePort's loop (session 1's setting).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import multiprocessing
import time
from multiprocessing.connection import Connection

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
    """One UDP socket keeping ``in_flight`` REGISTERs outstanding: every 200 sends the next one."""

    def __init__(self, target: tuple[str, int], in_flight: int, tag: int) -> None:
        self.target = target
        self.in_flight = in_flight
        self.tag = tag
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
        n = f"{self.tag}x{self.sent}"
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


async def drive(target: tuple[str, int], in_flight: int, sockets: int, seconds: float,
                mark: Connection | None) -> tuple[int, float, float]:
    """Run the client: one second of warm-up, then ``seconds`` measured; returns (round trips, elapsed, CPU
    seconds of this process meanwhile)."""
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    transports = []
    sockets = max(1, min(sockets, in_flight))
    for i in range(sockets):
        share = in_flight // sockets + (1 if i < in_flight % sockets else 0)
        transport, client = await loop.create_datagram_endpoint(
            lambda share=share, i=i: Client(target, share, i), local_addr=("127.0.0.1", 0)
        )
        clients.append(client)
        transports.append(transport)
    for client in clients:
        for _ in range(client.in_flight):
            client.send_one()
    await asyncio.sleep(1.0)  # warm up
    if mark is not None:
        mark.send("start")
    start_done, started, cpu_started = sum(c.done for c in clients), time.perf_counter(), time.process_time()
    last = [c.done for c in clients]
    while time.perf_counter() - started < seconds:
        await asyncio.sleep(0.25)
        for i, client in enumerate(clients):
            if client.done == last[i]:  # stalled: datagrams were lost, put the window back in flight
                for _ in range(client.in_flight):
                    client.send_one()
            last[i] = client.done
    elapsed = time.perf_counter() - started
    for client in clients:
        client.running = False
    for transport in transports:
        transport.close()
    return sum(c.done for c in clients) - start_done, elapsed, time.process_time() - cpu_started


def client_process(target: tuple[str, int], in_flight: int, sockets: int, seconds: float, use_uvloop: bool,
                   conn: Connection) -> None:
    done, elapsed, _ = _run(drive(target, in_flight, sockets, seconds, conn), use_uvloop)
    conn.send((done, elapsed))


def _run(coro, use_uvloop: bool):  # type: ignore[no-untyped-def]
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


async def start_edge(args: argparse.Namespace, port: int, worker: int) -> EdgePort:
    config = EdgePortConfig(
        transports=(Transport(TransportProtocol.UDP, port, "127.0.0.1"),),
        rate_limit=RateLimit(trusted=(ipaddress.ip_network("127.0.0.1/32"),)),
        health=HealthConfig(enabled=False),
    )
    fake = FakeDispatcher(proto_level_registrar if args.proto_level_fake else registrar, record=False)
    options = EdgePortOptions(tune_gc=not args.no_tune_gc, worker=worker, workers=args.workers)
    edge = EdgePort(config, fake, options=options)
    await edge.start()
    return edge


async def other_worker(args: argparse.Namespace, port: int, worker: int, conn: Connection) -> None:
    """Worker ``worker`` of the EdgePort (its own process): reports its CPU between "start" and "stop"."""
    edge = await start_edge(args, port, worker)
    loop = asyncio.get_running_loop()
    orders: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: orders.put_nowait(conn.recv()))
    conn.send("ready")
    await orders.get()
    cpu_started = time.process_time()
    await orders.get()
    conn.send(time.process_time() - cpu_started)
    loop.remove_reader(conn.fileno())
    await edge.stop()


def worker_process(args: argparse.Namespace, port: int, worker: int, conn: Connection) -> None:
    _run(other_worker(args, port, worker, conn), not args.asyncio_loop)


async def main(args: argparse.Namespace) -> None:
    edge = await start_edge(args, 0, 0)
    target = edge.address("udp")
    if args.same_process:
        done, elapsed, cpu = await drive(target, args.in_flight, args.sockets, args.seconds, None)
        who = "client + EdgePort + fake, one process"
    else:
        ctx = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        workers = []
        for index in range(1, args.workers):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_process, args=(args, target[1], index, theirs), daemon=True)
            proc.start()
            workers.append((proc, ours))
        for _, conn in workers:
            await loop.run_in_executor(None, conn.recv)  # "ready"
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=client_process, daemon=True, args=(
            target, args.in_flight, args.sockets, args.seconds, not args.asyncio_loop, theirs))
        proc.start()
        ready: asyncio.Queue[object] = asyncio.Queue()
        loop.add_reader(ours.fileno(), lambda: ready.put_nowait(ours.recv()))
        await ready.get()  # "start": the warm-up is over
        for _, conn in workers:
            conn.send("start")
        cpu_started = time.process_time()
        done, elapsed = await ready.get()  # type: ignore[misc]
        cpu = time.process_time() - cpu_started
        for _, conn in workers:
            conn.send("stop")
        for worker, conn in workers:
            cpu += await loop.run_in_executor(None, conn.recv)
            worker.join(5)
        loop.remove_reader(ours.fileno())
        proc.join(5)
        who = "the EdgePort's processes; the client runs in its own"
    rate = done / elapsed
    batcher = edge.dispatcher.batcher
    flags = [
        "asyncio loop" if args.asyncio_loop else "uvloop",
        "untuned gc" if args.no_tune_gc else "tuned gc",
        f"{args.workers} worker{'s' if args.workers > 1 else ''}",
        f"{args.sockets} client sockets",
    ]
    if args.proto_level_fake:
        flags.append("proto-level fake")
    print(f"UDP REGISTER round trips through the EdgePort (fake dispatcher, {args.in_flight} in flight, "
          f"{', '.join(flags)}): {rate:,.0f}/s over {elapsed:.1f}s; worker 0: dispatcher calls {batcher.calls}, "
          f"avg batch {batcher.items / max(batcher.calls, 1):.1f}; CPU {cpu / max(done, 1) * 1e6:,.0f} us per "
          f"round trip ({who})")
    await edge.stop()


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--sockets", type=int, default=16, help="client UDP sockets sharing the in-flight budget")
    parser.add_argument("--workers", type=int, default=1, help="EdgePort processes sharing the port (spec.workers)")
    parser.add_argument("--proto-level-fake", action="store_true",
                        help="the fake answers on the protobuf without converting to SIP and back")
    parser.add_argument("--no-tune-gc", action="store_true", help="leave the GC as Python sets it")
    parser.add_argument("--asyncio-loop", action="store_true", help="asyncio's own loop instead of uvloop")
    parser.add_argument("--same-process", action="store_true", help="run the client on the EdgePort's loop")
    args = parser.parse_args()
    if args.same_process and args.workers > 1:
        parser.error("--same-process runs one worker")
    _run(main(args), not args.asyncio_loop)


if __name__ == "__main__":
    cli()
