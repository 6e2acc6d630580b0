"""Dispatcher failures mapped to SIP answers, not to gRPC errors (routr.md §6, §12; DESIGN §5).

Routr's dispatcher returns gRPC NOT_FOUND / UNAVAILABLE and its EdgePort only logs them, so clients time
out. Here the dispatcher answers the request itself, as a MessageResponse the EdgePort sends back:

* no processor matches                       -> 405 Method Not Allowed + ``Allow`` (RFC 3261 §21.4.6)
* processor unreachable, failing or too late -> 503 Service Unavailable + ``Retry-After`` (§21.5.4, §20.33)
* a (non-optional) middleware fails          -> 500 Server Internal Error (§21.5.1)
* ACK and responses are never answered (RFC 3261 §17.1.1.3, §8.2.6): these return None ("drop").

The answers themselves are the processor SDK's (:mod:`routr_ray.processors.responses`, RFC 3261 §8.2.6: Via,
From, Call-ID, CSeq copied, To plus a tag derived from the request so retransmissions get the same one); this
module only adds the "never answer ACK or a response" rule and reads the status of a response.
"""

from __future__ import annotations

from collections.abc import Iterable

from routr_ray.processors import responses
from routr_ray.processors.responses import DEFAULT_RETRY_AFTER_SECONDS, is_answerable, respond, to_tag_for
from routr_ray.proto.convert import ConversionError, status_of
from routr_ray.proto.gen import processor_pb2, sipmessage_pb2

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse


def method_not_allowed(req: MessageRequest, allow: Iterable[str]) -> MessageResponse | None:
    """405 with ``Allow`` listing the methods the config routes (RFC 3261 §21.4.6), or None for ACK/responses."""
    return responses.method_not_allowed(req, allow) if is_answerable(req) else None


def service_unavailable(req: MessageRequest,
                        retry_after: int = DEFAULT_RETRY_AFTER_SECONDS) -> MessageResponse | None:
    """503 with ``Retry-After`` (RFC 3261 §21.5.4, §20.33), or None for ACK/responses."""
    return responses.service_unavailable(req, retry_after) if is_answerable(req) else None


def server_internal_error(req: MessageRequest) -> MessageResponse | None:
    """500 (RFC 3261 §21.5.1), or None for ACK/responses."""
    return responses.server_internal_error(req) if is_answerable(req) else None


def response_status(msg: sipmessage_pb2.SIPMessage) -> int | None:
    """The status of a response SIPMessage (None for a request or an unknown status)."""
    if msg.WhichOneof("message_type") != "response_type":
        return None
    try:
        return status_of(msg)
    except ConversionError:
        return None


__all__ = ["DEFAULT_RETRY_AFTER_SECONDS", "is_answerable", "method_not_allowed", "respond", "response_status",
           "server_internal_error", "service_unavailable", "to_tag_for"]
