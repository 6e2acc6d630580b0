"""One local Ray per test session (DESIGN §9): small, quiet, isolated, shut down at the end."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    # Unix socket paths are limited to 107 bytes: keep the temp dir short.
    temp_dir = tempfile.mkdtemp(prefix="rr-", dir="/tmp")
    ray.init(
        num_cpus=8,  # logical CPUs: a scheduling count, so fractional actors fit on a 2-core box
        object_store_memory=200 * 1024 * 1024,
        include_dashboard=False,
        namespace="routr",
        log_to_driver=False,
        configure_logging=False,
        _temp_dir=temp_dir,
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def serve_started(ray_session: None) -> Iterator[None]:
    """Serve started once per session as ``routr-ray run`` starts it: no gRPC proxy (the dispatcher's gRPC port is
    the front actor's, routr_ray/actors/front.py), its HTTP proxy on loopback."""
    from ray import serve

    from tests.support.redis_server import free_port

    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    try:
        yield
    finally:
        serve.shutdown()
