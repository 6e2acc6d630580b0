"""Record-Route tokens: proof that an in-dialog request belongs to a dialog this server set up.

A request with a To tag (or an ACK) is routed by its Route set without authentication (RFC 3261 §16.4,
§12.2). Naming us in the first Route proves nothing: anyone can write `Route: <sip:OUR_IP;lr>` and a To tag.
So when Connect record-routes an authorised initial request it puts `rrk=<token>` into its Record-Route URI
(both entries with `r2=on`); the token is an HMAC, under the key all replicas share, of the Call-ID and the
caller's From tag. RFC 3261 §12.1 copies Record-Route URIs (with their parameters) into each side's route set,
so every later request of the dialog carries the token in its first Route to us:

* the caller's requests have the same From tag;
* the callee's requests swap From and To, so the caller's tag is their To tag.

A request whose leading own Route has no valid token is routed as an initial request (authenticated; an
unknown destination gets 403). Limit: the token binds the dialog identifiers, not the next hop; a party
to an authorised dialog can retarget its own in-dialog requests (as with any loose-routing proxy).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from routr_ray.sip.message import Request

TOKEN_PARAM = "rrk"
_TOKEN_BYTES = 16  # 128 bits, 22 base64url characters


class DialogTokens:
    def __init__(self, key: bytes) -> None:
        # a subkey: the same secret signs digest nonces, the two uses must not be interchangeable
        self._key = hmac.new(key, b"routr-ray record-route token v1", hashlib.sha256).digest()

    def token(self, call_id: str, tag: str) -> str:
        mac = hmac.new(self._key, f"{call_id}\x00{tag}".encode(), hashlib.sha256).digest()[:_TOKEN_BYTES]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def for_initial(self, request: Request) -> str:
        """The token of the dialog an initial request creates (its Call-ID and From tag)."""
        from_tag = request.from_.tag if request.from_ is not None else None
        return self.token(request.call_id or "", from_tag or "")

    def proves(self, request: Request, token: str | None) -> bool:
        """`token` (the leading own Route's `rrk`) belongs to the request's dialog, from either side."""
        if not token:
            return False
        call_id = request.call_id or ""
        tags = (request.from_.tag if request.from_ is not None else None,
                request.to.tag if request.to is not None else None)
        return any(tag is not None and hmac.compare_digest(self.token(call_id, tag), token) for tag in tags)
