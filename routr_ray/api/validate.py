"""Checking a resource document written through the API with the checks the YAML files get (the JSON Schemas of
``routr_ray/config/schemas`` and the resource builders), with errors that name the API field
(``domain_ref: required field is missing``) instead of a file and a JSON pointer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from routr_ray.api.errors import invalid
from routr_ray.api.kinds import Kind, references
from routr_ray.config.problems import Place, Problems
from routr_ray.config.resources import RESOURCE_BUILDERS
from routr_ray.config.schema import check_against_schema


@dataclass(frozen=True)
class Checked:
    """A valid document and what the store must keep true for it."""

    document: dict
    references: list[tuple[str, str, str]] = field(default_factory=list)  # (API field, ref, target kind)
    uniques: list[tuple[str, str, str]] = field(default_factory=list)  # (label, value, API field)


def check(kind: Kind, document: dict) -> Checked:
    """Raise ApiError(INVALID_ARGUMENT) naming every bad field, else what the store needs to know."""
    problems = Problems()
    place = Place(problems, "request")
    if check_against_schema(kind.name, document, place):
        built = RESOURCE_BUILDERS[kind.name](document, place)
        uniques = [(u.label, json.dumps(u.value, sort_keys=True), kind.field_at(u.place.pointer))
                   for u in built.unique_values]
    else:
        uniques = []
    if problems.errors:
        raise invalid("; ".join(f"{kind.field_at(e.pointer)}: {e.reason}" for e in problems.errors))
    return Checked(document, references(kind, document), uniques)
