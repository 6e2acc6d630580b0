"""Call events with Routr's names and fields (routr.md §11, Routr's EdgePort ``events/``).

=====================  ======================================================================================
``endpoint.registered`` ``{aor, registeredAt, expires, extraHeaders}``
``call.started``        ``{callId, from, to, startTime, extraHeaders, ...metadata}``
``call.ended``          ``{callId, endTime, hangupCause, extraHeaders}``
=====================  ======================================================================================

Times are ISO-8601 in UTC with milliseconds (``2026-01-01T12:00:00.123Z``); ``from``/``to``/``aor`` are
``scheme:user@host`` (no port, no parameters, like Routr); ``extraHeaders`` holds every ``X-*`` header of the
request (name as received -> value; repeated headers joined with ``", "``). ``hangupCause`` follows Routr's
``HangupCauses`` table (:func:`hangup_cause`). The payload a sink sends is the JSON of ``data`` alone; the event
name travels in the subject / channel (``<prefix>.<name>``), as Routr's NATS publisher does.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALL_ENDED",
    "CALL_STARTED",
    "Clock",
    "ENDPOINT_REGISTERED",
    "EVENT_NAMES",
    "Event",
    "call_ended",
    "call_started",
    "endpoint_registered",
    "extra_headers",
    "hangup_cause",
    "iso_time",
    "short_uri",
    "TRUNK_REGISTRATION",
    "trunk_registration",
]

ENDPOINT_REGISTERED = "endpoint.registered"
CALL_STARTED = "call.started"
CALL_ENDED = "call.ended"
TRUNK_REGISTRATION = "trunk.registration"  # a trunk's outbound registration changed state (routr-ray, issue 15)
EVENT_NAMES = frozenset({ENDPOINT_REGISTERED, CALL_STARTED, CALL_ENDED, TRUNK_REGISTRATION})

# Routr's HangupCauses.java (routr.md §11); anything else is UNKNOWN
_HANGUP_CAUSES: dict[int, str] = {
    200: "NORMAL_CLEARING", 487: "NORMAL_CLEARING",
    401: "CALL_REJECTED", 403: "CALL_REJECTED", 407: "CALL_REJECTED", 603: "CALL_REJECTED",
    404: "UNALLOCATED", 485: "UNALLOCATED", 604: "UNALLOCATED",
    408: "NO_USER_RESPONSE",
    420: "NO_ROUTE_DESTINATION",
    480: "NO_ANSWER", 483: "NO_ANSWER",
    484: "INVALID_NUMBER_FORMAT",
    486: "USER_BUSY", 600: "USER_BUSY",
    488: "NOT_ACCEPTABLE_HERE",
    503: "SERVICE_UNAVAILABLE",
}  # fmt: skip

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso_time(when: dt.datetime) -> str:
    """``2026-01-01T12:00:00.123Z``: UTC, milliseconds."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def hangup_cause(status: int) -> str:
    return _HANGUP_CAUSES.get(status, "UNKNOWN")


def short_uri(scheme: str, user: str | None, host: str) -> str:
    """Routr's ``sip:user@host`` form (no port, no parameters)."""
    return f"{scheme}:{user}@{host}" if user else f"{scheme}:{host}"


def extra_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Every ``X-*`` header: name as first received -> value (repeats joined with ``", "``)."""
    found: dict[str, str] = {}
    names: dict[str, str] = {}
    for name, value in headers:
        if len(name) > 2 and name[:2].lower() == "x-":
            key = names.setdefault(name.lower(), name)
            found[key] = f"{found[key]}, {value}" if key in found else value
    return found


@dataclass(frozen=True, slots=True)
class Event:
    """One event: ``name`` (one of :data:`EVENT_NAMES`) and its JSON-ready ``data``."""

    name: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def payload(self) -> bytes:
        return json.dumps(self.data, ensure_ascii=False, separators=(",", ":")).encode()

    def subject(self, prefix: str) -> str:
        return f"{prefix}.{self.name}" if prefix else self.name


def endpoint_registered(aor: str, expires: int, headers: Mapping[str, str] | None = None,
                        *, clock: Clock = _utcnow) -> Event:
    return Event(ENDPOINT_REGISTERED, {
        "aor": aor,
        "registeredAt": iso_time(clock()),
        "expires": int(expires),
        "extraHeaders": dict(headers or {}),
    })


def trunk_registration(trunk: str, state: str, expires: int, error: str = "", *, clock: Clock = _utcnow) -> Event:
    """``trunk.registration``: ``state`` registered / failed (docs/trunks.md); ``expires`` granted seconds."""
    return Event(TRUNK_REGISTRATION, {
        "trunkRef": trunk,
        "state": state,
        "expires": int(expires),
        "error": error,
        "time": iso_time(clock()),
    })


def call_started(call_id: str, from_: str, to: str, headers: Mapping[str, str] | None = None,
                 metadata: Mapping[str, str] | None = None, *, clock: Clock = _utcnow) -> Event:
    data: dict[str, Any] = {str(k): v for k, v in (metadata or {}).items()}
    data.update({
        "callId": call_id,
        "from": from_,
        "to": to,
        "startTime": iso_time(clock()),
        "extraHeaders": dict(headers or {}),
    })
    return Event(CALL_STARTED, data)


def call_ended(call_id: str, status: int, headers: Mapping[str, str] | None = None,
               *, clock: Clock = _utcnow) -> Event:
    return Event(CALL_ENDED, {
        "callId": call_id,
        "endTime": iso_time(clock()),
        "hangupCause": hangup_cause(status),
        "extraHeaders": dict(headers or {}),
    })
