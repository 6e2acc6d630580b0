"""The processor SDK: write a Message Processor as a small Python class (docs/processors.md).

A processor turns a ``MessageRequest`` (a SIP request or response plus the EdgePort's nets, routr.md §2.2)
into a ``MessageResponse``: a SIP answer, the (altered) request to forward, the response to pass back, or
nothing. :class:`Processor` runs one pipeline per request::

    built-in checks   Via/From/To/Call-ID/CSeq present (RFC 3261 §8.1.1) -> 400 (no Via: dropped)
    validate(ctx)     your checks                                         -> e.g. 400
    authenticate(ctx) who is it                                           -> e.g. 401/407 challenge
    authorize(ctx)    may they                                            -> e.g. 403
    handle(ctx)       the result

Each step returns ``None`` to continue, or a result that ends the pipeline. Responses from downstream skip
the first four and go to ``handle_response(ctx)`` (default: passed through unchanged). Steps may be plain
or ``async`` methods.

A result is one of: a ``MessageResponse``; a ``routr_ray.sip`` message (a Response answers, a Request is
forwarded; converted with ``to_proto``); an ``int`` status (answered with :func:`responses.respond`); or
``None`` from ``handle`` (nothing to send: :data:`DROP`).

Rules the SDK enforces: ACK and responses are never answered with a SIP response (RFC 3261 §17.1.1.3), such
an answer becomes :data:`DROP`; an exception in a step becomes 500 (:class:`~alterations.TooManyHops` 483,
an unparsable message 400) for that message only, never a gRPC error.

Hot path (DESIGN §10): the SIP message is converted from the protobuf only when a step reads
``ctx.message`` (once, then cached); answers built with ``ctx.respond``/``ctx.ok``... copy the protobuf
fields directly. The echo processor never converts.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar, TypeAlias

from routr_ray.observability import tracing
from routr_ray.processors import responses
from routr_ray.processors.alterations import Interface, OwnAddresses, TooManyHops, edge_interface
from routr_ray.proto.convert import (
    ConversionError,
    from_proto,
    make_message_response,
    status_of,
    transport_name,
)
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip.errors import ParseError
from routr_ray.sip.message import Message, Request, Response

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse

Result: TypeAlias = MessageResponse | Message | int | None
StepResult: TypeAlias = Result | Awaitable[Result]

RESPONSES_KEY = "routr-ray.responses"
"""Metadata key on a forwarded request: ``"errors"`` means the processor needs only the >= 300 responses to it;
the EdgePort relays 1xx/2xx itself (see :attr:`Processor.needs_success_responses`)."""
RESPONSES_ERRORS_ONLY = "errors"

ACTION_METADATA_KEY = "routr-ray.action"
"""Metadata key of a MessageResponse without ``message``: ``"drop"`` means "send nothing" (ACK absorbed,
response swallowed). Routr has no such answer; it is only ever returned for ACK and responses."""
DROP_ACTION = "drop"

PROBE_KEY = "routr-ray.probe"
"""Metadata key of a readiness probe (a MessageRequest without ``message``, :func:`probe_request`): the processor
answers it with :meth:`Processor.ready` instead of running its pipeline; the answer carries ``PROBE_KEY`` =
:data:`PROBE_READY` or ``not-ready: <why>`` (:func:`probe_answered_ready`). EdgePorts send one through the
dispatcher before they call themselves ready (issue 13 item 4)."""
PROBE_ASK = "ask"
PROBE_READY = "ready"

log = logging.getLogger(__name__)

_ACK = processor_pb2.Method.Value("ACK")
_METHOD_NAMES: dict[int, str] = {v.number: v.name for v in processor_pb2.Method.DESCRIPTOR.values}
_PIPELINE_HOOKS = ("validate", "authenticate", "authorize")


def drop() -> MessageResponse:
    """A MessageResponse that tells the EdgePort to send nothing."""
    resp = MessageResponse()
    resp.metadata[ACTION_METADATA_KEY] = DROP_ACTION
    return resp


def is_drop(resp: MessageResponse) -> bool:
    return not resp.HasField("message") and resp.metadata.get(ACTION_METADATA_KEY) == DROP_ACTION


def probe_request() -> MessageRequest:
    """A readiness probe: no SIP message, only ``metadata[PROBE_KEY]``."""
    request = MessageRequest(ref="routr-ray-probe")
    request.metadata[PROBE_KEY] = PROBE_ASK
    return request


def is_probe(request: MessageRequest) -> bool:
    return bool(request.metadata) and request.metadata.get(PROBE_KEY) == PROBE_ASK and not request.HasField("message")


def probe_answered_ready(resp: MessageResponse | None) -> bool:
    return resp is not None and resp.metadata.get(PROBE_KEY) == PROBE_READY


class Context:
    """One message through the pipeline: the MessageRequest, the lazily parsed SIP message, helpers."""

    __slots__ = ("request", "processor", "_message", "_points", "state")

    def __init__(self, request: MessageRequest, processor: Processor | None = None) -> None:
        self.request = request
        self.processor = processor
        self._message: Request | Response | None = None
        self._points: list[Interface] | None = None
        self.state: dict[str, Any] = {}
        """Free for the steps to pass things along (e.g. the authenticated user)."""

    # the message -------------------------------------------------------------------------------
    @property
    def message(self) -> Request | Response:
        """The SIP message, converted from the protobuf on first access (ParseError/ConversionError -> 400)."""
        msg = self._message
        if msg is None:
            msg = self._message = from_proto(self.request.message)
        return msg

    @property
    def is_response(self) -> bool:
        return self.request.message.WhichOneof("message_type") == "response_type"

    @property
    def method(self) -> str:
        """The request method (for a response: the method of its request, from CSeq)."""
        return self.request.message.method or _METHOD_NAMES.get(self.request.method, "")

    @property
    def sender(self) -> Interface:
        """Where the message came from, as the EdgePort saw it."""
        return Interface.of(self.request.sender)

    @property
    def listening_points(self) -> list[Interface]:
        points = self._points
        if points is None:
            points = self._points = [Interface.of(lp) for lp in self.request.listening_points]
        return points

    def edge_interface(self, host: str, transport: str | int) -> Interface:
        """Our address toward ``host`` over ``transport`` (see :func:`alterations.edge_interface`)."""
        if isinstance(transport, int):
            transport = transport_name(transport)
        req = self.request
        return edge_interface(host, transport, listening_points=self.listening_points, localnets=req.localnets,
                              external_addrs=req.external_addrs)

    def origin_interface(self) -> Interface:
        """Our address toward the sender (the previous hop), for the Record-Route entry its side uses: as
        :meth:`edge_interface`; behind a wildcard listening point, unless that is an external address (the sender
        is outside the localnets), the address the message arrived on (``received_on``): the sender reached us
        there."""
        sender = self.sender
        intf = self.edge_interface(sender.host, sender.transport)
        req = self.request
        if not req.HasField("received_on") or intf.host in req.external_addrs:
            return intf
        arrived = Interface.of(req.received_on)
        lp = next((p for p in self.listening_points if p.transport == intf.transport), None)
        if lp is not None and lp.is_wildcard and not arrived.is_wildcard and arrived.transport == intf.transport:
            return Interface(arrived.host, intf.port, intf.transport)
        return intf

    def own_addresses(self) -> OwnAddresses:
        """What names this EdgePort in a Route (for :func:`alterations.remove_own_routes`)."""
        return OwnAddresses.of_request(self.request)

    # answers -----------------------------------------------------------------------------------
    def _server(self) -> str | None:
        return self.processor.server_header if self.processor is not None else None

    def respond(self, status: int, reason: str | None = None,
                headers: responses.HeaderItems = ()) -> MessageResponse:
        """Answer ``status`` (RFC 3261 §8.2.6), with the processor's ``Server`` header if it has one."""
        return responses.respond(self.request, status, reason, headers, server=self._server())

    def ok(self, headers: responses.HeaderItems = ()) -> MessageResponse:
        return responses.ok(self.request, headers, server=self._server())

    def bad_request(self, reason: str | None = None) -> MessageResponse:
        return responses.bad_request(self.request, reason, server=self._server())

    def challenge(self, challenges: str | list[str], *, proxy: bool = False) -> MessageResponse:
        return responses.challenge(self.request, challenges, proxy=proxy, server=self._server())

    def forbidden(self, reason: str | None = None) -> MessageResponse:
        return responses.forbidden(self.request, reason, server=self._server())

    def not_found(self) -> MessageResponse:
        return responses.not_found(self.request, server=self._server())

    # forwarding --------------------------------------------------------------------------------
    def forward(self, message: Message, metadata: Mapping[str, str] | None = None) -> MessageResponse:
        """Send ``message`` (an altered copy of the request, or a response) on; ``metadata`` is added to the
        request's."""
        merged = dict(self.request.metadata)
        if metadata:
            merged.update(metadata)
        sender = self.request.sender if self.request.HasField("sender") else None
        return make_message_response(message, sender=sender, metadata=merged)

    def pass_through(self) -> MessageResponse:
        """The message unchanged (no conversion)."""
        resp = MessageResponse()
        req = self.request
        if req.HasField("sender"):
            resp.sender.CopyFrom(req.sender)
        resp.message.CopyFrom(req.message)
        if req.metadata:
            resp.metadata.update(req.metadata)
        return resp

    def drop(self) -> MessageResponse:
        return drop()


def _missing_mandatory(req: MessageRequest) -> str | None:
    """RFC 3261 §8.1.1: a request carries To, From, CSeq, Call-ID and Via (Max-Forwards is not required of
    a UAS here: old clients omit it and RFC 3261 §8.2 does not reject for it)."""
    msg = req.message
    if not msg.HasField("from"):
        return "From"
    if not msg.HasField("to"):
        return "To"
    if not msg.HasField("call_id"):
        return "Call-ID"
    for ext in msg.extensions:
        if ext.name.lower() == "cseq":
            return None
    return "CSeq"


class Processor:
    """Base class of a Message Processor. Override ``handle`` (and any of ``validate``, ``authenticate``,
    ``authorize``, ``handle_response``); the same class runs as a Serve deployment or as a standalone
    gRPC server (``routr-ray processor serve MODULE:CLASS``)."""

    name: ClassVar[str] = ""
    """Shown in logs (default: the class name)."""
    server_header: ClassVar[str | None] = None
    """Value of the ``Server`` header on answers built with ``ctx.respond``/``ctx.ok``/...; None for none."""

    needs_success_responses: ClassVar[bool] = True
    """True (Routr's behaviour): every response to a request this processor forwarded comes back to
    ``handle_response``. False: only responses >= 300 do; the EdgePort relays 1xx/2xx itself, removing its own
    Via (RFC 3261 §16.7 step 3) — one Ray hop less per provisional/success response. Only for processors whose
    ``handle_response`` does nothing to 1xx/2xx but pop the top Via and fix a ``.invalid`` Contact (responses with
    one still come here). The dispatcher turns it off when middlewares are configured (they see 1xx/2xx)."""

    _hooks: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only the steps a subclass really overrides are called (no no-op awaits on the hot path).
        cls._hooks = tuple(h for h in _PIPELINE_HOOKS if getattr(cls, h) is not getattr(Processor, h))

    # steps (override) --------------------------------------------------------------------------
    def validate(self, ctx: Context) -> StepResult:
        return None

    def authenticate(self, ctx: Context) -> StepResult:
        return None

    def authorize(self, ctx: Context) -> StepResult:
        return None

    def handle(self, ctx: Context) -> StepResult:
        """The result for a request that passed the other steps. Default: 501 Not Implemented."""
        return 501

    def handle_response(self, ctx: Context) -> StepResult:
        """A response coming back from downstream. Default: passed through unchanged (a processor that
        added a Via on the way out removes it here: ``ctx.forward(remove_top_via(ctx.message))``)."""
        return ctx.pass_through()

    def ready(self) -> bool | Awaitable[bool]:
        """Whether this processor can handle messages now (e.g. Connect: every Location shard answers). Asked by
        readiness probes (:data:`PROBE_KEY`); an exception counts as not ready. Default: True."""
        return True

    async def answer_probe(self) -> MessageResponse:
        """The answer to a readiness probe (:func:`probe_request`)."""
        try:
            ok = bool(await _value(self.ready()))  # type: ignore[arg-type]
            why = "" if ok else "not ready"
        except Exception as exc:  # noqa: BLE001 - the probe's answer says why
            ok, why = False, repr(exc)[:200]
        resp = MessageResponse()
        resp.metadata[PROBE_KEY] = PROBE_READY if ok else f"not-ready: {why}"
        return resp

    # entry points ------------------------------------------------------------------------------
    async def process(self, request: MessageRequest) -> MessageResponse:
        """One MessageRequest -> its MessageResponse. Never raises for a bad message or a failing step. A traced
        message (``routr-ray.traceparent``) gets a span here, current while the steps run (docs/observability.md).
        A readiness probe (readiness.py, issue 13) is answered without the steps."""
        if request.metadata and is_probe(request):
            return await self.answer_probe()
        if tracing.ON and request.metadata:
            span = tracing.span_from_metadata(f"{self.name or type(self).__name__} {self._method_of(request)}",
                                              request.metadata, {"sip.method": self._method_of(request),
                                                                 "sip.call_id": request.ref or None})
            if span is not None:
                with tracing.use_span(span):
                    result = await self._process(request)
                    _trace_result(span, result)
                    return result
        return await self._process(request)

    @staticmethod
    def _method_of(request: MessageRequest) -> str:
        return request.message.method or _METHOD_NAMES.get(request.method, "")

    async def _process(self, request: MessageRequest) -> MessageResponse:
        ctx = Context(request, self)
        try:
            if ctx.is_response:
                return self._finish(ctx, await _value(self.handle_response(ctx)))
            if not request.message.via:
                log.debug("request without Via dropped (call %r)", request.ref)
                return drop()
            missing = _missing_mandatory(request)
            if missing is not None:
                return self._finish(ctx, responses.bad_request(request, f"Missing {missing} header",
                                                               server=self.server_header))
            for hook in self._hooks:
                result = await _value(getattr(self, hook)(ctx))
                if result is not None:
                    return self._finish(ctx, result)
            return self._finish(ctx, await _value(self.handle(ctx)))
        except Exception as exc:  # one message's failure is that message's answer
            return self.on_error(ctx, exc)

    async def process_batch(self, requests: list[MessageRequest]) -> list[MessageResponse]:
        """The batch entry point (DESIGN §10): one result per request, in order; a failure in one becomes
        that one's 500."""
        if len(requests) == 1:
            return [await self.process(requests[0])]
        results = await asyncio.gather(*(self.process(r) for r in requests), return_exceptions=True)
        out: list[MessageResponse] = []
        for req, result in zip(requests, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                result = self.on_error(Context(req, self), result)
            out.append(result)
        return out

    async def process_serialized(self, batch: list[bytes]) -> list[bytes]:
        """:meth:`process_batch` over serialized protobufs (what a batched Ray call carries)."""
        requests: list[MessageRequest] = []
        bad: set[int] = set()
        for i, data in enumerate(batch):
            try:
                requests.append(MessageRequest.FromString(data))
            except Exception:  # noqa: BLE001 - a corrupt item must not fail its batch
                bad.add(i)
                requests.append(MessageRequest())
        results = await self.process_batch(requests)
        return [b"" if i in bad else r.SerializeToString() for i, r in enumerate(results)]

    # helpers -----------------------------------------------------------------------------------
    def _finish(self, ctx: Context, result: Result) -> MessageResponse:
        if result is None:
            return drop()
        if isinstance(result, int):
            resp = responses.respond(ctx.request, result, server=self.server_header)
        elif isinstance(result, Message):
            resp = ctx.forward(result)
        else:
            resp = result
        req = ctx.request
        kind = resp.message.WhichOneof("message_type")
        if req.method == _ACK and not ctx.is_response and kind == "response_type":
            return drop()  # RFC 3261 §17.1.1.3: ACK is never answered
        if not self.needs_success_responses and kind == "request_uri" and not ctx.is_response:
            resp.metadata[RESPONSES_KEY] = RESPONSES_ERRORS_ONLY
        return resp

    _error_log_at: float = 0.0

    def on_error(self, ctx: Context, exc: Exception) -> MessageResponse:
        """The answer to a message whose handling raised: 483 for TooManyHops, 400 for an unparsable
        message, 500 otherwise (logged, at most once a second); nothing for ACK and responses."""
        req = ctx.request
        if ctx.is_response or req.method == _ACK or not req.message.via:
            status = 0
        elif isinstance(exc, TooManyHops):
            status = 483
        elif isinstance(exc, (ParseError, ConversionError)):
            status = 400
        else:
            status = 500
        if status in (0, 500):
            now = time.monotonic()
            if now - self._error_log_at >= 1.0:
                self._error_log_at = now
                log.error("processor %s failed on call %r: %r", self.name or type(self).__name__, req.ref, exc,
                          exc_info=exc)
        if status == 0:
            return drop()
        reason = f"Bad Request ({exc})"[:120] if status == 400 else None
        try:
            return responses.respond(req, status, reason, server=self.server_header)
        except Exception:  # noqa: BLE001 - even the answer failed (broken request): send nothing
            return drop()


def _trace_result(span: Any, result: MessageResponse) -> None:
    """What the processor decided, on its span: the status it answered, or that it forwarded."""
    message = result.message
    kind = message.WhichOneof("message_type") if result.HasField("message") else None
    if kind == "response_type":
        span.set_attribute("routr.result", "answered")
        try:
            span.set_attribute("sip.status_code", status_of(message))
        except ConversionError:
            pass
    else:
        span.set_attribute("routr.result", "forwarded" if kind == "request_uri" else "dropped")


async def _value(result: StepResult) -> Result:
    if inspect.isawaitable(result):
        return await result
    return result


__all__ = ["ACTION_METADATA_KEY", "DROP_ACTION", "PROBE_KEY", "RESPONSES_ERRORS_ONLY", "RESPONSES_KEY", "Context",
           "Processor", "Result", "drop", "is_drop", "is_probe", "probe_answered_ready", "probe_request"]
