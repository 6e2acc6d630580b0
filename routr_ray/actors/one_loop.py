"""Serve's one-loop settings for our replicas and EdgePorts (read in the driver: ``routr-ray run``'s environment).

Light on purpose (no Ray Serve import): the launcher puts the settings in its environment before it imports Serve
and starts a local Ray (:func:`inherit_one_loop`).
"""

from __future__ import annotations

import os
from typing import Any

ONE_LOOP_ENV = "ROUTR_RAY_SERVE_ONE_LOOP"
"""``1`` (default): our Serve replicas run our code on their main event loop, and EdgePort actors run Serve's
request router on theirs: no thread hop and no cross-loop future per call (measured: -20 % CPU per call on the hot
path, p50 16 -> 12 ms at 40 calls/s). ``0``: Serve's defaults (a separate thread and loop each), e.g. for a
processor whose steps block. Read in the driver (``routr-ray run``'s environment). Two settings of Serve's
experimental THROUGHPUT_OPTIMIZED mode, taken alone; the mode itself (direct ingress, GC freeze, buffered logs)
is not used."""
ONE_LOOP_SETTINGS = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}
INHERITED_ENV = "ROUTR_RAY_ONE_LOOP_INHERITED"
"""``1`` in the environment of a local Ray that ``routr-ray run`` started with :data:`ONE_LOOP_SETTINGS` in its
environment (:func:`inherit_one_loop`): every process of that Ray has them already, so our replicas and EdgePorts
need no ``runtime_env`` for them, and any idle worker process can take them (a ``runtime_env`` needs a worker
process started for it: about a second at start-up on 2 cores, issue 13 item 4)."""


def one_loop(explicit: bool | None = None) -> bool:
    if explicit is not None:
        return explicit
    return os.environ.get(ONE_LOOP_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def inherit_one_loop() -> None:
    """Put :data:`ONE_LOOP_SETTINGS` in this process's environment before it starts a local Ray (whose processes
    inherit it), when :func:`one_loop` is on. For Serve's proxies and controller the settings are those of Serve's
    THROUGHPUT_OPTIMIZED mode too; this driver makes no handle calls."""
    if one_loop():
        os.environ.update(ONE_LOOP_SETTINGS)
        os.environ[INHERITED_ENV] = "1"


def one_loop_env(*names: str) -> dict[str, Any]:
    """Actor options carrying the :data:`ONE_LOOP_SETTINGS` ``names`` as a ``runtime_env``, unless the Ray's
    processes have them already (:func:`inherit_one_loop`): then nothing."""
    if os.environ.get(INHERITED_ENV) == "1" and all(os.environ.get(n) == ONE_LOOP_SETTINGS[n] for n in names):
        return {}
    return {"runtime_env": {"env_vars": {n: ONE_LOOP_SETTINGS[n] for n in names}}}
