"""MessageDispatcher config: Routr's `kind: MessageDispatcher` plus Serve autoscaling.

    spec:
      bindAddr: 127.0.0.1:51901        # the gRPC port for outside callers (a non-loopback one needs a token)
      token: <secret>                  # optional; callers of bindAddr must send it (DESIGN §6b)
      processorToken: <secret>         # optional; sent to host:port processors and middlewares
      deadlineSeconds: 5               # optional; default time a processor or middleware has to answer
      retryAfterSeconds: 5             # optional; Retry-After of the 503 sent when a processor fails
      autoscaling: {...}               # optional, for the dispatcher deployment itself
      processors:                      # ordered; the first whose methods and matchFunc match wins
        - {ref, addr, methods, matchFunc, deadlineSeconds, autoscaling, token, internalMetadata}
      middlewares:                     # ordered
        - {ref, addr, postProcessor, optional, deadlineSeconds, token, internalMetadata, responses}

`addr` is `serve://<deployment>` (in this Ray cluster) or `host:port` (any Routr-compatible gRPC
processor). `matchFunc` is kept as text: it is never executed here; the dispatcher compiles it with its
restricted evaluator. A middleware without `postProcessor` runs before the processor (Routr skips such a
middleware altogether, routr.md §6; we do not copy that). A middleware with `optional: true` is skipped
(pass-through) when it fails; any other failing middleware gets the request answered 500.

`token` may also come from the environment (`ROUTR_RAY_DISPATCHER_TOKEN`, which wins): see
`dispatcher_token` below. A `host:port` processor or middleware is sent its entry's `token`,
else `processorToken` (`ROUTR_RAY_PROCESSOR_TOKEN` wins over it: the variable `routr-ray processor serve` reads
on the other side). Middlewares and `host:port` processors get no `routr-ray.*` metadata (internal directives
such as trunk credentials) unless their entry says `internalMetadata: true` (a middleware with it may also change
that metadata). A middleware's `responses` says which responses it sees: `all` (default, Routr's: every 1xx/2xx,
so no 1xx/2xx is relayed by the EdgePort alone) or `requested` (every response to the requests it asked for, and
error responses; see routr_ray/dispatch/middleware.py). :func:`to_document` / :func:`from_document` turn a config into
the plain JSON-able document and back (Serve's `user_config`, so a changed config reaches running replicas).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from routr_ray.config.edgeport import DEFAULT_METHODS
from routr_ray.config.problems import Place

DEFAULT_MATCH_FUNC = "req => true"
DEFAULT_DEADLINE_SECONDS = 5.0
DEFAULT_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class AutoscalingConfig:
    """Passed to Ray Serve's `autoscaling_config` with routr-ray's policy (docs/dispatcher.md "Autoscaling"):
    ``target_ongoing_requests`` is in messages in flight per replica, over the link and Ray calls alike. Defaults are
    Serve's own, except ``look_back_seconds`` (Serve: 30), the window the load is averaged over."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    upscale_delay_seconds: float = 30.0
    downscale_delay_seconds: float = 600.0
    look_back_seconds: float = 5.0


@dataclass(frozen=True)
class ProcessorConfig:
    ref: str
    addr: str
    methods: tuple[str, ...] = DEFAULT_METHODS
    match_func: str = DEFAULT_MATCH_FUNC
    autoscaling: AutoscalingConfig | None = None
    deadline_seconds: float | None = None  # None: the dispatcher's deadline_seconds
    token: str | None = field(default=None, repr=False)  # sent to a host:port processor (else processor_token)
    internal_metadata: bool = False  # a host:port processor gets the routr-ray.* metadata only when True


@dataclass(frozen=True)
class MiddlewareConfig:
    ref: str
    addr: str
    post_processor: bool = False
    optional: bool = False  # on failure: pass the message through unchanged instead of answering 500
    deadline_seconds: float | None = None
    token: str | None = field(default=None, repr=False)  # sent to a host:port middleware (else processor_token)
    internal_metadata: bool = False  # the middleware gets (and may change) the routr-ray.* metadata only when True
    responses: str = "all"  # "all" | "requested": which responses go through it (routr_ray/dispatch/middleware.py)


@dataclass(frozen=True)
class DispatcherConfig:
    ref: str = "message-dispatcher"
    bind_addr: str = "127.0.0.1:51901"
    processors: tuple[ProcessorConfig, ...] = ()
    middlewares: tuple[MiddlewareConfig, ...] = ()
    autoscaling: AutoscalingConfig | None = None
    token: str | None = field(default=None, repr=False)
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    retry_after_seconds: int = DEFAULT_RETRY_AFTER_SECONDS
    processor_token: str | None = field(default=None, repr=False)


def build_dispatcher(document: dict[str, Any], place: Place) -> DispatcherConfig:
    spec: dict[str, Any] = document["spec"]
    at = place.child("spec")
    bind_addr = spec.get("bindAddr", DispatcherConfig.bind_addr)
    processors = tuple(
        _processor(entry, at.child("processors", index)) for index, entry in enumerate(spec["processors"])
    )
    middlewares = tuple(
        _middleware(entry, at.child("middlewares", index))
        for index, entry in enumerate(spec.get("middlewares", ()))
    )
    # Responses find their processor by ref (EdgePort metadata), so refs must be unique across both lists.
    first_use: dict[str, str] = {}
    for list_name, entries in (
        ("processors", spec["processors"]),
        ("middlewares", spec.get("middlewares", ())),
    ):
        for index, entry in enumerate(entries):
            here = f"/spec/{list_name}/{index}"
            if entry["ref"] in first_use:
                at.child(list_name, index, "ref").error(
                    f"duplicate ref {entry['ref']!r}: already used at {first_use[entry['ref']]}"
                )
            else:
                first_use[entry["ref"]] = here
    return DispatcherConfig(
        ref=document.get("ref", DispatcherConfig.ref),
        bind_addr=bind_addr,
        processors=processors,
        middlewares=middlewares,
        autoscaling=_autoscaling(spec.get("autoscaling"), at.child("autoscaling")),
        token=spec.get("token"),
        deadline_seconds=float(spec.get("deadlineSeconds", DEFAULT_DEADLINE_SECONDS)),
        retry_after_seconds=int(spec.get("retryAfterSeconds", DEFAULT_RETRY_AFTER_SECONDS)),
        processor_token=spec.get("processorToken"),
    )


def _seconds(raw: Any) -> float | None:
    return None if raw is None else float(raw)


def _token_of(entry: dict[str, Any], at: Place) -> str | None:
    token = entry.get("token")
    if token and str(entry["addr"]).startswith("serve://"):
        at.child("token").warn("ignored: a token is sent to host:port addresses only (serve:// is in the cluster)")
    return token


def _processor(entry: dict[str, Any], at: Place) -> ProcessorConfig:
    return ProcessorConfig(
        ref=entry["ref"],
        addr=entry["addr"],
        methods=tuple(dict.fromkeys(entry["methods"])),
        match_func=entry.get("matchFunc", DEFAULT_MATCH_FUNC),
        autoscaling=_autoscaling(entry.get("autoscaling"), at.child("autoscaling")),
        deadline_seconds=_seconds(entry.get("deadlineSeconds")),
        token=_token_of(entry, at),
        internal_metadata=entry.get("internalMetadata", False),
    )


def _middleware(entry: dict[str, Any], at: Place) -> MiddlewareConfig:
    return MiddlewareConfig(
        ref=entry["ref"],
        addr=entry["addr"],
        post_processor=entry.get("postProcessor", False),
        optional=entry.get("optional", False),
        deadline_seconds=_seconds(entry.get("deadlineSeconds")),
        token=_token_of(entry, at),
        internal_metadata=entry.get("internalMetadata", False),
        responses=entry.get("responses", "all"),
    )


def _autoscaling(raw: dict[str, Any] | None, at: Place) -> AutoscalingConfig | None:
    if raw is None:
        return None
    default = AutoscalingConfig()
    min_replicas = int(raw.get("minReplicas", default.min_replicas))
    max_replicas = int(raw.get("maxReplicas", max(default.max_replicas, min_replicas)))
    if max_replicas < min_replicas:
        at.child("maxReplicas").error(f"maxReplicas ({max_replicas}) is below minReplicas ({min_replicas})")
    return AutoscalingConfig(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_ongoing_requests=float(raw.get("targetOngoingRequests", default.target_ongoing_requests)),
        upscale_delay_seconds=float(raw.get("upscaleDelaySeconds", default.upscale_delay_seconds)),
        downscale_delay_seconds=float(raw.get("downscaleDelaySeconds", default.downscale_delay_seconds)),
        look_back_seconds=_look_back(raw.get("lookBackSeconds", default.look_back_seconds), at),
    )


def _look_back(raw: Any, at: Place) -> float:
    seconds = float(raw)
    if seconds <= 1.0:  # replicas report every second: the window must hold more than one report
        at.child("lookBackSeconds").error(f"lookBackSeconds ({seconds:g}) must be more than 1")
    return seconds


# --- the plain document (Serve user_config) ----------------------------------------------------------------

def _autoscaling_document(autoscaling: AutoscalingConfig) -> dict[str, Any]:
    return {
        "minReplicas": autoscaling.min_replicas,
        "maxReplicas": autoscaling.max_replicas,
        "targetOngoingRequests": autoscaling.target_ongoing_requests,
        "upscaleDelaySeconds": autoscaling.upscale_delay_seconds,
        "downscaleDelaySeconds": autoscaling.downscale_delay_seconds,
        "lookBackSeconds": autoscaling.look_back_seconds,
    }


def to_document(config: DispatcherConfig, *, include_token: bool = False) -> dict[str, Any]:
    """The Routr-format `MessageDispatcher` document of ``config``: JSON-able, and
    ``from_document(to_document(c, include_token=True)) == c``. Tokens (``token``, ``processorToken``, each
    entry's ``token``) are left out unless asked for (Serve shows a deployment's user_config in its status and
    dashboard)."""
    processors: list[dict[str, Any]] = []
    for p in config.processors:
        entry: dict[str, Any] = {"ref": p.ref, "addr": p.addr, "methods": list(p.methods), "matchFunc": p.match_func}
        if p.deadline_seconds is not None:
            entry["deadlineSeconds"] = p.deadline_seconds
        if p.autoscaling is not None:
            entry["autoscaling"] = _autoscaling_document(p.autoscaling)
        if p.internal_metadata:
            entry["internalMetadata"] = True
        if include_token and p.token:
            entry["token"] = p.token
        processors.append(entry)
    middlewares: list[dict[str, Any]] = []
    for m in config.middlewares:
        item: dict[str, Any] = {"ref": m.ref, "addr": m.addr, "postProcessor": m.post_processor,
                                "optional": m.optional}
        if m.deadline_seconds is not None:
            item["deadlineSeconds"] = m.deadline_seconds
        if m.internal_metadata:
            item["internalMetadata"] = True
        if m.responses != "all":
            item["responses"] = m.responses
        if include_token and m.token:
            item["token"] = m.token
        middlewares.append(item)
    spec: dict[str, Any] = {
        "bindAddr": config.bind_addr,
        "deadlineSeconds": config.deadline_seconds,
        "retryAfterSeconds": config.retry_after_seconds,
        "processors": processors,
        "middlewares": middlewares,
    }
    if config.autoscaling is not None:
        spec["autoscaling"] = _autoscaling_document(config.autoscaling)
    if include_token and config.token:
        spec["token"] = config.token
    if include_token and config.processor_token:
        spec["processorToken"] = config.processor_token
    return {"apiVersion": "v2beta1", "kind": "MessageDispatcher", "ref": config.ref, "spec": spec}


def from_document(document: Any, source: str = "<dispatcher document>") -> DispatcherConfig:
    """Check a `MessageDispatcher` document (schema and semantic rules) and build its config.

    Raises :class:`~routr_ray.config.errors.ConfigInvalid` with every error, as the file loaders do."""
    from routr_ray.config.errors import ConfigInvalid
    from routr_ray.config.problems import Problems
    from routr_ray.config.schema import check_against_schema

    problems = Problems()
    place = Place(problems, source)
    config: DispatcherConfig | None = None
    if check_against_schema("MessageDispatcher", document, place):
        config = build_dispatcher(document, place)
    problems.log_warnings()
    if problems.errors or config is None:
        raise ConfigInvalid(problems.errors)
    return config


TOKEN_ENV = "ROUTR_RAY_DISPATCHER_TOKEN"


def dispatcher_token(config: DispatcherConfig, explicit: str | None = None) -> str | None:
    """The token outside callers of the dispatcher's port must send: ``explicit``, else
    ``$ROUTR_RAY_DISPATCHER_TOKEN``, else ``spec.token``."""
    return explicit or os.environ.get(TOKEN_ENV, "").strip() or config.token or None
