"""Runs the trunks' registrations (``registration.py``) on asyncio with any sender.

``TrunkRegistrar(send, clock=time.monotonic)``: ``send(request, target) -> Response | None`` delivers one
REGISTER and returns its final response (None, or a raised exception: no final response: a timeout or a
transport error). In production ``send`` is the EdgePort actor's ``send_request`` (``actors/trunk_registrar.py``;
why an EdgePort sends them: docs/trunks.md). :meth:`update` takes the current set of specs (a trunk added,
changed or removed), :meth:`run` is the loop: it sleeps until the earliest ``due``, runs every due round (one at
a time per trunk, trunks side by side, each in its own task: a trunk whose provider does not answer never
delays another, nor a trunk re-registered after a reload; ``rounds.py``) and reports each change of status to
``on_change``. Tests drive it with a fake clock: :meth:`step` runs the rounds due at ``clock()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from routr_ray.sip import Request, Response
from routr_ray.trunks.registration import Registration, RegistrationSpec, RegistrationStatus, RegState
from routr_ray.trunks.rounds import DueRounds

__all__ = ["Sender", "TrunkRegistrar"]

log = logging.getLogger(__name__)

Sender = Callable[[Request, str], Awaitable[Response | None]]


class TrunkRegistrar(DueRounds[Registration]):
    def __init__(self, send: Sender, *, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[RegistrationStatus], None] | None = None,
                 base_backoff: float = 30.0, max_backoff: float = 1800.0) -> None:
        super().__init__(clock)
        self.send = send
        self.on_change = on_change
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.registrations: dict[str, Registration] = {}

    # -- configuration --------------------------------------------------------------------------------------
    def update(self, specs: Iterable[RegistrationSpec]) -> None:
        """The trunks to keep registered now: new or changed ones register at once, removed ones are dropped
        (their binding lapses at the provider)."""
        wanted = {spec.trunk_ref: spec for spec in specs}
        for ref in list(self.registrations):
            if ref not in wanted:
                del self.registrations[ref]
                log.info("trunk %s: no longer registered (removed or sendRegister off)", ref)
        for ref, spec in wanted.items():
            current = self.registrations.get(ref)
            if current is None or current.spec != spec:
                self.registrations[ref] = Registration(spec, now=self.clock(), base_backoff=self.base_backoff,
                                                       max_backoff=self.max_backoff)
        self.wake()

    def statuses(self) -> list[RegistrationStatus]:
        return [r.status() for r in self.registrations.values()]

    # -- the loop (rounds.py) -------------------------------------------------------------------------------
    def items(self) -> Iterable[Registration]:
        return self.registrations.values()

    async def _round(self, registration: Registration) -> None:
        ref = registration.spec.trunk_ref
        before = registration.status()
        request: Request | None = registration.request(self.clock())
        while request is not None:
            try:
                response = await self.send(request, registration.spec.target)
            except Exception as exc:  # noqa: BLE001 - a failed send is a failed round, never a dead loop
                response = None
                reason = f"send failed: {exc!r}"[:200]
            else:
                reason = "no response (timeout or transport error)"
            if self.registrations.get(ref) is not registration:
                return  # replaced or removed meanwhile
            if response is None:
                registration.on_failure(self.clock(), reason)
                break
            request = registration.on_response(response, self.clock())
        after = registration.status()
        if after.state is RegState.REGISTERED:
            log.log(logging.INFO if before.state is not RegState.REGISTERED else logging.DEBUG,
                    "trunk %s registered for %d s", ref, after.granted)
        elif after.failures == 1 or after.failures % 10 == 0:  # bounded logging while a provider is down
            log.warning("trunk %s registration failed (%d in a row): %s", ref, after.failures, after.last_error)
        if self.on_change is not None:
            try:
                self.on_change(after)
            except Exception:  # noqa: BLE001 - reporting must never stop registering
                log.debug("on_change failed", exc_info=True)
