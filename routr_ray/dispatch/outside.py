"""What an outside caller may give and see (DESIGN §6b): internal metadata never leaves our processes, and
nothing an untrusted caller writes is taken as its address.

*Internal metadata* is every ``MessageRequest``/``MessageResponse`` metadata key that starts with
:data:`INTERNAL_PREFIX` (``routr-ray.``): the directives a processor gives the EdgePort (next hop, failover,
``routr-ray.gateway-auth`` = base64 of a trunk's user:password, ``routr-ray.trunk-ref``, the handling processor's
ref, ...). They travel only between our own processes (EdgePort, dispatcher, Serve deployments) over Ray and the
authenticated internal data plane.

* :func:`from_outside`: a request from a caller of the dispatcher's gRPC port that did not present the token.
  Its ``routr-ray.*`` metadata is removed (a caller cannot pose as the EdgePort by naming a processor or a trunk)
  and its ``sender`` (the address processors run ACLs on) is replaced by the address of its gRPC connection.
* :func:`to_outside`: the reply to such a caller, without ``routr-ray.*`` metadata.
* :func:`without_internal`: a copy of a request for a middleware or an external (``host:port``) processor that
  did not ask for internal metadata (``internalMetadata: true`` in dispatcher.yaml).
"""

from __future__ import annotations

from collections.abc import MutableMapping

from routr_ray.proto.gen import processor_pb2

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse

INTERNAL_PREFIX = "routr-ray."


def is_internal(key: str) -> bool:
    return key.lower().startswith(INTERNAL_PREFIX)


def strip_internal(metadata: MutableMapping[str, str]) -> int:
    """Remove every internal key from ``metadata`` in place; returns how many were removed."""
    keys = [k for k in metadata if is_internal(k)]
    for key in keys:
        del metadata[key]
    return len(keys)


def has_internal(metadata: MutableMapping[str, str]) -> bool:
    return any(is_internal(k) for k in metadata)


def without_internal(request: MessageRequest) -> MessageRequest:
    """``request`` itself when it has no internal metadata, else a copy without it (the caller's object is never
    changed: the chain goes on with the original)."""
    if not has_internal(request.metadata):
        return request
    copy = MessageRequest()
    copy.CopyFrom(request)
    strip_internal(copy.metadata)
    return copy


def peer_address(peer: str) -> tuple[str, int] | None:
    """(host, port) of a gRPC peer string (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``, percent-escaped or not);
    None for anything else (a Unix socket, an unknown form)."""
    from urllib.parse import unquote

    kind, _, rest = unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def from_outside(request: MessageRequest, peer: tuple[str, int]) -> MessageRequest:
    """A copy of an untrusted caller's request: internal metadata removed, ``sender`` = ``peer`` (the gRPC
    connection's address; the transport the caller named is kept, it is no identity)."""
    copy = MessageRequest()
    copy.CopyFrom(request)
    strip_internal(copy.metadata)
    transport = request.sender.transport if request.HasField("sender") else 0
    copy.sender.CopyFrom(processor_pb2.NetInterface(host=peer[0], port=peer[1], transport=transport))
    return copy


def to_outside(response: MessageResponse) -> MessageResponse:
    """``response`` without internal metadata (changed in place, returned)."""
    strip_internal(response.metadata)
    return response


__all__ = ["INTERNAL_PREFIX", "from_outside", "has_internal", "is_internal", "peer_address", "strip_internal",
           "to_outside", "without_internal"]
