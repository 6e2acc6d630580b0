"""Whether an EdgePort is ready: the whole path behind it answers (issue 13 item 4).

Ready means a REGISTER would succeed now: the dispatcher client's ``ready()`` is an end-to-end probe (for the
in-cluster dispatcher: its config is there and every processor answers a readiness probe, Connect after every
Location shard answered; see ``routr_ray/actors/edgeport.py``). Listening alone is not ready: until the probe
succeeds the EdgePort answers OPTIONS to itself with 503 + Retry-After and ``/readyz`` says not ready.

:class:`Readiness` runs the probe in the background: every ``interval`` seconds until it succeeds, then every
``recheck`` seconds (so an outage later turns OPTIONS and ``/readyz`` to 503 again). Each probe is bounded by
``timeout``; one that raises counts as failed. :meth:`check` runs a probe now (``/readyz``), sharing one that is
already under way; :attr:`ready` is the last result (the hot path reads only that); :meth:`wait` returns when
ready (the launcher prints "ready" only then).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]


class Readiness:
    def __init__(self, probe: Probe, *, interval: float = 0.1, recheck: float = 5.0, timeout: float = 5.0,
                 name: str = "EdgePort") -> None:
        self._probe = probe
        self.interval = interval
        self.recheck = recheck
        self.timeout = timeout
        self.name = name
        self.ready = False
        self._became_ready = asyncio.Event()
        self._probed = asyncio.Event()
        self._inflight: asyncio.Task[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._reported: bool | None = None

    async def start(self, first_wait: float = 1.0) -> None:
        """Start probing; wait up to ``first_wait`` seconds for the first answer (a quick one decides at once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.name} readiness")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._probed.wait(), first_wait)

    async def stop(self) -> None:
        for task in (self._task, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._inflight = None

    async def check(self) -> bool:
        """Probe now (or join the probe under way) and return its result."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.get_running_loop().create_task(self._probe_once())
        return await asyncio.shield(self._inflight)

    async def wait(self, seconds: float | None = None) -> bool:
        """True once ready (at once if it is), False when ``seconds`` pass first."""
        if self.ready:
            return True
        try:
            await asyncio.wait_for(self._became_ready.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.recheck if self.ready else self.interval)

    async def _probe_once(self) -> bool:
        try:
            ok = bool(await asyncio.wait_for(self._probe(), self.timeout))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing probe is a "not ready"
            log.debug("%s readiness probe failed: %r", self.name, exc)
            ok = False
        self._set(ok)
        return ok

    def _set(self, ok: bool) -> None:
        self.ready = ok
        self._probed.set()
        if ok:
            self._became_ready.set()
        else:
            self._became_ready.clear()
        if ok != self._reported:
            if ok:
                log.info("%s is ready: the dispatcher and the processors behind it answer", self.name)
            elif self._reported is not None:  # was ready: the path broke
                log.warning("%s is not ready any more: the dispatcher or a processor does not answer", self.name)
            self._reported = ok
