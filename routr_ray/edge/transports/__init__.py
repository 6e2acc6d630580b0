"""Transport listeners by protocol name (the EdgePort config's ``transport[].protocol``).

Usage: ``listener = create_listener("tcp", "0.0.0.0", 5060, on_message)``, then ``await listener.start()``.
"""

from __future__ import annotations

from typing import Any

from routr_ray.edge.transports.base import (
    DEFAULT_PORTS,
    Address,
    Connection,
    Flow,
    Listener,
    MessageHandler,
    StreamErrorHandler,
    Target,
    TransportCounters,
    TransportLimits,
    TransportName,
)
from routr_ray.edge.transports.tcp import TcpListener, TlsListener
from routr_ray.edge.transports.udp import UdpListener
from routr_ray.edge.transports.ws import WsListener, WssListener

LISTENERS: dict[TransportName, type[Listener]] = {
    TransportName.UDP: UdpListener,
    TransportName.TCP: TcpListener,
    TransportName.TLS: TlsListener,
    TransportName.WS: WsListener,
    TransportName.WSS: WssListener,
}


def listener_class(protocol: str) -> type[Listener]:
    """The listener class for a protocol name (case-insensitive); ValueError for an unknown one."""
    try:
        return LISTENERS[TransportName(protocol.strip().lower())]
    except ValueError:
        known = ", ".join(t.value for t in TransportName)
        raise ValueError(f"unknown transport protocol {protocol!r} (expected one of {known})") from None


def create_listener(
    protocol: str, host: str, port: int | None, on_message: MessageHandler, **options: Any
) -> Listener:
    """Build (not start) the listener for ``protocol``; ``port`` None means the protocol's default port.

    ``options`` are the listener's keyword arguments: ``limits``, ``connections``, ``on_stream_error``, and
    for tls/wss ``ssl_context`` (plus ``client_ssl_context`` for tls outbound connections).
    """
    cls = listener_class(protocol)
    return cls(host, DEFAULT_PORTS[cls.transport] if port is None else port, on_message, **options)


__all__ = [
    "DEFAULT_PORTS",
    "LISTENERS",
    "Address",
    "Connection",
    "Flow",
    "Listener",
    "MessageHandler",
    "StreamErrorHandler",
    "Target",
    "TcpListener",
    "TlsListener",
    "TransportCounters",
    "TransportLimits",
    "TransportName",
    "UdpListener",
    "WsListener",
    "WssListener",
    "create_listener",
    "listener_class",
]
