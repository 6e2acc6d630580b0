"""Who is admitted with an ``X-Connect-Token`` (issue 20 item 6; Routr's ephemeral agents, routr.md §3.2 step 3 and
§3.3): one access decision for a REGISTER (the To AOR) or an out-of-dialog request (the From AOR) that carries the
header, when Connect has a verifier (the ConnectTokens config).

Order: banned source → 403; more than one token → 403; the token (``connect_token.py``: signature, ``exp``,
``aud``, the method in ``allowedMethods``, the AOR and domain) → 403; the token's domain must be a Domain of ours →
403; that Domain's ACL on the packet source → 403. A token request is never challenged (a challenge would invite
the client to try digest for a web agent that has no password), and a refused token counts as a failed
authentication toward the source's ban, as a wrong password does. Unlike Routr, the Domain's ACL applies (Routr
skips every access check for token requests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from routr_ray.config.resources import Domain
from routr_ray.processors.connect.access import ACL_DENIED, BANNED, Access
from routr_ray.processors.connect.acl import acl_allows
from routr_ray.processors.connect.connect_token import (
    HEADER,
    ConnectClaims,
    ConnectTokenVerifier,
    TokenRejected,
)
from routr_ray.processors.connect.decisions import Reply
from routr_ray.processors.connect.resources_index import ConnectIndex
from routr_ray.sip.message import Request

log = logging.getLogger(__name__)

REFUSED = Reply(403, "Forbidden (X-Connect-Token not accepted)")


@dataclass(frozen=True, slots=True)
class WebAgent:
    """A request admitted by its token: the claims and the Domain the token is for."""

    claims: ConnectClaims
    domain: Domain


def token_of(request: Request) -> list[str]:
    """The request's ``X-Connect-Token`` values (normally one)."""
    return request.headers.get_all(HEADER)


class WebAgentGate:
    def __init__(self, verifier: ConnectTokenVerifier, access: Access) -> None:
        self.verifier = verifier
        self.access = access  # its ban list and metrics, shared with digest

    def admit(self, index: ConnectIndex, request: Request, aor: str, source: str) -> WebAgent | Reply:
        """The web agent when the request's token lets it act for ``aor`` from ``source``; else the 403."""
        failures, metrics = self.access.failures, self.access.metrics
        if failures.is_banned(source):
            metrics.access("banned")
            return BANNED
        tokens = token_of(request)
        try:
            if len(tokens) != 1:
                raise TokenRejected(f"{len(tokens)} X-Connect-Token headers (one is expected)")
            claims = self.verifier.check(tokens[0].strip(), request.method, aor)
            domain = index.domain(claims.domain)
            if domain is None:
                raise TokenRejected(f"the token's domain {claims.domain} is not a Domain of ours")
        except TokenRejected as exc:
            log.info("X-Connect-Token %s for %s from %s refused: %s", request.method, aor, source, exc)
            metrics.access("token_rejected")
            if failures.record_failure(source):
                metrics.banned()
            return REFUSED
        if not acl_allows(index.acl(domain.access_control_list_ref), source):
            metrics.access("acl_denied")
            return ACL_DENIED
        metrics.access("token")
        return WebAgent(claims, domain)
