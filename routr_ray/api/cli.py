"""The ``routr-ray`` commands of the provisioning API (issue 20 item 5).

Resource topics with Routr's rctl verbs, against the API's external port (default ``localhost:51908``), flags as
rctl (``-e/--endpoint``, ``-i/--insecure``, ``-c/--cacert``), table output by default, ``-o json|yaml``::

    routr-ray agents get [REF] | describe REF | create --name … | update REF --name … | delete REF…
    (same for peers, domains, numbers, trunks, credentials, acl)

``create`` and ``update`` take one flag per field of Routr's Create/Update requests (``--domain-ref``,
``--max-contacts``, ``--allow 10.0.0.0/8 --allow …``); ``update`` changes exactly the fields given (it sends them
in ``x-field-mask``). The key is ``--key`` or ``$ROUTR_RAY_API_KEY``.

Operator commands work on the database directly (``--database-url`` or ``$ROUTR_RAY_DATABASE_URL``)::

    routr-ray db upgrade                      migrations; the first owner key is printed once
    routr-ray workspaces create NAME | list
    routr-ray keys create --workspace W --role viewer|admin|owner [--name N] | list | revoke ID | generate
    routr-ray resources import DIR [--workspace W]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from routr_ray.api.kinds import KIND_BY_TOPIC, Kind

API_KEY_ENV = "ROUTR_RAY_API_KEY"
DATABASE_URL_ENV = "ROUTR_RAY_DATABASE_URL"
DEFAULT_ENDPOINT = "localhost:51908"
TOPIC_HELP = {"agents": "SIP users of a domain", "peers": "trusted SIP servers (PBX, media server)",
              "domains": "SIP domains and their egress policies", "numbers": "DIDs and where calls to them go",
              "trunks": "SIP providers", "credentials": "usernames and passwords",
              "acl": "access control lists"}
TABLE_COLUMNS = {
    "Agent": ("ref", "name", "username", "domain.domain_uri", "enabled"),
    "Peer": ("ref", "name", "username", "aor", "balancing_algorithm"),
    "Domain": ("ref", "name", "domain_uri", "egress_policies"),
    "Number": ("ref", "name", "tel_url", "aor_link", "trunk.name"),
    "Trunk": ("ref", "name", "inbound_uri", "send_register", "uris"),
    "Credentials": ("ref", "name", "username"),
    "AccessControlList": ("ref", "name", "allow", "deny"),
}


def _fail(message: str) -> int:
    print(f"routr-ray: {message}", file=sys.stderr, flush=True)
    return 1


# -- request flags from the protos ------------------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_request_flags(parser: argparse.ArgumentParser, message: Any, *, skip: tuple[str, ...] = ("ref",)) -> None:
    from google.protobuf.descriptor import FieldDescriptor

    for f in message.DESCRIPTOR.fields:
        if f.name in skip or f.name == "api_version":
            continue
        flag = _flag(f.name)
        repeated = f.is_repeated
        if f.name == "egress_policies":
            parser.add_argument("--egress-policy", dest="egress_policies", action="append", metavar="RULE=NUMBER_REF",
                                help="an egress policy: a regular expression on the dialled user and a Number's ref")
        elif f.name == "extra_headers":
            parser.add_argument("--extra-header", dest="extra_headers", action="append", metavar="NAME=VALUE")
        elif f.name == "uris":
            parser.add_argument("--uri", dest="uris", action="append", metavar="HOST[:PORT][,transport=T,user=U,"
                                "weight=W,priority=P,enabled=false]", help="an outbound URI of the trunk")
        elif f.name == "extended":
            parser.add_argument("--extended", metavar="JSON", help="free-form JSON object")
        elif f.type == FieldDescriptor.TYPE_ENUM:
            parser.add_argument(flag, dest=f.name, choices=[v.name for v in f.enum_type.values])
        elif f.type == FieldDescriptor.TYPE_BOOL:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif f.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            parser.add_argument(flag, dest=f.name, type=int)
        elif repeated:
            parser.add_argument(flag, dest=f.name, action="append", metavar="VALUE")
        else:
            parser.add_argument(flag, dest=f.name, metavar="TEXT")


def _pair(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"{what}: expected A=B, got {text!r}")
    return key, value


def _trunk_uri(text: str) -> dict[str, Any]:
    address, *options = text.split(",")
    host, _, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "")
    uri: dict[str, Any] = {"host": host or address, "port": int(port) if port else 5060, "enabled": True}
    for option in options:
        key, value = _pair(option, "--uri")
        if key in ("weight", "priority", "port"):
            uri[key] = int(value)
        elif key == "enabled":
            uri[key] = value.lower() in ("true", "yes", "1", "on")
        elif key in ("transport", "user"):
            uri[key] = value
        else:
            raise ValueError(f"--uri: unknown option {key!r}")
    return uri


def build_request(message_class: Any, args: argparse.Namespace, *, ref: str | None = None) -> tuple[Any, list[str]]:
    """The request and the fields given (the ``x-field-mask`` of an update)."""
    from google.protobuf.json_format import ParseDict

    request = message_class()
    given: list[str] = []
    if ref is not None:
        request.ref = ref
    for f in message_class.DESCRIPTOR.fields:
        value = getattr(args, f.name, None)
        if value is None or f.name == "ref":
            continue
        given.append(f.name)
        if f.name == "egress_policies":
            for text in value:
                rule, number_ref = _pair(text, "--egress-policy")
                request.egress_policies.add(rule=rule, number_ref=number_ref)
        elif f.name == "extra_headers":
            for text in value:
                name, header_value = _pair(text, "--extra-header")
                request.extra_headers.add(name=name, value=header_value)
        elif f.name == "uris":
            uris = [_trunk_uri(text) for text in value]
            for uri in uris:
                request.uris.add(**uri)
            if any(not u["enabled"] for u in uris):
                given.append("uris.enabled")
        elif f.name == "extended":
            ParseDict(json.loads(value), request.extended)
        elif f.enum_type is not None:
            setattr(request, f.name, f.enum_type.values_by_name[value].number)
        elif f.is_repeated:
            getattr(request, f.name).extend(value)
        else:
            setattr(request, f.name, value)
    return request, given


# -- output -----------------------------------------------------------------------------------------------------


def _as_dict(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _cell(item: dict[str, Any], column: str) -> str:
    value: Any = item
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return ", ".join(str(v.get("host") or v.get("rule") or v) for v in value)
        return ", ".join(map(str, value))
    if value is None or value == {}:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def print_items(kind: Kind, items: list[Any], output: str, *, single: bool = False) -> None:
    import yaml

    dicts = [_as_dict(item) for item in items]
    if output == "json":
        print(json.dumps(dicts[0] if single else dicts, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(dicts[0] if single else dicts, sort_keys=False).rstrip())
    else:
        columns = TABLE_COLUMNS[kind.name]
        rows = [[c.split(".")[0].upper().replace("_", " ") for c in columns]]
        rows += [[_cell(d, c)[:48] for c in columns] for d in dicts]
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# -- the resource commands --------------------------------------------------------------------------------------


def _channel(args: argparse.Namespace) -> Any:
    import grpc

    if args.insecure:
        return grpc.insecure_channel(args.endpoint)
    root = open(args.cacert, "rb").read() if args.cacert else None  # noqa: SIM115 - read at once
    chain = key = None
    if args.client_cert and args.client_key:
        chain, key = open(args.client_cert, "rb").read(), open(args.client_key, "rb").read()  # noqa: SIM115
    return grpc.secure_channel(args.endpoint, grpc.ssl_channel_credentials(root, key, chain))


def _metadata(args: argparse.Namespace, mask: list[str] | None = None) -> list[tuple[str, str]]:
    key = args.key or os.environ.get(API_KEY_ENV, "")
    metadata = [("authorization", f"Bearer {key}")] if key else []
    if args.workspace:
        metadata.append(("x-workspace", args.workspace))
    if mask:
        metadata.append(("x-field-mask", ",".join(mask)))
    return metadata


def _cmd_resource(args: argparse.Namespace) -> int:
    import grpc

    from routr_ray.api.convert import MESSAGES
    from routr_ray.api.service import SERVICES

    kind: Kind = KIND_BY_TOPIC[args.topic]
    messages = MESSAGES[kind.name]
    service = SERVICES[kind.name][2]
    module = sys.modules[messages.resource.__module__]
    stub_class = getattr(sys.modules[module.__name__.replace("_pb2", "_pb2_grpc")], service.rsplit(".", 1)[1] + "Stub")
    request_type = {m.name: m for m in module.DESCRIPTOR.services_by_name[service.rsplit(".", 1)[1]].methods}
    with _channel(args) as channel:
        stub = stub_class(channel)

        def call(method: str, request: Any, mask: list[str] | None = None) -> Any:
            return getattr(stub, method)(request, metadata=_metadata(args, mask), timeout=args.timeout)

        def input_class(method: str) -> Any:
            return getattr(module, request_type[method].input_type.name)

        try:
            if args.verb == "get" and not args.ref:
                items: list[Any] = []
                token = ""
                while True:
                    page = call("List", input_class("List")(page_size=min(args.size, 1000), page_token=token))
                    items += list(page.items)
                    token = page.next_page_token
                    if not token or len(items) >= args.size:
                        break
                print_items(kind, items[: args.size], args.output)
            elif args.verb in ("get", "describe"):
                item = call("Get", input_class("Get")(ref=args.ref))
                print_items(kind, [item], "yaml" if args.verb == "describe" and args.output == "table" else args.output,
                            single=args.verb == "describe")
            elif args.verb == "create":
                request, given = build_request(input_class("Create"), args)
                item = call("Create", request, given)  # zero values given (--privacy PRIVATE) are meant
                print_items(kind, [item], args.output, single=args.output != "table")
            elif args.verb == "update":
                request, given = build_request(input_class("Update"), args, ref=args.ref)
                item = call("Update", request, given)
                print_items(kind, [item], args.output, single=args.output != "table")
            elif args.verb == "delete":
                for ref in args.refs:
                    call("Delete", input_class("Delete")(ref=ref))
                    print(f"deleted {ref}")
        except grpc.RpcError as exc:
            return _fail(f"{exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
        except (ValueError, KeyError) as exc:
            return _fail(str(exc))
    return 0


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-e", "--endpoint", default=os.environ.get("ROUTR_RAY_API_ENDPOINT", DEFAULT_ENDPOINT),
                        help=f"the API's address (default: $ROUTR_RAY_API_ENDPOINT, else {DEFAULT_ENDPOINT})")
    parser.add_argument("-i", "--insecure", action="store_true", help="plaintext, no TLS (a loopback port)")
    parser.add_argument("-c", "--cacert", metavar="FILE", help="the CA certificate that signs the server's")
    parser.add_argument("--client-cert", metavar="FILE", help="client certificate (mTLS)")
    parser.add_argument("--client-key", metavar="FILE", help="client private key (mTLS)")
    parser.add_argument("--key", help=f"the API key (default: ${API_KEY_ENV})")
    parser.add_argument("-w", "--workspace", help="the workspace (default: the key's only one)")
    parser.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S", help="gRPC deadline")


def _add_topic(sub: Any, kind: Kind) -> None:
    from routr_ray.api.convert import MESSAGES

    topic = sub.add_parser(kind.topic, help=f"{TOPIC_HELP[kind.topic]} (provisioning API)",
                           description=f"{kind.name} resources through the provisioning API.")
    verbs = topic.add_subparsers(dest="verb", metavar="VERB", required=True)
    get = verbs.add_parser("get", help=f"list {kind.topic}, or show one")
    get.add_argument("ref", nargs="?", metavar="REF")
    get.add_argument("-s", "--size", type=int, default=50, help="how many to list (default 50)")
    describe = verbs.add_parser("describe", help="everything about one, refs resolved")
    describe.add_argument("ref", metavar="REF")
    create = verbs.add_parser("create", help=f"create one ({kind.name})")
    _add_request_flags(create, MESSAGES[kind.name].create)
    update = verbs.add_parser("update", help="change the fields given")
    update.add_argument("ref", metavar="REF")
    _add_request_flags(update, MESSAGES[kind.name].update)
    delete = verbs.add_parser("delete", help="delete (refused while others refer to it)")
    delete.add_argument("refs", nargs="+", metavar="REF")
    for parser in (get, describe, create, update, delete):
        _connection_flags(parser)
        parser.set_defaults(func=_cmd_resource, topic=kind.topic)


# -- operator commands (the database directly) -----------------------------------------------------------------


def _database_url(args: argparse.Namespace) -> str:
    url = args.database_url or os.environ.get(DATABASE_URL_ENV)
    if not url and args.config:
        from pathlib import Path

        from routr_ray.config import load_config_dir

        config = load_config_dir(Path(args.config))
        url = config.api.database() if config.api else None
    if not url:
        raise ValueError(f"no database: give --database-url, ${DATABASE_URL_ENV}, or --config DIR with an APIServer "
                         "that has spec.database.url")
    return url


def _with_store(args: argparse.Namespace, work: Callable[[Any], Any], *, migrate: bool = False) -> int:
    from routr_ray.api.errors import ApiError
    from routr_ray.api.startup import redacted_url
    from routr_ray.api.store.postgres import PostgresStore

    try:
        url = _database_url(args)
    except ValueError as exc:
        return _fail(str(exc))

    async def run() -> Any:
        store = await PostgresStore.open(url, migrate=migrate, max_size=2)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        result = asyncio.run(run())
    except ApiError as exc:
        return _fail(exc.message)
    except Exception as exc:  # noqa: BLE001 - one line
        lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        return _fail(f"database {redacted_url(url)}: {lines[-1]}")
    return int(result or 0)


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from routr_ray.api.secrets import SecretsKeyError
    from routr_ray.api.startup import prepare_database, redacted_url

    try:
        url = _database_url(args)
        prepared = asyncio.run(prepare_database(url, load=False))
    except (ValueError, SecretsKeyError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001
        lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        return _fail(f"database: {lines[-1]}")
    print(f"{redacted_url(url)}: " + (f"applied {', '.join(prepared.applied)}" if prepared.applied else "up to date"))
    if prepared.owner_key:
        print(f"first owner key of workspace 'default' (shown once, keep it):\n{prepared.owner_key}")
    return 0


def _cmd_workspaces(args: argparse.Namespace) -> int:
    async def work(store: Any) -> int:
        if args.action == "create":
            created = await store.create_workspace(args.name)
            print(f"workspace {args.name} " + ("created" if created else "exists already"))
        else:
            for name, count in await store.workspaces():
                print(f"{name}\t{count} resource(s)")
        return 0
    return _with_store(args, work)


def _cmd_keys(args: argparse.Namespace) -> int:
    if args.action == "generate":
        from routr_ray.api.rbac import new_key

        print(new_key().text)
        return 0

    async def work(store: Any) -> int:
        if args.action == "create":
            print(await store.create_key({args.workspace: args.role}, name=args.name or ""))
        elif args.action == "revoke":
            if not await store.revoke_key(args.key_id):
                print(f"routr-ray: no live key {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}")
        else:
            for key in await store.keys():
                roles = ", ".join(f"{w}:{r}" for w, r in sorted(key["roles"].items()))
                state = f"revoked {key['revoked']}" if key["revoked"] else "live"
                print(f"{key['id']}\t{roles}\t{state}\t{key['name']}")
        return 0
    return _with_store(args, work)


def _cmd_import(args: argparse.Namespace) -> int:
    from routr_ray.api.importing import documents_to_import
    from routr_ray.api.secrets import Sealer, SecretsKeyError
    from routr_ray.config import ConfigInvalid

    try:
        items = documents_to_import(args.directory, Sealer.from_env())
    except ConfigInvalid as exc:
        for error in exc.errors:
            print(str(error), file=sys.stderr)
        return _fail(f"{len(exc.errors)} error(s): nothing imported")
    except SecretsKeyError as exc:
        return _fail(str(exc))

    async def work(store: Any) -> int:
        count = await store.import_documents(args.workspace, items)
        print(f"imported {count} resource(s) into workspace {args.workspace}")
        return 0
    return _with_store(args, work)


def _database_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", metavar="URL", help=f"postgresql://… (default: ${DATABASE_URL_ENV})")
    parser.add_argument("--config", metavar="DIR", help="take the URL from this config directory's APIServer")


def register(sub: Any) -> None:
    """Add the API's commands to ``routr-ray``'s subparsers."""
    for kind in KIND_BY_TOPIC.values():
        _add_topic(sub, kind)

    db = sub.add_parser("db", help="the provisioning API's database")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply the schema migrations (the first owner key is printed once)",
                                description=f"Needs ${DATABASE_URL_ENV} (or --database-url) and "
                                "$ROUTR_RAY_SECRETS_KEY.")
    _database_flags(upgrade)
    upgrade.set_defaults(func=_cmd_db_upgrade)

    workspaces = sub.add_parser("workspaces", help="tenants of the provisioning API")
    ws_sub = workspaces.add_subparsers(dest="action", metavar="ACTION", required=True)
    ws_create = ws_sub.add_parser("create", help="create a workspace")
    ws_create.add_argument("name", metavar="NAME")
    ws_list = ws_sub.add_parser("list", help="list the workspaces")
    for parser in (ws_create, ws_list):
        _database_flags(parser)
        parser.set_defaults(func=_cmd_workspaces)

    keys = sub.add_parser("keys", help="API keys and their roles")
    keys_sub = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--workspace", required=True)
    create.add_argument("--role", required=True, choices=("viewer", "admin", "owner"))
    create.add_argument("--name", help="a note about who holds it")
    listing = keys_sub.add_parser("list", help="list the keys (ids and roles, never secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id", metavar="ID")
    for parser in (create, listing, revoke):
        _database_flags(parser)
        parser.set_defaults(func=_cmd_keys)
    generate = keys_sub.add_parser("generate", help=f"print a new random key (for ${API_KEY_ENV} without a database)")
    generate.set_defaults(func=_cmd_keys)

    resources = sub.add_parser("resources", help="resource files and the database")
    res_sub = resources.add_subparsers(dest="action", metavar="ACTION", required=True)
    importing = res_sub.add_parser("import", help="load a YAML/JSON resource directory into the database",
                                   description="Checks the files as `validate-config` does, then stores every "
                                   "resource in one transaction (all or nothing), refs and passwords as they are "
                                   "(passwords sealed with $ROUTR_RAY_SECRETS_KEY).")
    importing.add_argument("directory", metavar="DIR")
    importing.add_argument("--workspace", default="default")
    _database_flags(importing)
    importing.set_defaults(func=_cmd_import)
