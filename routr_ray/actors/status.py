"""`routr-ray status`: one operator view of a running routr-ray (issue 17 item 4): the Ray nodes (address, labels,
alive), the EdgePorts (node, listeners, flows, transactions, placement, restarted), the Serve deployments with
their replicas per node, the Location shards (node, bindings), the Location API, the trunk registrations, and
the data plane: every link service with its servers, and which services each EdgePort calls.

Read from a connected driver: ``ray.nodes()``, the named actors of namespace ``routr``
(``ray.util.list_named_actors``), each asked over Ray with a timeout (an actor that does not answer is reported
unhealthy, not waited for), ``serve.status()`` and the Serve controller's details (replicas' nodes) for the
applications, and the link registry's summary (addresses only, never a token). Then registered users, calls in
progress and the state of each trunk, from the metrics: the Prometheus text of every live node's Ray metrics export
port (``ray.nodes()``: ``MetricsExportPort``), summed by :func:`routr_ray.observability.summary.summarize` (as old as
Ray's last export, a few seconds).
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
class NodeStatus:
    node_id: str
    address: str
    alive: bool
    head: bool = False
    labels: dict[str, str] = field(default_factory=dict)  # the operator's labels (not Ray's own ray.io/...)
    cpus: float = 0.0


@dataclass(frozen=True)
class EdgePortStatus:
    name: str
    healthy: bool
    listeners: tuple[tuple[str, str, int], ...] = ()
    health_port: int | None = None
    error: str | None = None
    node_id: str = ""
    node_ip: str = ""
    worker: int = 0
    flows: int = 0  # open connections (TCP, TLS, WS, WSS)
    transactions: int = 0
    placement: str = ""  # spec.placement, "" when none
    restarted: bool = False  # Ray restarted this actor (a crash, or its node lost)
    draining: bool = False
    links: dict[str, int] = field(default_factory=dict)  # link service it calls -> servers it knows


@dataclass(frozen=True)
class ShardStatus:
    name: str
    healthy: bool
    bindings: int = 0
    aors: int = 0
    durable: bool = False
    error: str | None = None
    node_id: str = ""
    node_ip: str = ""


@dataclass(frozen=True)
class LinkServiceStatus:
    """One service of the data plane (docs/link.md) and the addresses of its live servers."""

    service: str
    servers: tuple[tuple[str, int], ...] = ()


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
    nodes: dict[str, int] = field(default_factory=dict)  # node address -> running replicas there

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
    nodes: tuple[NodeStatus, ...] = ()
    links: tuple[LinkServiceStatus, ...] = ()
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


def _where(actor: Any) -> tuple[str, str]:
    """Runs inside any actor (via ``__ray_call__``): its node id and address."""
    return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()


def _edgeport(name: str, timeout: float) -> EdgePortStatus:
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
        healthy_ref = handle.check_health.remote()
        info_ref = handle.status_info.remote()
        health_ref = handle.__ray_call__.remote(_edgeport_health_port)
        info = _get(info_ref, timeout)
        listeners = tuple(tuple(item) for item in info["listeners"])
        return EdgePortStatus(
            name, bool(_get(healthy_ref, timeout)), listeners, _get(health_ref, timeout),  # type: ignore[arg-type]
            node_id=str(info["node_id"]), node_ip=str(info["node_ip"]), worker=int(info["worker"]),
            flows=int(info["flows"]), transactions=int(info["transactions"]), placement=str(info["placement"]),
            restarted=bool(info["restarted"]), draining=bool(info["draining"]),
            links={str(k): int(v) for k, v in info["links"].items()},
        )
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return EdgePortStatus(name, False, error=_error(exc))


def _shard(name: str, timeout: float) -> ShardStatus:
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
        stats_ref, where_ref = handle.stats.remote(), handle.__ray_call__.remote(_where)
        stats = _get(stats_ref, timeout)
        node_id, node_ip = _get(where_ref, timeout)
        return ShardStatus(name, True, int(stats["bindings"]), int(stats["aors"]), bool(stats["durable"]),
                           node_id=str(node_id), node_ip=str(node_ip))
    except Exception as exc:  # noqa: BLE001
        return ShardStatus(name, False, error=_error(exc))


def _nodes() -> tuple[NodeStatus, ...]:
    nodes = []
    for node in ray.nodes():
        resources = node.get("Resources") or {}
        labels = {str(k): str(v) for k, v in (node.get("Labels") or {}).items() if not str(k).startswith("ray.io/")}
        nodes.append(NodeStatus(str(node.get("NodeID", "")), str(node.get("NodeManagerAddress", "")),
                                bool(node.get("Alive")), "node:__internal_head__" in resources, labels,
                                float(resources.get("CPU", 0.0))))
    return tuple(sorted(nodes, key=lambda n: (not n.alive, not n.head, n.address, n.node_id)))


def _replica_nodes() -> dict[tuple[str, str], dict[str, int]]:
    """(app, deployment) -> node address -> running replicas, from the Serve controller (empty when unknown)."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client(raise_if_no_controller_running=False)
        details = client.get_serve_details() if client is not None else {}
    except Exception:  # noqa: BLE001 - a private API: the counts from serve.status() remain
        return {}
    found: dict[tuple[str, str], dict[str, int]] = {}
    for app_name, app in (details.get("applications") or {}).items():
        for dep_name, dep in (app.get("deployments") or {}).items():
            per_node: dict[str, int] = {}
            for replica in dep.get("replicas") or ():
                if _text(replica.get("state")) == "RUNNING":
                    where = str(replica.get("node_ip") or replica.get("node_id") or "?")
                    per_node[where] = per_node.get(where, 0) + 1
            found[(app_name, dep_name)] = per_node
    return found


def _links(timeout: float) -> tuple[LinkServiceStatus, ...]:
    from routr_ray.actors.links import REGISTRY_NAME

    try:
        summary = _get(ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE).summary.remote(), timeout)
    except Exception:  # noqa: BLE001 - no registry (links off, or nothing deployed)
        return ()
    return tuple(LinkServiceStatus(str(service), tuple((str(h), int(p)) for h, p in servers))
                 for service, servers in summary.items() if servers)


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
    replica_nodes = _replica_nodes()
    for app_name, app in serve.status().applications.items():
        applications[app_name] = _text(app.status)
        for name, dep in app.deployments.items():
            replicas = {_text(state): int(count) for state, count in dep.replica_states.items()}
            deployments.append(DeploymentStatus(app_name, name, _text(dep.status), replicas,
                                                replica_nodes.get((app_name, name), {})))
    trunks, registrar_error = _trunks(timeout) if TRUNK_REGISTRAR in names else ((), None)
    keepalives = _keepalives(timeout) if TRUNK_REGISTRAR in names and registrar_error is None else ()
    return ClusterStatus(edgeports, shards, api, applications, tuple(deployments), trunks, registrar_error,
                         metrics=read_metrics(timeout), nodes=_nodes(), links=_links(timeout), keepalives=keepalives)


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


def _node(status: ClusterStatus, node_id: str, node_ip: str) -> str:
    """``10.0.0.2 (1a2b3c4d, edge=a)``: a node's address, short id and labels."""
    node = next((n for n in status.nodes if n.node_id == node_id), None)
    labels = ", ".join(f"{k}={v}" for k, v in sorted(node.labels.items())) if node is not None else ""
    return f"{node_ip or '?'} ({node_id[:8]}{', ' + labels if labels else ''})"


def format_status(status: ClusterStatus) -> list[str]:
    lines = [f"routr-ray status: {'healthy' if status.healthy else 'NOT healthy'}"]
    if status.nodes:
        alive = sum(1 for n in status.nodes if n.alive)
        lines.append(f"Nodes ({alive} alive{f', {len(status.nodes) - alive} dead' if alive < len(status.nodes) else ''}):")
        for node in status.nodes:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(node.labels.items())) or "no labels"
            role = "head, " if node.head else ""
            state = "ok " if node.alive else "DEAD"
            lines.append(f"  {state} {node.node_id[:8]} {node.address:<15} {role}{node.cpus:g} CPU, {labels}")
    lines.append("EdgePorts:")
    for edge in status.edgeports:
        where = ", ".join(f"{proto.upper()} {host}:{port}" for proto, host, port in edge.listeners)
        health = f"; health :{edge.health_port}" if edge.health_port else ""
        lines.append(f"  {_mark(edge.healthy)} {edge.name:<24} {edge.error or where}{health}")
        if edge.node_id:
            notes = [f"on {_node(status, edge.node_id, edge.node_ip)}", f"{edge.flows} flows",
                     f"{edge.transactions} transactions", f"placement: {edge.placement or 'any node'}"]
            if edge.restarted:
                notes.append("RESTARTED by Ray")
            if edge.draining:
                notes.append("draining")
            lines.append(f"      {'; '.join(notes)}")
            if edge.links:
                calls = ", ".join(f"{service} ({count})" for service, count in edge.links.items())
                lines.append(f"      links to: {calls}")
    if not status.edgeports:
        lines.append("  (none)")
    lines.append("Serve applications and deployments:")
    for app, app_status in status.applications.items():
        lines.append(f"  {_mark(app_status == 'RUNNING')} {app:<24} {app_status}")
        for dep in (d for d in status.deployments if d.app == app):
            replicas = ", ".join(f"{count} {state}" for state, count in sorted(dep.replicas.items())) or "0"
            lines.append(f"    {_mark(dep.status == 'HEALTHY')} {dep.name:<22} {dep.status}; replicas: {replicas}")
            if dep.nodes:
                lines.append("        on " + ", ".join(f"{node} ({count})" for node, count in sorted(dep.nodes.items())))
    if not status.applications:
        lines.append("  (none)")
    total = sum(s.bindings for s in status.shards)
    lines.append(f"Location shards ({len(status.shards)}, {total} bindings):")
    for shard in status.shards:
        detail = shard.error or (f"{shard.bindings} bindings, {shard.aors} AORs, "
                                 f"{'Redis' if shard.durable else 'memory'}"
                                 + (f", on {_node(status, shard.node_id, shard.node_ip)}" if shard.node_id else ""))
        lines.append(f"  {_mark(shard.healthy)} {shard.name:<24} {detail}")
    if status.location_api is not None:
        api = status.location_api
        lines.append(f"Location gRPC API: {_mark(api.healthy)} {api.error or f'port {api.port}'}")
    if status.links:
        lines.append("Data plane (link services and their servers):")
        for link in status.links:
            servers = ", ".join(f"{host}:{port}" for host, port in link.servers)
            lines.append(f"  {link.service:<28} {servers}")
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
