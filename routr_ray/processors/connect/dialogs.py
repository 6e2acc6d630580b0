"""Record-Route tokens: proof that an in-dialog request belongs to a dialog this server set up, and where it may go.

A request with a To tag (or an ACK) is routed by its Route set without authentication (RFC 3261 §16.4,
§12.2). Naming us in the first Route proves nothing: anyone can write `Route: <sip:OUR_IP;lr>` and a To tag.
So when Connect record-routes an authorised initial request it puts `rrk=<token>` into its Record-Route URI
(both entries with `r2=on`). RFC 3261 §12.1 copies Record-Route URIs (with their parameters) into each side's
route set, so every later request of the dialog carries the token in its first Route to us.

The token is self-contained and HMAC-signed with a subkey of the key every replica shares (stateless replicas
verify it; nothing is stored). It binds:

* the Call-ID and the caller's From tag (not written in the token, covered by the MAC): the caller's requests
  carry that tag as their From tag, the callee's (From and To swapped) as their To tag;
* the next hops allowed when the dialog was set up, per side: the *callee side* (where the caller's requests
  may go: the address we sent the initial request to, its Contact when it is at that address, every forking or
  failover target, or a Trunk) and the *caller side* (where the callee's requests may go: the packet source of
  the initial request, its Contact or the upstream Record-Route when at that source address, or the Trunk a
  call from the PSTN came from). A hop is an 8-byte keyed hash of `host:port`, a Trunk one of its ref (it
  admits the Trunk's outbound hosts and the networks its inbound ACL allows; see `router.py`);
* with a call across EdgePorts (docs/distributed.md), the EdgePorts of each side: an 8-byte keyed hash of the
  EdgePort's tag (`util/edge_tag.py`), on the side whose requests that EdgePort relays. Our Record-Route entries
  then carry `rre=<tag>`, and an EdgePort that finds the next Route naming another EdgePort of the dialog sends
  the request through it (`router.py`: `route_in_dialog`);
* whether each side's identity headers are trusted (RFC 3325: a Peer/Trunk with `trustAssertedIdentity`);
* an expiry (`DEFAULT_DIALOG_TTL`, 24 h from the initial request: route sets cannot be refreshed within a
  dialog, RFC 3261 §12.2, so a dialog that outlives it gets 403 on its next request, e.g. a subscription
  refreshed for more than a day must subscribe again).

Wire form: `base64url(version | flags | expires(u32) | n | n × caller hop | m | m × callee hop | MAC[16])`,
about 55 characters for a two-party call, at most `MAX_HOPS` hops per side (~375 characters).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import ipaddress
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from routr_ray.sip.message import Request

TOKEN_PARAM = "rrk"
EDGE_PARAM = "rre"
"""The Record-Route URI parameter naming the EdgePort of that entry (its tag), when a dialog spans two EdgePorts."""
DEFAULT_DIALOG_TTL = 24 * 3600.0
MAX_HOPS = 16

_VERSION = 2
_HEAD = struct.Struct(">BBI")  # version, flags, expiry (seconds since the epoch)
_HOP_BYTES = 8
_MAC_BYTES = 16
_MAX_TOKEN_CHARS = 4 * (_HEAD.size + 2 + 2 * MAX_HOPS * _HOP_BYTES + _MAC_BYTES + 2) // 3
_HOP_CACHE = 8192
_CALLER_TRUSTED = 0x01
_CALLEE_TRUSTED = 0x02

Clock = Callable[[], float]


class TokenStatus(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"  # ours and for this dialog, but past its expiry
    INVALID = "invalid"  # forged, garbled, or for another dialog


@dataclass(frozen=True, slots=True)
class DialogToken:
    """What a verified token says. `from_caller`: the request's From tag is the caller's (it goes to the callee
    side); `from_callee`: its To tag is (it goes to the caller side). Both can hold (a request naming the
    caller's tag twice): then it may go to either side, and its identity is trusted only if both sides are."""

    status: TokenStatus
    from_caller: bool = False
    from_callee: bool = False
    caller_hops: frozenset[bytes] = frozenset()
    callee_hops: frozenset[bytes] = frozenset()
    caller_trusted: bool = False
    callee_trusted: bool = False

    def allowed_hops(self) -> frozenset[bytes]:
        """The hop ids this request may be sent to (the other side's)."""
        hops: frozenset[bytes] = frozenset()
        if self.from_caller:
            hops |= self.callee_hops
        if self.from_callee:
            hops |= self.caller_hops
        return hops

    @property
    def sender_trusted(self) -> bool:
        """The identity headers of this request come from a trusted party (RFC 3325 §5)."""
        if not (self.from_caller or self.from_callee):
            return False
        return (not self.from_caller or self.caller_trusted) and (not self.from_callee or self.callee_trusted)

    @property
    def receiver_trusted(self) -> bool:
        """The party this request goes to is inside the trust domain."""
        if not (self.from_caller or self.from_callee):
            return False
        return (not self.from_caller or self.callee_trusted) and (not self.from_callee or self.caller_trusted)


INVALID = DialogToken(TokenStatus.INVALID)


@lru_cache(maxsize=4096)
def host_key(host: str) -> str:
    """A host as compared in hops: an IP address normalised, a name lower-cased, no IPv6 brackets."""
    bare = host.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return bare.lower().rstrip(".")


class DialogTokens:
    def __init__(self, key: bytes, *, ttl: float = DEFAULT_DIALOG_TTL, clock: Clock = time.time) -> None:
        if ttl <= 0:
            raise ValueError("dialog token ttl must be positive")
        # a subkey: the same secret signs digest nonces, the two uses must not be interchangeable
        self._key = hmac.new(key, b"routr-ray record-route token v2", hashlib.sha256).digest()
        self.ttl = ttl
        self.clock = clock
        self._hop_ids: dict[tuple[str, int], bytes] = {}  # the same few addresses come back on every call

    # ---- hop ids --------------------------------------------------------------------------------

    def _id(self, kind: bytes, text: str) -> bytes:
        return hmac.new(self._key, kind + b"\x00" + text.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).digest()[:_HOP_BYTES]

    def hop_id(self, host: str, port: int) -> bytes:
        """The id of the address `host:port` (transport not included: a side is one party whatever it speaks)."""
        cached = self._hop_ids.get((host, port))
        if cached is None:
            if len(self._hop_ids) >= _HOP_CACHE:
                self._hop_ids.clear()
            cached = self._hop_ids[(host, port)] = self._id(b"hop", f"{host_key(host)}:{port}")
        return cached

    def trunk_id(self, ref: str) -> bytes:
        return self._id(b"trunk", ref)

    def edge_id(self, tag: str) -> bytes:
        """The id of one of our EdgePorts (by tag): the dialog's requests may be relayed through it."""
        return self._id(b"edge", tag)

    # ---- issuing --------------------------------------------------------------------------------

    def issue(self, call_id: str, from_tag: str, *, caller: Iterable[bytes], callee: Iterable[bytes],
              caller_trusted: bool = False, callee_trusted: bool = False) -> str:
        """The token of the dialog an initial request with this Call-ID and From tag creates. Duplicate hops
        are written once; more than `MAX_HOPS` per side is a ValueError (a bug in the caller)."""
        caller_ids, callee_ids = list(dict.fromkeys(caller)), list(dict.fromkeys(callee))
        if len(caller_ids) > MAX_HOPS or len(callee_ids) > MAX_HOPS:
            raise ValueError(f"at most {MAX_HOPS} hops per dialog side")
        flags = (_CALLER_TRUSTED if caller_trusted else 0) | (_CALLEE_TRUSTED if callee_trusted else 0)
        expires = min(int(self.clock() + self.ttl), 0xFFFFFFFF)
        body = b"".join((_HEAD.pack(_VERSION, flags, expires), bytes((len(caller_ids),)), *caller_ids,
                         bytes((len(callee_ids),)), *callee_ids))
        raw = body + self._mac(body, call_id, from_tag)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def _mac(self, body: bytes, call_id: str, tag: str) -> bytes:
        cid, tg = call_id.encode("utf-8", "surrogateescape"), tag.encode("utf-8", "surrogateescape")
        data = b"".join((body, struct.pack(">I", len(cid)), cid, struct.pack(">I", len(tg)), tg))
        return hmac.new(self._key, data, hashlib.sha256).digest()[:_MAC_BYTES]

    # ---- verifying ------------------------------------------------------------------------------

    def read(self, request: Request, token: str | None) -> DialogToken:
        """Verify `token` (the leading own Route's `rrk`) for the request's dialog, from either side."""
        if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            return INVALID
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return INVALID
        parsed = _parse(raw)
        if parsed is None:
            return INVALID
        body, mac, flags, expires, caller_ids, callee_ids = parsed
        call_id = request.call_id or ""
        from_tag = request.from_.tag if request.from_ is not None else None
        to_tag = request.to.tag if request.to is not None else None
        from_caller = from_tag is not None and hmac.compare_digest(mac, self._mac(body, call_id, from_tag))
        if from_caller:  # the To tag names the caller too only if it is the same tag (no second MAC needed)
            from_callee = to_tag == from_tag
        else:
            from_callee = to_tag is not None and hmac.compare_digest(mac, self._mac(body, call_id, to_tag))
        if not (from_caller or from_callee):
            return INVALID
        if expires < self.clock():
            return DialogToken(TokenStatus.EXPIRED)
        return DialogToken(TokenStatus.VALID, from_caller, from_callee, caller_ids, callee_ids,
                           bool(flags & _CALLER_TRUSTED), bool(flags & _CALLEE_TRUSTED))


def _parse(raw: bytes) -> tuple[bytes, bytes, int, int, frozenset[bytes], frozenset[bytes]] | None:
    if len(raw) < _HEAD.size + 2 + _MAC_BYTES:
        return None
    version, flags, expires = _HEAD.unpack_from(raw)
    if version != _VERSION:
        return None
    pos = _HEAD.size
    sides: list[frozenset[bytes]] = []
    for _ in range(2):
        count = raw[pos]
        pos += 1
        end = pos + count * _HOP_BYTES
        if count > MAX_HOPS or end > len(raw) - _MAC_BYTES:
            return None
        sides.append(frozenset(raw[i:i + _HOP_BYTES] for i in range(pos, end, _HOP_BYTES)))
        pos = end
    if pos != len(raw) - _MAC_BYTES:
        return None
    return raw[:pos], raw[pos:], flags, expires, sides[0], sides[1]
