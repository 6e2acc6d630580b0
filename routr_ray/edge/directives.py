"""What a processor tells the EdgePort about a forwarded request, read from ``MessageResponse.metadata``.

The keys are set by the Connect processor (``routr_ray/processors/connect/processor.py``: ``NEXT_HOP_KEY``,
``NEXT_HOP_FLOW_KEY``, ``NEXT_HOP_EDGE_KEY``, ``FAILOVER_KEY``; ``router.py``: ``routr-ray.trunk-ref``) and
documented in docs/connect.md "Metadata for the EdgePort". The edge must not import ``processors/``
(DESIGN §2), so the strings are copied here; tests/unit/test_edge_directives.py checks they stay equal.

| key | meaning for the EdgePort |
|---|---|
| ``routr-ray.next-hop`` | ``sip:host:port;transport=x``: send the request there (wins over Route/Request-URI) |
| ``routr-ray.next-hop.flow`` | ``true``: reuse the open connection to that address (RFC 5626 flow; never open one) |
| ``routr-ray.next-hop.edge-port-ref`` | the EdgePort the callee registered through: another one sends it (peers.py) |
| ``routr-ray.next-hop.edge-tag`` | the tag (``util/edge_tag.py``) of the EdgePort that sends it: an in-dialog request \
whose route set names another EdgePort |
| ``routr-ray.failover`` | further Request-URIs, comma-separated, tried in order on 503/408/timeout (trunks) |
| ``routr-ray.trunk-ref`` | the trunk of an outbound call; kept with the branch and sent with its responses |
| ``routr-ray.gateway-auth`` | ``base64(username:password)`` of the trunk's outbound credentials (Routr's ``X-Gateway-Auth``): the EdgePort answers the trunk's 401/407 itself, once per branch (see gateway_auth.py) |
| ``routr-ray.responses`` | ``errors``: the processor wants only the >= 300 responses to this request; the EdgePort \
relays 1xx/2xx itself (its Via popped), except one whose Contact names a ``.invalid`` host (RFC 7118) |
| ``routr-ray.echo.<name>`` | any value: kept with the branch (and its failover branches) and sent back, unchanged, in \
the metadata of that branch's responses (e.g. the media relay's per-branch label); at most 8 keys of 256 characters |

``routr-ray.responses`` is written by the processor SDK (``routr_ray/processors/sdk.py``, a processor class with
``needs_success_responses = False``, e.g. Connect) and removed by the dispatcher when middlewares are configured
(they see 1xx/2xx responses, routr.md §6). Without it every response goes back to the processor (Routr).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from routr_ray.sip import URI, ParseError, parse_uri, split_list
from routr_ray.util.edge_tag import is_edge_tag

__all__ = [
    "DIRECTION_KEY",
    "ECHO_PREFIX",
    "FAILOVER_KEY",
    "GATEWAY_AUTH_KEY",
    "NEXT_HOP_EDGE_KEY",
    "NEXT_HOP_EDGE_TAG_KEY",
    "NEXT_HOP_FLOW_KEY",
    "NEXT_HOP_KEY",
    "RESPONSES_ERRORS_ONLY",
    "RESPONSES_KEY",
    "TRUNK_REF_KEY",
    "HopDirective",
    "gateway_auth_value",
    "read_directive",
]

# Copied from routr_ray.processors.connect.processor (the edge does not import processors/).
NEXT_HOP_KEY = "routr-ray.next-hop"
NEXT_HOP_FLOW_KEY = "routr-ray.next-hop.flow"
NEXT_HOP_EDGE_KEY = "routr-ray.next-hop.edge-port-ref"
NEXT_HOP_EDGE_TAG_KEY = "routr-ray.next-hop.edge-tag"
FAILOVER_KEY = "routr-ray.failover"
DIRECTION_KEY = "routr-ray.call-direction"
# Copied from routr_ray.processors.connect.router (_to_pstn).
TRUNK_REF_KEY = "routr-ray.trunk-ref"
GATEWAY_AUTH_KEY = "routr-ray.gateway-auth"
# Copied from routr_ray.processors.sdk.
RESPONSES_KEY = "routr-ray.responses"
RESPONSES_ERRORS_ONLY = "errors"
ECHO_PREFIX = "routr-ray.echo."
MAX_ECHO_KEYS = 8
MAX_ECHO_VALUE = 256

MAX_FAILOVER = 16  # a bounded serial search (RFC 3261 §16.6 leaves the number of targets to the proxy)


@dataclass(frozen=True, slots=True)
class HopDirective:
    """The processor's instructions for one forwarded request (all optional)."""

    next_hop: URI | None = None
    flow: bool = False
    edge_port_ref: str = ""
    failover: tuple[URI, ...] = ()
    trunk_ref: str = ""
    edge_relays_success: bool = False  # routr-ray.responses=errors: 1xx/2xx go upstream without the processor
    gateway_auth: tuple[str, str] | None = field(default=None, repr=False)  # (username, password) for the trunk
    echo: tuple[tuple[str, str], ...] = ()  # routr-ray.echo.* items: sent back with the branch's responses
    edge_tag: str = ""  # the EdgePort that sends it, by tag (in-dialog requests through another EdgePort)

    @property
    def is_empty(self) -> bool:
        return (self.next_hop is None and not self.failover and not self.trunk_ref and not self.edge_relays_success
                and self.gateway_auth is None and not self.echo)

    def without_next_hop(self, failover: tuple[URI, ...]) -> HopDirective:
        """The directive for a failover branch: routed by its own Request-URI, the rest of the list kept."""
        return HopDirective(None, False, "", failover, self.trunk_ref, self.edge_relays_success, self.gateway_auth,
                            self.echo)


EMPTY = HopDirective()
EDGE_RELAYS_SUCCESS = HopDirective(edge_relays_success=True)


def _uri(text: str) -> URI | None:
    try:
        uri = parse_uri(text.strip().strip("<>"))
    except ParseError:
        return None
    return uri if uri.scheme in ("sip", "sips") and uri.host else None


def read_directive(metadata: Mapping[str, str] | None) -> HopDirective:
    """The directive in a MessageResponse's metadata; unusable values are ignored (never an exception)."""
    if not metadata:
        return EMPTY
    hop_text = metadata.get(NEXT_HOP_KEY)
    failover_text = metadata.get(FAILOVER_KEY)
    trunk_ref = metadata.get(TRUNK_REF_KEY) or ""
    edge_relays = metadata.get(RESPONSES_KEY) == RESPONSES_ERRORS_ONLY
    gateway_auth = _gateway_auth(metadata.get(GATEWAY_AUTH_KEY))
    echo = _echo(metadata)
    if hop_text is None and failover_text is None and not trunk_ref and gateway_auth is None and not echo:
        return EDGE_RELAYS_SUCCESS if edge_relays else EMPTY
    hop = _uri(hop_text) if hop_text else None
    failover: list[URI] = []
    if failover_text:
        try:
            items = split_list(failover_text)
        except ParseError:
            items = []
        for item in items[:MAX_FAILOVER]:
            uri = _uri(item)
            if uri is not None:
                failover.append(uri)
    return HopDirective(
        next_hop=hop,
        flow=hop is not None and (metadata.get(NEXT_HOP_FLOW_KEY) or "").strip().lower() == "true",
        edge_port_ref=(metadata.get(NEXT_HOP_EDGE_KEY) or "").strip(),
        edge_tag=_tag(metadata.get(NEXT_HOP_EDGE_TAG_KEY)),
        failover=tuple(failover),
        trunk_ref=trunk_ref,
        edge_relays_success=edge_relays,
        gateway_auth=gateway_auth,
        echo=echo,
    )


def _echo(metadata: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The ``routr-ray.echo.*`` items, bounded (a processor's label, never a store)."""
    items = [(k, v) for k, v in metadata.items() if k.startswith(ECHO_PREFIX) and len(v) <= MAX_ECHO_VALUE]
    return tuple(sorted(items)[:MAX_ECHO_KEYS])


def _tag(text: str | None) -> str:
    tag = (text or "").strip().lower()
    return tag if is_edge_tag(tag) else ""


def gateway_auth_value(username: str, password: str) -> str:
    """The ``routr-ray.gateway-auth`` value of a trunk's outbound credentials."""
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _gateway_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    try:
        decoded = base64.b64decode(text.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon and username else None
