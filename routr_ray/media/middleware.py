"""The RTPEngine middleware: every SDP of a call goes through RTPEngine, so WebRTC and plain SIP phones, and
phones behind NAT, hear each other (issue 19; docs/media.md).

A processor-SDK class run by the dispatcher as a **post-processor** middleware (it must see the request the
processor forwards: its target and its branches), built in as ``serve://rtpengine``::

    middlewares:
      - ref: media-relay
        addr: serve://rtpengine
        postProcessor: true
        internalMetadata: true     # the forked branches and the per-branch labels are routr-ray.* metadata
        responses: requested       # only the responses of the calls it relays come back through the dispatcher

What it does with each message (Kamailio's rtpengine_manage(), done per branch):

===================================  =========================================================================
INVITE/UPDATE with SDP, no To tag    ``offer`` per branch of the fork, ``via-branch`` ``b<i>``, each branch with
                                     the flags of its leg (``flags.py``); every branch is labelled
                                     ``routr-ray.echo.media`` = ``o:b<i>`` (the EdgePort sends the label back
                                     with that branch's responses) and its responses are asked for
re-INVITE/UPDATE with SDP            ``offer`` with both tags, on the instance that has the call (``r``)
INVITE without SDP (late offer)      labels ``l:b<i>``, responses asked for; the 2xx then carries the offer
1xx/2xx with SDP                     ``answer`` (from-tag, to-tag, the branch's via-branch); for a late offer an
                                     ``offer`` with the tags swapped; without a label (the EdgePort relays a 2xx
                                     after its branch ended: an extra 2xx of a fork, a stray or spoofed one) its
                                     SDP is removed, never given to RTPEngine
ACK with SDP                         ``answer`` of a late offer (tags swapped)
>= 300 to a relayed initial INVITE   ``delete`` of that branch (to-tag, via-branch): a fork whose branches all
                                     fail leaves nothing behind (RTPEngine deletes the call with its last branch)
BYE                                  ``delete`` of the dialog (from-tag, to-tag)
everything else                      passed through, not even converted
===================================  =========================================================================

Failures: no instance can take the offer -> **503** with Retry-After (never a call without media relay); RTPEngine
refuses the SDP -> 488; an answer that cannot be relayed -> a 1xx goes on without its SDP, a 2xx becomes a 503 (the
callee's 2xx is not ACKed: it ends its side, RFC 3261 §13.3.1.4), both logged and counted. A BYE whose delete
fails still goes on. A CANCEL never reaches the dispatcher (the EdgePort answers it): the 487 of every branch does,
and deletes the branch. What the EdgePort ends by itself (a branch that timed out) and a phone that vanishes are
left to RTPEngine's own timers (``timeout``, ``offer-timeout``; docs/media.md).

It needs ``internalMetadata: true``: the forked branches and the labels are internal metadata, and a label is what
says a response belongs to a relayed branch (without it a spoofed 2xx could take over a call's media). The launcher
refuses a ``serve://rtpengine`` entry without it (or without ``postProcessor``); elsewhere (``host:port``) the
middleware answers 500 to calls with SDP and logs why.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routr_ray.config.media import MediaRelayConfig
from routr_ray.config.media import from_document as media_from_document
from routr_ray.config.media import to_document as media_to_document
from routr_ray.config.values import parse_host_port
from routr_ray.media.flags import Leg, Side, leg_of_transport, ng_parameters
from routr_ray.media.metrics import MediaMetrics
from routr_ray.media.ng import NgRejected, NgUnreachable
from routr_ray.media.pool import CallNotFound, Instance, NoInstance, RtpEngines
from routr_ray.media.sdp import is_sdp, summarize
from routr_ray.observability.ratelimit import RateLimitedLog
from routr_ray.processors import responses
from routr_ray.processors.sdk import Context, MessageRequest, MessageResponse, Processor
from routr_ray.proto.convert import ConversionError, status_of, transport_name
from routr_ray.proto.gen import sipmessage_pb2
from routr_ray.sip import ParseError, Response, parse

__all__ = ["BRANCHES_KEY", "ECHO_KEY", "Label", "RtpEngineMiddleware"]

log = logging.getLogger(__name__)

ECHO_KEY = "routr-ray.echo.media"
"""The per-branch label the EdgePort sends back with the branch's responses (``routr-ray.echo.*``)."""
BRANCHES_KEY = "routr-ray.branches"  # as routr_ray.processors.connect.processor.BRANCHES_KEY
RESPONSES_KEY = "routr-ray.responses"  # as routr_ray.processors.sdk.RESPONSES_KEY
RESPONSES_ALL = "all"  # as routr_ray.dispatch.middleware.RESPONSES_ALL
CONFIG_ENV = "ROUTR_RAY_CONFIG"  # the standalone server reads the MediaRelay document of this directory

OFFER = "o"  # an initial offer relayed per branch
LATE = "l"  # an initial INVITE without SDP: the 2xx carries the offer
REOFFER = "r"  # an offer inside a dialog


@dataclass(frozen=True)
class Label:
    """What the middleware did with a forwarded request, as its responses bring it back: ``o:b0``, ``l:b1``, ``r``."""

    kind: str
    branch: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.branch}" if self.branch else self.kind

    @classmethod
    def parse(cls, text: str | None) -> Label | None:
        if not text:
            return None
        kind, _, branch = text.partition(":")
        return cls(kind, branch) if kind in (OFFER, LATE, REOFFER) else None


class RelayFailed(Exception):
    """The SDP could not be relayed; ``status`` is the answer for the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _content_type(msg: sipmessage_pb2.SIPMessage) -> str | None:
    for ext in msg.extensions:
        if ext.name.lower() in ("content-type", "c"):
            return ext.value
    return None


def _sdp_of(msg: sipmessage_pb2.SIPMessage) -> str | None:
    body = msg.body
    return body if body and is_sdp(_content_type(msg), body) else None


def _set_body(msg: sipmessage_pb2.SIPMessage, body: str) -> None:
    msg.body = body
    msg.ClearField("body_bytes")
    msg.content_length.content_length = len(body.encode("utf-8"))


def config_of_dir(directory: str | Path) -> MediaRelayConfig:
    """The MediaRelay document of a config directory; ValueError when it has none."""
    from routr_ray.config import load_config_dir

    media = load_config_dir(directory).media
    if media is None:
        raise ValueError(f"{directory}: no MediaRelay document (the RTPEngine instances to use; docs/media.md)")
    return media


def config_from_environment() -> MediaRelayConfig:
    """The MediaRelay document of ``$ROUTR_RAY_CONFIG`` (default ``./config``): what the standalone server
    (``routr-ray processor serve routr_ray.media.middleware:RtpEngineMiddleware``) runs with."""
    return config_of_dir(Path(os.environ.get(CONFIG_ENV) or "config"))


def deployment_options(config_dir: str | Path) -> dict[str, Any]:
    """Keyword arguments of :class:`RtpEngineMiddleware` for its Serve deployment (``processor_options``): the
    plain MediaRelay document of ``config_dir``."""
    return {"config": media_to_document(config_of_dir(config_dir))}


def engines_of(config: MediaRelayConfig, metrics: MediaMetrics) -> RtpEngines:
    instances = []
    for instance in config.rtpengines:
        host, port = parse_host_port(instance.addr)
        instances.append((instance.ref, host, port))
    return RtpEngines(instances, timeout=config.timeout_seconds, retries=config.retries,
                      ping_interval=config.ping_interval_seconds, recorder=metrics)


class RtpEngineMiddleware(Processor):
    """See the module docstring. ``config``: a :class:`MediaRelayConfig` or its plain document (the Serve options
    of ``serve://rtpengine``); None reads ``$ROUTR_RAY_CONFIG``."""

    name = "rtpengine"

    def __init__(self, config: MediaRelayConfig | dict[str, Any] | None = None, *,
                 engines: RtpEngines | None = None, metrics: MediaMetrics | None = None) -> None:
        if isinstance(config, dict):
            config = media_from_document(config)
        self.metrics = metrics or MediaMetrics()
        if engines is None:
            config = config if config is not None else config_from_environment()
            engines = engines_of(config, self.metrics)
        self.config = config
        self.engines = engines
        self.retry_after = config.retry_after_seconds if config is not None else 5
        self.delete_delay = config.delete_delay_seconds if config is not None else None
        self._log = RateLimitedLog(log, interval=10.0)

    @property
    def metrics_registry(self) -> Any:
        """The prometheus_client registry (the deployment mirrors it into Ray's metrics)."""
        return self.metrics.registry

    def metrics_text(self) -> bytes:
        return self.metrics.text()

    async def start(self) -> None:
        """Start the health pings (the Serve replica awaits this before its first message)."""
        self.engines.start()

    async def close(self) -> None:
        await self.engines.close()

    # requests --------------------------------------------------------------------------------------------------
    async def handle(self, ctx: Context) -> MessageResponse:
        msg = ctx.request.message
        method = ctx.method
        if method not in ("INVITE", "UPDATE", "ACK", "BYE"):
            return ctx.pass_through()
        if msg.via and msg.via[0].branch:
            # a forwarded request carries our Via without a branch (the EdgePort adds it): this is not one
            self._log.warning("placement", "the rtpengine middleware must be a postProcessor middleware "
                                           "(it got a request the processor has not forwarded yet): passed through")
            return ctx.pass_through()
        sdp = _sdp_of(msg)
        if not any(k.startswith("routr-ray.") for k in ctx.request.metadata):
            # without the internal metadata there are no branches and no labels: nothing could be relayed safely
            self._log.error("internal", "the rtpengine middleware needs internalMetadata: true in its dispatcher "
                                        "entry (docs/media.md): calls with SDP are refused")
            if sdp is not None and method in ("INVITE", "UPDATE"):
                self.metrics.outcome("misconfigured")
                return self._refuse(ctx, 500, "misconfigured: the middleware needs internalMetadata: true")
            return ctx.pass_through()
        try:
            if method == "BYE":
                await self._delete_dialog(ctx)
                return ctx.pass_through()
            if method == "ACK":
                return await self._late_answer(ctx, sdp) if sdp else ctx.pass_through()
            if sdp is None:
                return self._late_offer(ctx) if method == "INVITE" else ctx.pass_through()
            if msg.to.tag:
                return await self._reoffer(ctx, sdp)
            return await self._offer(ctx, sdp)
        except RelayFailed as exc:
            self.metrics.outcome("refused_488" if exc.status == 488 else "refused_503")
            self._log.warning(f"refused-{exc.status}", "call %s: media relay failed (%s): %d", msg.call_id.call_id,
                              exc, exc.status)
            if method == "ACK":
                return ctx.pass_through()  # never answered (RFC 3261 §17.1.1.3)
            return self._refuse(ctx, exc.status, str(exc))

    def _side(self, ctx: Context, sdp: str) -> Side:
        sender = ctx.request.sender
        return Side(transport_name(sender.transport), sender.host, summarize(sdp))

    def _base(self, ctx: Context, command: str) -> dict[str, Any]:
        msg = ctx.request.message
        return {"command": command, "call-id": msg.call_id.call_id, "from-tag": getattr(msg, "from").tag}

    async def _offer(self, ctx: Context, sdp: str) -> MessageResponse:
        """An initial offer: one RTPEngine branch per branch of the fork, all on the call's instance."""
        request = ctx.request
        msg = request.message
        side = self._side(ctx, sdp)
        others: list[dict[str, Any]] = []
        if BRANCHES_KEY in request.metadata:
            try:
                loaded = json.loads(request.metadata[BRANCHES_KEY])
                others = [e for e in loaded if isinstance(e, dict) and "message" in e] if isinstance(
                    loaded, list) else []
            except ValueError:
                others = []
        first_leg = leg_of_transport(msg.via[0].transport if msg.via else "")
        command = {**self._base(ctx, "offer"), "via-branch": "b0", "sdp": sdp, **ng_parameters(side, first_leg)}
        instance, reply = await self._new_call(msg.call_id.call_id, command)
        out = ctx.pass_through()
        _set_body(out.message, str(reply.get("sdp", "")))
        out.metadata[ECHO_KEY] = str(Label(OFFER, "b0"))
        for index, entry in enumerate(others, start=1):
            branch = f"b{index}"
            try:
                sip = parse(str(entry["message"]).encode("latin-1"))
            except (ParseError, UnicodeEncodeError) as exc:
                raise RelayFailed(500, f"unreadable branch {index}: {exc}") from exc
            leg = leg_of_transport(sip.top_via.transport if sip.top_via is not None else "")
            branch_command = {**command, "via-branch": branch, **ng_parameters(side, leg)}
            branch_reply = await self._on(instance, msg.call_id.call_id, branch_command)
            sip.set_body(str(branch_reply.get("sdp", "")).encode("utf-8"))
            entry["message"] = bytes(sip).decode("latin-1")
            entry[ECHO_KEY] = str(Label(OFFER, branch))
        if others:
            out.metadata[BRANCHES_KEY] = json.dumps(others)
        out.metadata[RESPONSES_KEY] = RESPONSES_ALL
        self.metrics.outcome("relayed")
        return out

    def _late_offer(self, ctx: Context) -> MessageResponse:
        """An INVITE without SDP: nothing to relay yet; label the branches so that the 2xx offer is recognised (an
        initial INVITE's per branch, a re-INVITE's without a branch)."""
        out = ctx.pass_through()
        if ctx.request.message.to.tag:
            out.metadata[ECHO_KEY] = str(Label(LATE))
            out.metadata[RESPONSES_KEY] = RESPONSES_ALL
            return out
        out.metadata[ECHO_KEY] = str(Label(LATE, "b0"))
        raw = ctx.request.metadata.get(BRANCHES_KEY)
        if raw:
            try:
                others = json.loads(raw)
            except ValueError:
                others = None
            if isinstance(others, list):
                for index, entry in enumerate(others, start=1):
                    if isinstance(entry, dict):
                        entry[ECHO_KEY] = str(Label(LATE, f"b{index}"))
                out.metadata[BRANCHES_KEY] = json.dumps(others)
        out.metadata[RESPONSES_KEY] = RESPONSES_ALL
        return out

    async def _reoffer(self, ctx: Context, sdp: str) -> MessageResponse:
        """An offer inside a dialog (re-INVITE, UPDATE): where the call is; anchored anew when no instance has it."""
        msg = ctx.request.message
        call_id = msg.call_id.call_id
        leg = leg_of_transport(msg.via[0].transport if msg.via else "")
        command = {**self._base(ctx, "offer"), "to-tag": msg.to.tag, "sdp": sdp,
                   **ng_parameters(self._side(ctx, sdp), leg)}
        instance = await self.engines.locate(call_id)
        if instance is not None:
            reply = await self._on(instance, call_id, command)
        else:
            _, reply = await self._new_call(call_id, command)
        out = ctx.pass_through()
        _set_body(out.message, str(reply.get("sdp", "")))
        out.metadata[ECHO_KEY] = str(Label(REOFFER))
        out.metadata[RESPONSES_KEY] = RESPONSES_ALL
        self.metrics.outcome("relayed")
        return out

    async def _late_answer(self, ctx: Context, sdp: str) -> MessageResponse:
        """The ACK's answer to a 2xx offer (late offer): the 2xx's sender offered, so the tags are swapped."""
        msg = ctx.request.message
        leg = leg_of_transport(msg.via[0].transport if msg.via else "")
        command = {"command": "answer", "call-id": msg.call_id.call_id, "from-tag": msg.to.tag,
                   "to-tag": getattr(msg, "from").tag, "sdp": sdp, **ng_parameters(self._side(ctx, sdp), leg)}
        reply = await self._existing(msg.call_id.call_id, command)
        out = ctx.pass_through()
        _set_body(out.message, str(reply.get("sdp", "")))
        self.metrics.outcome("relayed")
        return out

    async def _delete_dialog(self, ctx: Context) -> None:
        msg = ctx.request.message
        command = {**self._base(ctx, "delete"), "to-tag": msg.to.tag}
        await self._delete(msg.call_id.call_id, command)

    async def _delete(self, call_id: str, command: dict[str, Any]) -> None:
        if self.delete_delay is not None:
            command["delete-delay"] = self.delete_delay
        try:
            await self.engines.existing_call(call_id, command)
        except (CallNotFound, NoInstance, NgRejected) as exc:
            self.metrics.outcome("not_found")
            self._log.log(logging.INFO, "delete", "call %s: nothing to delete (%s)", call_id,
                          exc or type(exc).__name__)
            return
        self.engines.forget(call_id)
        self.metrics.outcome("deleted")

    # responses -------------------------------------------------------------------------------------------------
    async def handle_response(self, ctx: Context) -> MessageResponse:
        request = ctx.request
        msg = request.message
        if ctx.method not in ("INVITE", "UPDATE"):
            return ctx.pass_through()
        try:
            status = status_of(msg)
        except ConversionError:
            return ctx.pass_through()
        label = Label.parse(request.metadata.get(ECHO_KEY))
        sdp = _sdp_of(msg)
        if status >= 300:
            if label is not None and label.kind == OFFER and ctx.method == "INVITE":
                command = {**self._base(ctx, "delete"), "via-branch": label.branch}
                if msg.to.tag:
                    command["to-tag"] = msg.to.tag
                await self._delete(msg.call_id.call_id, command)
            return ctx.pass_through()
        if sdp is None or status < 101:
            return ctx.pass_through()
        if label is None:
            # No label: no transaction of a request this middleware relayed (a 2xx the EdgePort relays after its
            # branch ended: an extra 2xx of a fork, or a stray or spoofed one). Never given to RTPEngine (an answer
            # with a new To tag would take over the call's callee side) and never passed on with an address that
            # bypasses the relay: its SDP is removed (the caller ACKs and BYEs such an extra dialog, §13.2.2.4).
            self.metrics.outcome("answer_failed")
            return self._without_sdp(ctx)
        try:
            if label.kind == LATE:
                return await self._response_offer(ctx, sdp, label)
            return await self._answer(ctx, sdp, label)
        except RelayFailed as exc:
            self.metrics.outcome("answer_failed")
            self._log.warning("answer", "call %s: the %d's SDP could not be relayed (%s)", msg.call_id.call_id,
                              status, exc)
            return self._unrelayed(ctx, status)

    def _caller_leg(self, ctx: Context) -> Leg:
        msg = ctx.request.message  # the processor removed its Via: the caller's is on top
        return leg_of_transport(msg.via[0].transport if msg.via else "")

    async def _answer(self, ctx: Context, sdp: str, label: Label) -> MessageResponse:
        msg = ctx.request.message
        command = {**self._base(ctx, "answer"), "to-tag": msg.to.tag, "sdp": sdp,
                   **ng_parameters(self._side(ctx, sdp), self._caller_leg(ctx))}
        if label.kind == OFFER and label.branch:
            command["via-branch"] = label.branch
        reply = await self._existing(msg.call_id.call_id, command)
        out = ctx.pass_through()
        _set_body(out.message, str(reply.get("sdp", "")))
        self.metrics.outcome("relayed")
        return out

    async def _response_offer(self, ctx: Context, sdp: str, label: Label) -> MessageResponse:
        """A late offer in a 1xx/2xx: the callee offers, toward the caller; its tag is the from-tag."""
        msg = ctx.request.message
        command = {"command": "offer", "call-id": msg.call_id.call_id, "from-tag": msg.to.tag,
                   "to-tag": getattr(msg, "from").tag, "sdp": sdp,
                   **ng_parameters(self._side(ctx, sdp), self._caller_leg(ctx))}
        if label.branch:
            command["via-branch"] = label.branch
        instance = await self.engines.locate(msg.call_id.call_id)
        if instance is not None:
            reply = await self._on(instance, msg.call_id.call_id, command)
        else:
            _, reply = await self._new_call(msg.call_id.call_id, command)
        out = ctx.pass_through()
        _set_body(out.message, str(reply.get("sdp", "")))
        self.metrics.outcome("relayed")
        return out

    # helpers ---------------------------------------------------------------------------------------------------
    async def _new_call(self, call_id: str, command: dict[str, Any]) -> tuple[Instance, dict[str, Any]]:
        try:
            return await self.engines.new_call(call_id, command)
        except NoInstance as exc:
            raise RelayFailed(503, str(exc)) from exc
        except NgRejected as exc:
            raise RelayFailed(488 if "sdp" in exc.reason.lower() else 503, exc.reason) from exc

    async def _on(self, instance: Instance, call_id: str, command: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.engines.on(instance, command)
        except NgUnreachable as exc:
            raise RelayFailed(503, str(exc)) from exc
        except NgRejected as exc:
            raise RelayFailed(488 if "sdp" in exc.reason.lower() else 503, exc.reason) from exc

    async def _existing(self, call_id: str, command: dict[str, Any]) -> dict[str, Any]:
        try:
            _, reply = await self.engines.existing_call(call_id, command)
        except (CallNotFound, NoInstance) as exc:
            raise RelayFailed(503, f"no live RTPEngine instance has the call ({type(exc).__name__})") from exc
        except NgRejected as exc:
            raise RelayFailed(488 if "sdp" in exc.reason.lower() else 503, exc.reason) from exc
        return reply

    def _refuse(self, ctx: Context, status: int, reason: str) -> MessageResponse:
        """Answer the caller instead of forwarding: the forwarded request less the Via the processor added for the
        next hop (no branch yet), so the answer has the caller's Vias (RFC 3261 §8.2.6.2)."""
        request = MessageRequest()
        request.CopyFrom(ctx.request)
        vias = request.message.via
        if vias and not vias[0].branch:
            del vias[0]
        headers: list[tuple[str, str]] = [("Warning", f'399 routr-ray "media relay: {_quoted(reason)}"')]
        if status == 503:
            headers.append(("Retry-After", str(self.retry_after)))
        return responses.respond(request, status, headers=headers)

    def _without_sdp(self, ctx: Context) -> Response:
        response = ctx.message
        assert isinstance(response, Response)
        headers = response.headers.copy()
        headers.remove("Content-Type")
        out = Response(response.status, response.reason, headers)
        out.set_body(b"")
        return out

    def _unrelayed(self, ctx: Context, status: int) -> Response:
        """A 1xx/2xx whose answer could not be relayed: a 1xx goes on without its SDP (no early media); a 2xx
        becomes a 503 (a call without its relay would be one-way or silent)."""
        if status < 200:
            return self._without_sdp(ctx)
        response = ctx.message
        assert isinstance(response, Response)
        headers = response.headers.copy()
        headers.remove("Content-Type")
        headers.remove("Contact")
        headers.add("Retry-After", str(self.retry_after))
        headers.add("Warning", '399 routr-ray "media relay: the answer could not be relayed"')
        out = Response(503, "Service Unavailable", headers)
        out.set_body(b"")
        return out


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")[:120]

