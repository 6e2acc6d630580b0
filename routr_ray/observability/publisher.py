"""Event publishing that never slows the SIP path: a bounded queue and one worker task per sink.

:meth:`EventPublisher.publish` is synchronous and O(1): it puts the event on every sink's queue and returns.
A full queue (a sink that is down or slow) drops the event for that sink and counts it; the other sinks are
not affected. Each worker sends one event at a time with a timeout; a failing send is counted and logged at
most once a minute per sink. Counters (``published``, ``dropped``, ``failed`` per sink) are plain ints, and
mirrored into a prometheus_client registry when one is given (``routr_events_*_total{sink}``), so the metrics
bridge carries them to Ray too.

Sinks implement :class:`EventSink`: ``name``, ``async publish(event)``, ``async close()``. See
:mod:`routr_ray.observability.sinks` for log, NATS and Redis pub/sub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from routr_ray.observability.events import Event
from routr_ray.observability.ratelimit import RateLimitedLog

__all__ = ["EventPublisher", "EventSink", "SinkStats"]

log = logging.getLogger(__name__)


class EventSink(Protocol):
    name: str

    async def publish(self, event: Event) -> None: ...

    async def close(self) -> None: ...


@dataclass
class SinkStats:
    published: int = 0
    dropped: int = 0
    failed: int = 0


class _Lane:
    """One sink with its queue, worker task and counters."""

    def __init__(self, sink: EventSink, max_queue: int) -> None:
        self.sink = sink
        self.queue: asyncio.Queue[Event] = asyncio.Queue(max_queue)
        self.stats = SinkStats()
        self.task: asyncio.Task[None] | None = None


class EventPublisher:
    """Fan events out to ``sinks``; ``await start()`` on the loop that will call :meth:`publish`."""

    def __init__(
        self,
        sinks: Iterable[EventSink],
        *,
        max_queue: int = 10_000,
        send_timeout: float = 2.0,
        registry: Any = None,
    ) -> None:
        self._lanes = [_Lane(sink, max_queue) for sink in sinks]
        self._send_timeout = send_timeout
        self._errors = RateLimitedLog(log, interval=60.0)
        self._started = False
        self._counters = _EventCounters(registry, [lane.sink.name for lane in self._lanes]) \
            if registry is not None else None

    @property
    def sinks(self) -> list[EventSink]:
        return [lane.sink for lane in self._lanes]

    def stats(self) -> dict[str, SinkStats]:
        return {lane.sink.name: lane.stats for lane in self._lanes}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for lane in self._lanes:
            if lane.task is None or lane.task.done():
                lane.task = loop.create_task(self._work(lane), name=f"events-{lane.sink.name}")
        self._started = True

    def publish(self, event: Event) -> bool:
        """Queue ``event`` for every sink without waiting; False when some sink's queue was full (dropped)."""
        accepted = True
        for lane in self._lanes:
            try:
                lane.queue.put_nowait(event)
            except asyncio.QueueFull:
                accepted = False
                lane.stats.dropped += 1
                if self._counters is not None:
                    self._counters.dropped(lane.sink.name)
        return accepted

    async def stop(self, drain_timeout: float = 2.0) -> None:
        """Send what is queued (up to ``drain_timeout`` seconds), then stop the workers and close the sinks."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, drain_timeout)
        for lane in self._lanes:
            if lane.task is None:
                continue
            remaining = deadline - loop.time()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.queue.join(), remaining)
            lane.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lane.task
            lane.task = None
        for lane in self._lanes:
            try:
                await asyncio.wait_for(lane.sink.close(), self._send_timeout)
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.debug("closing event sink %s: %s", lane.sink.name, exc)
        self._started = False

    async def _work(self, lane: _Lane) -> None:
        name = lane.sink.name
        while True:
            event = await lane.queue.get()
            try:
                await asyncio.wait_for(lane.sink.publish(event), self._send_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a sink failure must not stop the lane
                lane.stats.failed += 1
                if self._counters is not None:
                    self._counters.failed(name)
                self._errors.warning(name, "event sink %s failed to send %s: %r", name, event.name, exc)
            else:
                lane.stats.published += 1
                if self._counters is not None:
                    self._counters.published(name, event.name)
            finally:
                lane.queue.task_done()


class _EventCounters:
    """``routr_events_{published,dropped,failed}_total`` on a prometheus_client registry."""

    def __init__(self, registry: Any, sinks: Iterable[str] = ()) -> None:
        from prometheus_client import Counter

        self._published = Counter("routr_events_published", "Events sent, by sink and event",
                                  ["sink", "event"], registry=registry)
        self._dropped = Counter("routr_events_dropped", "Events dropped because a sink's queue was full",
                                ["sink"], registry=registry)
        self._failed = Counter("routr_events_failed", "Events a sink failed to send", ["sink"], registry=registry)
        for sink in sinks:  # 0 from the start (a dashboard shows "0 dropped", not "no data")
            self._dropped.labels(sink)
            self._failed.labels(sink)

    def published(self, sink: str, event: str) -> None:
        self._published.labels(sink, event).inc()

    def dropped(self, sink: str) -> None:
        self._dropped.labels(sink).inc()

    def failed(self, sink: str) -> None:
        self._failed.labels(sink).inc()
