"""Protobuf <-> resource documents for the connect API (Routr's messages and field numbers, protos/*.proto).

Requests become edits of a document (:func:`apply_request`); stored documents become the resource messages, refs
replaced by the resources they name, nested as Routr's pgdata returns them (:func:`to_message`).

proto3 cannot tell a field that was not sent from one sent with its zero value ("", 0, false, the first enum
value). So a zero value means *not given*: on Create the resource's default (an Agent is enabled and its privacy
NONE unless said otherwise), on Update the stored value is kept. To set a field to its zero value (disable an
Agent, clear a ref, privacy PRIVATE on update) name it in the ``x-field-mask`` metadata (comma-separated API
field names); a named field is taken exactly as sent. ``routr-ray``'s resource CLI sends the mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message

from routr_ray.api.errors import invalid
from routr_ray.api.kinds import KINDS, LIST_REFS, Field, Kind, get_path, references, set_path
from routr_ray.api.store.base import Stored
from routr_ray.proto.gen import (
    acl_pb2,
    agents_pb2,
    credentials_pb2,
    domains_pb2,
    numbers_pb2,
    peers_pb2,
    trunks_pb2,
)

FIELD_MASK_METADATA = "x-field-mask"
NEST_DEPTH = 4  # Agent -> Domain -> EgressPolicy.number -> Number -> Trunk -> ACL / Credentials
DEFAULT_TRUNK_PORT = 5060


@dataclass(frozen=True)
class Messages:
    """The protobuf classes of one kind."""

    resource: type[Message]
    create: type[Message]
    update: type[Message]
    list_response: type[Message]
    find_response: type[Message] | None


MESSAGES: dict[str, Messages] = {
    "Agent": Messages(agents_pb2.Agent, agents_pb2.CreateAgentRequest, agents_pb2.UpdateAgentRequest,
                      agents_pb2.ListAgentsResponse, agents_pb2.FindByResponse),
    "Peer": Messages(peers_pb2.Peer, peers_pb2.CreatePeerRequest, peers_pb2.UpdatePeerRequest,
                     peers_pb2.ListPeersResponse, peers_pb2.FindByResponse),
    "Domain": Messages(domains_pb2.Domain, domains_pb2.CreateDomainRequest, domains_pb2.UpdateDomainRequest,
                       domains_pb2.ListDomainsResponse, domains_pb2.FindByResponse),
    "Number": Messages(numbers_pb2.Number, numbers_pb2.CreateNumberRequest, numbers_pb2.UpdateNumberRequest,
                       numbers_pb2.ListNumbersResponse, numbers_pb2.FindByResponse),
    "Trunk": Messages(trunks_pb2.Trunk, trunks_pb2.CreateTrunkRequest, trunks_pb2.UpdateTrunkRequest,
                      trunks_pb2.ListTrunksResponse, trunks_pb2.FindByResponse),
    "Credentials": Messages(credentials_pb2.Credentials, credentials_pb2.CreateCredentialsRequest,
                            credentials_pb2.UpdateCredentialsRequest, credentials_pb2.ListCredentialsResponse, None),
    "AccessControlList": Messages(acl_pb2.AccessControlList, acl_pb2.CreateACLRequest, acl_pb2.UpdateACLRequest,
                                  acl_pb2.ListACLsResponse, None),
}

_ALGORITHMS = {1: "round-robin", 2: "least-sessions"}
_ALGORITHM_NUMBERS = {v: k for k, v in _ALGORITHMS.items()}


# -- request -> document ------------------------------------------------------------------------------------


def field_mask(metadata: Iterable[tuple[str, str | bytes]] | None) -> frozenset[str]:
    names: set[str] = set()
    for key, value in metadata or ():
        if key.lower() == FIELD_MASK_METADATA:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            names.update(n.strip() for n in text.split(",") if n.strip())
    return frozenset(names)


def _trunk_uri(uri: Any, exact_enabled: bool) -> dict:
    inner: dict[str, Any] = {"host": uri.host, "port": uri.port or DEFAULT_TRUNK_PORT,
                             "transport": (uri.transport or "udp").lower()}
    if uri.user:
        inner["user"] = uri.user
    # enabled unless sent false with `uris.enabled` in the field mask
    return {"uri": inner, "priority": uri.priority, "weight": uri.weight or 1,
            "enabled": uri.enabled or not exact_enabled}


def _request_value(f: Field, request: Message, mask: frozenset[str]) -> tuple[Any, bool]:
    """(document value, whether the request carried a non-zero value) of ``f``."""
    raw = getattr(request, f.name)
    if f.name == "extended":
        present = request.HasField("extended")
        return (MessageToDict(raw) if present else None), present
    if f.name == "privacy":
        return ("NONE" if raw == 1 else "PRIVATE"), raw != 0
    if f.name == "balancing_algorithm":
        return _ALGORITHMS.get(raw), raw in _ALGORITHMS
    if f.name == "egress_policies":
        return [{"rule": p.rule, "numberRef": p.number_ref} for p in raw] or None, len(raw) > 0
    if f.name == "extra_headers":
        return [{"name": h.name, "value": h.value} for h in raw] or None, len(raw) > 0
    if f.name == "uris":
        return [_trunk_uri(u, "uris.enabled" in mask) for u in raw] or None, len(raw) > 0
    if f.name in ("allow", "deny"):
        return list(raw) or None, len(raw) > 0
    if isinstance(raw, bool):
        return raw, raw
    if isinstance(raw, int):
        return (raw or None), raw != 0
    if isinstance(raw, str):
        return (raw or None), raw != ""
    return raw, True


def apply_request(kind: Kind, request: Message, document: dict, *, mask: frozenset[str] = frozenset()) -> dict:
    """Write the fields ``request`` carries into ``document`` (see the module docstring for zero values); fields
    the request type does not have (``username`` on Update, ``tel_url`` after Create) are left as they are."""
    names = set(request.DESCRIPTOR.fields_by_name)
    unknown = mask - names - {"uris.enabled"}
    if unknown:
        raise invalid(f"{FIELD_MASK_METADATA}: {', '.join(sorted(unknown))}: not a field of "
                      f"{request.DESCRIPTOR.name}")
    for f in kind.fields:
        if f.name not in names:
            continue
        value, given = _request_value(f, request, mask)
        if given or f.name in mask:
            set_path(document, f.path, value)  # None removes the field
    return document


def new_document(kind: Kind, request: Message, mask: frozenset[str] = frozenset()) -> dict:
    document: dict[str, Any] = {"metadata": {}, "spec": {}}
    return apply_request(kind, request, document, mask=mask)


# -- document -> message ------------------------------------------------------------------------------------


def _set(message: Message, f: Field, value: Any) -> None:
    target = getattr(message, f.name)
    if f.name == "extended":
        if isinstance(value, dict):
            ParseDict(value, message.extended if isinstance(target, struct_pb2.Struct) else target)
    elif f.name == "privacy":
        message.privacy = 0 if str(value).upper() == "PRIVATE" else 1  # type: ignore[attr-defined]
    elif f.name == "balancing_algorithm":
        message.balancing_algorithm = _ALGORITHM_NUMBERS.get(value, 0)  # type: ignore[attr-defined]
    elif f.name == "extra_headers":
        for h in value or ():
            target.add(name=h["name"], value=h["value"])
    elif f.name == "uris":
        for u in value or ():
            uri = u["uri"]
            target.add(host=uri["host"], port=uri["port"], transport=uri["transport"].lower(), user=uri.get("user", ""),
                       weight=u.get("weight", 1), priority=u.get("priority", 0), enabled=u.get("enabled", True))
    elif f.name in ("allow", "deny"):
        target.extend(value or ())
    elif f.name == "password":
        return  # write-only: never sent back
    elif value is not None and not isinstance(target, Message):
        setattr(message, f.name, value)


Resolved = dict[str, Stored]


def to_message(item: Stored, resolved: Resolved, depth: int = NEST_DEPTH) -> Message:
    """The resource message of a stored document, its refs replaced by the resources in ``resolved``."""
    kind = KINDS[item.kind]
    message = MESSAGES[item.kind].resource()
    doc = item.document
    message.ref = item.ref  # type: ignore[attr-defined]
    message.api_version = str(doc.get("apiVersion", "v2beta1"))  # type: ignore[attr-defined]
    message.created_at = item.created_at  # type: ignore[attr-defined]
    message.updated_at = item.updated_at  # type: ignore[attr-defined]
    names = message.DESCRIPTOR.fields_by_name
    defaults = {"enabled": True} if item.kind in ("Agent", "Peer") else {}
    if item.kind == "Agent":
        defaults["privacy"] = "NONE"
    for f in kind.fields:
        value = get_path(doc, f.path)
        if value is None:
            value = defaults.get(f.name)
        if f.ref_kind:
            target = resolved.get(value) if isinstance(value, str) else None
            if f.nested and target is not None and depth > 0:
                getattr(message, f.nested).CopyFrom(to_message(target, resolved, depth - 1))
        elif f.name == "egress_policies":
            for policy in value or ():
                entry = message.egress_policies.add(rule=policy["rule"], number_ref=policy["numberRef"])  # type: ignore[attr-defined]
                number = resolved.get(policy["numberRef"])
                if number is not None and depth > 0:
                    entry.number.CopyFrom(to_message(number, resolved, depth - 1))
        elif f.name in names:
            _set(message, f, value)
    return message


def refs_to_resolve(items: Iterable[Stored]) -> set[str]:
    found: set[str] = set()
    for item in items:
        found.update(ref for _, ref, _ in references(KINDS[item.kind], item.document))
    return found


async def resolve_all(items: list[Stored], fetch: Callable[[list[str]], Any], depth: int = NEST_DEPTH) -> Resolved:
    """Everything the messages of ``items`` nest, fetched level by level (``fetch(refs)`` -> {ref: Stored})."""
    resolved: Resolved = {}
    wanted = refs_to_resolve(items)
    for _ in range(depth):
        wanted -= set(resolved)
        if not wanted:
            break
        found = await fetch(sorted(wanted))
        resolved.update(found)
        wanted = refs_to_resolve(found.values())
    return resolved


assert set(MESSAGES) == set(KINDS) and all(k in KINDS for k in LIST_REFS)
