"""Runs the OPTIONS keepalive (``keepalive.py``) on asyncio with any sender (issue 15).

``KeepalivePinger(send)``: ``send(request, target, timeout) -> Response | None`` delivers one OPTIONS and returns
its final response (None, or a raised exception: no final response within ``timeout``, an ICMP or transport
error). In production ``send`` is the EdgePort actor's ``send_request`` (``actors/trunk_registrar.py``), as for the
trunks' REGISTERs: the pings leave from the address providers and peers see our calls come from.

:meth:`update` takes the targets to ping now (``targets.py``): a target kept with the same settings keeps its
state, a new one is pinged at once, a removed one is forgotten. :meth:`run` (``rounds.py``) pings each target
every ``interval`` seconds, all side by side; ``on_change`` is called when a target goes down or up, or a down
one is removed: then :meth:`down_servers` and :meth:`down_contacts` say what to skip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from routr_ray.sip import Request, Response
from routr_ray.trunks.keepalive import PingTarget, Probe, ProbeState, ProbeStatus
from routr_ray.trunks.rounds import DueRounds

__all__ = ["KeepalivePinger", "PingSender"]

log = logging.getLogger(__name__)

PingSender = Callable[[Request, str, float], Awaitable[Response | None]]


class KeepalivePinger(DueRounds[Probe]):
    def __init__(self, send: PingSender, *, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[], None] | None = None) -> None:
        super().__init__(clock)
        self.send = send
        self.on_change = on_change
        self.probes: dict[tuple[str, str, str, str], Probe] = {}

    def update(self, targets: Iterable[PingTarget]) -> bool:
        """The targets to ping now; True when the set changed."""
        wanted = {target.key: target for target in targets}
        changed = False
        lost_down = False
        for key in list(self.probes):
            if key not in wanted:
                lost_down |= self.probes.pop(key).state is ProbeState.DOWN
                changed = True
        for key, target in wanted.items():
            current = self.probes.get(key)
            if current is None or current.target != target:
                self.probes[key] = Probe(target, now=self.clock())
                lost_down |= current is not None and current.state is ProbeState.DOWN
                changed = True
        if changed:
            self.wake()
        if lost_down:
            self._changed()
        return changed

    def statuses(self) -> list[ProbeStatus]:
        return [probe.status() for probe in self.probes.values()]

    def down_servers(self) -> set[tuple[str, str, int]]:
        """(transport, host, port) of every target down now."""
        return {(p.target.transport, p.target.host, p.target.port) for p in self.probes.values()
                if p.state is ProbeState.DOWN}

    def down_contacts(self) -> set[tuple[str, str]]:
        """(AOR, Contact URI) of every peer binding down now."""
        return {(p.target.aor, p.target.contact) for p in self.probes.values()
                if p.state is ProbeState.DOWN and p.target.contact}

    # -- the loop (rounds.py) -------------------------------------------------------------------------------
    def items(self) -> Iterable[Probe]:
        return self.probes.values()

    async def _round(self, probe: Probe) -> None:
        target = probe.target
        request = probe.ping(self.clock())
        error = ""
        try:
            response = await self.send(request, target.uri, target.settings.timeout)
        except Exception as exc:  # noqa: BLE001 - a failed send is a failed ping, never a dead loop
            response, error = None, f"send failed: {exc!r}"[:200]
        if self.probes.get(target.key) is not probe:
            return  # removed or replaced meanwhile
        if not probe.on_result(response, self.clock(), error):
            return
        if probe.state is ProbeState.DOWN:
            log.warning("keepalive: %s %s target %s is down (%d pings failed: %s)", target.kind, target.ref,
                        target.label, probe.failures, probe.last_error)
        else:
            log.info("keepalive: %s %s target %s is up again (%d %s)", target.kind, target.ref, target.label,
                     probe.last_status, "answer" if probe.successes == 1 else "answers")
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # noqa: BLE001 - reporting must never stop pinging
                log.debug("on_change failed", exc_info=True)
