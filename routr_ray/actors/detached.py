"""Detached actors that a redeploy must really update.

``get_if_exists=True`` keeps an actor that already runs, with the arguments it was started with: a redeploy
with a new token (or address) would change nothing, and :meth:`set_token`-style methods would be undone by the
next crash restart (Ray restarts an actor with its original arguments). So an actor whose arguments matter
exposes ``fingerprint()`` (a digest of them, :func:`fingerprint`), and :func:`replace_if_changed` kills it when a
deploy asks for another one; the deploy then creates it anew.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import ray

from routr_ray.actors import NAMESPACE


def fingerprint(*parts: Any) -> str:
    """A digest of an actor's arguments (secrets among them are hashed, never kept in the clear)."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.blake2s(text.encode(), person=b"routr-fp").hexdigest()[:24]


def replace_if_changed(name: str, wanted: str, *, timeout: float = 30.0) -> bool:
    """Kill the detached actor ``name`` when its ``fingerprint()`` is not ``wanted`` (or it cannot say) and wait
    until its name is free; True when it was killed. No actor of that name: nothing to do."""
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    try:
        current = ray.get(handle.fingerprint.remote(), timeout=timeout)
    except Exception:  # noqa: BLE001 - dead, restarting, or an older version without fingerprint(): replace it
        current = None
    if current == wanted:
        return False
    kill_and_wait(name, timeout=timeout)
    return True


def kill_and_wait(name: str, *, timeout: float = 30.0) -> None:
    """Kill the detached actor ``name`` (no restart) and wait until its name is free (nothing to do without one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            handle = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        ray.kill(handle, no_restart=True)
        time.sleep(0.05)
    raise TimeoutError(f"actor {name} did not stop within {timeout:.0f}s")


def driver_node_strategy() -> Any:
    """Place an actor on this driver's node (the head, for ``routr-ray run`` / ``deploy``; the Ray Client server's
    node for ``ray://``): the ports it binds are where the operator configured them, e.g. loopback of the machine
    they run the tools on. Ray's default placement when the node cannot be told."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - a client that cannot say: any node
        return "DEFAULT"
    return NodeAffinitySchedulingStrategy(node_id=node, soft=False) if node else "DEFAULT"


__all__ = ["driver_node_strategy", "fingerprint", "kill_and_wait", "replace_if_changed"]
