"""From the API's store to Connect (issue 20 item 3): the resource set Connect routes with, rebuilt when the store
changes and handed to ``publish`` (in production the resource board, routr_ray/actors/connect.py, that every
Connect replica on every node long-polls).

:class:`PostgresFeed` LISTENs on ``routr_ray_resources`` (every write NOTIFYs at commit, whichever API process on
whichever node made it); each burst of notifications (gathered for ``debounce`` seconds) rebuilds the set once.
A lost connection is retried every ``retry`` seconds and the set is rebuilt after reconnecting (changes made
meanwhile are not lost: the rebuild reads everything). A set with errors (it should not happen: every write was
checked) keeps its good resources and logs the rest.

Calls in progress are not disturbed: dialogs carry signed tokens (routr_ray/processors/connect/dialogs.py), not
references to resources, so a replica switching sets mid-call routes the in-dialog requests as before.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable

from routr_ray.api.secrets import Sealer, open_document
from routr_ray.api.store.base import Stored
from routr_ray.config import Resources
from routr_ray.config.problems import Place, Problems
from routr_ray.config.resource_set import assemble
from routr_ray.config.resources import RESOURCE_BUILDERS, Built

log = logging.getLogger(__name__)

Publish = Callable[[Resources], Awaitable[object]]


def resources_of(items: list[Stored], sealer: Sealer | None) -> Resources:
    """Connect's resource set from stored documents (passwords opened); every workspace in one set."""
    problems = Problems()
    built: list[Built] = []
    for item in items:
        place = Place(problems, f"{item.workspace}/{item.kind}/{item.ref}")
        try:
            document = open_document(sealer, item.kind, copy.deepcopy(item.document))
            built.append(RESOURCE_BUILDERS[item.kind](document, place))
        except (KeyError, TypeError, ValueError) as exc:  # a row written by hand: skip it
            place.error(f"cannot be read: {exc!r}")
    resources = assemble(built)
    for error in problems.errors[:50]:
        log.error("resource store: %s", error)
    return resources


def agent_aors(resources: Resources) -> set[str]:
    """``sip:user@domainUri`` of every Agent (the AORs Connect registers them under)."""
    domains = {d.ref: d.domain_uri.lower() for d in resources.domains}
    return {f"sip:{a.username}@{domains[a.domain_ref]}" for a in resources.agents if a.domain_ref in domains}


def removed_aors(before: Resources | None, after: Resources) -> list[str]:
    """The AORs of Agents gone (deleted, renamed, moved to another Domain) between two sets: their bindings must go
    too, else calls would still reach a device that no longer authenticates."""
    if before is None:
        return []
    return sorted(agent_aors(before) - agent_aors(after))


Removed = Callable[[list[str]], Awaitable[object]]


class PostgresFeed:
    def __init__(self, url: str, load: Callable[[], Awaitable[list[Stored]]], sealer: Sealer | None,
                 publish: Publish, *, on_removed: Removed | None = None, debounce: float = 0.02,
                 retry: float = 1.0) -> None:
        self.url = url
        self.load = load
        self.sealer = sealer
        self.publish = publish
        self.debounce = debounce
        self.retry = retry
        self.on_removed = on_removed
        self.published = 0
        self.current: Resources | None = None
        self._changed = asyncio.Event()

    async def rebuild(self) -> Resources:
        resources = resources_of(await self.load(), self.sealer)
        await self.publish(resources)
        self.published += 1
        gone = removed_aors(self.current, resources)
        self.current = resources
        if gone and self.on_removed is not None:
            try:
                await self.on_removed(gone)
            except Exception as exc:  # noqa: BLE001 - the set is in force; bindings expire by themselves
                log.warning("resource feed: removing the bindings of %d deleted agent(s) failed: %s", len(gone), exc)
        return resources

    def _on_notify(self, *_: object) -> None:
        self._changed.set()

    async def run(self) -> None:
        """Follow the database until cancelled."""
        from routr_ray.api.store.postgres import NOTIFY_CHANNEL, connect

        while True:
            conn = None
            try:
                conn = await connect(self.url)
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self._changed.clear()
                await self.rebuild()
                while not conn.is_closed():
                    try:
                        await asyncio.wait_for(self._changed.wait(), timeout=5.0)
                    except TimeoutError:
                        await conn.execute("SELECT 1")  # notices a dead connection
                        continue
                    await asyncio.sleep(self.debounce)
                    self._changed.clear()
                    await self.rebuild()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database restarting: keep the set in force, retry
                log.warning("resource feed: %s; retrying in %.0fs (Connect keeps the resources it has)", exc,
                            self.retry)
            finally:
                if conn is not None:
                    try:
                        await conn.close(timeout=2)
                    except Exception:  # noqa: BLE001
                        pass
            await asyncio.sleep(self.retry)
