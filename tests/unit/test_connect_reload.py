"""Connect resources reload (issue 6 item 1): the watcher delivers new good sets, keeps the last good one on a
bad edit (and logs it once); the board hands newer sets to waiting replicas; a replica follows the board."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from routr_ray.config import Resources
from routr_ray.config.resources import AccessControlList
from routr_ray.processors.connect.reload import FollowedResources, ResourceBoardState, ResourceWatcher

DOMAIN = """\
- apiVersion: v2beta1
  kind: Domain
  ref: domain-01
  metadata: {name: Local}
  spec:
    context: {domainUri: sip.local}
"""

CREDENTIALS = """\
- apiVersion: v2beta1
  kind: Credentials
  ref: credentials-01
  metadata: {name: c}
  spec:
    credentials: {username: "1001", password: "1234"}
"""


def agent(username: str, domain_ref: str = "domain-01") -> str:
    return f"""\
- apiVersion: v2beta1
  kind: Agent
  ref: agent-{username}
  metadata: {{name: A}}
  spec:
    username: "{username}"
    domainRef: {domain_ref}
    credentialsRef: credentials-01
"""


def write(path: Path, text: str) -> None:
    path.write_text(text)
    # the watcher compares (mtime, size): make every edit visible even within one mtime tick
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000 * (1 + int(stat.st_mtime_ns % 7))))


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    resources = tmp_path / "resources"
    resources.mkdir()
    write(resources / "domains.yaml", DOMAIN)
    write(resources / "credentials.yaml", CREDENTIALS)
    write(resources / "agents.yaml", agent("1001"))
    return tmp_path


def usernames(resources: Resources) -> set[str]:
    return {a.username for a in resources.agents}


def test_watcher_delivers_the_current_set_first_then_only_changes(config_dir: Path) -> None:
    delivered: list[Resources] = []
    watcher = ResourceWatcher(config_dir, delivered.append)
    assert watcher.poll() is True
    assert usernames(delivered[0]) == {"1001"}
    assert watcher.poll() is False  # nothing changed
    write(config_dir / "resources" / "agents.yaml", agent("1001") + agent("1002"))
    assert watcher.poll() is True
    assert usernames(delivered[-1]) == {"1001", "1002"}
    assert watcher.current is delivered[-1]


def test_bad_edit_keeps_the_last_good_set_and_logs_once(config_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    delivered: list[Resources] = []
    watcher = ResourceWatcher(config_dir, delivered.append)
    watcher.poll()
    good = watcher.current
    agents = config_dir / "resources" / "agents.yaml"
    with caplog.at_level(logging.ERROR, logger="routr_ray.processors.connect.reload"):
        write(agents, agent("1001") + agent("1002", domain_ref="no-such-domain"))
        assert watcher.poll() is False
        assert watcher.poll() is False  # the same bad files are not reported again
    assert watcher.current is good and len(delivered) == 1
    errors = [r.getMessage() for r in caplog.records]
    assert sum("not reloaded" in m for m in errors) == 1
    assert any("no-such-domain" in m for m in errors)
    write(agents, agent("1001") + agent("1003"))  # fixed: delivered
    assert watcher.poll() is True
    assert usernames(delivered[-1]) == {"1001", "1003"}


def test_yaml_syntax_error_is_a_bad_edit(config_dir: Path) -> None:
    delivered: list[Resources] = []
    watcher = ResourceWatcher(config_dir, delivered.append)
    watcher.poll()
    write(config_dir / "resources" / "agents.yaml", "- kind: Agent\n  spec: [unclosed\n")
    assert watcher.poll() is False
    assert len(delivered) == 1


def test_removed_and_added_files_are_changes(config_dir: Path) -> None:
    delivered: list[Resources] = []
    watcher = ResourceWatcher(config_dir, delivered.append, initial=Resources())
    assert watcher.poll() is False  # `initial` is the set in force for these very files
    (config_dir / "resources" / "agents.yaml").unlink()
    assert watcher.poll() is True
    assert usernames(delivered[-1]) == set()
    write(config_dir / "resources" / "more-agents.json",
          '[{"apiVersion": "v2beta1", "kind": "Agent", "ref": "agent-7", "metadata": {"name": "x"}, "spec": '
          '{"username": "7", "domainRef": "domain-01", "credentialsRef": "credentials-01"}}]')
    assert watcher.poll() is True
    assert usernames(delivered[-1]) == {"7"}


def test_failed_publish_is_retried_at_the_next_poll(config_dir: Path) -> None:
    calls: list[Resources] = []

    def flaky(resources: Resources) -> None:
        calls.append(resources)
        if len(calls) == 1:
            raise RuntimeError("board unreachable")

    watcher = ResourceWatcher(config_dir, flaky)
    assert watcher.poll() is False
    assert watcher.poll() is True
    assert len(calls) == 2


def test_watcher_thread_polls_until_stopped(config_dir: Path) -> None:
    delivered: list[Resources] = []
    watcher = ResourceWatcher(config_dir, delivered.append, interval=0.02).start()
    try:
        for _ in range(200):
            if delivered:
                break
            time.sleep(0.01)
    finally:
        watcher.stop()
    assert len(delivered) == 1


async def test_board_wakes_waiters_with_the_newer_set() -> None:
    board = ResourceBoardState(Resources())
    assert (await board.newer_than(0, 0.0)) == (1, board.resources)  # a new replica gets the set at once
    assert await board.newer_than(1, 0.0) is None
    assert await board.newer_than(1, 0.01) is None  # timeout
    waiter = asyncio.create_task(board.newer_than(1, 5.0))
    await asyncio.sleep(0)
    new = _resources("acl-new")
    assert await board.publish(new) == 2
    version, resources = await asyncio.wait_for(waiter, 1.0)
    assert version == 2 and resources is new


async def test_publishing_the_same_set_again_changes_nothing() -> None:
    """A deploy publishes the set it loaded: the same set again is no new version (no replica re-indexes it)."""
    board = ResourceBoardState(_resources("acl-1"))
    waiter = asyncio.create_task(board.newer_than(1, 0.3))
    assert await board.publish(_resources("acl-1")) == 1  # equal, not the same object
    assert await waiter is None  # nobody woken
    assert await board.publish(_resources("acl-2")) == 2


def _resources(acl_ref: str) -> Resources:
    return Resources(access_control_lists=(AccessControlList(acl_ref, acl_ref),))


async def test_replica_follows_the_board() -> None:
    initial, newer, newest = _resources("initial"), _resources("newer"), _resources("newest")
    board = ResourceBoardState(initial)
    await board.publish(newer)  # published before the replica's first request
    followed = FollowedResources(initial, board.newer_than, wait_seconds=5.0)
    assert followed.current() is initial
    await followed.ensure_following()
    assert followed.current() is newer  # the first request already runs with the newest set
    await board.publish(newest)
    for _ in range(100):
        if followed.current() is newest:
            break
        await asyncio.sleep(0.005)
    assert followed.current() is newest
    await followed.stop()


async def test_replica_keeps_its_set_while_the_board_fails() -> None:
    initial = Resources()
    attempts = 0

    async def failing(version: int, wait_seconds: float) -> tuple[int, Resources] | None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("board gone")

    followed = FollowedResources(initial, failing, retry_seconds=0.01)
    await followed.ensure_following()
    await asyncio.sleep(0.05)
    assert followed.current() is initial
    assert attempts >= 3  # the first request's try, then the background retries
    await followed.stop()
