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
def serve_grpc_port(ray_session: None) -> Iterator[int]:
    """Serve started once per session with the Processor gRPC servicer on a free port."""
    from ray import serve

    from routr_ray.actors.serve_app import grpc_options
    from tests.support.redis_server import free_port

    port = free_port()
    serve.start(grpc_options=grpc_options(port), http_options={"host": "127.0.0.1", "port": free_port()})
    try:
        yield port
    finally:
        serve.shutdown()
