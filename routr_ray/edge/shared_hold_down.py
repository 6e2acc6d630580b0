"""An EdgePort's hold-down table joined to the cluster's (issue 15: "a server held down by one EdgePort is skipped
by the others too").

:class:`SharedHoldDown` does two things, with its Ray calls injected (``actors/server_health.py``):

* **publish**: each :meth:`HoldDown.mark <routr_ray.edge.hold_down.HoldDown.mark>` wakes it; after ``gather``
  seconds (the marks of a burst of failures travel together) it sends every mark made since in one call. Marks are
  rare (a server is marked when a branch to it fails, and later requests skip it), so this is a call per failure
  burst, never one per request;
* **follow**: it long-polls the cluster's table (``util/server_health.py``) and hands each new version to
  :meth:`HoldDown.apply_shared`: the servers held down by any EdgePort or worker, and those the OPTIONS keepalive
  marked down. The request path reads only the local table.

A failed publish is logged once and dropped (the mark still holds here; the cluster learns of the server at its
next failure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from routr_ray.edge.hold_down import HoldDown
from routr_ray.util.server_health import Fetch, HealthFollower, HealthSnapshot

__all__ = ["Publish", "SharedHoldDown"]

log = logging.getLogger(__name__)

Publish = Callable[[list[tuple[str, str, int, float]]], Awaitable[object]]


class SharedHoldDown:
    def __init__(self, hold_down: HoldDown, fetch: Fetch, publish: Publish, *, gather: float = 0.05,
                 wait: float = 30.0, retry: float = 5.0) -> None:
        self.hold_down = hold_down
        self.publish = publish
        self.gather = gather
        self.follower = HealthFollower(fetch, self._apply, wait=wait, retry=retry, name="EdgePort hold-down")
        self._marked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        hold_down.on_mark = self._marked.set

    def _apply(self, snapshot: HealthSnapshot) -> None:
        self.hold_down.apply_shared(snapshot.held, snapshot.down)

    def start(self) -> None:
        self.follower.start()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._publishing())

    async def stop(self) -> None:
        self.hold_down.on_mark = None
        await self.follower.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def flush(self) -> None:
        """Send the marks made since the last flush (if any)."""
        marks = self.hold_down.take_marks()
        if not marks:
            return
        try:
            await self.publish(marks)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - best effort: the marks still hold here
            if not self._failing:
                log.info("cannot share %d held-down server(s) with the cluster: %r", len(marks), exc)
            self._failing = True
        else:
            self._failing = False

    async def _publishing(self) -> None:
        while True:
            await self._marked.wait()
            await asyncio.sleep(self.gather)
            self._marked.clear()
            await self.flush()
