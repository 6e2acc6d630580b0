"""Resources that change while the server runs (issue 6 item 1), without Ray:

* :class:`ResourceWatcher` (driver side) polls the resource files of a config directory every ``interval``
  seconds (path, mtime, size); when they changed it loads them again and hands a set that loads cleanly to
  ``on_change``. A set with errors is logged, error by error, and ignored: the last good set stays in force.
* :class:`ResourceBoardState` (what the board actor holds): the latest set and its version; replicas wait
  for a version newer than theirs (long poll), so a change reaches every replica at once, on any node.
* :class:`FollowedResources` (replica side): a :class:`ResourceSource` whose ``current()`` is the newest set
  fetched from the board; ConnectProcessor rebuilds its index when ``current()`` returns a new object.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from routr_ray.config import ConfigInvalid, Resources, load_resources
from routr_ray.config.documents import config_files_in
from routr_ray.util.priority import lower_this_thread
from routr_ray.util.versions import Versions

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int], ...]
Fetch = Callable[[int, float], Awaitable["tuple[int, Resources] | None"]]


def resources_dir(config_dir: str | Path) -> Path:
    return Path(config_dir) / "resources"


def files_signature(directory: Path) -> Signature:
    """(path, mtime ns, size) of every resource file of ``directory``; empty when it does not exist."""
    if not directory.is_dir():
        return ()
    items = []
    for path in config_files_in(directory):
        try:
            stat = path.stat()
        except OSError:  # removed between listing and stat: the next poll sees it gone
            continue
        items.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(items)


def load_resource_dir(directory: Path) -> Resources:
    """The set in ``directory`` (an absent directory is an empty set); raises ConfigInvalid."""
    return load_resources(directory) if directory.is_dir() else Resources()


class ResourceWatcher:
    """Polls ``<config_dir>/resources`` and calls ``on_change(resources)`` with each new set that loads.

    ``initial`` is the set already in force (loaded by the caller); without it the first :meth:`poll` loads and
    delivers the current files. ``on_change`` runs on the watcher thread; if it raises, the error is logged and
    the same files are tried again at the next poll.
    """

    def __init__(
        self,
        config_dir: str | Path,
        on_change: Callable[[Resources], object],
        *,
        interval: float = 2.0,
        initial: Resources | None = None,
    ) -> None:
        self.directory = resources_dir(config_dir)
        self.on_change = on_change
        self.interval = interval
        self.current = initial
        self._seen: Signature | None = files_signature(self.directory) if initial is not None else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> bool:
        """Check once; True when a new set was delivered."""
        signature = files_signature(self.directory)
        if signature == self._seen:
            return False
        try:
            resources = load_resource_dir(self.directory)
        except ConfigInvalid as exc:
            self._seen = signature  # log a bad edit once, not every interval
            log.error("resources in %s not reloaded (%d error(s)); the last good set stays in force",
                      self.directory, len(exc.errors))
            for error in exc.errors:
                log.error("  %s", error)
            return False
        try:
            self.on_change(resources)
        except Exception:  # noqa: BLE001 - keep watching; the next poll retries these files
            log.exception("publishing the resources of %s failed; retrying at the next change check",
                          self.directory)
            return False
        self._seen = signature
        self.current = resources
        log.info("resources reloaded from %s", self.directory)
        return True

    def start(self) -> ResourceWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="routr-ray-resource-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        lower_this_thread()  # a reload is background work (routr_ray/util/priority.py)
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the watcher never dies of one bad poll
                log.exception("resource watcher poll failed")


class ResourceBoardState:
    """The newest resource set and its version (starts at 1); readers wait for a newer version."""

    def __init__(self, resources: Resources) -> None:
        self.versions = Versions()
        self.resources = resources

    @property
    def version(self) -> int:
        return self.versions.current

    async def publish(self, resources: Resources) -> int:
        """Make ``resources`` the newest set (a new version, every waiter woken), unless it equals the current one:
        then nothing changes and the current version is returned. Every ``routr-ray deploy`` publishes the set it
        loaded; a new version for the same set made every Connect replica and EdgePort fetch and re-index it
        (seconds of CPU on a loaded node, measured under SIPp load with benchmarks/bench_chaos.py)."""
        if resources == self.resources:
            return self.version
        self.resources = resources
        return await self.versions.bump()

    async def newer_than(self, version: int, wait_seconds: float) -> tuple[int, Resources] | None:
        """The current (version, set) as soon as the version is above ``version``; None after ``wait_seconds``."""
        if await self.versions.wait_above(version, wait_seconds):
            return self.version, self.resources
        return None


class FollowedResources:
    """A replica's resource source: starts with the set it was given, then follows the board.

    :meth:`ensure_following` (awaited on the replica's request path, on its event loop) starts one background
    task that long-polls ``fetch(known_version, wait_seconds)``; a failing fetch (board restarting) is retried
    after ``retry_seconds`` and the set in force stays.
    """

    def __init__(self, initial: Resources, fetch: Fetch, *, wait_seconds: float = 30.0,
                 retry_seconds: float = 2.0) -> None:
        self._resources = initial
        self.version = 0  # the board's versions start at 1: the first fetch returns its set at once
        self._fetch = fetch
        self._wait = wait_seconds
        self._retry = retry_seconds
        self._task: asyncio.Task[None] | None = None

    def current(self) -> Resources:
        return self._resources

    async def ensure_following(self) -> None:
        """On the first call, take a newer set if the board has one (a replica started after a reload must
        not answer with its init set), then follow in the background."""
        if self._task is not None and not self._task.done():
            return
        if self._task is None:
            try:
                self._take(await self._fetch(self.version, 0.0))
            except Exception as exc:  # noqa: BLE001 - the background task retries
                log.warning("cannot fetch resources from the board (%s)", exc)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    def _take(self, found: tuple[int, Resources] | None) -> None:
        if found is not None:
            version, resources = found
            if version > self.version:
                self.version, self._resources = version, resources
                log.info("resources version %d in force", version)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _follow(self) -> None:
        while True:
            try:
                found = await self._fetch(self.version, self._wait)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the set in force, try again
                log.warning("cannot fetch resources from the board (%s); retrying in %.0fs", exc, self._retry)
                await asyncio.sleep(self._retry)
                continue
            self._take(found)
