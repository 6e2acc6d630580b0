"""The seven Connect resource kinds as the API sees them: where each API field lives in a Routr resource document,
which fields are refs (and to what), and which fields FindBy searches. No protobuf and no I/O here.

The store keeps Routr's own document format (``apiVersion``, ``kind``, ``ref``, ``metadata``, ``spec``, optional
``extended``: routr.md §4), the format of the YAML files: the same JSON Schemas check API writes and files, the same
builders turn both into the objects Connect routes with, and ``routr-ray resources import`` stores a file's
documents as they are (routr-ray's extension fields, e.g. an Agent's ``forking``, included: an API update changes
only the fields the API has and keeps the others).
"""

from __future__ import annotations

from dataclasses import dataclass

API_VERSION = "v2beta1"


@dataclass(frozen=True)
class Field:
    """One API field: ``name`` as in the protos (snake case), ``path`` inside the document."""

    name: str
    path: tuple[str, ...]
    ref_kind: str | None = None  # the field holds the ref of a resource of this kind
    nested: str | None = None  # the resource message field that carries that resource, resolved


@dataclass(frozen=True)
class Kind:
    name: str  # the document kind, e.g. "Agent"
    topic: str  # the CLI topic and the plural in messages, e.g. "agents"
    fields: tuple[Field, ...]
    find_by: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (fieldName as Routr sends it, document path)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def find_path(self, field_name: str) -> tuple[str, ...] | None:
        """The document path FindBy searches for ``field_name`` (camelCase as Routr, or snake case)."""
        wanted = field_name.replace("_", "").lower()
        return next((path for name, path in self.find_by if name.lower() == wanted), None)

    def field_at(self, pointer: str) -> str:
        """The API field name of a JSON pointer into a document (``/spec/domainRef`` -> ``domain_ref``,
        ``/spec/context/egressPolicies/0/numberRef`` -> ``egress_policies[0].number_ref``); the pointer itself when
        no field holds it."""
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        best: Field | None = None
        for f in self.fields:
            if tuple(parts[: len(f.path)]) == f.path and (best is None or len(f.path) > len(best.path)):
                best = f
        if best is None:
            return pointer or "/"
        rest = parts[len(best.path):]
        text = best.name
        for part in rest:
            text += f"[{part}]" if part.isdigit() else f".{_snake(part)}"
        return text


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


NAME = Field("name", ("metadata", "name"))
EXTENDED = Field("extended", ("extended",))

CREDENTIALS = Kind("Credentials", "credentials", (
    NAME,
    Field("username", ("spec", "credentials", "username")),
    Field("password", ("spec", "credentials", "password")),
    EXTENDED,
))

ACL = Kind("AccessControlList", "acl", (
    NAME,
    Field("allow", ("spec", "accessControlList", "allow")),
    Field("deny", ("spec", "accessControlList", "deny")),
    EXTENDED,
))

TRUNK = Kind("Trunk", "trunks", (
    NAME,
    Field("inbound_uri", ("spec", "inbound", "uri")),
    Field("access_control_list_ref", ("spec", "inbound", "accessControlListRef"), "AccessControlList",
          "access_control_list"),
    Field("inbound_credentials_ref", ("spec", "inbound", "credentialsRef"), "Credentials", "inbound_credentials"),
    Field("send_register", ("spec", "outbound", "sendRegister")),
    Field("outbound_credentials_ref", ("spec", "outbound", "credentialsRef"), "Credentials", "outbound_credentials"),
    Field("uris", ("spec", "outbound", "uris")),
    EXTENDED,
), find_by=(("inboundUri", ("spec", "inbound", "uri")), ("sendRegister", ("spec", "outbound", "sendRegister")),
            ("name", ("metadata", "name"))))

NUMBER = Kind("Number", "numbers", (
    NAME,
    Field("tel_url", ("spec", "location", "telUrl")),
    Field("aor_link", ("spec", "location", "aorLink")),
    Field("city", ("metadata", "geoInfo", "city")),
    Field("country", ("metadata", "geoInfo", "country")),
    Field("country_iso_code", ("metadata", "geoInfo", "countryIsoCode")),
    Field("session_affinity_header", ("spec", "location", "sessionAffinityHeader")),
    Field("extra_headers", ("spec", "location", "extraHeaders")),
    Field("trunk_ref", ("spec", "trunkRef"), "Trunk", "trunk"),
    EXTENDED,
), find_by=(("telUrl", ("spec", "location", "telUrl")), ("aorLink", ("spec", "location", "aorLink")),
            ("trunkRef", ("spec", "trunkRef")), ("name", ("metadata", "name"))))

DOMAIN = Kind("Domain", "domains", (
    NAME,
    Field("domain_uri", ("spec", "context", "domainUri")),
    Field("access_control_list_ref", ("spec", "accessControlListRef"), "AccessControlList", "access_control_list"),
    Field("egress_policies", ("spec", "context", "egressPolicies")),
    EXTENDED,
), find_by=(("domainUri", ("spec", "context", "domainUri")), ("name", ("metadata", "name"))))

AGENT = Kind("Agent", "agents", (
    NAME,
    Field("username", ("spec", "username")),
    Field("privacy", ("spec", "privacy")),
    Field("enabled", ("spec", "enabled")),
    Field("domain_ref", ("spec", "domainRef"), "Domain", "domain"),
    Field("credentials_ref", ("spec", "credentialsRef"), "Credentials", "credentials"),
    Field("max_contacts", ("spec", "maxContacts")),
    Field("expires", ("spec", "expires")),
    EXTENDED,
), find_by=(("username", ("spec", "username")), ("domainRef", ("spec", "domainRef")),
            ("name", ("metadata", "name"))))

PEER = Kind("Peer", "peers", (
    NAME,
    Field("username", ("spec", "username")),
    Field("aor", ("spec", "aor")),
    Field("contact_addr", ("spec", "contactAddr")),
    Field("balancing_algorithm", ("spec", "loadBalancing", "algorithm")),
    Field("with_session_affinity", ("spec", "loadBalancing", "withSessionAffinity")),
    Field("access_control_list_ref", ("spec", "accessControlListRef"), "AccessControlList", "access_control_list"),
    Field("credentials_ref", ("spec", "credentialsRef"), "Credentials", "credentials"),
    Field("enabled", ("spec", "enabled")),
    Field("max_contacts", ("spec", "maxContacts")),
    Field("expires", ("spec", "expires")),
    EXTENDED,
), find_by=(("username", ("spec", "username")), ("aor", ("spec", "aor")), ("name", ("metadata", "name"))))

KINDS: dict[str, Kind] = {k.name: k for k in (AGENT, PEER, DOMAIN, NUMBER, TRUNK, CREDENTIALS, ACL)}
KIND_BY_TOPIC: dict[str, Kind] = {k.topic: k for k in KINDS.values()}
# Refs inside lists, which a Field cannot name: (kind, path of the list, key of the ref in each item, its kind).
LIST_REFS = {"Domain": (("spec", "context", "egressPolicies"), "numberRef", "Number")}


def get_path(document: dict, path: tuple[str, ...]) -> object:
    node: object = document
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_path(document: dict, path: tuple[str, ...], value: object) -> None:
    """Set (or, for None, remove) the value at ``path``; empty parent mappings left by a removal are removed."""
    node = document
    for part in path[:-1]:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(path[-1], None)
        _prune(document, path[:-1])
    else:
        node[path[-1]] = value


def _prune(document: dict, path: tuple[str, ...]) -> None:
    for depth in range(len(path), 0, -1):
        parent = get_path(document, path[: depth - 1]) if depth > 1 else document
        child = get_path(document, path[:depth])
        if isinstance(parent, dict) and child == {} and path[depth - 1] not in ("metadata", "spec"):
            del parent[path[depth - 1]]
        else:
            return


def references(kind: Kind, document: dict) -> list[tuple[str, str, str]]:
    """(API field, ref, target kind) of every ref the document holds."""
    found = []
    for f in kind.fields:
        if f.ref_kind:
            value = get_path(document, f.path)
            if isinstance(value, str) and value:
                found.append((f.name, value, f.ref_kind))
    if kind.name in LIST_REFS:
        path, key, target = LIST_REFS[kind.name]
        items = get_path(document, path)
        for index, item in enumerate(items if isinstance(items, list) else ()):
            if isinstance(item, dict) and isinstance(item.get(key), str):
                found.append((kind.field_at("/" + "/".join((*path, str(index), key))), item[key], target))
    return found
