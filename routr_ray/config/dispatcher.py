"""MessageDispatcher config: Routr's `kind: MessageDispatcher` plus Serve autoscaling.

    spec:
      bindAddr: 0.0.0.0:51901          # Serve's gRPC proxy port for outside callers
      autoscaling: {...}               # optional, for the dispatcher deployment itself
      processors:                      # ordered; the first whose methods and matchFunc match wins
        - {ref, addr, methods, matchFunc, autoscaling}
      middlewares:                     # ordered
        - {ref, addr, postProcessor}

`addr` is `serve://<deployment>` (in this Ray cluster) or `host:port` (any Routr-compatible gRPC
processor). `matchFunc` is kept as text: it is never executed here; the dispatcher compiles it with its
restricted evaluator. A middleware without `postProcessor` runs before the processor (Routr skips such a
middleware altogether, routr.md §6; we do not copy that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from routr_ray.config.edgeport import DEFAULT_METHODS
from routr_ray.config.problems import Place

DEFAULT_MATCH_FUNC = "req => true"


@dataclass(frozen=True)
class AutoscalingConfig:
    """Passed to Ray Serve's `autoscaling_config` (defaults are Serve's own)."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    upscale_delay_seconds: float = 30.0
    downscale_delay_seconds: float = 600.0


@dataclass(frozen=True)
class ProcessorConfig:
    ref: str
    addr: str
    methods: tuple[str, ...] = DEFAULT_METHODS
    match_func: str = DEFAULT_MATCH_FUNC
    autoscaling: AutoscalingConfig | None = None


@dataclass(frozen=True)
class MiddlewareConfig:
    ref: str
    addr: str
    post_processor: bool = False


@dataclass(frozen=True)
class DispatcherConfig:
    ref: str = "message-dispatcher"
    bind_addr: str = "0.0.0.0:51901"
    processors: tuple[ProcessorConfig, ...] = ()
    middlewares: tuple[MiddlewareConfig, ...] = ()
    autoscaling: AutoscalingConfig | None = None


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
    )


def _processor(entry: dict[str, Any], at: Place) -> ProcessorConfig:
    return ProcessorConfig(
        ref=entry["ref"],
        addr=entry["addr"],
        methods=tuple(dict.fromkeys(entry["methods"])),
        match_func=entry.get("matchFunc", DEFAULT_MATCH_FUNC),
        autoscaling=_autoscaling(entry.get("autoscaling"), at.child("autoscaling")),
    )


def _middleware(entry: dict[str, Any], at: Place) -> MiddlewareConfig:
    return MiddlewareConfig(
        ref=entry["ref"], addr=entry["addr"], post_processor=entry.get("postProcessor", False)
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
    )
