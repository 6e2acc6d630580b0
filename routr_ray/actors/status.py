"""`routr-ray status`: the EdgePorts, Serve deployments (with replicas), Location shards (with binding counts) and
the Location API of a running routr-ray, and whether each is healthy; then registered users, calls in progress and
the state of each trunk, from the metrics.

Read from a connected driver: named actors of namespace ``routr`` (``ray.util.list_named_actors``), each asked
over Ray with a timeout (an actor that does not answer is reported unhealthy, not waited for),
``serve.status()`` for the ``routr`` application, and the Prometheus text of every live node's Ray metrics export
port (``ray.nodes()``: ``MetricsExportPort``), summed by :func:`routr_ray.observability.summary.summarize` (the
numbers are as old as Ray's last export, a few seconds).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import serve

from routr_ray.actors import NAMESPACE
from routr_ray.actors.location import API_NAME, SHARD_NAME
from routr_ray.observability.summary import MetricsSummary, summarize

EDGEPORT_PREFIX = "edgeport-"
TRUNK_REGISTRAR = "trunk-registrar"  # routr_ray/actors/trunk_registrar.py NAME (not imported: no actor classes here)
SHARD_PREFIX = SHARD_NAME.split("{", 1)[0]


@dataclass(frozen=True)
class EdgePortStatus:
    name: str
    healthy: bool
    listeners: tuple[tuple[str, str, int], ...] = ()
    health_port: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class ShardStatus:
    name: str
    healthy: bool
    bindings: int = 0
    aors: int = 0
    durable: bool = False
    error: str | None = None


@dataclass(frozen=True)
class LocationApiStatus:
    healthy: bool
    port: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class TrunkRegistrationStatus:
    """One trunk's outbound registration (docs/trunks.md "States")."""

    trunk: str
    state: str  # unregistered | registering | registered | failed
    expires_in: int | None = None
    last_error: str = ""
    failures: int = 0


@dataclass(frozen=True)
class KeepaliveStatus:
    """One target of the OPTIONS keepalive (docs/trunks.md "Keepalive")."""

    kind: str  # trunk | peer
    ref: str
    target: str  # transport:host:port
    state: str  # up | down
    pinged: bool = False
    failures: int = 0
    last_status: int = 0
    last_error: str = ""
    seconds: int = 0  # in this state for


@dataclass(frozen=True)
class DeploymentStatus:
    app: str
    name: str
    status: str
    replicas: dict[str, int] = field(default_factory=dict)  # replica state -> count

    @property
    def running_replicas(self) -> int:
        return self.replicas.get("RUNNING", 0)


@dataclass(frozen=True)
class ClusterStatus:
    edgeports: tuple[EdgePortStatus, ...]
    shards: tuple[ShardStatus, ...]
    location_api: LocationApiStatus | None
    applications: dict[str, str]  # app name -> status
    deployments: tuple[DeploymentStatus, ...]
    trunks: tuple[TrunkRegistrationStatus, ...] = ()
    trunk_registrar_error: str | None = None  # the registrar exists but did not answer
    metrics: MetricsSummary = field(default_factory=MetricsSummary)
    keepalives: tuple[KeepaliveStatus, ...] = ()

    @property
    def healthy(self) -> bool:
        """Something is deployed and every part of it answers."""
        parts = [*self.edgeports, *self.shards, *([self.location_api] if self.location_api else [])]
        return (bool(parts) and all(p.healthy for p in parts)
                and all(s == "RUNNING" for s in self.applications.values())
                and all(d.status == "HEALTHY" for d in self.deployments))

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "healthy": self.healthy}


def _edgeport_health_port(actor: Any) -> int | None:
    """Runs inside an EdgePortActor (via ``__ray_call__``): its health port, None when disabled."""
    health = actor.config.health
    return health.port if health.enabled else None


def _error(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def _get(ref: Any, timeout: float) -> Any:
    return ray.get(ref, timeout=timeout)


def _edgeport(name: str, timeout: float) -> EdgePortStatus:
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
        healthy_ref = handle.check_health.remote()
        listeners_ref = handle.ready.remote()
        health_ref = handle.__ray_call__.remote(_edgeport_health_port)
        listeners = tuple(tuple(item) for item in _get(listeners_ref, timeout))
        return EdgePortStatus(name, bool(_get(healthy_ref, timeout)), listeners, _get(health_ref, timeout))  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return EdgePortStatus(name, False, error=_error(exc))


def _shard(name: str, timeout: float) -> ShardStatus:
    try:
        stats = _get(ray.get_actor(name, namespace=NAMESPACE).stats.remote(), timeout)
        return ShardStatus(name, True, int(stats["bindings"]), int(stats["aors"]), bool(stats["durable"]))
    except Exception as exc:  # noqa: BLE001
        return ShardStatus(name, False, error=_error(exc))


def _location_api(timeout: float) -> LocationApiStatus:
    try:
        return LocationApiStatus(True, int(_get(ray.get_actor(API_NAME, namespace=NAMESPACE).ready.remote(), timeout)))
    except Exception as exc:  # noqa: BLE001
        return LocationApiStatus(False, error=_error(exc))


def _text(value: Any) -> str:
    """Serve's status enums are str enums: their value, not ``Class.MEMBER``."""
    return str(getattr(value, "value", value))


def _shard_index(name: str) -> int:
    suffix = name[len(SHARD_PREFIX):]
    return int(suffix) if suffix.isdigit() else 1 << 30


def collect_status(*, timeout: float = 5.0) -> ClusterStatus:
    """The status of everything routr-ray deployed on the connected cluster (``ray.init`` done)."""
    names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                   if a.get("namespace") == NAMESPACE)
    edgeports = tuple(_edgeport(n, timeout) for n in names if n.startswith(EDGEPORT_PREFIX))
    shards = tuple(_shard(n, timeout) for n in sorted((n for n in names if n.startswith(SHARD_PREFIX)),
                                                      key=_shard_index))
    api = _location_api(timeout) if API_NAME in names else None
    applications: dict[str, str] = {}
    deployments: list[DeploymentStatus] = []
    for app_name, app in serve.status().applications.items():
        applications[app_name] = _text(app.status)
        for name, dep in app.deployments.items():
            replicas = {_text(state): int(count) for state, count in dep.replica_states.items()}
            deployments.append(DeploymentStatus(app_name, name, _text(dep.status), replicas))
    trunks, registrar_error = _trunks(timeout) if TRUNK_REGISTRAR in names else ((), None)
    keepalives = _keepalives(timeout) if TRUNK_REGISTRAR in names and registrar_error is None else ()
    return ClusterStatus(edgeports, shards, api, applications, tuple(deployments), trunks, registrar_error,
                         read_metrics(timeout), keepalives)


def _trunks(timeout: float) -> tuple[tuple[TrunkRegistrationStatus, ...], str | None]:
    try:
        rows = _get(ray.get_actor(TRUNK_REGISTRAR, namespace=NAMESPACE).statuses.remote(), timeout)
    except Exception as exc:  # noqa: BLE001
        return (), _error(exc)
    return tuple(TrunkRegistrationStatus(str(r["trunk"]), str(r["state"]), r.get("expires_in"),
                                         str(r.get("last_error") or ""), int(r.get("failures") or 0))
                 for r in rows), None


def _keepalives(timeout: float) -> tuple[KeepaliveStatus, ...]:
    try:
        rows = _get(ray.get_actor(TRUNK_REGISTRAR, namespace=NAMESPACE).keepalives.remote(), timeout)
    except Exception:  # noqa: BLE001 - an older registrar without keepalives, or gone meanwhile
        return ()
    return tuple(KeepaliveStatus(str(r["kind"]), str(r["ref"]), str(r["target"]), str(r["state"]), bool(r["pinged"]),
                                 int(r.get("failures") or 0), int(r.get("last_status") or 0),
                                 str(r.get("last_error") or ""), int(r.get("for") or 0)) for r in rows)


def read_metrics(timeout: float) -> MetricsSummary:
    """The summed ``ray_routr_*`` series of every live node's metrics export port."""
    import urllib.request

    texts: list[str] = []
    errors: list[str] = []
    for node in ray.nodes():
        port = node.get("MetricsExportPort")
        host = node.get("NodeManagerAddress")
        if not node.get("Alive") or not port or not host:
            continue
        url = f"http://{host}:{port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - Ray's own port
                texts.append(reply.read().decode("utf-8", "replace"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            errors.append(f"{url}: {_error(exc)}")
    return summarize(texts, errors)


def _mark(ok: bool) -> str:
    return "ok " if ok else "BAD"


def format_status(status: ClusterStatus) -> list[str]:
    lines = [f"routr-ray status: {'healthy' if status.healthy else 'NOT healthy'}", "EdgePorts:"]
    for edge in status.edgeports:
        where = ", ".join(f"{proto.upper()} {host}:{port}" for proto, host, port in edge.listeners)
        health = f"; health :{edge.health_port}" if edge.health_port else ""
        lines.append(f"  {_mark(edge.healthy)} {edge.name:<24} {edge.error or where}{health}")
    if not status.edgeports:
        lines.append("  (none)")
    lines.append("Serve applications and deployments:")
    for app, app_status in status.applications.items():
        lines.append(f"  {_mark(app_status == 'RUNNING')} {app:<24} {app_status}")
        for dep in (d for d in status.deployments if d.app == app):
            replicas = ", ".join(f"{count} {state}" for state, count in sorted(dep.replicas.items())) or "0"
            lines.append(f"    {_mark(dep.status == 'HEALTHY')} {dep.name:<22} {dep.status}; replicas: {replicas}")
    if not status.applications:
        lines.append("  (none)")
    total = sum(s.bindings for s in status.shards)
    lines.append(f"Location shards ({len(status.shards)}, {total} bindings):")
    for shard in status.shards:
        detail = shard.error or (f"{shard.bindings} bindings, {shard.aors} AORs, "
                                 f"{'Redis' if shard.durable else 'memory'}")
        lines.append(f"  {_mark(shard.healthy)} {shard.name:<24} {detail}")
    if status.location_api is not None:
        api = status.location_api
        lines.append(f"Location gRPC API: {_mark(api.healthy)} {api.error or f'port {api.port}'}")
    if status.trunks or status.trunk_registrar_error:
        lines.append("Trunk registrations:")
        if status.trunk_registrar_error:
            lines.append(f"  BAD trunk-registrar            {status.trunk_registrar_error}")
        for trunk in status.trunks:
            if trunk.state == "registered":
                detail = f"registered, expires in {trunk.expires_in} s"
            else:
                detail = trunk.state + (f" ({trunk.failures} in a row): {trunk.last_error}" if trunk.last_error else "")
            lines.append(f"  {_mark(trunk.state == 'registered')} {trunk.trunk:<24} {detail}")
    if status.keepalives:
        lines.append("Keepalive (OPTIONS pings):")
        lines.extend(_keepalive_line(k) for k in status.keepalives)
    lines.extend(format_metrics(status.metrics))
    return lines


def _keepalive_line(k: KeepaliveStatus) -> str:
    if k.state == "down":
        detail = f"down for {k.seconds} s ({k.failures} pings failed: {k.last_error})" if k.failures else \
            f"down for {k.seconds} s (last answer {k.last_status})"
    elif not k.pinged:
        detail = "up (not pinged yet)"
    elif k.failures:
        detail = f"up ({k.failures} pings failed: {k.last_error})"
    else:
        detail = f"up ({k.last_status} to the last ping)"
    return f"  {_mark(k.state == 'up')} {k.kind + ' ' + k.ref:<24} {k.target:<28} {detail}"


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def format_metrics(summary: MetricsSummary) -> list[str]:
    """The lines of the metrics part (``?``: no component reported that number yet)."""
    lines = [f"From the metrics ({summary.nodes_read} node{'s' if summary.nodes_read != 1 else ''} read):",
             f"  Registered users:  {_count(summary.registered_aors)} (bindings: {_count(summary.bindings)})",
             f"  Calls in progress: {_count(summary.calls_in_progress)}"]
    if summary.trunks:
        states = ", ".join(f"{ref} {'registered' if up else 'NOT registered'}" for ref, up in summary.trunks.items())
        lines.append(f"  Trunks:            {states}")
    else:
        lines.append("  Trunks:            (no trunk registers)")
    lines.extend(f"  cannot read {error}" for error in summary.errors)
    return lines
