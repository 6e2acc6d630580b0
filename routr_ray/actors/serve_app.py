"""The ``routr`` Serve application: the Message Dispatcher (ingress) and the in-cluster processors.

Exactly one Serve application, ``routr``, whose ingress deployment is the dispatcher. EdgePorts by default run the
same routing themselves (*embedded dispatch*, ``routr_ray/actors/edgeport.py``: the config read from
:meth:`DispatcherDeployment.describe`, the processor deployments called directly through :func:`deployment_send`);
with ``ROUTR_RAY_EDGE_DISPATCH=dispatcher`` they use :meth:`DispatcherDeployment.process_batch` through a
DeploymentHandle with ``_by_reference=False``: bytes in, bytes out, one call per batch (DESIGN §10). The routing
itself is :class:`~routr_ray.dispatch.runtime.DispatchRuntime`.

Outside callers (``bindAddr``, 51901) reach the dispatcher through the front actor (``routr_ray/actors/front.py``:
a grpc.aio server of ours on exactly that host and port, with the token and the outside-caller policy), which
calls ``process_batch`` like an EdgePort. Serve's own gRPC proxy is not started (it binds ``[::]`` whatever the
config says, without TLS): this app has no ``ProcessMessage`` method for it to route to.

Processor addresses (``processors[].addr`` / ``middlewares[].addr`` in the dispatcher config):

* ``serve://<name>``: a processor deployment in this app. ``<name>`` is a built-in (:data:`BUILTIN_PROCESSORS`)
  or a Python import path ``package.module:Class`` of a processor-SDK class. The dispatcher batches per
  processor deployment (adaptive: at once when idle, gathered while a call is in flight);
* ``host:port``: any server speaking ``Processor/ProcessMessage`` (a Routr processor, in any language), through
  a reused, health-checked grpc.aio channel (:mod:`routr_ray.dispatch.remote`), with its token
  (:class:`~routr_ray.dispatch.runtime.OutboundTokens`: the entry's ``token``, else ``processorToken``, else
  ``$ROUTR_RAY_PROCESSOR_TOKEN`` of the process that builds the app).

Config reload without restart: the dispatcher gets its config as Serve ``user_config`` (the plain
``MessageDispatcher`` document without tokens, :func:`~routr_ray.config.dispatcher.to_document`) in
:meth:`reconfigure`, and every deployment gets a ``version`` computed from what really needs new replicas (init
arguments, the code of ``routr_ray``). So :func:`deploy_app` with a changed matchFunc, methods, order,
``host:port`` address, deadline or middleware reconfigures the running replicas in place; adding a new
``serve://`` processor or changing a processor token restarts the dispatcher replicas (Serve starts the new ones
before stopping the old). The launcher calls :func:`deploy_app` again when dispatcher.yaml changes
(:func:`watch_config`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from routr_ray.actors.autoscaling_policy import LOAD_METRIC, POLICY_FUNCTION
from routr_ray.actors.links import linked, serve_link
from routr_ray.actors.metrics import RayMetricsBridge, observe_process
from routr_ray.actors.one_loop import ONE_LOOP_ENV, one_loop, one_loop_env  # noqa: F401 - ONE_LOOP_ENV re-exported
from routr_ray.config.dispatcher import (  # noqa: F401 - re-exported
    TOKEN_ENV,
    AutoscalingConfig,
    DispatcherConfig,
    dispatcher_token,
    from_document,
    to_document,
)
from routr_ray.dispatch.core import DispatchCore
from routr_ray.dispatch.matching import Router
from routr_ray.dispatch.metrics import DispatchMetrics
from routr_ray.dispatch.runtime import (  # noqa: F401 - re-exported
    SERVE_SCHEME,
    Batching,
    BatchSend,
    DispatchRuntime,
    OutboundTokens,
    serve_name,
)
from routr_ray.dispatch.watch import DispatcherConfigWatcher
from routr_ray.link import pack_list, unpack_list
from routr_ray.proto.gen import processor_pb2
from routr_ray.util.gc_tuning import tune_gc
from routr_ray.util.inflight import InFlightMeter

log = logging.getLogger(__name__)

APP_NAME = "routr"
ROUTE_PREFIX = f"/{APP_NAME}"
DISPATCHER_DEPLOYMENT = "dispatcher"
DISPATCHER_LINK_SERVICE = "dispatcher"
PROCESSOR_TOKEN_ENV = "ROUTR_RAY_PROCESSOR_TOKEN"  # also what `routr-ray processor serve` asks callers for
RELEASE_ENV = "ROUTR_RAY_RELEASE"  # an operator's release label, part of every deployment version
BUILTIN_PROCESSORS = {
    "echo": "routr_ray.processors.echo:EchoProcessor",
    "connect": "routr_ray.actors.connect:ConnectDeploymentProcessor",
    "rtpengine": "routr_ray.media.middleware:RtpEngineMiddleware",  # the media relay middleware (docs/media.md)
}

# No access-log line per request (a file write per Ray call on the hot path); warnings and errors still logged.
QUIET_LOGGING = {"enable_access_log": False}
# A rolling update (new code, a new ROUTR_RAY_RELEASE, new options) starts each replacement replica before the
# replica it replaces stops (Serve's max_surge_percent, rounded up to whole replicas: 1 % is one extra replica at a
# time): the deployment never runs below its replica count, even at one replica, and only one new replica starts
# at a time (a replica's start costs seconds of CPU: all at once starved the running ones on 2 cores, measured with
# benchmarks/bench_chaos.py). The old replica then drains (ProcessorDeployment.__del__) and goes (issue 18 item 3).
ROLLING_SURGE_PERCENT = 1
# Autoscaled replicas report their load every second (Serve's default: 10 s, too slow to scale up within 10 s).
AUTOSCALING_METRICS_INTERVAL_S = 1.0
# How long Serve lets a stopping replica finish (Serve's own drain, then ours: the link's, finishing the batches in
# flight, bounded by LINK_DRAIN_S) before it kills it.
LINK_DRAIN_S = 10.0
GRACEFUL_SHUTDOWN_TIMEOUT_S = 30.0

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
Call = Callable[[MessageRequest, float | None], Awaitable[MessageResponse]]


def deployment_name(name: str) -> str:
    """A Serve deployment name for a processor name (import paths contain ':' and '.')."""
    return "processor-" + name.replace(":", "-").replace(".", "-")


def link_service_of(name: str) -> str:
    """The link service of a processor deployment (the deployment's name)."""
    return deployment_name(name)


def import_processor(name: str) -> type:
    path = BUILTIN_PROCESSORS.get(name, name)
    module_name, sep, attr = path.partition(":")
    if not sep:
        raise ValueError(f"processor {name!r} is neither built-in ({', '.join(BUILTIN_PROCESSORS)}) "
                         "nor an import path like package.module:Class")
    return getattr(importlib.import_module(module_name), attr)


def outbound_tokens(config: DispatcherConfig, explicit: str | None = None) -> OutboundTokens:
    """The tokens sent to ``host:port`` processors and middlewares: each entry's ``token``, else ``explicit``,
    else ``$ROUTR_RAY_PROCESSOR_TOKEN``, else ``spec.processorToken``."""
    return OutboundTokens.of(config, explicit or os.environ.get(PROCESSOR_TOKEN_ENV, "").strip() or None)


def replica_actor_options(same_loop: bool | None = None) -> dict[str, Any]:
    """``ray_actor_options`` of our deployments: a tenth of a CPU; with :func:`one_loop`, user code on the
    replica's main loop (``RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0``, one of the settings of Serve's
    experimental THROUGHPUT_OPTIMIZED mode, taken alone; as a ``runtime_env`` unless the Ray's processes have it)."""
    options: dict[str, Any] = {"num_cpus": 0.1}
    if one_loop(same_loop):
        options.update(one_loop_env("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"))
    return options


def deployment_send(handle: DeploymentHandle, link_service: str | None = None) -> BatchSend:
    """The batch call of a processor deployment: serialized MessageRequests in one by-value handle call, or
    over the link to ``link_service`` when one of its replicas serves one (:func:`~routr_ray.actors.links.linked`)."""
    by_value = handle.options(_by_reference=False)

    async def send(requests: list[MessageRequest]) -> list[MessageResponse]:
        payloads = await by_value.process_batch.remote([r.SerializeToString() for r in requests])
        return [MessageResponse.FromString(p) for p in payloads]

    if link_service is None:
        return send
    return linked(link_service, encode_requests, decode_responses, send)


def encode_requests(requests: list[MessageRequest]) -> bytes:
    return pack_list([r.SerializeToString() for r in requests])


def decode_responses(payload: bytes) -> list[MessageResponse]:
    return [MessageResponse.FromString(p) for p in unpack_list(payload)]


@serve.deployment(
    name=DISPATCHER_DEPLOYMENT,
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=1000,
    health_check_period_s=10,
)
class DispatcherDeployment:
    """The dispatcher replica. Its routing comes from :meth:`reconfigure` (Serve ``user_config``)."""

    async def __init__(
        self,
        processors: dict[str, DeploymentHandle],
        *,
        tokens: dict[str, Any] | None = None,
        batching: Batching | None = None,
        health_period: float = 2.0,
        config: dict[str, Any] | None = None,
        link: bool = False,
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self._handles = processors
        self.tokens = OutboundTokens.from_plain(tokens)
        observe_process(DISPATCHER_DEPLOYMENT)
        self.metrics = DispatchMetrics()
        self.metrics_bridge = RayMetricsBridge(self.metrics.registry, default_tags={"component": DISPATCHER_DEPLOYMENT})
        self.metrics_bridge.start()
        self.runtime = DispatchRuntime(self._deployment_send, tokens=self.tokens, batching=batching,
                                       health_period=health_period, metrics=self.metrics)
        if config is not None:
            self._apply(from_document(config))
        self.load = InFlightMeter()
        # EdgePorts that send through the dispatcher (ROUTR_RAY_EDGE_DISPATCH=dispatcher) use this link
        self.link = await serve_link(DISPATCHER_LINK_SERVICE, self._link_call) if link else None
        tune_gc()

    async def _link_call(self, payload: bytes) -> bytes:
        return pack_list(await self.process_batch(unpack_list(payload)))

    async def __del__(self) -> None:
        """Serve's graceful shutdown: the link's clients stop sending here, the batches in flight are answered."""
        link, self.link = getattr(self, "link", None), None
        if link is not None:
            await link.close(drain=LINK_DRAIN_S)

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metric (with ``autoscaling``): the messages this replica worked on, time-averaged
        since the last report, from the link and Ray calls alike (routr_ray/actors/autoscaling_policy.py)."""
        return {LOAD_METRIC: self.load.average()}

    def _deployment_send(self, name: str) -> BatchSend:
        if name not in self._handles:
            raise ValueError(f"serve://{name} is not a deployment of this app; deploy the app again (deploy_app) "
                             "to add a processor deployment")
        return deployment_send(self._handles[name], link_service_of(name))

    @property
    def config(self) -> DispatcherConfig | None:
        return self.runtime.config

    @property
    def core(self) -> DispatchCore | None:
        return self.runtime.core

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this at start and whenever ``user_config`` (the dispatcher document) changes."""
        config = from_document(user_config)
        await self.runtime.reconfigure(config, self.tokens)
        self._log_config(config)

    def _apply(self, config: DispatcherConfig) -> None:
        self.runtime.apply(config)
        self._log_config(config)

    @staticmethod
    def _log_config(config: DispatcherConfig) -> None:
        log.info("dispatcher config %r: processors %s, middlewares %s", config.ref,
                 [p.ref for p in config.processors], [m.ref for m in config.middlewares])

    def _core(self) -> DispatchCore:
        return self.runtime.current()

    async def process_batch(self, payloads: Sequence[bytes]) -> list[bytes]:
        """The entry point (EdgePorts, the front actor for gRPC callers): serialized MessageRequests in, serialized
        MessageResponses out (``b""`` means drop: ACK and responses are never answered). Its callers are our own
        processes, reached through Ray or the link: they apply the outside-caller policy themselves."""
        count = len(payloads)
        self.load.begin(count)
        try:
            responses = await self._core().handle_batch([MessageRequest.FromString(p) for p in payloads])
        finally:
            self.load.end(count)
        return [r.SerializeToString() if r is not None else b"" for r in responses]

    async def describe(self) -> dict[str, Any]:
        """This replica's process id, the config it routes with (no token), the health of its ``host:port``
        processors, and the tokens it sends them (``outbound``: the EdgePorts' embedded dispatch sends the same;
        only Ray clients can call this, see docs/security.md)."""
        return {
            "pid": os.getpid(),
            "config": to_document(self.config) if self.config is not None else None,
            "remote_health": {addr: c.healthy for addr, c in self.runtime.remote.items()},
            "outbound": self.tokens.to_plain(),
        }

    async def check_health(self) -> None:
        self._core()

    async def probe(self) -> str | None:
        """None when every processor of the config answers its readiness probe, else why not (EdgePorts that
        take the dispatcher hop ask this before they call themselves ready)."""
        return await self.runtime.probe()


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=1000, health_check_period_s=10)
class ProcessorDeployment:
    """Runs one processor-SDK class; ``process_batch`` is bytes in, bytes out, through a DeploymentHandle or,
    with ``link_service``, through the internal data plane (:mod:`routr_ray.actors.links`: the same batches over a
    direct TCP connection, no Ray call per batch). Every replica counts the messages it works on, by either path
    (:class:`~routr_ray.util.inflight.InFlightMeter`), and reports them to Serve's autoscaler
    (:meth:`record_autoscaling_stats`, :mod:`routr_ray.actors.autoscaling_policy`): an autoscaled processor keeps
    its link and is scaled on the load it really carries."""

    async def __init__(self, name: str, options: dict[str, Any] | None = None,
                       link_service: str | None = None) -> None:
        logging.basicConfig(level=logging.INFO)
        observe_process(deployment_name(name))
        self.load = InFlightMeter()
        self.processor = import_processor(name)(**(options or {}))
        # a processor with its own Prometheus registry (Connect's routr_connect_*, the media relay's routr_media_*)
        # gets it mirrored into Ray's metrics
        registry = getattr(self.processor, "metrics_registry", None)
        self.metrics_bridge = (RayMetricsBridge(registry, default_tags={"component": deployment_name(name)})
                               if registry is not None else None)
        if self.metrics_bridge is not None:
            self.metrics_bridge.start()
        start = getattr(self.processor, "start", None)
        if start is not None:  # warm up before the first message (e.g. Connect: newest resources, their index)
            await start()
        tune_gc()  # what the processor loaded (e.g. Connect's resources) is never re-scanned by gen-2 passes
        # last: once listed, EdgePorts send here at once (a GC pass or anything else still to do would hold them up)
        self.link = await serve_link(link_service, self._link_call) if link_service else None

    async def process_batch(self, payloads: Sequence[bytes]) -> list[bytes]:
        return await self._process(list(payloads))

    async def _link_call(self, payload: bytes) -> bytes:
        return pack_list(await self._process(unpack_list(payload)))

    async def _process(self, payloads: list[bytes]) -> list[bytes]:
        # a corrupt item is answered on its own; it does not fail the batch
        count = len(payloads)
        self.load.begin(count)
        try:
            return await self.processor.process_serialized(payloads)
        finally:
            self.load.end(count)

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metric (pushed only when the deployment has ``autoscaling``): the messages this
        replica worked on, time-averaged since the last report (routr_ray/actors/autoscaling_policy.py)."""
        return {LOAD_METRIC: self.load.average()}

    async def __del__(self) -> None:
        """Serve's graceful shutdown (scale-down, new version): the link leaves the registry and tells its clients
        to send no more, the batches in flight are answered, then it closes (:meth:`AdvertisedServer.close`)."""
        link, self.link = getattr(self, "link", None), None
        if link is not None:
            await link.close(drain=LINK_DRAIN_S)
        bridge, self.metrics_bridge = getattr(self, "metrics_bridge", None), None
        if bridge is not None:
            await bridge.stop()

    async def metrics_text(self) -> bytes:
        """The processor's own Prometheus series (exposition text), when it has a registry; else empty."""
        text = getattr(self.processor, "metrics_text", None)
        return text() if text is not None else b""

    async def check_health(self) -> None:
        return None


def _autoscaling_options(autoscaling: AutoscalingConfig | None) -> dict[str, Any]:
    """Serve options of a deployment with ``autoscaling``: our policy (messages in flight, by link or Ray call,
    :mod:`routr_ray.actors.autoscaling_policy`), reports every second averaged over ``lookBackSeconds``."""
    if autoscaling is None:
        return {}
    return {
        "autoscaling_config": {
            "min_replicas": autoscaling.min_replicas,
            "max_replicas": autoscaling.max_replicas,
            "target_ongoing_requests": autoscaling.target_ongoing_requests,
            "upscale_delay_s": autoscaling.upscale_delay_seconds,
            "downscale_delay_s": autoscaling.downscale_delay_seconds,
            "look_back_period_s": autoscaling.look_back_seconds,
            "metrics_interval_s": AUTOSCALING_METRICS_INTERVAL_S,
            "policy": {"policy_function": POLICY_FUNCTION},
        },
    }


def _quiet_options(deployment: Any, **options: Any) -> Any:
    """``deployment.options(**options)`` without Serve's DeprecationWarning for ``metrics_interval_s`` (the
    replacement it names, an environment variable, would have to be set in every Ray process)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*metrics_interval_s.*", category=DeprecationWarning)
        return deployment.options(**options)


@cache
def code_fingerprint() -> str:
    """A digest of routr_ray's Python sources and of ``ROUTR_RAY_RELEASE`` (a release label of the operator's, e.g.
    an image tag): new code, or a new release label, gets new replicas (Serve's rolling update, one replica at a
    time) even when nothing else changed."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.blake2s(os.environ.get(RELEASE_ENV, "").encode())
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _version(*parts: Any) -> str:
    """A Serve deployment version: the same inputs give the same version, so only ``user_config`` and other
    lightweight options change between two :func:`deploy_app` calls and the replicas are reconfigured in place."""
    text = json.dumps([code_fingerprint(), *parts], sort_keys=True, default=repr)
    return hashlib.blake2s(text.encode()).hexdigest()[:20]


def check_config(config: DispatcherConfig) -> None:
    """Fail in the driver, with the processor named, before anything is deployed: every matchFunc compiles,
    every method is known, every ``serve://`` processor imports."""
    Router(config.processors)
    for entry in (*config.processors, *config.middlewares):
        name = serve_name(entry.addr)
        if name is not None:
            import_processor(name)


def build_app(
    config: DispatcherConfig,
    *,
    processor_options: dict[str, dict[str, Any]] | None = None,
    deadline: float | None = None,
    outbound_token: str | None = None,
    batching: Batching | None = None,
    health_period: float = 2.0,
) -> Any:
    """The bound ``routr`` application for ``config``.

    ``processor_options`` maps a processor name (as in ``serve://<name>``) to the keyword arguments of its class.
    ``deadline`` overrides ``config.deadline_seconds``; ``outbound_token`` is sent to ``host:port`` processors
    without a token of their own (default: :func:`outbound_tokens`); ``batching`` tunes the dispatcher ->
    processor hop. The token of the gRPC port is the front actor's (``routr_ray/actors/front.py``).
    """
    if deadline is not None:
        config = dataclasses.replace(config, deadline_seconds=deadline)
    check_config(config)
    processor_options = processor_options or {}
    batching = batching or Batching()
    actor_options = replica_actor_options()
    bound: dict[str, Any] = {}
    for entry in (*config.processors, *config.middlewares):
        name = serve_name(entry.addr)
        if name is None or name in bound:
            continue
        options = processor_options.get(name)
        autoscaling = getattr(entry, "autoscaling", None)
        link = link_service_of(name)
        bound[name] = _quiet_options(
            ProcessorDeployment, name=deployment_name(name),
            version=_version("processor", name, options, actor_options, link), _internal=True,
            ray_actor_options=actor_options, logging_config=QUIET_LOGGING,
            graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_TIMEOUT_S, max_surge_percent=ROLLING_SURGE_PERCENT,
            **_autoscaling_options(autoscaling),
        ).bind(name, options, link)
    tokens = outbound_tokens(config, outbound_token).to_plain()
    version = _version("dispatcher", sorted(bound), _digest(json.dumps(tokens, sort_keys=True)),
                       dataclasses.astuple(batching), health_period, actor_options)
    return _quiet_options(
        DispatcherDeployment, user_config=to_document(config), version=version, _internal=True,
        ray_actor_options=actor_options, logging_config=QUIET_LOGGING,
        graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_TIMEOUT_S, max_surge_percent=ROLLING_SURGE_PERCENT,
        **_autoscaling_options(config.autoscaling),
    ).bind(bound, tokens=tokens, batching=batching, health_period=health_period, link=True)


def _digest(secret: str | None) -> str | None:
    return None if secret is None else hashlib.blake2s(secret.encode()).hexdigest()


def deploy_app(config: DispatcherConfig, *, wait: bool = True, **kwargs: Any) -> DeploymentHandle:
    """Deploy (or update) the ``routr`` app and wait until it runs (``wait=False``: return once Serve has it,
    see :func:`wait_running`); ``kwargs`` as for :func:`build_app`.

    Called again with a changed config it re-routes without restarting replicas (see the module docstring):
    this is the reload the launcher does when dispatcher.yaml changes.
    """
    app = build_app(config, **kwargs)
    if wait:
        return serve.run(app, name=APP_NAME, route_prefix=ROUTE_PREFIX)
    (handle,) = serve.run_many([serve.RunTarget(app, name=APP_NAME, route_prefix=ROUTE_PREFIX)],
                               wait_for_applications_running=False)
    return handle


def wait_running(timeout: float, interval: float = 0.1) -> None:
    """Until the ``routr`` app runs, asking every ``interval`` seconds (``serve.run`` asks once a second: up to a
    second lost at start-up, issue 13 item 4); RuntimeError when its deployment failed, TimeoutError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        app = serve.status().applications.get(APP_NAME)
        status = str(app.status) if app is not None else ""
        if status.endswith("RUNNING"):
            return
        if status.endswith("DEPLOY_FAILED"):
            raise RuntimeError(f"deploying the {APP_NAME} app failed: {app.message if app else ''}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {APP_NAME} app is not running after {timeout:.0f}s ({status or 'not deployed'})")
        time.sleep(interval)


def watch_config(config_dir: str | Path, current: DispatcherConfig, *, interval: float = 2.0,
                 then: Callable[[DispatcherConfig], None] | None = None, **kwargs: Any) -> DispatcherConfigWatcher:
    """Start a thread that re-deploys the app (``deploy_app(new, **kwargs)``, then ``then(new)``, e.g. the front
    actor's redeploy) when the dispatcher config in ``config_dir`` changes; ``stop()`` it on shutdown. Pass the
    same ``kwargs`` as at startup (e.g. ``processor_options``), or the processor deployments are restarted."""
    def apply(new: DispatcherConfig) -> None:
        deploy_app(new, **kwargs)
        if then is not None:
            then(new)

    return DispatcherConfigWatcher(config_dir, apply, current=current, interval=interval).start()

HTTP_OPTIONS = {"host": "127.0.0.1", "port": 0}  # Serve's HTTP proxy: loopback, any port (routr-ray speaks gRPC)


def start_serve() -> Callable[[float], None]:
    """Create Serve's controller (no gRPC proxy: the front actor serves 51901; HTTP proxy on loopback) and return at
    once, with a function that waits until its proxies are up (``wait(timeout)``).

    ``serve.start`` creates the controller and then waits for it and for its proxies (a second or more on 2
    cores); but deploying the app needs only the controller, and ``serve.run`` finds it by name and waits for it
    itself. So the launcher creates the controller first (the longest start-up chain, controller -> replicas,
    begins at once), deploys, and waits for the proxies last (issue 13 item 4). This is what Serve's
    ``serve.start`` does, in two halves (Ray is pinned); where Serve's internals differ, or a controller already
    runs, it is ``serve.start`` itself."""
    def started(_timeout: float) -> None:
        return None

    try:
        from ray.serve._private.api import _coerce_controller_options
        from ray.serve._private.default_impl import get_controller_impl
        from ray.serve.config import HTTPOptions, ProxyLocation, gRPCOptions
        from ray.serve.context import _get_global_client
        from ray.serve.schema import LoggingConfig

        if _get_global_client(raise_if_no_controller_running=False) is not None:
            raise LookupError("a Serve controller runs already")
        controller = get_controller_impl(_coerce_controller_options(None)).remote(
            http_options=HTTPOptions.model_validate(HTTP_OPTIONS), grpc_options=gRPCOptions(),
            global_logging_config=LoggingConfig(), proxy_location=ProxyLocation._normalize(None),
            global_tracing_config=None)
    except (ImportError, AttributeError, TypeError, LookupError):
        serve.start(http_options=HTTP_OPTIONS)  # logs when the options are not applied
        return started

    def wait(timeout: float) -> None:
        import ray

        proxies = ray.get(controller.get_proxies.remote(), timeout=timeout)
        ray.get([proxy.ready.remote() for proxy in proxies.values()], timeout=timeout)

    return wait
