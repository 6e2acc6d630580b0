"""What a config change means for a running EdgePort or Location (issue 18 item 4): pure comparison, no Ray.

``routr-ray deploy`` (and ``routr-ray run --address`` onto a cluster that already runs them) compares the config it
is given with the one the running actors were started with (or last updated to) and sorts every changed field into
one of three kinds:

* **in place**: the running actor takes it without losing anything (its flows, transactions, bindings): the
  EdgePort's guards (``methods``, ``unknownMethodAction``, ``accessControlList``, ``rateLimit``), ``limits``,
  ``localnets``/``externalAddrs``, TLS material (``securityContext``: new connections get it), ``processor.token``,
  ``logLevel``, ``metadata.region`` (routr_ray/edge/reconfigure.py applies them).
* **replace**: a stateless actor started anew, nothing lost but calls in progress on it: the Location gRPC API's
  ``bindAddr`` and ``token``.
* **refused**: the change needs a restart, and a restart would lose state, so the deploy stops before changing
  anything and says which file, which field and why: an EdgePort's listeners (``bindAddr``, ``transport``: ports,
  protocols), ``health``, ``workers``, ``placement``, ``processor.addr``; the Location's ``shards``,
  ``cache.provider`` and ``cache.parameters`` (its Redis).

No change of an address or port is ever applied in place: a deploy can never make a port listen somewhere else.
A field listed nowhere is refused (a field added later is safe by default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from routr_ray.config.edgeport import EdgePortConfig
from routr_ray.config.location import CacheProvider, LocationConfig

IN_PLACE = "in place"
REPLACE = "replace"
REFUSED = "refused"


@dataclass(frozen=True)
class Refusal:
    """A change that cannot be applied to the running actor."""

    file: str
    field: str  # the path in the document, e.g. ``spec.transport``
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"


@dataclass(frozen=True)
class Change:
    """One changed field: its path in the document and what the deploy does with it."""

    field: str
    how: str  # IN_PLACE, REPLACE or REFUSED
    reason: str = ""


@dataclass(frozen=True)
class ConfigDiff:
    """Every changed field of one EdgePort or Location config, in the document's order."""

    what: str  # "EdgePort edgeport-01", "Location"
    file: str
    changes: tuple[Change, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def in_place(self) -> tuple[str, ...]:
        return tuple(c.field for c in self.changes if c.how == IN_PLACE)

    @property
    def replaced(self) -> tuple[str, ...]:
        return tuple(c.field for c in self.changes if c.how == REPLACE)

    @property
    def refusals(self) -> tuple[Refusal, ...]:
        return tuple(Refusal(self.file, c.field, c.reason) for c in self.changes if c.how == REFUSED)

    def summary(self) -> str:
        """One line for the deploy's output."""
        if not self.changes:
            return f"{self.what}: unchanged"
        parts = []
        if self.in_place:
            parts.append("updated in place: " + ", ".join(self.in_place))
        if self.replaced:
            parts.append("restarted (stateless): " + ", ".join(self.replaced))
        if self.refusals:
            parts.append("refused: " + ", ".join(r.field for r in self.refusals))
        return f"{self.what}: " + "; ".join(parts)


@dataclass(frozen=True)
class _Rule:
    name: str  # the field's path in the document
    how: str
    reason: str = ""


_LISTENERS = "the listeners are bound when the EdgePort starts; a restart would drop its flows and transactions"

# EdgePortConfig attribute -> rule. Every attribute of EdgePortConfig must be here (tests/unit checks it).
EDGEPORT_RULES: dict[str, _Rule] = {
    "ref": _Rule("ref", REFUSED, "the ref names the EdgePort's actors (another ref is another EdgePort)"),
    "bind_addr": _Rule("spec.bindAddr", REFUSED, _LISTENERS),
    "transports": _Rule("spec.transport", REFUSED, _LISTENERS + " (a port, address or protocol change)"),
    "external_addrs": _Rule("spec.externalAddrs", IN_PLACE),
    "localnets": _Rule("spec.localnets", IN_PLACE),
    "methods": _Rule("spec.methods", IN_PLACE),
    "unknown_method_action": _Rule("spec.unknownMethodAction", IN_PLACE),
    "processor_addr": _Rule("spec.processor.addr", REFUSED,
                            "the EdgePort's requests in flight are bound to its dispatcher client; restart it to "
                            "point it at another dispatcher"),
    "processor_token": _Rule("spec.processor.token", IN_PLACE),
    "security_context": _Rule("spec.securityContext", IN_PLACE),
    "access_control_list": _Rule("spec.accessControlList", IN_PLACE),
    "rate_limit": _Rule("spec.rateLimit", IN_PLACE),
    "limits": _Rule("spec.limits", IN_PLACE),
    "health": _Rule("spec.health", REFUSED, "the health/metrics port is bound when the EdgePort starts"),
    "region": _Rule("metadata.region", IN_PLACE),
    "workers": _Rule("spec.workers", REFUSED,
                     "each worker holds its own flows and transactions and the kernel spreads sources over them: "
                     "another count needs the EdgePort restarted"),
    "placement": _Rule("spec.placement", REFUSED,
                       "the EdgePort would move to other nodes: its ports and flows would not follow"),
    "log_level": _Rule("spec.logLevel", IN_PLACE),
}

# LocationConfig attribute -> rule (cache is split below: a provider change is reported as such).
LOCATION_RULES: dict[str, _Rule] = {
    "ref": _Rule("ref", IN_PLACE),  # a label only
    "bind_addr": _Rule("spec.bindAddr", REPLACE),
    "token": _Rule("spec.token", REPLACE),
    "shards": _Rule("spec.shards", REFUSED,
                    "every AOR is hashed to a shard by the shard count, in every Connect replica and shard at once; "
                    "changing it live would split AORs between two layouts (stop, change, start: with Redis the "
                    "shards rebalance their slices at start)"),
    "cache": _Rule("spec.cache.parameters", REFUSED,
                   "each shard holds its connection to the store its bindings are in; another Redis needs the shards "
                   "restarted (stop, change, start: they load their slices from the new Redis)"),
}
_PROVIDER = _Rule("spec.cache.provider", REFUSED,
                  "the bindings are in the old store; switching between memory and Redis would lose them")


def _diff(old: Any, new: Any, rules: dict[str, _Rule]) -> list[Change]:
    changes: list[Change] = []
    for item in dataclasses.fields(old):
        if getattr(old, item.name) == getattr(new, item.name):
            continue
        rule = rules.get(item.name)
        if rule is None:  # a field this module does not know: refused, never silently kept
            changes.append(Change(item.name, REFUSED, "this field cannot be changed on a running server"))
        else:
            changes.append(Change(rule.name, rule.how, rule.reason))
    return changes


def edgeport_diff(old: EdgePortConfig, new: EdgePortConfig, *, file: str = "edgeport.yaml",
                  deploy_settings: tuple[Any, Any] | None = None,
                  running_settings: tuple[Any, Any] | None = None) -> ConfigDiff:
    """How to go from the running EdgePort config ``old`` to ``new``. ``deploy_settings``/``running_settings``:
    the dispatch mode and batching of the deploy and of the running actor (``$ROUTR_RAY_EDGE_DISPATCH``,
    ``$ROUTR_RAY_EDGE_BATCHING``): another one is refused too."""
    changes = _diff(old, new, EDGEPORT_RULES)
    if deploy_settings is not None and running_settings is not None and deploy_settings != running_settings:
        changes.append(Change("$ROUTR_RAY_EDGE_DISPATCH / $ROUTR_RAY_EDGE_BATCHING", REFUSED,
                              "the dispatch mode and batching are set when the EdgePort starts"))
    return ConfigDiff(f"EdgePort {new.ref}", file, tuple(changes))


def location_diff(old: LocationConfig, new: LocationConfig, *, file: str = "location.yaml") -> ConfigDiff:
    """How to go from the running Location config ``old`` to ``new`` (``cache`` as the shards use it: a
    ``--redis`` URL already folded in)."""
    changes = _diff(old, new, LOCATION_RULES)
    if old.cache.provider != new.cache.provider:
        changes = [c for c in changes if c.field != LOCATION_RULES["cache"].name]
        changes.append(Change(_PROVIDER.name, _PROVIDER.how, _PROVIDER.reason))
    elif old.cache.provider is CacheProvider.MEMORY:  # the memory provider has no parameters to change
        changes = [c for c in changes if c.field != LOCATION_RULES["cache"].name]
    return ConfigDiff("Location", file, tuple(changes))


@dataclass(frozen=True)
class ShardLayout:
    """What the running Location shards were started with: their count, store provider (``memory``/``redis``) and a
    digest of the store's parameters (its Redis URL; never the URL itself, it may hold a password)."""

    count: int
    provider: str
    store: str = ""


def shards_diff(running: ShardLayout, wanted: ShardLayout, *, file: str = "location.yaml") -> ConfigDiff:
    """How the running shards differ from what a deploy asks for (every difference is refused: see
    :data:`LOCATION_RULES`)."""
    changes: list[Change] = []
    if running.count != wanted.count:
        rule = LOCATION_RULES["shards"]
        changes.append(Change(rule.name, rule.how,
                              f"{running.count} shards run, {wanted.count} asked for: {rule.reason}"))
    if running.provider != wanted.provider:
        changes.append(Change(_PROVIDER.name, _PROVIDER.how,
                              f"the shards run on {running.provider}, {wanted.provider} asked for: {_PROVIDER.reason}"))
    elif running.store != wanted.store:
        rule = LOCATION_RULES["cache"]
        changes.append(Change(rule.name, rule.how, rule.reason))
    return ConfigDiff("Location", file, tuple(changes))


def refusals_of(diffs: Iterable[ConfigDiff]) -> list[Refusal]:
    return [refusal for diff in diffs for refusal in diff.refusals]


def refusal_message(refusals: list[Refusal], *, hint: str = "") -> str:
    """The deploy's error: one line per refused change (file: field: reason), each saying nothing was changed;
    ``hint`` (what to do) on a last line."""
    lines = [f"{refusal} (not applied to the running server; nothing was changed)" for refusal in refusals]
    if hint:
        lines.append(hint)
    return "\n".join(lines)


__all__ = ["EDGEPORT_RULES", "IN_PLACE", "LOCATION_RULES", "REFUSED", "REPLACE", "Change", "ConfigDiff", "Refusal",
           "ShardLayout", "edgeport_diff", "location_diff", "refusal_message", "refusals_of", "shards_diff"]
