"""What the cluster knows of its next hops' health, shared by every EdgePort and Connect replica (issue 15).

Two kinds of entries, both keyed by :func:`server_key` (transport, host, port):

* **held down**: a server that just failed a branch (503, 408, a timeout, a transport error) while the request had
  somewhere else to go, marked by the EdgePort (worker) that saw it for ``seconds`` (``edge/hold_down.py``);
* **down**: a trunk URI or a peer binding that failed its OPTIONS keepalive (``trunks/keepalive.py``), until it
  answers again; for a peer binding also its Contact URI, under the Peer's AOR (Location avoids it).

:class:`ServerHealth` is what one place per cluster holds (the trunk registrar actor): marks and keepalive results
go in, every change makes a new version, and followers long-poll :meth:`ServerHealth.newer_than` for a version
newer than theirs (as Connect replicas follow the resource board): a server held down by one EdgePort is skipped by
the others a moment later, with no Ray call per request. An :class:`HealthSnapshot` travels as plain data
(:meth:`HealthSnapshot.plain`); its held-down entries carry the *seconds left*, not a time, so no two hosts' clocks
need agree. ``epoch`` is new in each incarnation of the holder: a follower that knew another epoch takes the next
snapshot whatever its version.

:class:`HealthFollower` is the follower's loop (its ``fetch`` and ``apply`` injected: Ray lives in actors/), and
:class:`HealthView` what Connect reads on its request path (a dict lookup).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from routr_ray.util.versions import Versions

__all__ = ["HealthFollower", "HealthSnapshot", "HealthView", "ServerHealth", "server_key"]

log = logging.getLogger(__name__)

Key = tuple[str, str, int]
Held = tuple[str, str, int, float]  # key + seconds left
Clock = Callable[[], float]


def server_key(transport: str, host: str, port: int) -> Key:
    """The key of a server: transport and host in lower case, an IPv6 reference without its brackets."""
    return transport.lower(), host.strip("[]").lower(), int(port)


@dataclass(frozen=True)
class HealthSnapshot:
    epoch: str
    version: int
    held: tuple[Held, ...] = ()  # held down, seconds left when the snapshot was taken
    down: tuple[Key, ...] = ()  # failed their keepalive
    contacts: tuple[tuple[str, str], ...] = ()  # (AOR, Contact URI) of peer bindings that failed their keepalive

    def plain(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "version": self.version, "held": [list(h) for h in self.held],
                "down": [list(d) for d in self.down], "contacts": [list(c) for c in self.contacts]}

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> HealthSnapshot:
        return cls(str(data["epoch"]), int(data["version"]),
                   tuple((str(t), str(h), int(p), float(s)) for t, h, p, s in data.get("held", ())),
                   tuple((str(t), str(h), int(p)) for t, h, p in data.get("down", ())),
                   tuple((str(a), str(c)) for a, c in data.get("contacts", ())))


class ServerHealth:
    """The cluster's table (see the module docstring); at most ``max_entries`` held-down servers (oldest dropped)."""

    def __init__(self, *, clock: Clock = time.monotonic, max_entries: int = 4096, max_seconds: float = 3600.0
                 ) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self.max_seconds = max_seconds
        self.epoch = secrets.token_hex(8)
        self.versions = Versions()
        self._held: OrderedDict[Key, float] = OrderedDict()  # key -> until (our clock)
        self._down: frozenset[Key] = frozenset()
        self._contacts: frozenset[tuple[str, str]] = frozenset()

    @property
    def version(self) -> int:
        return self.versions.current

    async def _bump(self) -> int:
        return await self.versions.bump()

    async def mark(self, entries: Iterable[Held]) -> int:
        """Servers held down by an EdgePort: (transport, host, port, seconds) each; a later end wins."""
        now = self.clock()
        grew = False
        for transport, host, port, seconds in entries:
            seconds = min(max(0.0, float(seconds)), self.max_seconds)
            if seconds <= 0:
                continue
            key = server_key(transport, host, port)
            until = now + seconds
            if self._held.get(key, 0.0) < until - 0.5:  # a repeat within half a second is no news
                grew = True
            self._held[key] = max(until, self._held.get(key, 0.0))
            self._held.move_to_end(key)
        while len(self._held) > self.max_entries:
            self._held.popitem(last=False)
        return await self._bump() if grew else self.version

    async def set_down(self, servers: Iterable[Key], contacts: Iterable[tuple[str, str]] = ()) -> int:
        """What the keepalive marks down now (the whole set: what is absent is up)."""
        down = frozenset(server_key(*key) for key in servers)
        reached = frozenset((aor, contact) for aor, contact in contacts)
        if down == self._down and reached == self._contacts:
            return self.version
        self._down, self._contacts = down, reached
        return await self._bump()

    def snapshot(self) -> HealthSnapshot:
        now = self.clock()
        for key in [k for k, until in self._held.items() if until <= now]:
            del self._held[key]
        held = tuple((*key, round(until - now, 3)) for key, until in self._held.items())
        return HealthSnapshot(self.epoch, self.version, held, tuple(sorted(self._down)), tuple(sorted(self._contacts)))

    async def newer_than(self, epoch: str, version: int, wait_seconds: float) -> HealthSnapshot | None:
        """The current snapshot as soon as it is newer than ``version`` of ``epoch`` (at once for another epoch);
        None after ``wait_seconds``."""
        if epoch != self.epoch or await self.versions.wait_above(version, wait_seconds):
            return self.snapshot()
        return None


class HealthView:
    """A follower's copy of the newest snapshot, for questions on the request path."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._held: dict[Key, float] = {}  # key -> until (our clock)
        self._down: frozenset[Key] = frozenset()
        self._contacts: dict[str, tuple[str, ...]] = {}

    def apply(self, snapshot: HealthSnapshot) -> None:
        now = self.clock()
        self._held = {server_key(t, h, p): now + s for t, h, p, s in snapshot.held}
        self._down = frozenset(snapshot.down)
        contacts: dict[str, list[str]] = {}
        for aor, contact in snapshot.contacts:
            contacts.setdefault(aor, []).append(contact)
        self._contacts = {aor: tuple(items) for aor, items in contacts.items()}

    def server_down(self, transport: str, host: str, port: int) -> bool:
        """Held down or failed its keepalive: tried only when nothing else is left."""
        if not self._held and not self._down:
            return False
        key = server_key(transport, host, port)
        return key in self._down or self._held.get(key, 0.0) > self.clock()

    def down_contacts(self, aor: str) -> tuple[str, ...]:
        """The Contact URIs of ``aor``'s bindings that failed their keepalive."""
        return self._contacts.get(aor, ()) if self._contacts else ()

    def held(self) -> list[Held]:
        """(transport, host, port, seconds left) of every held-down server (``math.inf`` for a keepalive one)."""
        now = self.clock()
        rows = [(*key, until - now) for key, until in self._held.items() if until > now]
        return rows + [(*key, math.inf) for key in self._down]


Fetch = Callable[[str, int, float], Awaitable["HealthSnapshot | None"]]


class HealthFollower:
    """Long-polls ``fetch(epoch, version, wait_seconds)`` and hands every newer snapshot to ``apply``. A failing
    fetch (nothing to follow yet, or its holder restarting) is retried after ``retry`` seconds, quietly after the
    first time; what was applied last stays in force meanwhile."""

    def __init__(self, fetch: Fetch, apply: Callable[[HealthSnapshot], None], *, wait: float = 30.0,
                 retry: float = 5.0, name: str = "server health") -> None:
        self.fetch = fetch
        self.apply = apply
        self.wait = wait
        self.retry = retry
        self.name = name
        self.epoch = ""
        self.version = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def take(self, snapshot: HealthSnapshot | None) -> bool:
        if snapshot is None or (snapshot.epoch == self.epoch and snapshot.version <= self.version):
            return False
        self.epoch, self.version = snapshot.epoch, snapshot.version
        self.apply(snapshot)
        return True

    async def run(self) -> None:
        failing = False
        while True:
            try:
                snapshot = await self.fetch(self.epoch, self.version, self.wait)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep what we have, try again
                if not failing:
                    log.info("%s: nothing to follow yet (%r); retrying every %gs", self.name, exc, self.retry)
                failing = True
                await asyncio.sleep(self.retry)
                continue
            failing = False
            self.take(snapshot)
