"""Reload the dispatcher config without a restart: watch a config directory, apply what changed.

:class:`DispatcherConfigWatcher` polls the config files of a directory (``config_files_in``: its own files and
``resources/``) every ``interval`` seconds. When one changed (mtime, size, added, removed) it loads the directory
again and, when the ``MessageDispatcher`` differs from the one applied last, calls ``apply(new_config)``; in the
launcher that is :func:`routr_ray.actors.serve_app.reload_dispatcher`, which reconfigures the running dispatcher
replicas in place. A directory that does not load (any error) or an ``apply`` that raises is logged and the
running config stays; the next change is tried again. No Ray here: the watcher is a thread with a callback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from routr_ray.config import ConfigInvalid, DispatcherConfig, load_config_dir
from routr_ray.config.documents import config_files_in
from routr_ray.util.priority import lower_this_thread

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int], ...]


def directory_signature(directory: Path) -> Signature:
    """What identifies the current content of the config files of ``directory`` (path, mtime ns, size)."""
    items = []
    for path in config_files_in(directory):
        try:
            stat = path.stat()
        except OSError:
            continue
        items.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(items)


class DispatcherConfigWatcher:
    def __init__(self, directory: str | Path, apply: Callable[[DispatcherConfig], object], *,
                 current: DispatcherConfig | None = None, interval: float = 2.0) -> None:
        self.directory = Path(directory)
        self.apply = apply
        self.current = current
        self.interval = interval
        self._signature = directory_signature(self.directory)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One poll; True when a new dispatcher config was applied."""
        signature = directory_signature(self.directory)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            loaded = load_config_dir(self.directory).dispatcher
        except ConfigInvalid as exc:
            log.error("%s changed but does not load; the dispatcher keeps its config: %s", self.directory,
                      "; ".join(str(e) for e in exc.errors[:3]))
            return False
        if loaded is None or loaded == self.current:
            return False
        try:
            self.apply(loaded)
        except Exception as exc:  # noqa: BLE001 - keep watching; the running config stays
            log.error("applying the changed dispatcher config failed; it keeps its config: %s", exc)
            return False
        log.info("dispatcher config reloaded from %s", self.directory)
        self.current = loaded
        return True

    def start(self) -> DispatcherConfigWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dispatcher-config-watch", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        lower_this_thread()  # a reload is background work (routr_ray/util/priority.py)
        while not self._stop.wait(self.interval):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
            self._thread = None


__all__ = ["DispatcherConfigWatcher", "directory_signature"]
