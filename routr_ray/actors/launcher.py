"""`routr-ray run` and `routr-ray deploy`: start (or join) Ray and deploy Location, the `routr` Serve app and the
EdgePorts.

Startup: the config is loaded and every local port and Redis are checked *before* Ray starts, so the common
mistakes (bad config, port taken, Redis down) cost no Ray startup and print one line. Ray Serve is imported while
``ray.init`` runs. Then the parts are created in the order the longest chain needs them (the raylet starts only as
many worker processes at once as there are CPUs): the Serve controller (controller -> replicas), the Location
shards, the EdgePorts, the Location gRPC API; each part is then waited for in a thread of its own, side by side.
The app is deployed as soon as the controller answers (Connect replicas look the shards up by name; they need not
be up yet) and its state is asked every 0.1 s. ``run`` prints "ready" only once every EdgePort's end-to-end
probe (dispatcher -> every processor -> every Location shard) has answered: then a REGISTER succeeds (issue 13
item 4). Shutdown on SIGINT/SIGTERM: EdgePorts drain (new requests get 503) for at most ``drain_seconds``, then
everything this command started is stopped, Ray included when it was started here; Ray processes that outlive
``ray.shutdown`` (its agents exit a moment after the raylet) are waited for and killed, so none is left behind,
and the run's temporary directory is removed (its logs moved to ``--log-dir`` first when given).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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
from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig
from routr_ray.config.edgeport import EdgePortConfig, TransportProtocol
from routr_ray.config.loader import ConfigSet
from routr_ray.config.location import CacheProvider, LocationConfig, parse_redis_parameters
from routr_ray.dispatch.runtime import serve_name

log = logging.getLogger("routr_ray.run")

DEFAULT_METHODS = ("REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "PRACK", "UPDATE",
                   "INFO", "REFER", "SUBSCRIBE", "NOTIFY")
CONFIG_ENV = "ROUTR_RAY_CONFIG"
NONCE_KEY_ENV = "ROUTR_RAY_NONCE_KEY"
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
    log_dir: Path | None = None  # run: where this run's logs are kept (else they go with its temporary directory)
    nonce_key: str = field(default_factory=lambda: os.environ.get(NONCE_KEY_ENV) or secrets.token_hex(32))


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
    return config


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


def _split_host_port(bind_addr: str) -> tuple[str, int]:
    host, _, port = bind_addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


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
        _, grpc_port = _split_host_port(dispatcher.bind_addr)
        yield "dispatcher gRPC port (Serve's gRPC proxy)", socket.SOCK_STREAM, "::", grpc_port
    host, port = _split_host_port(location.bind_addr)
    yield "Location gRPC API", socket.SOCK_STREAM, host, port


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
    if provider == "redis":
        check_redis(redis_url or "")
    if not options.address:
        check_ports(local_ports(config, dispatcher if options.deploy_serve else None, location))

    if options.log_dir is not None:
        check_log_dir(options.log_dir)

    deployment = Deployment(run_id=os.environ.setdefault(RUN_ID_ENV, uuid.uuid4().hex), dispatcher=dispatcher,
                            log_dir=options.log_dir)
    if not options.address:
        # Unix socket paths are limited to 107 bytes: a short directory of our own
        deployment.temp_dir = Path(tempfile.mkdtemp(prefix="routr-ray-", dir="/tmp"))
        _serve_settings_inherited()
    _import_in_background()
    try:
        context = _init_ray(options, deployment.temp_dir)
    except StartupError:
        remove_temp_dir(deployment)
        raise
    deployment.started_ray = not options.address
    if on_ray_started is not None:
        on_ray_started()
    try:
        # The order of creation is the order of start-up: the raylet starts only as many worker processes at once
        # as there are CPUs. First the Serve controller (the longest chain: controller -> replicas), then the
        # shards, then the EdgePorts; each part then waits in a thread of its own, side by side.
        proxies_ready = _create_serve(deployment, dispatcher) if options.deploy_serve else None
        shards = _create_shards(deployment, location, provider, redis_url)
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="routr-start") as pool:
            edge_step = pool.submit(_start_edgeports, deployment, config)
            serve_step = (pool.submit(_start_serve, deployment, dispatcher, location, options, proxies_ready)
                          if proxies_ready is not None else None)
            location_step = pool.submit(_start_location, deployment, location, provider, shards)
            # the data plane's directory (routr_ray/actors/links.py): nothing waits for it
            deployment.actors.append(link_registry())
            for step in (location_step, serve_step, edge_step):
                if step is not None:
                    deployment.lines.extend(step.result())
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
    if deployment.started_ray:
        deployment.lines.append(f"Ray address          {context.address_info.get('gcs_address', '?')}")
        kept = f"moved to {deployment.log_dir} at stop" if deployment.log_dir else "removed at stop; --log-dir keeps them"
        deployment.lines.append(f"Logs                 {session_logs(deployment)} ({kept})")
    dashboard = getattr(context, "dashboard_url", None)
    if dashboard:
        deployment.lines.append(f"Ray dashboard        http://{dashboard}")
    return deployment


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


def _init_ray(options: RunOptions, temp_dir: Path | None) -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    init_args: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "configure_logging": False}
    if options.address:
        init_args["address"] = options.address
    else:
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


def _create_serve(deployment: Deployment, dispatcher: DispatcherConfig) -> Callable[[float], None]:
    """Serve's controller, created (see serve_app.start_serve); returns the wait for its proxies."""
    host, port = _split_host_port(dispatcher.bind_addr)
    if host not in ("0.0.0.0", "::"):
        log.warning("Serve's gRPC proxy binds every interface: the host %r of bindAddr is ignored", host)
    try:
        proxies_ready = _serve_app().start_serve(port)
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot deploy the dispatcher on gRPC port {port}: {_root_cause(exc)}") from exc
    deployment.serve_started = True
    return proxies_ready


def _start_serve(deployment: Deployment, dispatcher: DispatcherConfig, location: LocationConfig,
                 options: RunOptions, proxies_ready: Callable[[float], None]) -> list[str]:
    _, port = _split_host_port(dispatcher.bind_addr)
    try:
        deployment.processor_options = processor_options(dispatcher, options.config_dir, location.shards,
                                                         options.nonce_key, deployment=deployment,
                                                         detached=not deployment.started_ray)
        # serve.run finds the controller by name and waits for it; the shards it names exist (Connect replicas
        # look them up when they start) and answer when they are up
        app = _serve_app()
        app.deploy_app(dispatcher, processor_options=deployment.processor_options,  # token: $ROUTR_RAY_DISPATCHER_TOKEN
                       wait=False)
        app.wait_running(START_TIMEOUT_S)
        proxies_ready(START_TIMEOUT_S)
    except StartupError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"cannot deploy the dispatcher on gRPC port {port}: {_root_cause(exc)}") from exc
    return [f"Dispatcher gRPC      0.0.0.0:{port} (Processor/ProcessMessage; firewall it)"]


def processor_options(dispatcher: DispatcherConfig, config_dir: Path, shard_count: int,
                      nonce_key: str, *, deployment: Deployment | None = None,
                      detached: bool = False) -> dict[str, dict[str, Any]]:
    """Constructor arguments of the built-in processors the dispatcher config uses.

    With a ``deployment`` (``run``/``deploy``), Connect's resources go through a board actor that a file watcher
    updates (issue 6: resources reload without a restart); without one (Serve config files), a fixed set."""
    names = {serve_name(p.addr) for p in (*dispatcher.processors, *dispatcher.middlewares)}
    result: dict[str, dict[str, Any]] = {}
    if "connect" in names:
        if deployment is None:
            from routr_ray.actors.connect import connect_options

            result["connect"] = connect_options(config_dir, shard_count, nonce_key)
        else:
            from routr_ray.actors.connect import ConnectResources

            deployment.connect_resources = ConnectResources(config_dir, detached=detached)
            result["connect"] = deployment.connect_resources.options(shard_count, nonce_key)
    return result


def _start_edgeports(deployment: Deployment, config: ConfigSet) -> list[str]:
    from routr_ray.actors.edgeport import deploy_edgeports

    lines: list[str] = []
    for edge in edgeport_health_ports(config):
        try:
            handles, summary = deploy_edgeports(edge)
        except Exception as exc:  # noqa: BLE001
            raise StartupError(f"cannot start EdgePort {edge.ref}: {_root_cause(exc)}") from exc
        deployment.edgeports.extend(handles)
        lines.extend(summary)
    return lines


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
                                                           processor_options=deployment.processor_options)
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


def serve_config_app(args: dict[str, str]) -> Any:
    """Application builder for a Serve config file (``import_path: routr_ray.actors.launcher:serve_config_app``,
    ``args: {config_dir: /opt/routr/config}``): the ``routr`` app of that config directory. The Location shards
    must already exist (``routr-ray deploy`` creates them); set ``ROUTR_RAY_NONCE_KEY`` on the cluster so that
    digest nonces stay valid across redeploys."""
    config_dir = Path(args.get("config_dir") or os.environ.get(CONFIG_ENV) or "config")
    options = RunOptions(config_dir=config_dir)
    config = load(options)
    dispatcher = dispatcher_config(config)
    location, _, _ = location_config(config, None)
    return _serve_app().build_app(dispatcher, processor_options=processor_options(dispatcher, config_dir, location.shards,
                                                                     options.nonce_key))
