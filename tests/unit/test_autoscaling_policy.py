"""The autoscaling signal and policy (issue 18 item 1): messages in flight, time-averaged by each replica, turned
into a replica count in Serve's controller (routr_ray/util/inflight.py, routr_ray/actors/autoscaling_policy.py)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from routr_ray.actors import autoscaling_policy
from routr_ray.actors.autoscaling_policy import LOAD_METRIC, desired_replicas, link_load_policy, replica_load
from routr_ray.util.inflight import InFlightMeter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_meter_reports_the_time_weighted_mean_since_its_last_report() -> None:
    clock = Clock()
    meter = InFlightMeter(clock)
    meter.begin(3)  # 3 messages for 0.5 s
    clock.now += 0.5
    meter.end(3)  # then none for 0.5 s
    clock.now += 0.5
    assert meter.average() == pytest.approx(1.5)
    meter.begin(2)  # a new period: 2 in flight all along
    clock.now += 2.0
    assert meter.average() == pytest.approx(2.0)
    assert meter.in_flight == 2
    meter.end(2)
    clock.now += 1.0
    assert meter.average() == 0.0


def test_the_meter_overlapping_batches_add_up_and_never_go_negative() -> None:
    clock = Clock()
    meter = InFlightMeter(clock)
    meter.begin(4)
    clock.now += 1.0
    meter.begin(4)  # 8 for one second
    clock.now += 1.0
    meter.end(4)
    meter.end(4)
    meter.end(1)  # more ends than begins (never happens): floored at 0
    assert meter.in_flight == 0
    assert meter.average() == pytest.approx((4 + 8) / 2)
    assert meter.average() == meter.in_flight  # no time elapsed: the current count


def test_replica_load_counts_replicas_that_have_not_reported_yet_at_the_mean() -> None:
    assert replica_load(None, 2) is None
    assert replica_load({}, 1) is None
    assert replica_load({"a": 1.0, "b": 3.0}, 2) == pytest.approx(4.0)
    # 3 replicas running, one just started (no report): it is about to carry the mean, not nothing
    assert replica_load({"a": 1.0, "b": 3.0}, 3) == pytest.approx(6.0)
    assert replica_load({"a": float("nan"), "b": 2.0}, 1) == pytest.approx(2.0)


@pytest.mark.parametrize(("load", "queued", "expected"), [
    (None, 0.0, 1),   # no report yet: the current target stands
    (0.0, 0.0, 1),    # idle: the minimum
    (0.5, 0.0, 1),    # under the target of one replica
    (1.2, 0.0, 2),    # over: one more
    (9.0, 0.0, 3),    # far over: the maximum
    (None, 1.5, 2),   # requests waiting in Serve's handles for a replica count too
    (0.8, 0.5, 2),    # added to what the replicas carry (they have not seen those yet)
])
def test_desired_replicas(load: float | None, queued: float, expected: int) -> None:
    assert desired_replicas(running=1, target_now=1, load=load, queued=queued, target=1.0,
                            lowest=1, highest=3) == expected


def test_desired_replicas_stays_within_bounds() -> None:
    assert desired_replicas(running=2, target_now=2, load=0.0, queued=0.0, target=1.0, lowest=2, highest=4) == 2
    assert desired_replicas(running=2, target_now=2, load=100.0, queued=0.0, target=0.1, lowest=1, highest=2) == 2


@dataclass
class FakeConfig:
    target: float

    def get_target_ongoing_requests(self) -> float:
        return self.target


@dataclass
class FakeContext:
    """The fields of ``ray.serve.config.AutoscalingContext`` the policy reads."""

    current_num_replicas: int
    target_num_replicas: int
    total_queued_requests: float
    aggregated_metrics: dict[str, dict[str, float]]
    capacity_adjusted_min_replicas: int = 1
    capacity_adjusted_max_replicas: int = 2
    policy_state: dict[str, Any] = field(default_factory=dict)
    config: FakeConfig = field(default_factory=lambda: FakeConfig(0.5))


def test_the_policy_scales_on_link_load_that_serve_does_not_see() -> None:
    # all traffic on the link: nothing in Serve's handles, the replica reports 2 messages in flight on average
    busy = FakeContext(1, 1, 0.0, {LOAD_METRIC: {"replica-1": 2.0}})
    assert link_load_policy(busy) == (2, {})
    idle = FakeContext(2, 2, 0.0, {LOAD_METRIC: {"replica-1": 0.0, "replica-2": 0.1}})
    assert link_load_policy(idle) == (1, {})
    unknown = FakeContext(2, 2, 0.0, {})
    assert link_load_policy(unknown) == (2, {})


def test_the_policy_module_needs_only_the_standard_library() -> None:
    """Serve's controller unpickles it (by value, with its module): it must not need routr_ray or Ray."""
    tree = ast.parse(Path(autoscaling_policy.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert imported <= {"__future__", "math", "collections", "typing"}, imported


def test_an_autoscaled_processor_keeps_its_link_and_gets_the_policy() -> None:
    from routr_ray.actors.serve_app import AUTOSCALING_METRICS_INTERVAL_S, build_app, link_service_of
    from routr_ray.config.dispatcher import AutoscalingConfig, DispatcherConfig, ProcessorConfig

    autoscaling = AutoscalingConfig(1, 2, 0.5, 1.0, 4.0, look_back_seconds=3.0)
    config = DispatcherConfig(processors=(ProcessorConfig("echo", "serve://echo", ("OPTIONS",),
                                                          autoscaling=autoscaling),))
    dispatcher = build_app(config)._bound_deployment
    (processor,) = [arg for arg in dispatcher.init_args[0].values()]
    deployment = processor._bound_deployment if hasattr(processor, "_bound_deployment") else processor
    assert deployment.init_args[2] == link_service_of("echo")  # the link, autoscaled or not
    scaling = deployment._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.target_ongoing_requests) == (1, 2, 0.5)
    assert (scaling.upscale_delay_s, scaling.downscale_delay_s, scaling.look_back_period_s) == (1.0, 4.0, 3.0)
    assert scaling.metrics_interval_s == AUTOSCALING_METRICS_INTERVAL_S
    assert scaling.policy.policy_function == autoscaling_policy.POLICY_FUNCTION
    assert dispatcher.init_kwargs["link"] is True
