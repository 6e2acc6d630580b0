"""SIP OPTIONS per second and latency through EdgePort actor -> dispatcher (Serve) -> echo, batching on and off.

    scripts/in-netns python benchmarks/bench_dispatch.py [--seconds 5] [--in-flight 64] [--modes on,off]
                                                         [--sockets 8] [--workers 1]

Starts a local Ray (inside the loopback-only namespace: Ray binds every interface), deploys the ``routr`` app
(dispatcher + echo processor deployment) and an EdgePort actor on UDP, then, for each mode, runs a load generator
in a separate process: ``--sockets`` UDP sockets keeping N OPTIONS in flight between them (with a user part, so
the EdgePort forwards them to the dispatcher), each with its own Call-ID; the latency of each is taken from send
to its 200. ``--workers W`` runs the EdgePort as W processes sharing its port (``spec.workers``, SO_REUSEPORT:
the kernel spreads the client's sockets over them).

* ``on``: the EdgePort -> dispatcher and dispatcher -> processor hops batch adaptively (max 64 messages, 1 ms);
* ``off``: ``max_batch=1`` on both hops (one Ray call per message), up to 256 calls in flight.

Each mode prints a low-load line (1 in flight: the latency a lone message sees) and a loaded line (N in flight:
throughput). Issue 4's targets: >= 5,000 msgs/s batched, p50 <= 4 ms at low load.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from routr_ray.actors.edgeport import ServeDispatcherClient
from routr_ray.actors.serve_app import APP_NAME, Batching, deploy_app, one_loop
from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig
from routr_ray.config.edgeport import EdgePortConfig, HealthConfig, RateLimit, Transport, TransportProtocol
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions


@ray.remote(num_cpus=0.1, max_concurrency=1000)
class BenchEdgePort:
    """EdgePortActor with the batching of the dispatcher hop as an option (the product actor takes none)."""

    async def __init__(self, config: EdgePortConfig, max_batch: int, max_in_flight: int, worker: int = 0,
                       workers: int = 1) -> None:
        options = EdgePortOptions(max_batch=max_batch, max_in_flight=max_in_flight, start_health=False,
                                  tune_gc=True,  # as the EdgePort actor sets it
                                  worker=worker, workers=workers)
        self.edge = EdgePort(config, ServeDispatcherClient(APP_NAME), options=options)
        await self.edge.start()

    async def stop(self) -> None:
        await self.edge.stop()


# --- load generator (its own process) ------------------------------------------------------------------------

class LoadClient(asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int], in_flight: int, stop_at: float) -> None:
        self.target = target
        self.in_flight = in_flight
        self.stop_at = stop_at
        self.transport: Any = None
        self.local = 0
        self.pending: dict[str, float] = {}
        self.latencies: list[float] = []
        self.prefix = uuid.uuid4().hex[:8]
        self.sent = 0
        self.errors = 0
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.local = transport.get_extra_info("sockname")[1]
        for _ in range(self.in_flight):
            self.send_one()

    def send_one(self) -> None:
        self.sent += 1
        call_id = f"{self.prefix}-{self.sent}"
        branch = f"z9hG4bK{call_id}"
        self.pending[call_id] = time.perf_counter()
        self.transport.sendto((
            f"OPTIONS sip:1001@{self.target[0]}:{self.target[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:bench@127.0.0.1>;tag={self.prefix}\r\n"
            f"To: <sip:1001@{self.target[0]}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode(), self.target)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data.startswith(b"SIP/2.0 100"):
            return
        start = data.find(b"\r\nCall-ID: ")
        if start < 0:
            return
        end = data.find(b"\r\n", start + 11)
        call_id = data[start + 11:end].decode()
        sent = self.pending.pop(call_id, None)
        if sent is None:
            return
        if data.startswith(b"SIP/2.0 200"):
            self.latencies.append(time.perf_counter() - sent)
        else:
            self.errors += 1
        if time.perf_counter() < self.stop_at:
            self.send_one()
        elif not self.pending and not self.done.done():
            self.done.set_result(None)


async def _clients(port: int, in_flight: int, sockets: int, stop_at: float) -> list[LoadClient]:
    """``sockets`` UDP sockets (as many phones would use; SO_REUSEPORT spreads them over EdgePort workers)
    sharing ``in_flight``."""
    loop = asyncio.get_running_loop()
    sockets = max(1, min(sockets, in_flight))
    clients = []
    for i in range(sockets):
        share = in_flight // sockets + (1 if i < in_flight % sockets else 0)
        _, client = await loop.create_datagram_endpoint(
            lambda share=share: LoadClient(("127.0.0.1", port), share, stop_at), local_addr=("127.0.0.1", 0))
        clients.append(client)
    return clients


async def _load(port: int, in_flight: int, sockets: int, seconds: float, warmup: float) -> dict[str, Any]:
    if warmup:
        warm = await _clients(port, in_flight, sockets, time.perf_counter() + warmup)
        await asyncio.wait_for(asyncio.gather(*(c.done for c in warm)), warmup + 10)
        for c in warm:
            c.transport.close()
    started = time.perf_counter()
    clients = await _clients(port, in_flight, sockets, started + seconds)
    try:
        await asyncio.wait_for(asyncio.gather(*(c.done for c in clients)), seconds + 10)
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - started
    for c in clients:
        c.transport.close()
    return {"ok": sum(len(c.latencies) for c in clients), "errors": sum(c.errors for c in clients),
            "lost": sum(len(c.pending) for c in clients), "elapsed": elapsed,
            "latencies": [x for c in clients for x in c.latencies]}


def _load_process(port: int, in_flight: int, sockets: int, seconds: float, warmup: float, out: Any) -> None:
    import uvloop  # the load generator's own CPU is not what is measured: the cheaper loop

    out.put(uvloop.run(_load(port, in_flight, sockets, seconds, warmup)))


def run_load(port: int, in_flight: int, seconds: float, warmup: float = 1.0, sockets: int = 1) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_load_process, args=(port, in_flight, sockets, seconds, warmup, queue))
    proc.start()
    result = queue.get(timeout=seconds + warmup + 60)
    proc.join(10)
    return result


COMPONENTS = {  # process title fragment -> label
    "BenchEdgePort": "edgeport",
    "ServeReplica:routr:dispatcher": "dispatcher",
    "ServeReplica:routr:processor-echo": "echo",
    "ServeController": "serve-controller",
    "raylet": "raylet",
    "gcs_server": "gcs",
}


def cpu_by_component() -> dict[str, float]:
    """CPU seconds used so far by the processes of each component (this Ray session's processes only)."""
    import psutil

    totals = dict.fromkeys(COMPONENTS.values(), 0.0)
    own_netns = os.readlink("/proc/self/ns/net")  # other Ray sessions on the machine live in other namespaces
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        try:
            if os.readlink(f"/proc/{proc.pid}/ns/net") != own_netns:
                continue
        except OSError:
            continue
        title = " ".join(proc.info["cmdline"] or ())
        for fragment, label in COMPONENTS.items():
            if fragment in title and proc.info["cpu_times"] is not None:
                totals[label] += proc.info["cpu_times"].user + proc.info["cpu_times"].system
                break
    return totals


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Mode:
    name: str
    edge_batch: int
    edge_in_flight: int
    batching: Batching


MODES = {
    "on": Mode("batching on ", 64, 4, Batching(max_batch=64, max_wait=0.001, max_in_flight=4)),
    "off": Mode("batching off", 1, 256, Batching(max_batch=1, max_wait=0.0, max_in_flight=256)),
}


def report(mode: Mode, in_flight: int, result: dict[str, Any], cpu: dict[str, float]) -> None:
    lat = result["latencies"]
    rate = result["ok"] / result["elapsed"]
    print(f"{mode.name}  in-flight {in_flight:>4}: {rate:>8,.0f} msgs/s  p50 {percentile(lat, 0.5) * 1e3:6.2f} ms  "
          f"p99 {percentile(lat, 0.99) * 1e3:6.2f} ms  ({result['ok']} ok, {result['errors']} errors, "
          f"{result['lost']} unanswered)", flush=True)
    if result["ok"]:
        per = "  ".join(f"{label} {seconds / result['ok'] * 1e6:.0f}" for label, seconds in cpu.items())
        print(f"{'':14}CPU µs per message : {per}", flush=True)


def measured(port: int, in_flight: int, seconds: float, sockets: int) -> tuple[dict[str, Any], dict[str, float]]:
    before = cpu_by_component()
    result = run_load(port, in_flight, seconds, warmup=0.0, sockets=sockets)
    after = cpu_by_component()
    return result, {label: after[label] - before[label] for label in after}


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--modes", default="on,off")
    parser.add_argument("--workers", type=int, default=1, help="EdgePort processes sharing its port (spec.workers)")
    parser.add_argument("--sockets", type=int, default=8, help="load generator UDP sockets sharing the in-flight")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, configure_logging=False,
             namespace="routr", object_store_memory=200 * 1024 * 1024,
             _temp_dir=tempfile.mkdtemp(prefix="rrb-", dir="/tmp"))
    serve.start(http_options={"host": "127.0.0.1", "port": udp_port()})
    config = DispatcherConfig(processors=(ProcessorConfig(ref="echo", addr="serve://echo", methods=("OPTIONS",)),))
    print(f"cpus: {os.cpu_count()}  path: UDP client process ({args.sockets} sockets) -> EdgePort "
          f"({args.workers} worker{'s' if args.workers > 1 else ''}) -> dispatcher -> echo", flush=True)
    try:
        for key in args.modes.split(","):
            mode = MODES[key]
            deploy_app(config, batching=mode.batching)
            port = udp_port()
            edge_config = EdgePortConfig(
                ref=f"bench-{key}", bind_addr="127.0.0.1",
                transports=(Transport(TransportProtocol.UDP, port, "127.0.0.1"),),
                rate_limit=RateLimit(enabled=False), health=HealthConfig(enabled=False))
            # as deploy_edgeports starts the product's actor: Serve's request router on the actor's own loop
            extra = {"runtime_env": {"env_vars": {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}}} if one_loop() else {}
            edges = [
                BenchEdgePort.options(**extra).remote(  # type: ignore[attr-defined]
                    edge_config, mode.edge_batch, mode.edge_in_flight, index, args.workers
                )
                for index in range(args.workers)
            ]
            ray.get([edge.__ray_ready__.remote() for edge in edges])
            run_load(port, args.in_flight, 1.0, warmup=0.0, sockets=args.sockets)  # warm-up: connections, code paths
            report(mode, 1, *measured(port, 1, min(args.seconds, 3.0), 1))
            report(mode, args.in_flight, *measured(port, args.in_flight, args.seconds, args.sockets))
            ray.get([edge.stop.remote() for edge in edges])
            for edge in edges:
                ray.kill(edge)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
