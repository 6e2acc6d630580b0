"""The trunk token in our registered Contact: how an inbound request is matched to a trunk by registration.

The REGISTER we send for a trunk carries ``Contact: <sip:OUR_ADDRESS;bnc;rtk=<token>>`` (``registration.py``).
A provider using GIN (RFC 6140 §6) sends each call for a DID to that Contact with the DID as user part and keeps
the URI parameters, so the Request-URI of an inbound call carries ``rtk``. The token is an HMAC, under the key
every Connect replica shares (the digest nonce key, through its own subkey), of the trunk's ref: Connect
recognises it without any state, and nobody who has not seen our REGISTER (the provider, or the path to it) can
make one. Connect then routes the request as from-pstn through that trunk (``processors/connect/router.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["TOKEN_PARAM", "TrunkContactTokens"]

TOKEN_PARAM = "rtk"
_TOKEN_BYTES = 16  # 128 bits, 22 base64url characters


class TrunkContactTokens:
    def __init__(self, key: bytes) -> None:
        # a subkey: the same secret signs digest nonces and dialog tokens; the uses must not be interchangeable
        self._key = hmac.new(key, b"routr-ray trunk contact token v1", hashlib.sha256).digest()

    def token(self, trunk_ref: str) -> str:
        mac = hmac.new(self._key, trunk_ref.encode(), hashlib.sha256).digest()[:_TOKEN_BYTES]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def proves(self, trunk_ref: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.token(trunk_ref), token or "")
