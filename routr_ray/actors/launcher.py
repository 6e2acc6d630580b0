"""`routr-ray run` and `routr-ray deploy`: start (or join) Ray and deploy Location, the `routr` Serve app and the
EdgePorts.

Startup: the config is loaded and every local port and Redis are checked *before* Ray starts, so the common
mistakes (bad config, port taken, Redis down, a gRPC port open to the network without a token) cost no Ray
startup and print one line. Ray Serve is imported while ``ray.init`` runs. Then the parts are created in the order
the longest chain needs them (the raylet starts only as many worker processes at once as there are CPUs): the Serve
controller (controller -> replicas; no gRPC proxy: the dispatcher's port for outside callers is the front actor,
``routr_ray/actors/front.py``), the Location shards, the EdgePorts, the Location gRPC API; each part is then waited
for in a thread of its own, side by side. The app is deployed as soon as the controller answers (Connect replicas
look the shards up by name; they need not be up yet) and its state is asked every 0.1 s. ``run`` prints "ready"
only once every EdgePort's end-to-end probe (dispatcher -> every processor -> every Location shard) has answered:
then a REGISTER succeeds (issue 13 item 4). Shutdown on SIGINT/SIGTERM: EdgePorts drain (new requests get 503) for
at most ``drain_seconds``, then
everything this command started is stopped, Ray included when it was started here; Ray processes that outlive
``ray.shutdown`` (its agents exit a moment after the raylet) are waited for and killed, so none is left behind,
and the run's temporary directory is removed (its logs moved to ``--log-dir`` first when given).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from routr_ray.actors import NAMESPACE
from routr_ray.actors import location as location_actors
from routr_ray.actors.links import registry as link_registry
from routr_ray.config import ConfigInvalid, load_config_dir
from routr_ray.config.changes import ConfigDiff, ShardLayout, refusal_message, refusals_of, shards_diff
from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig, dispatcher_token
from routr_ray.config.edgeport import EdgePortConfig, TransportProtocol
from routr_ray.config.loader import ConfigSet
from routr_ray.config.location import TOKEN_ENV as LOCATION_TOKEN_ENV
from routr_ray.config.location import CacheProvider, LocationConfig, parse_redis_parameters
from routr_ray.config.observability import ObservabilityConfig
from routr_ray.dispatch.front import TOKEN_HINT as DISPATCHER_TOKEN_HINT
from routr_ray.dispatch.runtime import serve_name
from routr_ray.grpcutil.auth import OpenPortRefused, refuse_open_port, split_host_port
from routr_ray.location.grpc_api import TOKEN_HINT as LOCATION_TOKEN_HINT
from routr_ray.util import keystore
from routr_ray.util.edge_tag import edge_tag
from routr_ray.util.keystore import KeyStoreError, resolve_nonce_key

log = logging.getLogger("routr_ray.run")

DEFAULT_METHODS = ("REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "PRACK", "UPDATE",
                   "INFO", "REFER", "SUBSCRIBE", "NOTIFY")
CONFIG_ENV = "ROUTR_RAY_CONFIG"
NONCE_KEY_ENV = keystore.NONCE_KEY_ENV
RUN_ID_ENV = "ROUTR_RAY_RUN_ID"  # inherited by every process Ray starts: how leftovers are found
LEFTOVER_GRACE_S = 3.0
START_TIMEOUT_S = 120.0  # each part: actors up, the Serve app running
READY_TIMEOUT_S = 120.0  # deploy: how long it waits for the EdgePorts' end-to-end probe
READY_REPORT_S = 15.0  # run: how often it says why it is not ready yet
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    num_cpus: float | None = None  # logical CPUs of a local Ray (default: the machine's)
    watch_config: bool = True  # re-deploy the dispatcher config when dispatcher.yaml changes (run only)
    deploy_serve: bool = True  # False: only the Location and EdgePort actors (the app is managed elsewhere)
    # the digest nonce / dialog token key: None = $ROUTR_RAY_NONCE_KEY, else kept in Redis (when the Location uses
    # it) or in state_dir (routr_ray/util/keystore.py), so that live calls survive a restart
    nonce_key: str | None = None
    state_dir: Path | None = None  # None: $XDG_STATE_HOME/routr-ray (~/.local/state/routr-ray)
    log_dir: Path | None = None  # run: where this run's logs are kept (else they go with its temporary directory)


@dataclass
class Deployment:
    """What one `run` started, so that it can stop exactly that."""

    started_ray: bool = False
    run_id: str = ""
    actors: list[Any] = field(default_factory=list)
    edgeports: list[Any] = field(default_factory=list)
    serve_started: bool = False
    dispatcher: DispatcherConfig | None = None
    processor_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    watcher: Any = None
    connect_resources: Any = None  # routr_ray.actors.connect.ConnectResources when serve://connect is used
    database_resources: Any = None  # the provisioning API's database set (None: Connect follows the files)
    lines: list[str] = field(default_factory=list)
    temp_dir: Path | None = None  # a local Ray's directory (sockets, session, logs): removed at stop
    log_dir: Path | None = None  # where the session's logs are moved at stop (--log-dir)


def resolve_config_dir(arg: str | None) -> Path:
    """``--config DIR``, else ``$ROUTR_RAY_CONFIG``, else ``./config``."""
    return Path(arg or os.environ.get(CONFIG_ENV) or "config")


# -- config -------------------------------------------------------------------------------------------------


def load(options: RunOptions) -> ConfigSet:
    if not options.config_dir.is_dir():
        raise StartupError(f"config directory {options.config_dir} not found (use --config DIR or ${CONFIG_ENV})")
    try:
        config = load_config_dir(options.config_dir)
    except ConfigInvalid as exc:
        first = exc.errors[0] if exc.errors else "invalid configuration"
        more = f" (and {len(exc.errors) - 1} more; run routr-ray validate-config)" if len(exc.errors) > 1 else ""
        raise StartupError(f"{first}{more}") from exc
    if not config.edgeports:
        raise StartupError(f"{options.config_dir}: no EdgePort config found (e.g. edgeport.yaml)")
    refs = [edge.ref for edge in config.edgeports]
    duplicates = sorted({ref for ref in refs if refs.count(ref) > 1})
    if duplicates:
        raise StartupError(f"{options.config_dir}: several EdgePort configs have ref {duplicates[0]!r}: "
                           "each EdgePort actor is named after its ref")
    check_media(config, options.config_dir)
    tags: dict[str, str] = {}
    for ref in refs:  # EdgePorts name each other on the wire by a 32-bit hash of their ref (docs/distributed.md)
        if tags.setdefault(edge_tag(ref), ref) != ref:
            raise StartupError(f"{options.config_dir}: EdgePorts {tags[edge_tag(ref)]!r} and {ref!r} have the same "
                               "tag (a one-in-four-billion hash collision): rename one")
    check_connect_tokens(config)
    return config


def check_connect_tokens(config: ConfigSet) -> None:
    """The web agents' public key files (a ConnectTokens document) read and checked before anything starts."""
    if config.connect_tokens is None:
        return
    from routr_ray.config.connect_tokens import read_public_keys

    try:
        read_public_keys(config.connect_tokens)
    except ConfigInvalid as exc:
        more = f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
        raise StartupError(f"{exc.errors[0]}{more}") from exc


def check_media(config: ConfigSet, config_dir: Path) -> None:
    """The rtpengine middleware needs a MediaRelay document, and its entry postProcessor and internalMetadata
    (docs/media.md: it rewrites what Connect forwards, per branch, and knows its branches by their labels)."""
    if config.dispatcher is None:
        return
    for entry in config.dispatcher.processors:
        if serve_name(entry.addr) == "rtpengine":
            raise StartupError(f"{config_dir}: serve://rtpengine is a middleware, not a processor (docs/media.md)")
    for entry in config.dispatcher.middlewares:
        if serve_name(entry.addr) != "rtpengine":
            continue
        if config.media is None:
            raise StartupError(f"{config_dir}: the dispatcher uses serve://rtpengine but no MediaRelay document "
                               "says where RTPEngine is (e.g. media.yaml; docs/media.md)")
        if not entry.post_processor or not entry.internal_metadata:
            raise StartupError(f"{config_dir}: middleware {entry.ref!r} (serve://rtpengine) needs postProcessor: true "
                               "and internalMetadata: true (docs/media.md)")


def dispatcher_config(config: ConfigSet) -> DispatcherConfig:
    if config.dispatcher is not None:
        return config.dispatcher
    return DispatcherConfig(processors=(ProcessorConfig(ref="echo", addr="serve://echo", methods=DEFAULT_METHODS),))


def location_config(config: ConfigSet, redis_url: str | None) -> tuple[LocationConfig, str, str | None]:
    location = config.location or LocationConfig()
    if redis_url:
        try:
            return location, "redis", parse_redis_parameters(redis_url).url()
        except ValueError as exc:
            raise StartupError(f"--redis {redacted(redis_url)}: {exc}") from exc
    if location.cache.provider == CacheProvider.REDIS and location.cache.redis is not None:
        return location, "redis", location.cache.redis.url()
    return location, "memory", None


_split_host_port = split_host_port


def location_token(location: LocationConfig) -> str | None:
    """The Location API token: ``spec.token`` / ``$ROUTR_RAY_LOCATION_TOKEN`` (as the API actor resolves it)."""
    return location.token or os.environ.get(LOCATION_TOKEN_ENV, "").strip() or None


def check_exposure(dispatcher: DispatcherConfig | None, location: LocationConfig) -> None:
    """DESIGN §6b: the gRPC ports (51901, 51902) listen beyond loopback only with a token."""
    try:
        if dispatcher is not None:
            refuse_open_port(dispatcher.bind_addr, dispatcher_token(dispatcher),
                             what="the dispatcher's gRPC port (MessageDispatcher bindAddr)", how=DISPATCHER_TOKEN_HINT)
        refuse_open_port(location.bind_addr, location_token(location),
                         what="the Location gRPC API (Location bindAddr)", how=LOCATION_TOKEN_HINT)
    except OpenPortRefused as exc:
        raise StartupError(str(exc)) from exc


def edgeport_health_ports(config: ConfigSet) -> list[EdgePortConfig]:
    """The EdgePort configs as deployed, health ports distinct per node: each EdgePort's health port is moved up
    by the number of workers of the ones before it (its own workers use port, port + 1, ...)."""
    import dataclasses

    result = []
    offset = 0
    for edge in config.edgeports:
        if offset and edge.health.enabled:
            edge = dataclasses.replace(edge, health=dataclasses.replace(edge.health, port=edge.health.port + offset))
        result.append(edge)
        offset += edge.workers
    return result


# -- pre-flight checks (before Ray starts) ------------------------------------------------------------------


def _bind_probe(stack: ExitStack, kind: int, host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = stack.enter_context(socket.socket(family, kind))
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))


def local_ports(config: ConfigSet, dispatcher: DispatcherConfig | None,
                location: LocationConfig) -> Iterator[tuple[str, int, str, int]]:
    """(what, socket type, host, port) of every port this node will listen on."""
    for edge in edgeport_health_ports(config):
        for transport in edge.transports:
            kind = socket.SOCK_DGRAM if transport.protocol == TransportProtocol.UDP else socket.SOCK_STREAM
            host = transport.bind_addr or edge.bind_addr
            yield f"{transport.protocol.value.upper()} of EdgePort {edge.ref}", kind, host, transport.port
        if edge.health.enabled:
            for worker in range(edge.workers):
                yield (f"health port of EdgePort {edge.ref}", socket.SOCK_STREAM, edge.health.bind_addr,
                       edge.health.port + worker)
    if dispatcher is not None:
        grpc_host, grpc_port = _split_host_port(dispatcher.bind_addr)
        yield "dispatcher gRPC port", socket.SOCK_STREAM, grpc_host, grpc_port
    if config.api is not None:
        for what, addr in (("API internal port", config.api.bind_addr),
                           ("API external port", config.api.external_bind_addr)):
            if addr:
                api_host, api_port = _split_host_port(addr)
                yield what, socket.SOCK_STREAM, api_host, api_port
    host, port = _split_host_port(location.bind_addr)
    yield "Location gRPC API", socket.SOCK_STREAM, host, port
    if config.observability is not None and config.observability.metrics_port:
        # Ray's metrics export port: every interface (Ray binds it so)
        yield "metrics export port", socket.SOCK_STREAM, "0.0.0.0", config.observability.metrics_port


def tracing_environment(observability: ObservabilityConfig | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that turn tracing on in every process as ``observability.yaml`` says, minus what the
    environment already decides (``ROUTR_RAY_TRACING``, ``OTEL_TRACES_EXPORTER``, ``OTEL_SDK_DISABLED`` and the
    endpoint/ratio variables win over the file)."""
    from routr_ray.observability.tracing import ENABLE_ENV

    if observability is None or not observability.tracing_configured or not observability.tracing.enabled:
        return {}
    if any(environ.get(name, "").strip() for name in (ENABLE_ENV, "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED")):
        return {}
    return {name: value for name, value in observability.tracing.to_env().items()
            if not environ.get(name, "").strip()}


def check_ports(ports: Iterator[tuple[str, int, str, int]]) -> None:
    """Bind every port at once (so two parts configured on one port collide here too), then release them."""
    with ExitStack() as stack:
        for what, kind, host, port in ports:
            if port == 0:
                continue
            try:
                _bind_probe(stack, kind, host, port)
            except OSError as exc:
                if host == "::" and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    try:
                        _bind_probe(stack, kind, "0.0.0.0", port)
                        continue
                    except OSError as exc4:
                        exc = exc4
                proto = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
                reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
                raise StartupError(f"cannot listen on {proto} {host}:{port} ({what}): {reason}") from exc


def redacted(url: str) -> str:
    """A Redis URL without its user and password (for messages)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]


def check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StartupError(f"Redis is unreachable at {redacted(url)}: {exc}") from exc
    finally:
        client.close()


# -- start --------------------------------------------------------------------------------------------------


def start(options: RunOptions, *, on_ray_started: Callable[[], None] | None = None,
          wait_ready: bool = False, cancelled: Callable[[], bool] | None = None,
          not_ready_is_error: bool = True) -> Deployment:
    """Check, start or join Ray, deploy everything; raises :class:`StartupError` (after stopping what it
    started) with one line to print. With ``wait_ready``, returns only once every EdgePort is ready: its
    end-to-end probe (dispatcher, processors, Location shards) answered, so a REGISTER would succeed (meanwhile a
    warning every READY_REPORT_S says why not); with ``not_ready_is_error=False`` (``deploy``) it gives up after
    READY_TIMEOUT_S with a warning and keeps what it deployed (a processor elsewhere may come later)."""
    config = load(options)
    dispatcher = dispatcher_config(config)
    location, provider, redis_url = location_config(config, options.redis_url)
    check_exposure(dispatcher, location)
    if provider == "redis":
        check_redis(redis_url or "")
    if not options.address:
        check_ports(local_ports(config, dispatcher, location))
    key_origin = resolve_key(options, redis_url if provider == "redis" else None)
    api_plan = _plan_api(config)  # after the cheap checks: it may migrate the database

    if options.log_dir is not None:
        check_log_dir(options.log_dir)

    deployment = Deployment(run_id=os.environ.setdefault(RUN_ID_ENV, uuid.uuid4().hex), dispatcher=dispatcher,
                            log_dir=options.log_dir)
    if api_plan is not None and api_plan.database_url:
        deployment.database_resources = api_plan.resources
        config = dataclasses.replace(config, resources=api_plan.resources)
    observability = config.observability
    tracing_env = tracing_environment(observability, os.environ)
    if not options.address:
        os.environ.update(tracing_env)  # inherited by every process of the local Ray
        # Unix socket paths are limited to 107 bytes: a short directory of our own
        deployment.temp_dir = Path(tempfile.mkdtemp(prefix="routr-ray-", dir="/tmp"))
        _serve_settings_inherited()
    _import_in_background()
    try:
        context = _init_ray(options, deployment.temp_dir,
                            metrics_port=observability.metrics_port if observability else None,
                            env_vars=tracing_env if options.address else None)
    except StartupError:
        remove_temp_dir(deployment)
        raise
    deployment.started_ray = not options.address
    if options.address:
        _adopt_cluster_settings()
    if on_ray_started is not None:
        on_ray_started()
    try:
        # The order of creation is the order of start-up: the raylet starts only as many worker processes at once
        # as there are CPUs. First the Serve controller (the longest chain: controller -> replicas), then the
        # shards, then the EdgePorts; each part then waits in a thread of its own, side by side.
        if not deployment.started_ray:  # a Ray of our own runs nothing yet
            check_running(config, location, provider, redis_url)  # refused changes: before anything is changed
        proxies_ready = _create_serve(deployment) if options.deploy_serve else None
        shards = _create_shards(deployment, location, provider, redis_url)
        with ThreadPoolExecutor(max_workers=5, thread_name_prefix="routr-start") as pool:
            edge_step = pool.submit(_start_edgeports, deployment, config)
            serve_step = (pool.submit(_start_serve, deployment, dispatcher, location, options, proxies_ready)
                          if proxies_ready is not None else None)
            location_step = pool.submit(_start_location, deployment, location, provider, shards)
            front_step = pool.submit(_start_front, deployment, dispatcher)
            api_step = (pool.submit(_start_api, deployment, api_plan, options.config_dir, location.shards,
                                    location_step) if api_plan is not None else None)
            # the data plane's directory (routr_ray/actors/links.py): nothing waits for it
            deployment.actors.append(link_registry())
            for step in (location_step, serve_step, front_step, edge_step, api_step):
                if step is not None:
                    deployment.lines.extend(step.result())
        deployment.lines.extend(_start_trunk_registrar(deployment, config, options))
        if wait_ready:
            try:
                _wait_ready(deployment.edgeports, cancelled, None if not_ready_is_error else READY_TIMEOUT_S)
            except StartupError as exc:  # deploy: what was deployed stays
                log.warning("%s", exc)
    except Exception as exc:
        stop(deployment, drain_seconds=0)
        if isinstance(exc, StartupError):
            raise
        raise StartupError(_root_cause(exc)) from exc
    deployment.lines.extend(api_plan.lines if api_plan is not None else ())
    deployment.lines.append(f"Nonce/dialog key     {key_origin}")
    if deployment.started_ray:
        deployment.lines.append(f"Ray address          {context.address_info.get('gcs_address', '?')}")
        export = context.address_info.get("metrics_export_port")
        if export:
            deployment.lines.append(f"Metrics (Prometheus) http://{context.address_info.get('node_ip_address', '?')}:"
                                    f"{export}/metrics (Ray's export: routr_* series as ray_routr_*)")
        kept = f"moved to {deployment.log_dir} at stop" if deployment.log_dir else "removed at stop; --log-dir keeps them"
        deployment.lines.append(f"Logs                 {session_logs(deployment)} ({kept})")
    deployment.lines.append(f"Tracing              {_tracing_line({**os.environ, **tracing_env})}")
    dashboard = getattr(context, "dashboard_url", None)
    if dashboard:
        deployment.lines.append(f"Ray dashboard        http://{dashboard}")
    return deployment


def resolve_key(options: RunOptions, redis_url: str | None) -> str:
    """Fill ``options.nonce_key`` (unless given) from the environment, Redis or the state directory; returns where
    it came from (for the startup summary). Raises :class:`StartupError`."""
    if options.nonce_key:
        return "given"
    try:
        key = resolve_nonce_key(redis_url=redis_url, state_dir=options.state_dir, config_dir=options.config_dir)
    except KeyStoreError as exc:
        raise StartupError(str(exc)) from exc
    options.nonce_key = key.value
    return key.origin


def _tracing_line(environ: Mapping[str, str]) -> str:
    from routr_ray.observability.tracing import TracingSettings

    settings = TracingSettings.from_env(environ)
    if not settings.enabled:
        return "off"
    where = settings.endpoint or "the OTEL_EXPORTER_OTLP_* default"
    return f"on: OTLP to {where}, sample ratio {settings.sample_ratio:g}" if settings.exporter == "otlp" else \
        f"on: {settings.exporter}, sample ratio {settings.sample_ratio:g}"


def _wait_ready(edgeports: list[Any], cancelled: Callable[[], bool] | None = None,
                timeout: float | None = None) -> None:
    """Until every EdgePort's end-to-end probe has answered (routr_ray/edge/readiness.py), or ``cancelled()``;
    every READY_REPORT_S seconds a warning says which EdgePort is not ready and why (e.g. a ``host:port`` processor
    that is not up yet). With ``timeout``, a StartupError once that many seconds have passed."""
    started = time.monotonic()
    pending = {e.wait_ready.remote(READY_REPORT_S): e for e in edgeports}
    while pending and not (cancelled is not None and cancelled()):
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
        for ref in done:
            edge = pending.pop(ref)
            ok, why = ray.get(ref)
            if ok:
                continue
            waited = time.monotonic() - started
            if timeout is not None and waited >= timeout:
                raise StartupError(f"not ready after {waited:.0f}s: {why}")
            log.warning("not ready yet after %.0fs (waiting): %s", waited, why)
            pending[edge.wait_ready.remote(READY_REPORT_S)] = edge


def _serve_app() -> Any:
    """routr_ray.actors.serve_app (it imports Ray Serve: about a second, done while Ray starts, see
    :func:`_import_in_background`)."""
    from routr_ray.actors import serve_app

    return serve_app


def _serve_settings_inherited() -> None:
    """The local Ray's processes get Serve's one-loop settings from our environment (one_loop.inherit_one_loop),
    so that our actors need no runtime_env and take the raylet's idle workers (issue 13 item 4). Set before Serve
    is imported here (it reads them at import)."""
    from routr_ray.actors.one_loop import inherit_one_loop

    inherit_one_loop()


def _adopt_cluster_settings() -> None:
    """A deploy onto a running cluster: when its worker processes inherited Serve's one-loop settings (a cluster
    that ``routr-ray run`` started, :func:`_serve_settings_inherited`), this driver takes them as inherited too, so
    the actor options it computes are the ones the running replicas were started with. Otherwise every deploy
    would add a ``runtime_env`` that the running replicas lack: a new deployment version, and Serve would replace
    every replica for nothing (measured: an unchanged deploy under load restarted the dispatcher and both Connect
    replicas)."""
    from routr_ray.actors.one_loop import INHERITED_ENV, ONE_LOOP_SETTINGS, inherit_one_loop, one_loop

    if not one_loop():
        return

    @ray.remote(num_cpus=0)
    def inherited() -> bool:
        return os.environ.get(INHERITED_ENV) == "1" and all(
            os.environ.get(name) == value for name, value in ONE_LOOP_SETTINGS.items())

    try:
        if ray.get(inherited.remote(), timeout=30):
            inherit_one_loop()
    except Exception as exc:  # noqa: BLE001 - then the runtime_env: correct, only a redeploy may restart replicas
        log.warning("cannot read the cluster's Serve settings (%r): replicas may be restarted", exc)


def _import_in_background() -> threading.Thread:
    """Import Serve and the actors' modules while ``ray.init`` runs: they take about a second of the driver's
    start-up, and ``ray.init`` mostly waits for the processes it starts (issue 13 item 4). An import that fails
    fails again where the module is used, with its error."""

    def work() -> None:
        try:
            import routr_ray.actors.edgeport  # noqa: F401 - with serve_app and Ray Serve
        except Exception:  # noqa: BLE001 - see above
            pass

    thread = threading.Thread(target=work, name="routr-import", daemon=True)
    thread.start()
    return thread


def _init_ray(options: RunOptions, temp_dir: Path | None, *, metrics_port: int | None = None,
              env_vars: dict[str, str] | None = None) -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    init_args: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "configure_logging": False}
    if env_vars:  # a cluster's processes do not inherit this one's environment: the job's runtime_env carries it
        init_args["runtime_env"] = {"env_vars": env_vars}
    if options.address:
        init_args["address"] = options.address
    else:
        if metrics_port:
            init_args["_metrics_export_port"] = metrics_port
        init_args.update(
            include_dashboard=options.dashboard,
            object_store_memory=options.object_store_mb * 1024 * 1024,
            num_cpus=options.num_cpus,
            _temp_dir=str(temp_dir),
        )
    try:
        return ray.init(**init_args)
    except Exception as exc:  # noqa: BLE001 - one clear line for any Ray startup failure
        where = f"join the Ray cluster at {options.address}" if options.address else "start Ray"
        raise StartupError(f"cannot {where}: {_root_cause(exc)}") from exc


def _create_shards(deployment: Deployment, location: LocationConfig, provider: str, redis_url: str | None) -> list[Any]:
    """The shard actors, created (their names registered: Connect replicas look them up) but not waited for."""
    try:
        shards = location_actors.create_shards(location.shards, provider, redis_url)
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot start the Location service on {location.bind_addr}: {_root_cause(exc)}") from exc
    deployment.actors.extend(shards)
    return shards


def _start_location(deployment: Deployment, location: LocationConfig, provider: str, shards: list[Any]) -> list[str]:
    try:
        # token: spec.token of the Location config, or $ROUTR_RAY_LOCATION_TOKEN
        api = location_actors.create_api(location.bind_addr, location.shards, location.token)
        deployment.actors.append(api)
        ray.get([*(s.ready.remote() for s in shards), api.ready.remote()], timeout=START_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot start the Location service on {location.bind_addr}: {_root_cause(exc)}") from exc
    durability = "Redis" if provider == "redis" else "memory: bindings are lost on restart"
    return [f"Location gRPC API    {location.bind_addr} ({location.shards} shards, {durability})"]


def _create_serve(deployment: Deployment) -> Callable[[float], None]:
    """Serve's controller, created (see serve_app.start_serve; no gRPC proxy: Serve's would bind [::] whatever
    bindAddr says, the front actor serves bindAddr); returns the wait for its proxies."""
    try:
        proxies_ready = _serve_app().start_serve()
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot start Ray Serve: {_root_cause(exc)}") from exc
    deployment.serve_started = True
    return proxies_ready


def _start_serve(deployment: Deployment, dispatcher: DispatcherConfig, location: LocationConfig,
                 options: RunOptions, proxies_ready: Callable[[float], None]) -> list[str]:
    try:
        assert options.nonce_key is not None  # resolve_key ran in start()
        deployment.processor_options = processor_options(dispatcher, options.config_dir, location.shards,
                                                         options.nonce_key, deployment=deployment,
                                                         detached=not deployment.started_ray)
        # serve.run finds the controller by name and waits for it; the shards it names exist (Connect replicas
        # look them up when they start) and answer when they are up
        app = _serve_app()
        app.deploy_app(dispatcher, processor_options=deployment.processor_options,  # processorToken: $ROUTR_RAY_PROCESSOR_TOKEN
                       wait=False)
        app.wait_running(START_TIMEOUT_S)
        proxies_ready(START_TIMEOUT_S)
    except StartupError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot deploy the dispatcher (the routr Serve app): {_root_cause(exc)}") from exc
    return []


def _start_front(deployment: Deployment, dispatcher: DispatcherConfig) -> list[str]:
    from routr_ray.actors.front import deploy_front

    token = dispatcher_token(dispatcher)
    try:
        deployment.actors.append(deploy_front(dispatcher.bind_addr, token, deadline=front_deadline(dispatcher)))
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot start the dispatcher's gRPC port on {dispatcher.bind_addr}: "
                           f"{_root_cause(exc)}") from exc
    access = "token required" if token else "no token: loopback only, callers' sender replaced"
    return [f"Dispatcher gRPC      {dispatcher.bind_addr} (Processor/ProcessMessage; {access})"]


def front_deadline(dispatcher: DispatcherConfig) -> float:
    """How long the front waits for the dispatcher: past the longest processor or middleware deadline."""
    longest = max([dispatcher.deadline_seconds, *(e.deadline_seconds or 0.0 for e in
                                                  (*dispatcher.processors, *dispatcher.middlewares))])
    return longest + 5.0


def redeploy_front(dispatcher: DispatcherConfig) -> None:
    """After a dispatcher.yaml change: the front follows a new bindAddr or token (else it is kept as it is)."""
    from routr_ray.actors.front import deploy_front

    try:
        deploy_front(dispatcher.bind_addr, dispatcher_token(dispatcher), deadline=front_deadline(dispatcher))
    except Exception as exc:  # noqa: BLE001 - the running front stays as it was when it could be kept
        log.error("the dispatcher's gRPC port could not follow the new config: %s", _root_cause(exc))


def processor_options(dispatcher: DispatcherConfig, config_dir: Path, shard_count: int,
                      nonce_key: str, *, deployment: Deployment | None = None,
                      detached: bool = False) -> dict[str, dict[str, Any]]:
    """Constructor arguments of the built-in processors the dispatcher config uses.

    With a ``deployment`` (``run``/``deploy``), Connect's resources go through a board actor that a file watcher
    updates (issue 6: resources reload without a restart); without one (Serve config files), a fixed set."""
    names = {serve_name(p.addr) for p in (*dispatcher.processors, *dispatcher.middlewares)}
    result: dict[str, dict[str, Any]] = {}
    if "rtpengine" in names:
        from routr_ray.media.middleware import deployment_options

        result["rtpengine"] = deployment_options(config_dir)
    if "connect" in names:
        if deployment is None:
            from routr_ray.actors.connect import connect_options

            result["connect"] = connect_options(config_dir, shard_count, nonce_key)
        else:
            from routr_ray.actors.connect import ConnectResources

            deployment.connect_resources = ConnectResources(config_dir, detached=detached,
                                                            resources=deployment.database_resources)
            result["connect"] = deployment.connect_resources.options(shard_count, nonce_key)
    return result


def trunk_sources(config: ConfigSet) -> tuple[Any, ...]:
    """The source networks of the Trunks and Peers of the config's resources (never banned by the EdgePorts nor
    by Connect; routr_ray/config/trunk_sources.py); an ACL entry too broad to name a trunk is logged, not taken."""
    from routr_ray.config.trunk_sources import MIN_PREFIX, trunk_and_peer_sources

    sources = trunk_and_peer_sources(config.resources)
    for ref, network in sources.skipped:
        log.warning("%s: the ACL entry %s is broader than /%d: not taken as a trunk or peer address (its sources "
                    "can be banned; list it in rateLimit.trunksAndPeers.networks to exempt it)",
                    ref, network, MIN_PREFIX[network.version])
    return sources.networks


def _plan_api(config: ConfigSet) -> Any:
    """The provisioning API's ports and secrets checked, its database migrated and loaded (routr_ray/actors/api.py)."""
    from routr_ray.actors.api import ApiStartupError, plan_api

    try:
        return plan_api(config.api)
    except ApiStartupError as exc:
        raise StartupError(str(exc)) from exc


def _start_api(deployment: Deployment, plan: Any, config_dir: Path, shards: int, location_done: Any) -> list[str]:
    from routr_ray.actors.api import start_api

    try:
        location_done.result()  # it removes the bindings of deleted agents from the shards
        handle, lines = start_api(plan, config_dir, shards)
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot start the provisioning API on {plan.config.bind_addr}: {_root_cause(exc)}") from exc
    deployment.actors.append(handle)
    return lines


REFUSED_HINT = ("change it back to deploy the rest, or stop the server, change it and start it again (a restart "
                "loses the calls in progress, and the bindings with the memory store)")


def check_running(config: ConfigSet, location: LocationConfig, provider: str, redis_url: str | None) -> None:
    """A deploy onto a cluster that already runs our actors: every change of an EdgePort or the Location that
    cannot be applied in place (config/changes.py) stops it here, before anything is changed, with one line per
    change naming the file, the field and why (issue 18 item 4). Nothing runs yet: nothing to check."""
    from routr_ray.actors.edgeport import deployed_config, running_edgeport_diff

    diffs: list[ConfigDiff] = []
    for edge in edgeport_health_ports(config):
        diff = running_edgeport_diff(deployed_config(edge), file=config.file_of(f"EdgePort/{edge.ref}",
                                                                               "edgeport.yaml"))
        if diff is not None:
            diffs.append(diff)
    running = location_actors.running_layout()
    if running is not None:
        wanted = ShardLayout(location.shards, provider, location_actors.store_digest(redis_url))
        diffs.append(shards_diff(running, wanted, file=config.file_of("Location", "location.yaml")))
    refusals = refusals_of(diffs)
    if refusals:
        raise StartupError(refusal_message(refusals, hint=REFUSED_HINT))


def _start_edgeports(deployment: Deployment, config: ConfigSet) -> list[str]:
    from routr_ray.actors.edgeport import deploy_edgeports

    lines: list[str] = []
    protected = trunk_sources(config)
    for edge in edgeport_health_ports(config):
        try:
            handles, summary = deploy_edgeports(edge, trunk_sources=protected,
                                                file=config.file_of(f"EdgePort/{edge.ref}", "edgeport.yaml"))
        except Exception as exc:  # noqa: BLE001
            raise StartupError(f"cannot start EdgePort {edge.ref}: {_root_cause(exc)}") from exc
        deployment.edgeports.extend(handles)
        lines.extend(summary)
    return lines


def _start_trunk_registrar(deployment: Deployment, config: ConfigSet, options: RunOptions) -> list[str]:
    """The trunk registrar (routr_ray/actors/trunk_registrar.py), once the EdgePorts are up: it sends through the
    Registry's ``edgePortRef``, else the first EdgePort. Started whenever Connect runs, so a trunk that gets
    ``sendRegister`` in a reload is registered."""
    connect = deployment.connect_resources
    if connect is None or not config.edgeports:
        return []
    from routr_ray.actors.connect import BOARD_NAME
    from routr_ray.actors.trunk_registrar import (
        deploy_trunk_registrar,
        has_keepalives,
        has_registration_trunks,
    )

    settings = config.registry
    edge_ref = settings.edge_port_ref if settings is not None and settings.edge_port_ref else config.edgeports[0].ref
    if edge_ref not in {edge.ref for edge in config.edgeports}:
        raise StartupError(f"Registry edgePortRef {edge_ref!r} names no EdgePort of this config")
    try:
        shards = int(deployment.processor_options.get("connect", {}).get("shard_count", 0))  # keepalive of Peers
        handle = deploy_trunk_registrar(connect.resources, options.nonce_key, edge_ref, settings=settings,
                                        board=BOARD_NAME, location_shards=shards,
                                        detached=not deployment.started_ray, wait=False)
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot start the trunk registrar: {_root_cause(exc)}") from exc
    deployment.actors.append(handle)
    if not has_registration_trunks(connect.resources) and not has_keepalives(connect.resources):
        return []
    return [f"Trunk registrar      via EdgePort {edge_ref} (routr-ray status shows the registrations and "
            "keepalives)"]


def _root_cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    for line in reversed(text):
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


# -- stop ---------------------------------------------------------------------------------------------------


def stop(deployment: Deployment, *, drain_seconds: float) -> None:
    """Drain the EdgePorts, then stop what this run started; a local Ray is shut down with all its processes."""
    if deployment.watcher is not None:
        try:
            deployment.watcher.stop()
        except Exception as exc:  # noqa: BLE001
            log.warning("stopping the config watcher failed: %s", exc)
    if deployment.connect_resources is not None:
        try:
            deployment.connect_resources.stop()
        except Exception as exc:  # noqa: BLE001
            log.warning("stopping the Connect resource watcher failed: %s", exc)
    if deployment.edgeports and drain_seconds > 0:
        try:
            ray.get([e.drain.remote(drain_seconds) for e in deployment.edgeports], timeout=drain_seconds + 2)
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            log.warning("EdgePort drain did not finish: %s", exc)
    if not deployment.started_ray:  # a shared cluster: remove only what this run deployed
        for handle in [*deployment.edgeports, *deployment.actors]:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        if deployment.serve_started:
            from ray import serve

            app_name = _serve_app().APP_NAME
            try:
                serve.delete(app_name)
            except Exception as exc:  # noqa: BLE001
                log.warning("serve.delete(%s) failed: %s", app_name, exc)
    # With a local Ray, ray.shutdown() stops every actor and replica with it (no Serve teardown needed).
    ours = ray_processes(deployment.run_id) if deployment.started_ray else set()
    if ray.is_initialized():
        ray.shutdown()
    if deployment.started_ray:
        ours |= ray_processes(deployment.run_id)
        killed = reap_processes(ours, grace=LEFTOVER_GRACE_S)
        if killed:
            log.info("killed %d Ray process(es) that outlived ray.shutdown", killed)
    remove_temp_dir(deployment)


# -- the run's directory ------------------------------------------------------------------------------------


def check_log_dir(path: Path) -> None:
    """--log-dir must be a directory we can write (created if missing): checked before Ray starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".routr-ray-write-test-")
        probe.close()
    except OSError as exc:
        raise StartupError(f"--log-dir {path}: {exc.strerror or exc}") from exc


def session_logs(deployment: Deployment) -> Path | None:
    """The logs directory of the local Ray's session (every actor's and replica's output)."""
    if deployment.temp_dir is None:
        return None
    sessions = sorted(p for p in deployment.temp_dir.glob("session_*") if p.is_dir() and not p.is_symlink())
    return sessions[-1] / "logs" if sessions else None


def remove_temp_dir(deployment: Deployment) -> None:
    """Remove the run's temporary directory (after every process of the run has exited), first moving the
    session's logs to ``log_dir`` when the operator asked to keep them."""
    temp_dir, deployment.temp_dir = deployment.temp_dir, None
    if temp_dir is None:
        return
    if deployment.log_dir is not None:
        for session in sorted(p for p in temp_dir.glob("session_*") if p.is_dir() and not p.is_symlink()):
            logs = session / "logs"
            if logs.is_dir():
                target = deployment.log_dir / session.name
                try:
                    shutil.move(str(logs), str(target))
                    log.info("logs of this run kept in %s", target)
                except OSError as exc:
                    log.warning("cannot move the logs to %s (%s): they are removed", target, exc)
    shutil.rmtree(temp_dir, ignore_errors=True)


Process = tuple[int, str]  # (pid, start time): a pid alone may be reused


def _proc_stat(pid: str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        return (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _live_processes() -> dict[int, tuple[int, str, bytes]]:
    """pid -> (ppid, start time, environment) of every live (non-zombie) process we can read (Linux /proc)."""
    result = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(entry.name)
        if not fields or fields[0] in ("Z", "X"):
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            environ = b""
        result[int(entry.name)] = (int(fields[1]), fields[19], environ)
    return result


def ray_processes(run_id: str) -> set[Process]:
    """The processes of this run: descendants of this process, and processes whose environment carries the run
    id (re-parented orphans). Ray renames processes with setproctitle, which can overwrite part of the
    environment, hence both ways."""
    live = _live_processes()
    me = os.getpid()
    marker = f"{RUN_ID_ENV}={run_id}".encode()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in live.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(children.get(me, ()))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    found.update(pid for pid, (_, _, environ) in live.items() if pid != me and marker in environ)
    return {(pid, live[pid][1]) for pid in found}


def _alive(processes: set[Process]) -> set[Process]:
    alive = set()
    for pid, started in processes:
        fields = _proc_stat(str(pid))
        if fields and fields[0] not in ("Z", "X") and fields[19] == started:
            alive.add((pid, started))
    return alive


def reap_processes(processes: set[Process], *, grace: float) -> int:
    """Wait up to ``grace`` seconds for ``processes`` to exit (Ray's agents follow the raylet by themselves
    within a second or two), then SIGKILL the rest; returns how many had to be killed."""
    deadline = time.monotonic() + grace
    while (left := _alive(processes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(left)


# -- commands -----------------------------------------------------------------------------------------------


def run(options: RunOptions) -> int:
    """Start everything, stay in the foreground until SIGINT/SIGTERM, then stop everything."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if options.log_dir is not None:  # this process's log too (Ray's are moved there at stop)
        try:
            options.log_dir.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(options.log_dir / "routr-ray.log")
        except OSError as exc:
            print(f"routr-ray: --log-dir {options.log_dir}: {exc.strerror or exc}", file=sys.stderr, flush=True)
            return 1
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(handler)
    stop_event = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_event.set()

    def install() -> None:  # again after ray.init, which installs a SIGTERM handler that aborts the driver
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    install()
    started = time.monotonic()
    try:
        try:
            deployment = start(options, on_ray_started=install, wait_ready=True, cancelled=stop_event.is_set)
        except StartupError as exc:
            print(f"routr-ray: {exc}", file=sys.stderr, flush=True)
            return 1
        if options.watch_config and deployment.dispatcher is not None:
            deployment.watcher = _serve_app().watch_config(options.config_dir, deployment.dispatcher,
                                                           processor_options=deployment.processor_options,
                                                           then=redeploy_front)
        if deployment.connect_resources is not None:
            deployment.connect_resources.watch()
        if not stop_event.is_set():
            print(f"routr-ray is ready in {time.monotonic() - started:.1f}s", flush=True)
            for line in deployment.lines:
                print(f"  {line}", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
        try:
            while not stop_event.wait(0.5):
                pass
        finally:
            print("routr-ray: stopping", flush=True)
            stopping = time.monotonic()
            stop(deployment, drain_seconds=options.drain_seconds)
            print(f"routr-ray: stopped in {time.monotonic() - stopping:.1f}s", flush=True)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def deploy(options: RunOptions) -> int:
    """Deploy onto the existing cluster at ``options.address`` (detached actors + the Serve app) and return."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not options.address:
        print("routr-ray: deploy needs --address (e.g. ray://head:10001 or auto)", file=sys.stderr)
        return 2
    started = time.monotonic()
    _lower_priority()
    try:
        # the EdgePorts are ready when this returns, unless the app is managed elsewhere (it may not run yet)
        deployment = start(options, wait_ready=options.deploy_serve, not_ready_is_error=False)
    except StartupError as exc:
        print(f"routr-ray: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"routr-ray deployed to {options.address} in {time.monotonic() - started:.1f}s", flush=True)
    for line in deployment.lines:
        print(f"  {line}", flush=True)
    ray.shutdown()  # disconnect: the actors are detached and the Serve app keeps running
    return 0


DEPLOY_NICENESS = 10


def _lower_priority() -> None:
    """A deploy is background work: this driver (Python and Ray start-up, the config and resources loaded: seconds
    of CPU) runs at a lower CPU priority, so that on a node that also carries calls (``--address auto`` on a cluster
    node, or next to ``routr-ray run``) the SIP path is not starved meanwhile (issue 18: measured with
    benchmarks/bench_chaos.py on 2 cores)."""
    try:
        os.nice(DEPLOY_NICENESS)
    except OSError:  # not allowed here: run as it is
        pass


def serve_config_app(args: dict[str, str]) -> Any:
    """Application builder for a Serve config file (``import_path: routr_ray.actors.launcher:serve_config_app``,
    ``args: {config_dir: /opt/routr/config}``, optionally ``state_dir``): the ``routr`` app of that config
    directory. The Location shards must already exist (``routr-ray deploy`` creates them). The nonce/dialog key is
    ``ROUTR_RAY_NONCE_KEY``, else the one kept in the Location's Redis, else the state directory of the node that
    builds the app: on a cluster use Redis or set the variable, so that nonces and dialog tokens stay valid across
    redeploys (util/keystore.py)."""
    config_dir = Path(args.get("config_dir") or os.environ.get(CONFIG_ENV) or "config")
    state_dir = args.get("state_dir")
    options = RunOptions(config_dir=config_dir, state_dir=Path(state_dir) if state_dir else None)
    config = load(options)
    dispatcher = dispatcher_config(config)
    location, provider, redis_url = location_config(config, None)
    resolve_key(options, redis_url if provider == "redis" else None)
    assert options.nonce_key is not None
    return _serve_app().build_app(dispatcher, processor_options=processor_options(dispatcher, config_dir, location.shards,
                                                                     options.nonce_key))
