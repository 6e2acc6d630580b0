"""When the EdgePort emits call events, decided on SIP messages (routr.md §11, Routr's EdgePort).

* ``endpoint.registered``: a REGISTER answered 200 whose binding lives on (expires > 0; a de-registration, all
  bindings with expires 0, emits nothing). ``aor`` is the To URI (RFC 3261 §10.2: To holds the AOR).
* ``call.started``: an initial INVITE (no To tag) forwarded downstream.
* ``call.ended``: a final response to a BYE (any status; the cause from that status); a CANCEL of a started
  INVITE (487, NORMAL_CLEARING); a final failure (>= 300) of a started INVITE. The emitter remembers the Call-IDs
  of started calls (bounded, oldest forgotten first) so an INVITE challenged with 401/407 or answered by the
  processor is never reported as ended, and the 487 after a CANCEL is not reported twice.

Every method is safe on the SIP path: it builds a small dict and hands it to the publisher without waiting;
an unparsable header means no event, never an exception.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Protocol

from routr_ray.observability.events import (
    Clock,
    Event,
    call_ended,
    call_started,
    endpoint_registered,
    extra_headers,
    short_uri,
)
from routr_ray.observability.ratelimit import RateLimitedLog
from routr_ray.sip import NameAddr, ParseError, Request, Response

__all__ = ["CallEventEmitter", "EventTarget"]

log = logging.getLogger(__name__)


class EventTarget(Protocol):
    """Anything with a non-blocking ``publish`` (``EventPublisher``)."""

    def publish(self, event: Event) -> bool: ...


def _address(value: NameAddr | None) -> str:
    if value is None:
        return ""
    uri = value.uri
    return short_uri(uri.scheme, uri.user, uri.host)


def _registered_expires(request: Request, response: Response) -> int:
    """The lifetime the registrar granted: largest Contact expires of the 200 (RFC 3261 §10.3 step 8), else
    its Expires header, else what the request asked for, else 3600 (§10.2.1.1 default)."""
    for message in (response, request):
        values = [int(c.params["expires"]) for c in message.contacts
                  if (c.params.get("expires") or "").isdigit()]
        if values:
            return max(values)
        if message.expires is not None:
            return message.expires
    return 3600


class CallEventEmitter:
    """Turns SIP moments into events for ``target``; see the module docstring for the rules."""

    def __init__(self, target: EventTarget, *, max_calls: int = 100_000,
                 clock: Clock | None = None) -> None:
        self._target = target
        self._started: OrderedDict[str, None] = OrderedDict()
        self._max_calls = max_calls
        self._errors = RateLimitedLog(log, interval=60.0)
        self._clock_kw: dict[str, Clock] = {"clock": clock} if clock is not None else {}

    @property
    def open_calls(self) -> int:
        return len(self._started)

    def register_answered(self, request: Request, response: Response) -> None:
        if request.method != "REGISTER" or response.status != 200:
            return
        try:
            expires = _registered_expires(request, response)
            if expires <= 0:
                return
            event = endpoint_registered(_address(request.to), expires, extra_headers(request.headers.items()),
                                        **self._clock_kw)
        except (ParseError, ValueError) as exc:
            self._errors.warning("register", "endpoint.registered not emitted: %s", exc)
            return
        self._target.publish(event)

    def invite_forwarded(self, request: Request, metadata: Mapping[str, str] | None = None) -> None:
        if request.method != "INVITE":
            return
        try:
            to = request.to
            call_id = request.call_id
            if call_id is None or to is None or "tag" in to.params:
                return  # a re-INVITE (RFC 3261 §14) is not a new call
            if call_id in self._started:
                return  # a spiral or a retried forward of the same call
            event = call_started(call_id, _address(request.from_), _address(to),
                                 extra_headers(request.headers.items()), metadata, **self._clock_kw)
        except (ParseError, ValueError) as exc:
            self._errors.warning("invite", "call.started not emitted: %s", exc)
            return
        self._started[call_id] = None
        if len(self._started) > self._max_calls:
            self._started.popitem(last=False)
        self._target.publish(event)

    def invite_final(self, request: Request, status: int) -> None:
        """Any final response sent upstream for an INVITE; only failures of started calls end them."""
        if request.method == "INVITE" and status >= 300:
            self._end(request, status, require_started=True)

    def cancelled(self, request: Request) -> None:
        """A CANCEL that matched an INVITE (Call-ID of the CANCEL = Call-ID of the INVITE, §9.1)."""
        self._end(request, 487, require_started=True)

    def bye_answered(self, request: Request, status: int) -> None:
        if request.method == "BYE" and status >= 200:
            self._end(request, status, require_started=False)

    def _end(self, request: Request, status: int, *, require_started: bool) -> None:
        try:
            call_id = request.call_id
        except ParseError:
            return
        if call_id is None:
            return
        if call_id in self._started:
            del self._started[call_id]
        elif require_started:
            return
        try:
            event = call_ended(call_id, status, extra_headers(request.headers.items()), **self._clock_kw)
        except (ParseError, ValueError) as exc:
            self._errors.warning("end", "call.ended not emitted: %s", exc)
            return
        self._target.publish(event)
