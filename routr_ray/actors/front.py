"""``dispatcher-front``: the actor that serves the dispatcher's gRPC port for outside callers (``bindAddr``, 51901).

It runs :class:`~routr_ray.dispatch.front.DispatcherFront` (a grpc.aio server on exactly the configured host and
port: token, outside-caller policy) and forwards each call to the ``routr`` app's dispatcher as an EdgePort with
``ROUTR_RAY_EDGE_DISPATCH=dispatcher`` does: batched, over the dispatcher's link when a replica serves one, else a
DeploymentHandle with ``_by_reference=False`` (:class:`~routr_ray.actors.edgeport.ServeDispatcherClient`). Serve's
own gRPC proxy is not started (it binds ``[::]`` whatever the config says, without TLS).

The actor is detached and restarted after a crash with its arguments; :func:`deploy_front` replaces it when the
address or the token changed (``routr_ray/actors/detached.py``), so a rotated token takes effect on redeploy. It
runs on the node of the process that deploys it (the head).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import ray

from routr_ray.actors import NAMESPACE
from routr_ray.actors.detached import driver_node_strategy, fingerprint, replace_if_changed
from routr_ray.actors.edgeport import ServeDispatcherClient
from routr_ray.actors.metrics import observe_process
from routr_ray.actors.serve_app import APP_NAME
from routr_ray.dispatch.front import TOKEN_HINT, DispatcherFront, start_front_server
from routr_ray.edge.dispatcher_client import BatchingDispatcher
from routr_ray.grpcutil.auth import refuse_open_port

log = logging.getLogger(__name__)

FRONT_NAME = "dispatcher-front"
BIND_ATTEMPTS_S = 10.0  # a replaced front's process may hold the port for a moment after it was killed


def front_fingerprint(bind_addr: str, token: str | None, app_name: str, deadline: float) -> str:
    digest = hashlib.blake2s(token.encode()).hexdigest() if token else None
    return fingerprint("front", bind_addr, digest, app_name, deadline)


@ray.remote(num_cpus=0.05, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class DispatcherFrontActor:
    async def __init__(self, bind_addr: str, token: str | None, app_name: str = APP_NAME,
                       deadline: float = 10.0) -> None:
        logging.basicConfig(level=logging.INFO)
        observe_process("dispatcher-front")
        self._fingerprint = front_fingerprint(bind_addr, token, app_name, deadline)
        self.dispatcher = BatchingDispatcher(ServeDispatcherClient(app_name), deadline=deadline)
        self.front = DispatcherFront(self.dispatcher.submit, token=token)
        self.server = await _start(self.front, bind_addr)
        self.port: int = self.server.bound_port
        log.info("dispatcher gRPC port for outside callers on %s (token %s)", bind_addr,
                 "required" if token else "none: loopback only, callers are outside callers")

    async def ready(self) -> int:
        return self.port

    async def fingerprint(self) -> str:
        return self._fingerprint

    async def stats(self) -> dict[str, int]:
        return {"calls": self.front.calls, "refused": self.front.refused}


async def _start(front: DispatcherFront, bind_addr: str) -> Any:
    deadline = asyncio.get_running_loop().time() + BIND_ATTEMPTS_S
    while True:
        try:
            return await start_front_server(front, bind_addr)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


def deploy_front(bind_addr: str, token: str | None, *, app_name: str = APP_NAME, deadline: float = 10.0,
                 timeout: float = 60.0, name: str = FRONT_NAME) -> Any:
    """Create the front actor (or keep the running one when its address and token are the ones asked for) and
    wait until it listens. Raises :class:`~routr_ray.grpcutil.auth.OpenPortRefused` for a non-loopback
    ``bind_addr`` without a token (before any actor starts)."""
    refuse_open_port(bind_addr, token, what="the dispatcher's gRPC port", how=TOKEN_HINT)
    wanted = front_fingerprint(bind_addr, token, app_name, deadline)
    replace_if_changed(name, wanted, timeout=timeout)
    handle = DispatcherFrontActor.options(  # type: ignore[attr-defined]
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        scheduling_strategy=driver_node_strategy(),
    ).remote(bind_addr, token, app_name, deadline)
    try:
        ray.get(handle.ready.remote(), timeout=timeout)
    except Exception:
        ray.kill(handle, no_restart=True)  # a front that cannot bind would be restarted forever
        raise
    return handle


__all__ = ["FRONT_NAME", "DispatcherFrontActor", "deploy_front", "front_fingerprint"]
