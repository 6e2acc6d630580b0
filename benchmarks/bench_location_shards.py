"""Location throughput through the Ray shard actors: AddRoute / FindRoutes ops/s, batched and unbatched.

    scripts/in-netns python benchmarks/bench_location_shards.py
    scripts/in-netns python benchmarks/bench_location_shards.py --shards 2 4 --count 20000 --callers 256

Starts a local Ray (inside `scripts/in-netns`: Ray binds every interface; the script re-executes itself there
when started outside) and a throw-away Debian `redis-server` on a free port (never 6379, Ray's GCS port), then
for each store (memory, redis) and each shard count N deploys N `location-shard-<i>` actors and drives them from
this process through `ShardedLocationClient`:

* batched: --callers coroutines share one client, so the AdaptiveBatcher gathers their operations into one Ray
  call per shard (max_batch 64);
* unbatched, pipelined: the same callers through a client with max_batch=1 (one Ray call per operation, up to
  4 in flight per shard);
* unbatched, sequential: one caller, one operation at a time (the latency-bound floor).

AddRoute registers a new AOR per operation (with Redis: one write-through per operation); FindRoutes looks up
those AORs (agent lookup, all routes; reads never touch Redis). It prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if os.environ.get("ROUTR_RAY_IN_NETNS") != "1":  # Ray only inside the loopback-only namespace
    os.execv(str(REPO / "scripts" / "in-netns"), [str(REPO / "scripts" / "in-netns"), sys.executable, *sys.argv])
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402

from routr_ray.actors.location import ShardedLocationClient, deploy_shards  # noqa: E402
from routr_ray.proto.gen import common_pb2, location_pb2  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

Op = Callable[[ShardedLocationClient, int], Awaitable[object]]


async def drive(client: ShardedLocationClient, op: Op, count: int, callers: int) -> float:
    """Run `op(client, i)` for i in 0..count-1 with `callers` concurrent callers; return ops/s."""
    next_index = 0

    async def caller() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            await op(client, i)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return count / (time.perf_counter() - started)


def add_op(prefix: str) -> Op:
    async def op(client: ShardedLocationClient, i: int) -> None:
        route = location_pb2.Route(host=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", port="5060",
                                   transport=common_pb2.UDP, expires=3600, edge_port_ref="ep-0",
                                   contact_uri=f"sip:u{i}@10.0.0.1:5060")
        await client.add_route(location_pb2.AddRouteRequest(aor=f"sip:{prefix}{i}@bench.local", route=route))

    return op


def find_op(prefix: str, registered: int) -> Op:
    async def op(client: ShardedLocationClient, i: int) -> None:
        reply = await client.find_routes(location_pb2.FindRoutesRequest(aor=f"sip:{prefix}{i % registered}@bench.local"))
        if len(reply.routes) != 1:
            raise RuntimeError(f"expected one route for {prefix}{i % registered}, got {len(reply.routes)}")

    return op


async def measure(
    handles: list[object], count: int, callers: int, unbatched_count: int, sequential: int
) -> list[tuple[str, str, float]]:
    batched = ShardedLocationClient(handles, max_batch=64)
    unbatched = ShardedLocationClient(handles, max_batch=1)
    rows: list[tuple[str, str, float]] = []
    modes = (
        (f"batched x{callers}", batched, callers, count),
        (f"max_batch=1 x{callers}", unbatched, callers, unbatched_count),
        ("sequential x1", unbatched, 1, sequential),
    )
    for n, (mode, client, width, ops) in enumerate(modes):
        prefix = f"m{n}u"
        rows.append(("AddRoute", mode, await drive(client, add_op(prefix), ops, width)))
        await drive(batched, find_op(prefix, ops), min(ops, 200), 16)  # warm-up
        rows.append(("FindRoutes", mode, await drive(client, find_op(prefix, ops), ops, width)))
    return rows


def kill_shards(handles: list[object]) -> None:
    for handle in handles:
        ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # names are released asynchronously
        try:
            ray.get_actor("location-shard-0", namespace="routr")
        except ValueError:
            return
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--stores", nargs="+", default=["memory", "redis"], choices=["memory", "redis"])
    parser.add_argument("--count", type=int, default=20_000, help="operations per batched run")
    parser.add_argument("--callers", type=int, default=256, help="concurrent callers sharing one client")
    parser.add_argument("--unbatched", type=int, default=3_000, help="operations of the max_batch=1 run")
    parser.add_argument("--sequential", type=int, default=1_000, help="operations of the sequential run")
    args = parser.parse_args()

    redis = RedisServer() if "redis" in args.stores else None
    if redis is not None:
        redis.start()
    ray.init(num_cpus=8, object_store_memory=200 * 1024 * 1024, include_dashboard=False, namespace="routr",
             log_to_driver=False, configure_logging=False, _temp_dir=tempfile.mkdtemp(prefix="rr-", dir="/tmp"))
    load = os.getloadavg()[0]
    print(f"Location through Ray shards: {os.cpu_count()} cores, load average {load:.1f} at start; "
          f"ops per run: {args.count} batched, {args.unbatched} max_batch=1, {args.sequential} sequential; "
          f"{args.callers} callers")
    results: list[tuple[str, int, str, str, float]] = []
    try:
        for store in args.stores:
            for shards in args.shards:
                if redis is not None:
                    redis.client().flushall()
                handles = deploy_shards(shards, store, redis.url if store == "redis" and redis else None)
                try:
                    rows = asyncio.run(measure(handles, args.count, args.callers, args.unbatched, args.sequential))
                finally:
                    kill_shards(handles)
                for op, mode, rate in rows:
                    results.append((store, shards, op, mode, rate))
                    print(f"  {store:<6} N={shards}  {op:<10} {mode:<18} {rate:>9,.0f} ops/s", flush=True)
    finally:
        ray.shutdown()
        if redis is not None:
            redis.cleanup()
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
