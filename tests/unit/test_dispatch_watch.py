"""Reloading the dispatcher config when its directory changes (no Ray: the apply callback is a list)."""

from __future__ import annotations

import os
from pathlib import Path

from routr_ray.config import DispatcherConfig, load_config_dir
from routr_ray.dispatch.watch import DispatcherConfigWatcher

DISPATCHER = """\
apiVersion: v2beta1
kind: MessageDispatcher
spec:
  processors:
    - {{ ref: echo, addr: "serve://echo", methods: [{methods}] }}
"""


def write(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()  # make the change visible even within the file system's mtime granularity
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_applies_a_changed_dispatcher_once_and_keeps_the_old_one_on_errors(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.yaml"
    write(path, DISPATCHER.format(methods="OPTIONS"))
    applied: list[DispatcherConfig] = []
    watcher = DispatcherConfigWatcher(tmp_path, applied.append, current=load_config_dir(tmp_path).dispatcher)
    assert watcher.check() is False  # nothing changed

    write(path, DISPATCHER.format(methods="OPTIONS, INFO"))
    assert watcher.check() is True
    assert [c.processors[0].methods for c in applied] == [("OPTIONS", "INFO")]
    assert watcher.check() is False

    write(path, DISPATCHER.format(methods=""))  # invalid (no methods): logged, the running config stays
    assert watcher.check() is False
    (tmp_path / "notes.yaml").write_text("# a comment only\n")  # another file changes, the dispatcher does not
    assert watcher.check() is False
    assert len(applied) == 1 and watcher.current == applied[0]


def test_a_failing_apply_is_retried_on_the_next_change(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.yaml"
    write(path, DISPATCHER.format(methods="OPTIONS"))
    attempts: list[DispatcherConfig] = []

    def apply(config: DispatcherConfig) -> None:
        attempts.append(config)
        if len(attempts) == 1:
            raise RuntimeError("serve is busy")

    watcher = DispatcherConfigWatcher(tmp_path, apply, current=load_config_dir(tmp_path).dispatcher)
    write(path, DISPATCHER.format(methods="INFO"))
    assert watcher.check() is False and watcher.current is not None
    assert watcher.current.processors[0].methods == ("OPTIONS",)
    write(path, DISPATCHER.format(methods="BYE"))
    assert watcher.check() is True
    assert watcher.current.processors[0].methods == ("BYE",)


def test_the_thread_starts_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.yaml"
    write(path, DISPATCHER.format(methods="OPTIONS"))
    watcher = DispatcherConfigWatcher(tmp_path, lambda c: None, interval=0.01).start()
    watcher.stop()
    assert watcher._thread is None
