"""How an EdgePort actor reaches the processors: embedded dispatch (default) or the dispatcher hop, and the
Serve loop settings of our deployments (no Ray started here)."""

from __future__ import annotations

import pytest

from routr_ray.actors import serve_app
from routr_ray.actors.edgeport import (
    DISPATCH_ENV,
    EmbeddedDispatcherClient,
    ServeDispatcherClient,
    dispatch_mode,
    dispatcher_for,
)
from routr_ray.edge.dispatcher_client import GrpcDispatcherClient


def test_embedded_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISPATCH_ENV, raising=False)
    assert dispatch_mode() == "embedded"
    assert isinstance(dispatcher_for("serve://routr"), EmbeddedDispatcherClient)
    assert isinstance(dispatcher_for(""), EmbeddedDispatcherClient)


def test_the_environment_or_the_argument_forces_the_dispatcher_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISPATCH_ENV, "dispatcher")
    assert isinstance(dispatcher_for("serve://routr"), ServeDispatcherClient)
    assert isinstance(dispatcher_for("serve://routr", "embedded"), EmbeddedDispatcherClient)
    monkeypatch.setenv(DISPATCH_ENV, "sideways")
    with pytest.raises(ValueError, match=DISPATCH_ENV):
        dispatch_mode()


async def test_a_host_port_dispatcher_is_never_embedded() -> None:
    client = dispatcher_for("127.0.0.1:51901", "embedded")
    assert isinstance(client, GrpcDispatcherClient)
    await client.close()


def test_replica_options_follow_the_one_loop_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(serve_app.ONE_LOOP_ENV, raising=False)
    assert serve_app.one_loop()  # the default
    monkeypatch.setenv(serve_app.ONE_LOOP_ENV, "0")
    assert serve_app.replica_actor_options() == {"num_cpus": 0.1}
    monkeypatch.setenv(serve_app.ONE_LOOP_ENV, "1")
    env = serve_app.replica_actor_options()["runtime_env"]["env_vars"]
    assert env == {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}
    assert serve_app.replica_actor_options(False) == {"num_cpus": 0.1}


def test_edge_batching_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from routr_ray.actors.edgeport import BATCHING_ENV, edge_options

    monkeypatch.delenv(BATCHING_ENV, raising=False)
    default = edge_options()
    assert default.tune_gc and (default.max_batch, default.max_wait, default.max_in_flight) == (64, 0.001, 4)
    tuned = edge_options("max_batch=32, max_wait=0.003,max_in_flight=2")
    assert (tuned.max_batch, tuned.max_wait, tuned.max_in_flight) == (32, 0.003, 2)
    monkeypatch.setenv(BATCHING_ENV, "max_in_flight=1")
    assert edge_options().max_in_flight == 1
    for bad in ("max_flights=2", "max_batch=0", "max_wait=-1"):
        with pytest.raises(ValueError, match=BATCHING_ENV):
            edge_options(bad)


def test_a_local_ray_that_inherits_the_one_loop_settings_needs_no_runtime_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """routr-ray run puts the settings in the environment of the Ray it starts: our actors then take any idle worker
    process (a runtime_env needs one started for it)."""
    from routr_ray.actors import one_loop

    for name in (*one_loop.ONE_LOOP_SETTINGS, one_loop.INHERITED_ENV, one_loop.ONE_LOOP_ENV):
        monkeypatch.delenv(name, raising=False)
    assert "runtime_env" in serve_app.replica_actor_options()
    assert one_loop.one_loop_env("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP") != {}
    one_loop.inherit_one_loop()
    assert serve_app.replica_actor_options() == {"num_cpus": 0.1}
    assert one_loop.one_loop_env("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP") == {}
    monkeypatch.setenv("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", "1")  # changed after: the runtime_env again
    assert one_loop.one_loop_env("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP") != {}
