"""One trunk's outbound registration, sans-I/O (SIP Connect 1.1 §7 registration mode; RFC 3261 §10.2; RFC 6140).

The caller owns the clock and the socket: :meth:`Registration.request` builds the next REGISTER when
:attr:`Registration.due` has come, :meth:`Registration.on_response` takes the final response (or
:meth:`Registration.on_failure` a local timeout / transport error) and returns a follow-up REGISTER to send at
once (a digest answer, a 423 retry) or None when this round is over (state, ``due`` and the status updated).

The REGISTER (what providers and SEET's ``registration_setup`` check):

* Request-URI ``sip:<provider host>[:port]`` (RFC 3261 §10.2: the registrar's domain, no user part), From/To the
  trunk's username at the provider's host (From with a tag, To without), one Call-ID for the life of this
  object and CSeq + 1 for every request (§10.2.4 refreshes), ``Expires`` as configured;
* ``Via: SIP/2.0/UDP 0.0.0.0;rport`` completed by the sender (its address, transport and branch);
* ``Contact: <sip:0.0.0.0;bnc;rtk=...>``: RFC 6140 §4 GIN: no user part and ``bnc``, so the provider sends
  calls for every DID of the trunk to this Contact with the DID as user part. The host ``0.0.0.0`` is filled in
  by the EdgePort that sends it (``edge/originate.py``: our address toward the provider). ``rtk`` is the trunk
  token (``processors/connect/trunk_contact.py``): an inbound request carrying it is matched to this trunk;
* ``Require: gin`` and ``Proxy-Require: gin`` when the trunk asks for GIN (RFC 6140 §5.1), ``Supported: path,
  gin`` always, ``Allow`` with the methods we accept.

Rules:

* digest challenges (401 / 407, MD5 or SHA-256 with qop=auth; SHA-256 chosen when both are offered, RFC 8760
  §2.6) are answered with the trunk's outbound credentials; the next refresh carries the last credentials again
  (nc + 1), and a 401 to those (a new nonce) is answered. A challenge to an answer made in the same round,
  without ``stale=true``, means wrong credentials: a failure (never a loop);
* granted interval: the ``expires`` of our Contact in the 200 first, then the ``Expires`` header, then what we
  asked (RFC 3261 §10.2.4); our Contact is the one carrying our ``rtk`` (else one with ``bnc``). A 200 that
  lists no binding of ours, or grants 0, is a failure ("re-register when the 200 lists no binding for us");
* refresh at half the granted interval (so a 30 s grant refreshes at 15 s);
* 423 Interval Too Brief: ask again at once with its ``Min-Expires`` (RFC 3261 §10.2.8), once per round;
* any other failure (4xx-6xx, 408 / timeout, transport error): retry after a back-off in the style of RFC 5626
  §4.5: ``min(max_backoff, base_backoff * 2 ** (failures - 1))`` times a random factor in [0.5, 1] (a 503's
  ``Retry-After`` is honoured when longer). After a restart, a new object registers at once.
"""

from __future__ import annotations

import enum
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from routr_ray.sip import Headers, ParseError, Request, Response
from routr_ray.sip.digest import (
    DigestParseError,
    answer_challenge,
    authorization_header_name,
    challenge_header_name,
    parse_auth_params,
)

__all__ = ["CONTACT_HOST", "RegState", "Registration", "RegistrationSpec", "RegistrationStatus"]

CONTACT_HOST = "0.0.0.0"
"""The Contact host the sender replaces with its own address toward the provider (``edge/originate.py``)."""

MAX_FOLLOW_UPS = 3  # requests sent after the first in one round (digest answers, a 423 retry)


class RegState(enum.Enum):
    UNREGISTERED = "unregistered"  # nothing sent yet (or the trunk was just added)
    REGISTERING = "registering"  # a REGISTER is in flight
    REGISTERED = "registered"  # the provider holds our binding; refreshed at half its lifetime
    FAILED = "failed"  # the last round failed; retried after a back-off


@dataclass(frozen=True)
class RegistrationSpec:
    """What to register for one trunk (built from its resources by ``specs.py``)."""

    trunk_ref: str
    target: str  # where the REGISTER goes: sip:host[:port][;transport=x] (RFC 3263 applies to a host name)
    request_uri: str  # sip:<provider host>[:port]
    aor: str  # sip:<username>@<provider host>: From and To
    username: str
    password: str = field(repr=False)
    contact_token: str = ""
    expires: int = 600
    gin: bool = True
    allow: tuple[str, ...] = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS")
    user_agent: str = "routr-ray"


@dataclass(frozen=True)
class RegistrationStatus:
    """What ``routr-ray status``, the metrics and the events show of one registration."""

    trunk_ref: str
    state: RegState
    granted: int = 0  # seconds the provider granted in its last 200 (0: none)
    expires_at: float | None = None  # when the binding lapses (the caller's clock), while registered
    last_error: str = ""
    failures: int = 0  # consecutive failed rounds
    registrations: int = 0  # successful rounds since start

    def expires_in(self, now: float) -> int | None:
        return None if self.expires_at is None else max(0, int(self.expires_at - now))


class Registration:
    def __init__(self, spec: RegistrationSpec, *, now: float, base_backoff: float = 30.0,
                 max_backoff: float = 1800.0, rng: random.Random | None = None) -> None:
        self.spec = spec
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.rng = rng or random.Random()
        self.call_id = f"{secrets.token_hex(12)}@routr-ray"
        self.from_tag = secrets.token_hex(6)
        self.cseq = 0
        self.expires = spec.expires
        self.due = now  # register at once
        self.state = RegState.UNREGISTERED
        self.granted = 0
        self.expires_at: float | None = None
        self.last_error = ""
        self.failures = 0
        self.registrations = 0
        self._credentials: tuple[bool, str] | None = None  # (proxy, challenge value) answered last
        self._nc = 0
        self._answered_in_round = False  # a challenge of this round was answered (not the last round's)
        self._follow_ups = 0
        self._min_expires_tried = False

    # -- status ---------------------------------------------------------------------------------------------
    def status(self) -> RegistrationStatus:
        return RegistrationStatus(self.spec.trunk_ref, self.state, self.granted,
                                  self.expires_at if self.state is RegState.REGISTERED else None,
                                  self.last_error, self.failures, self.registrations)

    # -- requests -------------------------------------------------------------------------------------------
    def request(self, now: float) -> Request:
        """The REGISTER that starts a round (a first registration or a refresh)."""
        self.state = RegState.REGISTERING
        self._answered_in_round = False
        self._follow_ups = 0
        self._min_expires_tried = False
        request = self._build()
        if self._credentials is not None:  # the last challenge answered again (nc + 1): saves a round trip
            proxy, challenge = self._credentials
            self._authorize(request, proxy, challenge)
        return request

    def _build(self) -> Request:
        spec = self.spec
        self.cseq += 1
        headers = Headers()
        # our Via, for the sender to complete (host, port, transport, branch: edge/originate.py)
        headers.add("Via", f"SIP/2.0/UDP {CONTACT_HOST};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{spec.aor}>;tag={self.from_tag}")
        headers.add("To", f"<{spec.aor}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} REGISTER")
        contact = f"sip:{CONTACT_HOST};bnc" + (f";rtk={spec.contact_token}" if spec.contact_token else "")
        headers.add("Contact", f"<{contact}>")
        headers.add("Expires", str(self.expires))
        if spec.gin:
            headers.add("Require", "gin")
            headers.add("Proxy-Require", "gin")
        headers.add("Supported", "path, gin")
        if spec.allow:
            headers.add("Allow", ", ".join(spec.allow))
        headers.add("User-Agent", spec.user_agent)
        headers.add("Content-Length", "0")
        return Request("REGISTER", spec.request_uri, headers)

    def _authorize(self, request: Request, proxy: bool, challenge: str) -> bool:
        self._nc += 1
        answer = answer_challenge(challenge, method="REGISTER", uri=request.uri, username=self.spec.username,
                                  password=self.spec.password, nc=self._nc)
        if answer is None:
            return False
        request.headers.remove(authorization_header_name(proxy))
        request.headers.add(authorization_header_name(proxy), answer)
        return True

    # -- outcomes -------------------------------------------------------------------------------------------
    def on_response(self, response: Response, now: float) -> Request | None:
        """The final response to the last request: a follow-up to send at once, or None (round over)."""
        status = response.status
        if 200 <= status < 300:
            return self._registered(response, now)
        if status in (401, 407) and self._follow_ups < MAX_FOLLOW_UPS:
            follow_up = self._answer(response)
            if follow_up is not None:
                return follow_up
            self._fail(now, f"{status} {response.reason}: credentials rejected or challenge not answerable")
            return None
        if status == 423 and not self._min_expires_tried and self._follow_ups < MAX_FOLLOW_UPS:
            minimum = _int(response.headers.get("Min-Expires"))
            if minimum is not None and minimum > self.expires:
                self.expires = minimum
                self._min_expires_tried = True
                return self._follow_up()
        self._fail(now, f"{status} {response.reason}".strip(), retry_after=_int(response.headers.get("Retry-After"))
                   if status == 503 else None)
        return None

    def on_failure(self, now: float, reason: str) -> None:
        """No final response (timeout, transport error, no route): the round failed."""
        self._fail(now, reason)

    def _follow_up(self) -> Request:
        self._follow_ups += 1
        request = self._build()
        if self._credentials is not None:
            self._authorize(request, *self._credentials)
        return request

    def _answer(self, response: Response) -> Request | None:
        proxy = response.status == 407
        challenges = response.headers.get_all(challenge_header_name(proxy))
        for challenge in _preferred(challenges):
            stale = _params(challenge).get("stale", "").lower() == "true"
            if self._answered_in_round and not stale:
                return None  # our answer to this round's challenge was refused: the credentials are wrong
            self._answered_in_round = True
            self._follow_ups += 1
            request = self._build()
            self._nc = 0
            if self._authorize(request, proxy, challenge):
                self._credentials = (proxy, challenge)
                return request
        return None

    def _registered(self, response: Response, now: float) -> Request | None:
        granted = self._granted(response)
        if granted is None or granted <= 0:
            self._fail(now, "200 OK without a binding for our Contact")
            return None
        self.state = RegState.REGISTERED
        self.granted = granted
        self.expires_at = now + granted
        self.due = now + granted / 2  # refresh at half the granted interval
        self.failures = 0
        self.last_error = ""
        self.registrations += 1
        return None

    def _granted(self, response: Response) -> int | None:
        """The interval granted to our binding; None when the 200 lists none of ours."""
        try:
            contacts = response.contacts
        except ParseError:
            contacts = []
        token = self.spec.contact_token
        ours = [c for c in contacts if not c.wildcard and (
            (token and c.uri.params.get("rtk") == token) or (not token and "bnc" in c.uri.params))]
        if not ours:
            return None
        value = _int(ours[0].params.get("expires"))
        if value is None:
            value = _int(response.headers.get("Expires"))
        return value if value is not None else self.expires

    def _fail(self, now: float, reason: str, retry_after: int | None = None) -> None:
        self.state = RegState.FAILED
        self.failures += 1
        self.last_error = reason
        self.granted = 0
        self.expires_at = None
        self.expires = self.spec.expires if not self._min_expires_tried else self.expires
        wait = min(self.max_backoff, self.base_backoff * 2 ** (self.failures - 1)) * self.rng.uniform(0.5, 1.0)
        if retry_after is not None and retry_after > wait:
            wait = float(min(retry_after, self.max_backoff))
        self.due = now + wait


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() and len(text) <= 10 else None


def _params(challenge: str) -> dict[str, str]:
    _, _, rest = challenge.strip().partition(" ")
    try:
        return {k.lower(): v for k, v in parse_auth_params(rest).items()}
    except DigestParseError:
        return {}


def _preferred(challenges: Sequence[str]) -> list[str]:
    """SHA-256 before MD5 (RFC 8760 §2.6: the client uses the strongest algorithm it supports)."""
    def rank(challenge: str) -> int:
        algorithm = _params(challenge).get("algorithm", "MD5").upper()
        return 0 if algorithm.startswith("SHA-256") else 1
    return sorted(challenges, key=rank)
