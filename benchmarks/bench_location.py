"""Pure LocationService throughput (no Ray): add_route / find_routes ops/s, memory vs Redis.

    python benchmarks/bench_location.py                 # memory + a throw-away redis-server
    python benchmarks/bench_location.py --redis-url redis://127.0.0.1:6390 --count 20000

"sequential" awaits one call at a time; "concurrent" keeps --concurrency calls in flight
(what a shard actor serving many callers sees). Redis runs on 127.0.0.1, persistence off.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

from routr_ray.location import LocationService
from routr_ray.location.stores import LocationStore, MemoryStore
from routr_ray.location.stores.redis import RedisStore, parse_redis_parameters
from routr_ray.proto.gen import location_pb2

Backend = location_pb2.FindRoutesRequest.Backend


async def timed(label: str, count: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> None:
    started = time.perf_counter()
    if concurrency <= 1:
        for i in range(count):
            await op(i)
    else:
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                i = next_index
                next_index += 1
                await op(i)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    mode = "sequential" if concurrency <= 1 else f"concurrent x{concurrency}"
    print(f"  {label:<34} {mode:<16} {count / elapsed:>10,.0f} ops/s   ({elapsed * 1e6 / count:,.1f} us/op)")


async def run_once(make_store: Callable[[], LocationStore], count: int, concurrency: int) -> None:
    service = LocationService(make_store(), sweep_interval=0)
    aors = [f"sip:user{i}@bench.local" for i in range(count)]
    route = location_pb2.Route(host="10.1.2.3", port="5060", expires=3600, edge_port_ref="ep-0")
    await timed("add_route (new AOR)", count, concurrency, lambda i: service.add_route(aors[i], route))
    await timed("add_route (re-register)", count, concurrency, lambda i: service.add_route(aors[i], route))
    await timed("find_routes (agent, all routes)", count, concurrency, lambda i: service.find_routes(aors[i]))
    for n in range(3):
        await service.add_route("backend:pool", location_pb2.Route(host=f"10.9.0.{n}", expires=3600))
    rr = Backend(ref="pool", algorithm=Backend.ROUND_ROBIN)
    await timed("find_routes (backend round-robin)", count, concurrency,
                lambda i: service.find_routes("backend:pool", backend=rr))
    aff = Backend(ref="pool", algorithm=Backend.LEAST_SESSIONS, with_session_affinity=True)
    await timed("find_routes (affinity, new calls)", count, concurrency,
                lambda i: service.find_routes("backend:pool", call_id=f"c{i}", backend=aff))
    await timed("find_routes (affinity, same call)", count, concurrency,
                lambda i: service.find_routes("backend:pool", call_id="c1", backend=aff))
    started = time.perf_counter()
    reloaded = LocationService(make_store(), sweep_interval=0)
    loaded = await reloaded.load()
    print(f"  load() of {loaded:,} bindings: {time.perf_counter() - started:.2f} s")
    await service.close()
    await reloaded.close()


async def run(name: str, store_for_run: Callable[[str], LocationStore], count: int, concurrency: int) -> None:
    print(f"{name}:")
    for c in (1, concurrency):
        run_id = uuid.uuid4().hex[:8]
        await run_once(lambda run_id=run_id: store_for_run(run_id), count, c)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_redis_server(workdir: str) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return server, f"redis://127.0.0.1:{port}"


async def bench(count: int, concurrency: int, url: str | None) -> None:
    memories: dict[str, MemoryStore] = {}
    await run("memory", lambda run_id: memories.setdefault(run_id, MemoryStore(run_id)), count, concurrency)
    if url is None:
        print("redis: skipped (no redis-server; apt-get install -y redis-server or pass --redis-url)")
        return
    settings = parse_redis_parameters(url)
    await run(f"redis ({settings.host}:{settings.port})",
              lambda run_id: RedisStore(settings, "0", prefix=f"bench:{run_id}"), count, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    started = None if args.redis_url else start_redis_server(workdir)
    url = args.redis_url or (started[1] if started else None)
    try:
        asyncio.run(bench(args.count, args.concurrency, url))
    finally:
        if started is not None:
            started[0].terminate()
            started[0].wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
