"""The Serve autoscaling policy of routr-ray's deployments: scale on the messages replicas really carry (issue 18).

Serve's default policy counts the requests that go through its DeploymentHandles. Our hot path does not: EdgePorts
send their batches to processor replicas over the link (``routr_ray/link``), which Serve never sees. So every
replica measures the messages it is working on, whatever path they came by
(:class:`~routr_ray.util.inflight.InFlightMeter`, the time-weighted mean since its last report), and reports it as
the custom metric :data:`LOAD_METRIC` (``record_autoscaling_stats``); :func:`link_load_policy`, named in the
deployment's ``autoscaling_config.policy``, turns those reports into a replica count in Serve's controller.

Serve wraps a custom policy with its own delay logic (``upscale_delay_s``, ``downscale_delay_s``), scaling factors
and the ``min_replicas``/``max_replicas`` bounds (``ray/serve/autoscaling_policy.py``
``_apply_autoscaling_config``), so this one only says how many replicas the load needs.

This module is imported by Serve's controller (the policy is pickled by value with its module): standard library
only, and nothing from routr_ray, so the controller can load it without our package on its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["LOAD_METRIC", "POLICY_FUNCTION", "desired_replicas", "link_load_policy", "replica_load"]

LOAD_METRIC = "routr_messages_in_flight"
POLICY_FUNCTION = f"{__name__}:link_load_policy"


def replica_load(reports: Mapping[Any, float] | None, running: int) -> float | None:
    """The load of the whole deployment from the replicas' reports (replica -> mean messages in flight): the mean
    of those that reported times the replicas running (a replica that started a moment ago has not reported yet,
    and counting it as idle would halve the load it is about to take). None when no replica reported."""
    values = [float(v) for v in (reports or {}).values() if v is not None and math.isfinite(v)]
    if not values:
        return None
    return max(0.0, sum(values) / len(values)) * max(running, len(values))


def desired_replicas(*, running: int, target_now: int, load: float | None, queued: float, target: float,
                     lowest: int, highest: int) -> int:
    """Replicas needed for ``load`` messages in flight at the replicas plus ``queued`` requests waiting in Serve's
    handles for a replica (not yet at any replica, so not in ``load``; Serve's count of requests *running* is
    not used: the replicas count those messages themselves, and it also counts calls that are not traffic), at
    ``target`` per replica, within ``lowest``..``highest``. With no report yet and nothing queued, the current
    target stands."""
    if load is None and queued <= 0:
        wanted = target_now
    else:
        wanted = math.ceil(((load or 0.0) + max(0.0, queued)) / target) if target > 0 else highest
    if running == 0 and wanted == 0 and queued > 0:
        wanted = 1
    return max(lowest, min(highest, wanted))


def link_load_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """Serve's ``policy_function``: a ``ray.serve.config.AutoscalingContext`` in; the replica count and no state of
    its own out (Serve keeps its delay counters in the state itself)."""
    config = ctx.config
    target = float(config.get_target_ongoing_requests() if config is not None else 1.0)
    metrics = ctx.aggregated_metrics or {}
    return desired_replicas(
        running=int(ctx.current_num_replicas),
        target_now=int(ctx.target_num_replicas),
        load=replica_load(metrics.get(LOAD_METRIC), int(ctx.current_num_replicas)),
        queued=float(ctx.total_queued_requests or 0.0),
        target=target,
        lowest=int(ctx.capacity_adjusted_min_replicas),
        highest=int(ctx.capacity_adjusted_max_replicas),
    ), {}
