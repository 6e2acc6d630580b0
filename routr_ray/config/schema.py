"""JSON Schema (Draft 2020-12) validation with messages a person can act on.

The schemas are package data (`routr_ray/config/schemas/*.json`), loaded once and linked through a
`referencing` registry so that `common.json` holds the shared definitions. Nothing is fetched from the
network: every `$ref` resolves inside that registry.

Routr accepts fields it does not know; so do we, with a warning: our schemas say
`additionalProperties: false` and those findings are reported as warnings, never as errors.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry, Resource

from routr_ray.config.location import parse_redis_parameters
from routr_ray.config.problems import Place
from routr_ray.config.values import check_processor_addr, parse_host_port, parse_network

SCHEMA_FILE_BY_KIND: Mapping[str, str] = {
    "EdgePort": "edgeport.json",
    "MessageDispatcher": "dispatcher.json",
    "Location": "location.json",
    "Registry": "registry.json",
    "APIServer": "apiserver.json",
    "Observability": "observability.json",
    "MediaRelay": "mediarelay.json",
    "ConnectTokens": "connecttokens.json",
    "Agent": "agent.json",
    "Peer": "peer.json",
    "Domain": "domain.json",
    "Number": "number.json",
    "Trunk": "trunk.json",
    "Credentials": "credentials.json",
    "AccessControlList": "accesscontrollist.json",
}
_SHARED_SCHEMA_FILES = ("common.json",)


def load_schema(file_name: str) -> dict[str, Any]:
    text = resources.files("routr_ray.config").joinpath("schemas", file_name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _format_checker() -> FormatChecker:
    """Our own formats only (jsonschema's built-in ones are not asserted). Each check raises ValueError
    with the reason, which becomes the error message."""
    checker = FormatChecker(formats=())

    def on_strings(name: str, check: Any) -> None:
        @checker.checks(name, raises=ValueError)
        def _check(value: object) -> bool:
            if isinstance(value, str):
                check(value)
            return True

    def compile_regex(text: str) -> None:
        try:
            re.compile(text)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None

    def redis_parameters(text: str) -> None:
        try:
            parse_redis_parameters(text)
        except ValueError as exc:
            raise ValueError(f"bad Redis parameters: {exc}") from None

    on_strings("ip-network", parse_network)
    on_strings("host-port", parse_host_port)
    on_strings("processor-addr", check_processor_addr)
    on_strings("regex", compile_regex)
    on_strings("redis-parameters", redis_parameters)
    return checker


@cache
def _validators() -> dict[str, Draft202012Validator]:
    files = (*_SHARED_SCHEMA_FILES, *SCHEMA_FILE_BY_KIND.values())
    schemas = {name: load_schema(name) for name in files}
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values()
    )
    checker = _format_checker()
    return {
        kind: Draft202012Validator(schemas[file_name], registry=registry, format_checker=checker)
        for kind, file_name in SCHEMA_FILE_BY_KIND.items()
    }


def check_against_schema(kind: str, document: object, place: Place) -> bool:
    """Record every schema finding for `document` at `place`; True when there is no error."""
    findings = sorted(
        _validators()[kind].iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
    )
    clean = True
    for finding in findings:
        at = place.child(*finding.absolute_path)
        if finding.validator == "additionalProperties":
            for name in _unknown_fields(finding):
                at.child(name).warn("unknown field, ignored")
            continue
        if finding.validator == "required":
            missing = _missing_field(finding)
            if missing is not None:
                at, reason = at.child(missing), "required field is missing"
            else:
                reason = finding.message
        else:
            reason = _reason(finding)
        at.error(reason)
        clean = False
    return clean


def _unknown_fields(finding: ValidationError) -> list[str]:
    known = finding.schema.get("properties", {}) if isinstance(finding.schema, dict) else {}
    instance = finding.instance if isinstance(finding.instance, dict) else {}
    return [str(name) for name in instance if name not in known]


def _missing_field(finding: ValidationError) -> str | None:
    # jsonschema words it "'name' is a required property", one finding per missing name.
    quoted = finding.message.removesuffix(" is a required property")
    try:
        name = ast.literal_eval(quoted)
    except (ValueError, SyntaxError):
        return None
    return name if isinstance(name, str) else None


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping (key: value)",
    "array": "a list",
    "null": "nothing",
}


def describe(value: object) -> str:
    """How a value found in a file is named in messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({value})"


def _reason(finding: ValidationError) -> str:
    value = finding.instance
    rule = finding.validator_value
    schema = finding.schema if isinstance(finding.schema, dict) else {}
    if schema.get("writeOnly") is True:  # a secret (tokens): messages never show it
        return _secret_reason(finding, schema)
    match finding.validator:
        case "type":
            expected = " or ".join(_TYPE_WORDS.get(t, t) for t in ([rule] if isinstance(rule, str) else rule))
            hint = " (quote it in YAML)" if rule == "string" and isinstance(value, int | float | bool) else ""
            return f"expected {expected}, got {describe(value)}{hint}"
        case "enum":
            return f"must be one of {', '.join(map(str, rule))}; got {describe(value)}"
        case "const":
            return f"must be {rule!r}; got {describe(value)}"
        case "format" if finding.cause is not None:
            return str(finding.cause)
        case "pattern":
            wanted = schema.get("description", f"a string matching {rule}")
            return f"expected {wanted}; got {describe(value)}"
        case "minLength" if rule == 1:
            return "must not be empty"
        case "minItems" if rule == 1:
            return "must list at least one item"
        case "maxProperties" if isinstance(value, dict):
            return f"give at most {rule} of these fields, not all of {', '.join(map(str, value))}"
        case "minProperties":
            return f"give at least {rule} field{'s' if rule != 1 else ''}"
        case "minimum" | "exclusiveMinimum" | "maximum" | "exclusiveMaximum" | "maxLength" | "minLength":
            return finding.message
    return finding.message  # any other rule (maxItems, maxProperties, ...): jsonschema's own words


def _secret_reason(finding: ValidationError, schema: dict[str, object]) -> str:
    if finding.validator == "type":
        return f"expected {_TYPE_WORDS.get(str(finding.validator_value), finding.validator_value)} (not shown here)"
    return f"expected {schema.get('description', 'another value')} (the value is not shown here)"
