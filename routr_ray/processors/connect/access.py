"""One access decision: the source's ban state, an ACL, then digest credentials (issue 6 items 3, 4).

Order: banned source → 403; ACL refuses the packet source → 403; resource with credentials → digest
(challenge / stale challenge / OK); resource without credentials but with an ACL that has `allow` entries → the
ACL alone admits it (a trusted peer or trunk identified by address); neither → challenge (never admitted).
"""

from __future__ import annotations

from dataclasses import dataclass

from routr_ray.config.resources import AccessControlList, Credentials
from routr_ray.observability import tracing
from routr_ray.processors.connect.acl import acl_allows
from routr_ray.processors.connect.auth import DigestGate, FailureTracker
from routr_ray.processors.connect.decisions import Reply
from routr_ray.processors.connect.metrics import ConnectMetrics
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip.message import Request

BANNED = Reply(403, "Forbidden (too many failed authentications)")
ACL_DENIED = Reply(403, "Forbidden (source address not allowed)")


@dataclass(frozen=True, slots=True)
class Principal:
    """What a request claims to be, for checking: its realm, credentials and ACL (None: none)."""

    realm: str
    credentials: Credentials | None
    acl: AccessControlList | None = None
    known: bool = True  # False: an unknown user, who gets the same challenge as a known one


class Access:
    def __init__(self, gate: DigestGate, failures: FailureTracker, metrics: ConnectMetrics | None = None) -> None:
        self.gate = gate
        self.failures = failures
        self.metrics = metrics if metrics is not None else ConnectMetrics()

    def check(self, request: Request, source: str, principal: Principal,
              msg: processor_pb2.MessageRequest | None = None) -> Reply | None:
        """None when the request may go on; otherwise the answer (see :meth:`decide`). Counted by result
        (``routr_connect_auth_total``) and, when traced, a ``connect.auth`` span."""
        if tracing.ON:
            with tracing.span("connect.auth", {"routr.realm": principal.realm}) as span:
                reply, result = self.decide(request, source, principal, msg)
                if span is not None:
                    span.set_attribute("routr.auth_result", result)
        else:
            reply, result = self.decide(request, source, principal, msg)
        self.metrics.access(result)
        return reply

    def decide(self, request: Request, source: str, principal: Principal,
               msg: processor_pb2.MessageRequest | None = None) -> tuple[Reply | None, str]:
        """(None when the request may go on, otherwise the answer; the result for the metrics). `source`: the packet's source address (ACL,
        bans, and the address digest nonces are bound to); `msg`: the EdgePort's MessageRequest (a digest `uri`
        naming the address the request arrived on is accepted, see `auth.py`)."""
        if self.failures.is_banned(source):
            return BANNED, "banned"
        if not acl_allows(principal.acl, source):
            return ACL_DENIED, "acl_denied"
        if principal.known and principal.credentials is None and principal.acl is not None and principal.acl.allow:
            return None, "acl"  # admitted by address alone (an allow list: "these networks only")
        result = self.gate.check(request, principal.realm, principal.credentials if principal.known else None,
                                 msg, source=source)
        if result.ok and principal.known:
            return None, "ok"
        if result.failed and self.failures.record_failure(source):
            self.metrics.banned()
        challenge = result.challenge or self.gate.challenge(request, principal.realm, source=source)
        outcome = "failed" if result.failed else "challenged"
        return Reply(challenge.status, challenge.reason, challenge.headers), outcome
