"""`routr-ray run`: start (or join) Ray and deploy Location, the `routr` Serve app and the EdgePorts.

Startup order: Location shards (they must answer before a processor asks), the Location gRPC API, the Serve app
(dispatcher + processors), then the EdgePorts (they need the dispatcher). Shutdown on SIGINT/SIGTERM: EdgePorts
drain (new requests get 503) for at most ``drain_seconds``, then everything this command started is stopped,
Ray included when it was started here.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import serve

from routr_ray.actors import NAMESPACE
from routr_ray.actors import location as location_actors
from routr_ray.actors.serve_app import APP_NAME, build_app, grpc_options, serve_name
from routr_ray.config import ConfigInvalid, load_config_dir
from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig
from routr_ray.config.loader import ConfigSet
from routr_ray.config.location import CacheProvider, LocationConfig, parse_redis_parameters

log = logging.getLogger("routr_ray.run")

DEFAULT_METHODS = ("REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "PRACK", "UPDATE",
                   "INFO", "REFER", "SUBSCRIBE", "NOTIFY")


class StartupError(RuntimeError):
    """A startup failure to report as one clear line."""


@dataclass
class RunOptions:
    config_dir: Path
    address: str | None = None
    redis_url: str | None = None
    dashboard: bool = True
    drain_seconds: float = 5.0
    object_store_mb: int = 256
    nonce_key: str = field(default_factory=lambda: os.environ.get("ROUTR_RAY_NONCE_KEY") or secrets.token_hex(32))


@dataclass
class Deployment:
    """What one `run` started, so that it can stop exactly that."""

    started_ray: bool = False
    actors: list[Any] = field(default_factory=list)
    edgeports: list[Any] = field(default_factory=list)
    serve_started: bool = False
    lines: list[str] = field(default_factory=list)


def resolve_config_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("ROUTR_RAY_CONFIG") or "config")


def load(options: RunOptions) -> ConfigSet:
    try:
        config = load_config_dir(options.config_dir)
    except ConfigInvalid as exc:
        first = exc.errors[0] if exc.errors else "invalid configuration"
        more = f" (and {len(exc.errors) - 1} more; run routr-ray validate-config)" if len(exc.errors) > 1 else ""
        raise StartupError(f"{first}{more}") from exc
    return config


def dispatcher_config(config: ConfigSet) -> DispatcherConfig:
    if config.dispatcher is not None:
        return config.dispatcher
    return DispatcherConfig(processors=(ProcessorConfig(ref="echo", addr="serve://echo", methods=DEFAULT_METHODS),))


def location_config(config: ConfigSet, redis_url: str | None) -> tuple[LocationConfig, str, str | None]:
    location = config.location or LocationConfig()
    if redis_url:
        return location, "redis", parse_redis_parameters(redis_url).url()
    if location.cache.provider == CacheProvider.REDIS and location.cache.redis is not None:
        return location, "redis", location.cache.redis.url()
    return location, "memory", None


def _port_of(bind_addr: str) -> int:
    return int(bind_addr.rsplit(":", 1)[1])


def start(options: RunOptions) -> Deployment:
    config = load(options)
    dispatcher = dispatcher_config(config)
    location, provider, redis_url = location_config(config, options.redis_url)
    deployment = Deployment()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    init_args: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "configure_logging": False}
    if options.address:
        init_args["address"] = options.address
    else:
        init_args.update(
            include_dashboard=options.dashboard,
            object_store_memory=options.object_store_mb * 1024 * 1024,
            _temp_dir=tempfile.mkdtemp(prefix="routr-ray-", dir="/tmp"),
        )
    try:
        context = ray.init(**init_args)
    except Exception as exc:  # noqa: BLE001 - one clear line for any Ray startup failure
        raise StartupError(f"cannot start Ray: {exc}") from exc
    deployment.started_ray = not options.address

    try:
        _start_location(deployment, location, provider, redis_url)
        _start_serve(deployment, dispatcher, config, location, options)
        _start_edgeports(deployment, config, options)
    except Exception:
        stop(deployment, drain_seconds=0)
        raise
    dashboard = getattr(context, "dashboard_url", None)
    if dashboard:
        deployment.lines.append(f"Ray dashboard        http://{dashboard}")
    return deployment


def _start_location(deployment: Deployment, location: LocationConfig, provider: str, redis_url: str | None) -> None:
    if provider == "redis":
        _check_redis(redis_url or "")
    try:
        shards = location_actors.deploy_shards(location.shards, provider, redis_url)
        api = location_actors.deploy_api(location.bind_addr, location.shards)
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot start the Location service on {location.bind_addr}: {_root_cause(exc)}") from exc
    deployment.actors.extend([*shards, api])
    durability = "Redis" if provider == "redis" else "memory: bindings are lost on restart"
    deployment.lines.append(f"Location gRPC API    {location.bind_addr} ({location.shards} shards, {durability})")


def _check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StartupError(f"Redis is unreachable at {url.split('@')[-1]}: {exc}") from exc
    finally:
        client.close()


def _start_serve(deployment: Deployment, dispatcher: DispatcherConfig, config: ConfigSet,
                 location: LocationConfig, options: RunOptions) -> None:
    port = _port_of(dispatcher.bind_addr)
    host = dispatcher.bind_addr.rsplit(":", 1)[0]
    if host not in ("0.0.0.0", "[::]", "::"):
        log.warning("Serve's gRPC proxy binds every interface: the host %r of bindAddr is ignored", host)
    try:
        serve.start(grpc_options=grpc_options(port), http_options={"host": "127.0.0.1", "port": 0})
        deployment.serve_started = True
        processor_options = _processor_options(dispatcher, config, location, options)
        serve.run(build_app(dispatcher, processor_options=processor_options), name=APP_NAME,
                  route_prefix=f"/{APP_NAME}")
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot deploy the dispatcher on gRPC port {port}: {_root_cause(exc)}") from exc
    deployment.lines.append(f"Dispatcher gRPC      0.0.0.0:{port} (Processor/ProcessMessage; firewall it)")


def _processor_options(dispatcher: DispatcherConfig, config: ConfigSet, location: LocationConfig,
                       options: RunOptions) -> dict[str, dict[str, Any]]:
    names = {serve_name(p.addr) for p in (*dispatcher.processors, *dispatcher.middlewares)}
    result: dict[str, dict[str, Any]] = {}
    if "connect" in names:
        from routr_ray.actors.connect import connect_options

        result["connect"] = connect_options(options.config_dir, location.shards, options.nonce_key)
    return result


def _start_edgeports(deployment: Deployment, config: ConfigSet, options: RunOptions) -> None:
    if not config.edgeports:
        raise StartupError(f"{options.config_dir}: no EdgePort config found (e.g. edgeport.yaml)")
    from routr_ray.actors.edgeport import deploy_edgeport

    for index, edge in enumerate(config.edgeports):
        try:
            handle, summary = deploy_edgeport(edge, health_port_offset=index)
        except Exception as exc:  # noqa: BLE001
            raise StartupError(f"cannot start EdgePort {edge.ref}: {_root_cause(exc)}") from exc
        deployment.edgeports.append(handle)
        deployment.lines.extend(summary)


def _root_cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    for line in reversed(text):
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


def stop(deployment: Deployment, *, drain_seconds: float) -> None:
    if deployment.edgeports and drain_seconds > 0:
        try:
            ray.get([e.drain.remote(drain_seconds) for e in deployment.edgeports], timeout=drain_seconds + 2)
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            log.warning("EdgePort drain did not finish: %s", exc)
    for handle in [*deployment.edgeports, *deployment.actors]:
        try:
            ray.kill(handle, no_restart=True)
        except Exception:  # noqa: BLE001
            pass
    if deployment.serve_started:
        try:
            serve.shutdown()
        except Exception as exc:  # noqa: BLE001
            log.warning("serve.shutdown failed: %s", exc)
    if ray.is_initialized():
        ray.shutdown()


def run(options: RunOptions) -> int:
    """Start everything, stay in the foreground until SIGINT/SIGTERM, then stop everything."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop_event = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_event.set()

    started = time.monotonic()
    try:
        deployment = start(options)
    except StartupError as exc:
        print(f"routr-ray: {exc}", file=sys.stderr)
        return 1
    # After ray.init, which installs a SIGTERM handler of its own that aborts the driver.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"routr-ray is ready in {time.monotonic() - started:.1f}s", flush=True)
    for line in deployment.lines:
        print(f"  {line}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop_event.wait(0.5):
            pass
    finally:
        print("routr-ray: stopping", flush=True)
        stop(deployment, drain_seconds=options.drain_seconds)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
