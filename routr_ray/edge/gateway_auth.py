"""Answering a trunk's digest challenge for the caller (Routr's ``X-Gateway-Auth``, routr.md §5.6).

A PSTN trunk usually challenges the INVITEs it receives (401 with WWW-Authenticate or 407 with
Proxy-Authenticate, RFC 3261 §22.2/§22.3). The caller is an Agent or a Peer of ours and does not know the trunk's
password: Connect hands the trunk's outbound credentials to the EdgePort with the forwarded request
(``routr-ray.gateway-auth``), and the EdgePort answers the challenge itself, once per branch:

* the challenged branch ends as usual (the INVITE client transaction ACKs the 401/407 hop by hop, §17.1.1.3) and
  the challenge is not relayed upstream;
* the request is sent again on a new branch with CSeq + 1 (RFC 3261 §22.2: a request with new credentials is a
  new request with a higher CSeq) and an Authorization / Proxy-Authorization for the challenge;
* responses on that branch go upstream with the caller's CSeq (the caller matches them to its INVITE);
* the caller's ACK for a 2xx (end to end, with the caller's CSeq) goes to the trunk with CSeq + 1: the offset is
  remembered per dialog (Call-ID, From tag) for 64*T1 after the 2xx (:class:`CSeqOffsets`).

Later in-dialog requests from the caller keep their own CSeq: the caller's next CSeq is the trunk's INVITE CSeq
or more, never lower, so the trunk accepts them (§12.2.2). A second challenge on the re-sent branch (a wrong
password) goes upstream.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from routr_ray.sip import ParseError, Request, Response
from routr_ray.sip.digest import answer_challenge, authorization_header_name, challenge_header_name

__all__ = ["CSeqOffsets", "request_with_credentials", "shift_cseq"]


def request_with_credentials(template: Request, challenge: Response, username: str, password: str) -> Request | None:
    """``template`` (the request as the processor forwarded it, before our branch) sent again with CSeq + 1 and
    credentials answering ``challenge`` (401 or 407); None when no challenge in it can be answered."""
    proxy = challenge.status == 407
    request = template.copy()
    assert isinstance(request, Request)
    for value in challenge.headers.get_all(challenge_header_name(proxy)):
        answer = answer_challenge(value, method=request.method, uri=request.uri, username=username,
                                  password=password)
        if answer is not None:
            break
    else:
        return None
    if not shift_cseq(request, 1):
        return None
    request.headers.add(authorization_header_name(proxy), answer)
    return request


def shift_cseq(message: Request | Response, offset: int) -> bool:
    """Add ``offset`` to the CSeq number (False when the message has no usable CSeq)."""
    try:
        cseq = message.cseq
    except ParseError:
        return False
    if cseq is None or cseq.seq + offset < 0:
        return False
    message.headers.set("CSeq", f"{cseq.seq + offset} {cseq.method}")
    return True


class CSeqOffsets:
    """Dialogs whose INVITE reached the trunk with a higher CSeq than the caller's: (Call-ID, From tag) ->
    offset, kept ``lifetime`` seconds after the 2xx (the caller's ACK, and its retransmissions, come within
    64*T1). Bounded: the oldest entry goes first."""

    def __init__(self, lifetime: float, clock: Callable[[], float] = time.monotonic, max_size: int = 10_000) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self.max_size = max_size
        self._entries: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()

    def remember(self, response: Response, offset: int) -> None:
        key = _dialog_of(response)
        if key is None:
            return
        self._entries[key] = (offset, self.clock() + self.lifetime)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def offset_for(self, request: Request) -> int:
        """The offset for ``request`` (an ACK of the caller) or 0."""
        key = _dialog_of(request)
        entry = self._entries.get(key) if key is not None else None
        if entry is None:
            return 0
        if entry[1] <= self.clock():
            del self._entries[key]  # type: ignore[arg-type]
            return 0
        return entry[0]

    def __len__(self) -> int:
        return len(self._entries)


def _dialog_of(message: Request | Response) -> tuple[str, str] | None:
    try:
        call_id, from_ = message.call_id, message.from_
    except ParseError:
        return None
    if call_id is None or from_ is None:
        return None
    return call_id, from_.tag or ""
