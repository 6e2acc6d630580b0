"""Prometheus metrics of one EdgePort (DESIGN §8, issue 3 item 7).

Labels come from small closed sets only (never AORs, Call-IDs or addresses): ``method`` is one of the known
SIP methods or ``OTHER``, ``direction`` is ``in``/``out``, ``transport`` a listener name, ``status_class``
``1xx``..``6xx`` for responses and ``request`` for requests; ``reason`` of rejections is a fixed vocabulary
(see :data:`REJECT_REASONS`).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["KNOWN_METHODS", "REJECT_REASONS", "EdgeMetrics", "method_label", "status_class"]

KNOWN_METHODS = frozenset({
    "REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "PRACK", "UPDATE", "INFO",
    "REFER", "SUBSCRIBE", "NOTIFY", "PUBLISH",
})  # fmt: skip

REJECT_REASONS = frozenset({
    "banned_source", "rate_limited", "malformed", "method_not_allowed", "too_many_hops", "loop_detected",
    "no_transaction", "dispatcher_failure", "table_full", "unroutable", "send_failed",
})  # fmt: skip


def method_label(method: str | None) -> str:
    if method is None:
        return "OTHER"
    upper = method.upper()
    return upper if upper in KNOWN_METHODS else "OTHER"


def status_class(status: int | None) -> str:
    """``request`` for a request (status None), else ``1xx``..``6xx``."""
    if status is None:
        return "request"
    return f"{status // 100}xx" if 100 <= status <= 699 else "other"


class EdgeMetrics:
    """One registry per EdgePort (an actor exports it through /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.messages = Counter(
            "routr_sip_messages",
            "SIP messages received (in) and sent (out) by the EdgePort",
            ["method", "direction", "transport", "status_class"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "routr_sip_rejected_messages",
            "SIP messages the EdgePort rejected or dropped, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.active_transactions = Gauge(
            "routr_edge_active_transactions", "Live SIP transactions", ["side"], registry=self.registry
        )
        self.active_connections = Gauge(
            "routr_edge_active_connections", "Live stream connections (TCP, TLS, WS, WSS)", registry=self.registry
        )
        self.dispatcher_latency = Histogram(
            "routr_edge_dispatcher_latency_seconds",
            "Time from handing a message to the dispatcher client to its answer",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        # children cached by label tuple: labels() costs a lock and a dict lookup per call
        self._message_children: dict[tuple[str, str, str, str], Counter] = {}

    def message(self, method: str | None, direction: str, transport: str, status: int | None) -> None:
        key = (method_label(method), direction, transport.lower(), status_class(status))
        child = self._message_children.get(key)
        if child is None:
            child = self._message_children[key] = self.messages.labels(*key)
        child.inc()

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason if reason in REJECT_REASONS else "other").inc()

    def track_transactions(self, server: Callable[[], int], client: Callable[[], int]) -> None:
        self.active_transactions.labels("server").set_function(server)
        self.active_transactions.labels("client").set_function(client)

    def track_connections(self, count: Callable[[], int]) -> None:
        self.active_connections.set_function(count)
