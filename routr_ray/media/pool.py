"""Several RTPEngine instances: health, per-call affinity and failover.

* **Affinity**: every call has an order of instances, by rendezvous hashing of its Call-ID (the highest
  ``blake2b(ref + call-id)`` first). A new call goes to the first instance of its order that is up; every later
  command of that call (answer, re-offer, delete) goes where the call is: the instance remembered for it (a
  bounded LRU per process), else the instances of its order, asking each until one knows the call. With the same
  instances up, every replica of the middleware computes the same order: no shared state is needed, and a
  replica that never saw the call finds it at the first try.
* **Health**: each instance is pinged (ng ``ping``) every ``ping_interval``; a failed ping, or a command that got
  no answer (timeout, or ICMP port unreachable: nothing listens there), marks it down at once; a good ping marks it
  up again. New calls only go to instances that are up; when none is, :class:`NoInstance` is raised at once (the
  middleware answers 503) instead of waiting for timeouts.
* **Failover**: a new call whose instance does not answer goes to the next instance of its order. A call already
  on an instance that died stays lost (RTPEngine keeps calls in memory; its Redis replication is the way to keep
  them, docs/media.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from routr_ray.media.ng import NgClient, NgRejected, NgUnreachable
from routr_ray.observability.ratelimit import RateLimitedLog

__all__ = ["CallNotFound", "Instance", "NoInstance", "RtpEngines"]

log = logging.getLogger(__name__)

AFFINITY_SIZE = 100_000


class NoInstance(Exception):
    """No RTPEngine instance could take the command (none up, or every one tried failed)."""


class CallNotFound(Exception):
    """No live instance knows the call."""


class Recorder(Protocol):
    """Where the pool reports (``routr_ray.media.metrics.MediaMetrics`` has these)."""

    def command(self, instance: str, command: str, result: str, seconds: float) -> None: ...
    def instance_up(self, instance: str, up: bool) -> None: ...


class _NoRecorder:
    def command(self, instance: str, command: str, result: str, seconds: float) -> None:
        return None

    def instance_up(self, instance: str, up: bool) -> None:
        return None


@dataclass(eq=False)
class Instance:
    ref: str
    client: NgClient
    up: bool = True  # until a ping or a command says otherwise

    def score(self, call_id: str) -> bytes:
        return hashlib.blake2b(f"{self.ref}\0{call_id}".encode("utf-8", "surrogateescape"), digest_size=8).digest()


def is_unknown_call(reason: str) -> bool:
    """RTPEngine's words for "no such call here" (``Unknown call-id``, the delete warning ``Call-ID not found or
    tags didn't match``)."""
    text = reason.lower()
    return "unknown call" in text or "call-id not found" in text


class RtpEngines:
    """The configured instances (``(ref, host, port)`` each)."""

    def __init__(self, instances: Iterable[tuple[str, str, int]], *, timeout: float = 1.0, retries: int = 2,
                 ping_interval: float = 2.0, recorder: Recorder | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.instances = [Instance(ref, NgClient(host, port, timeout=timeout, retries=retries))
                          for ref, host, port in instances]
        if not self.instances:
            raise ValueError("at least one RTPEngine instance is needed")
        self.by_ref = {i.ref: i for i in self.instances}
        self.ping_interval = ping_interval
        self.recorder: Recorder = recorder or _NoRecorder()
        self._clock = clock
        self._affinity: OrderedDict[str, str] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._log = RateLimitedLog(log, interval=10.0)
        for instance in self.instances:
            self.recorder.instance_up(instance.ref, instance.up)

    # health ------------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start pinging (on the running loop; idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._ping_forever(), name="rtpengine-ping")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for instance in self.instances:
            instance.client.close()

    async def _ping_forever(self) -> None:
        while True:
            await self.ping_all()
            await asyncio.sleep(self.ping_interval)

    async def ping_all(self) -> None:
        await asyncio.gather(*(self.ping(i) for i in self.instances))

    async def ping(self, instance: Instance) -> bool:
        try:
            await self._send(instance, {"command": "ping"})
        except (NgUnreachable, NgRejected):
            return False
        self._mark(instance, True)
        return True

    def _mark(self, instance: Instance, up: bool) -> None:
        if instance.up != up:
            if up:
                log.warning("RTPEngine %s (%s) is up again", instance.ref, instance.client.address)
            else:
                log.warning("RTPEngine %s (%s) is down: new calls go to the other instances", instance.ref,
                            instance.client.address)
        instance.up = up
        self.recorder.instance_up(instance.ref, up)

    @property
    def live(self) -> list[Instance]:
        return [i for i in self.instances if i.up]

    # commands ----------------------------------------------------------------------------------------------------
    def order(self, call_id: str) -> list[Instance]:
        """The call's instances, most preferred first (rendezvous hashing)."""
        return sorted(self.instances, key=lambda i: i.score(call_id), reverse=True)

    async def _send(self, instance: Instance, command: dict[str, Any]) -> dict[str, Any]:
        name = str(command.get("command", "?"))
        started = self._clock()
        try:
            reply = await instance.client.command(command)
        except NgUnreachable as exc:
            self.recorder.command(instance.ref, name, "unreachable", self._clock() - started)
            self._log.warning(f"{instance.ref}-down", "RTPEngine %s: %s", instance.ref, exc)
            self._mark(instance, False)
            raise
        except NgRejected:
            self.recorder.command(instance.ref, name, "error", self._clock() - started)
            raise
        self.recorder.command(instance.ref, name, "ok", self._clock() - started)
        return reply

    async def on(self, instance: Instance, command: dict[str, Any]) -> dict[str, Any]:
        """``command`` on that instance (e.g. the other branches of a forked offer)."""
        return await self._send(instance, command)

    async def new_call(self, call_id: str, command: dict[str, Any]) -> tuple[Instance, dict[str, Any]]:
        """Start a call: the first live instance of its order that answers. Raises :class:`NoInstance` when none
        does, :class:`~routr_ray.media.ng.NgRejected` when RTPEngine refuses the command itself."""
        tried = 0
        for instance in self.order(call_id):
            if not instance.up:
                continue
            tried += 1
            try:
                reply = await self._send(instance, command)
            except NgUnreachable:
                continue  # failover: the next instance of the order
            self.remember(call_id, instance)
            return instance, reply
        raise NoInstance("no RTPEngine instance is up" if not tried else f"{tried} RTPEngine instance(s) failed")

    async def existing_call(self, call_id: str, command: dict[str, Any]) -> tuple[Instance, dict[str, Any]]:
        """``command`` where the call is (module docstring). Raises :class:`CallNotFound` when no live instance knows
        it (or :class:`NoInstance` when none could be asked), :class:`~routr_ray.media.ng.NgRejected` for any other
        refusal."""
        asked = 0
        for instance in self._candidates(call_id):
            asked += 1
            try:
                reply = await self._send(instance, command)
            except NgUnreachable:
                continue
            except NgRejected as exc:
                if is_unknown_call(exc.reason):
                    continue
                raise
            if is_unknown_call(str(reply.get("warning", ""))):
                continue  # delete answers "ok" with a warning when it does not know the call
            self.remember(call_id, instance)
            return instance, reply
        if not asked:
            raise NoInstance("no RTPEngine instance is up")
        raise CallNotFound(call_id)

    async def locate(self, call_id: str) -> Instance | None:
        """The live instance that has the call (a ``query`` per candidate until one knows it), or None."""
        try:
            instance, _ = await self.existing_call(call_id, {"command": "query", "call-id": call_id})
        except (CallNotFound, NoInstance):
            return None
        return instance

    def _candidates(self, call_id: str) -> list[Instance]:
        ordered = [i for i in self.order(call_id) if i.up]
        ref = self._affinity.get(call_id)
        remembered = self.by_ref.get(ref) if ref is not None else None
        if remembered is not None and remembered.up:
            ordered.remove(remembered)
            ordered.insert(0, remembered)
        return ordered

    def remember(self, call_id: str, instance: Instance) -> None:
        self._affinity[call_id] = instance.ref
        self._affinity.move_to_end(call_id)
        while len(self._affinity) > AFFINITY_SIZE:
            self._affinity.popitem(last=False)

    def forget(self, call_id: str) -> None:
        self._affinity.pop(call_id, None)
