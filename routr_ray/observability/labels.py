"""Metric label values from small closed sets (DESIGN §8): never AORs, Call-IDs, users or addresses.

Shared by every component's metrics (EdgePort, Connect, ...) so the same SIP method is the same label value
everywhere.
"""

from __future__ import annotations

__all__ = ["KNOWN_METHODS", "bounded", "method_label", "status_class"]

KNOWN_METHODS = frozenset({
    "REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "PRACK", "UPDATE", "INFO",
    "REFER", "SUBSCRIBE", "NOTIFY", "PUBLISH",
})  # fmt: skip


def method_label(method: str | None) -> str:
    """The method itself when it is one of :data:`KNOWN_METHODS`, else ``OTHER`` (methods from the wire are
    unbounded)."""
    if method is None:
        return "OTHER"
    upper = method.upper()
    return upper if upper in KNOWN_METHODS else "OTHER"


def status_class(status: int | None) -> str:
    """``request`` for a request (status None), else ``1xx``..``6xx`` (``other`` outside 100-699)."""
    if status is None:
        return "request"
    return f"{status // 100}xx" if 100 <= status <= 699 else "other"


def bounded(value: str, allowed: frozenset[str], other: str = "other") -> str:
    """``value`` when it is in ``allowed``, else ``other``."""
    return value if value in allowed else other
