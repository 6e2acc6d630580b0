"""A new EdgePort config applied to a running :class:`~routr_ray.edge.edgeport.EdgePort` (issue 18 item 4).

``routr-ray deploy`` with a changed ``edgeport.yaml`` calls this (through the actor's ``reconfigure``) instead of
replacing the EdgePort, so its flows, transactions and the registrations that point at them stay. What may change
here is decided by :mod:`routr_ray.config.changes`; this module only applies it:

* guards: ``methods``/``unknownMethodAction`` (the next request), ``accessControlList`` (the next message of any
  source, open connections included), ``rateLimit`` (:meth:`RateLimiter.update`: buckets and running bans kept,
  a newly trusted source unbanned);
* ``limits``: the connection caps apply to the next connection; ``maxMessageSize`` and ``idleTimeoutSeconds`` to
  every connection (the listeners share one :class:`TransportLimits`);
* ``localnets``/``externalAddrs``: the next MessageRequest and the next address the EdgePort advertises;
* ``securityContext``: new TLS/WSS handshakes get the new certificate, key and trust store; open connections keep
  theirs (tlsutil.ReloadableServerContext);
* ``processor.token``: the next call to a ``host:port`` dispatcher;
* ``logLevel``: the ``routr_ray`` loggers of this process.

Nothing here binds, closes or moves a listener: a change of an address or port (``bindAddr``, ``transport``,
``health``) is refused before anything is applied (a config change can never widen what a port exposes), and so is
everything else :mod:`routr_ray.config.changes` refuses. Everything that can fail (a certificate that cannot be
read) is prepared first: a refused or failing change leaves the running EdgePort as it was.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from routr_ray.config.changes import ConfigDiff, edgeport_diff, refusal_message
from routr_ray.config.edgeport import EdgePortConfig
from routr_ray.edge.guards import MethodFilter, SourceGuard
from routr_ray.grpcutil.auth import bearer_metadata

if TYPE_CHECKING:
    from routr_ray.edge.edgeport import EdgePort

log = logging.getLogger(__name__)

LOGGER = "routr_ray"  # the loggers ``logLevel`` sets


class ConfigRefused(ValueError):
    """The new config has a change the running EdgePort cannot take; nothing was changed. The message names the
    file, the field and why (one line per refused change)."""

    def __init__(self, diff: ConfigDiff) -> None:
        super().__init__(refusal_message(list(diff.refusals)))
        self.diff = diff


def apply_log_level(level: str) -> None:
    """``spec.logLevel``: the level of this process's ``routr_ray`` loggers."""
    logging.getLogger(LOGGER).setLevel(getattr(logging, level.upper(), logging.INFO))


def reconfigure(edge: EdgePort, new: EdgePortConfig, *, file: str = "edgeport.yaml") -> ConfigDiff:
    """Apply ``new`` to the running ``edge`` in place and return what changed; :class:`ConfigRefused` (nothing
    changed) when a change cannot be applied in place, :class:`~routr_ray.edge.tlsutil.TlsConfigError` (nothing
    changed) when a new ``securityContext`` cannot be used."""
    old = edge.config
    diff = edgeport_diff(old, new, file=file)
    if diff.refusals or diff.replaced:
        raise ConfigRefused(diff)
    if not diff.changed:
        return diff
    tls = _new_tls_context(edge, new) if old.security_context != new.security_context else None
    # from here on nothing fails
    if (old.methods, old.unknown_method_action) != (new.methods, new.unknown_method_action):
        edge.methods = MethodFilter(new.methods, new.unknown_method_action)
    if old.access_control_list != new.access_control_list:
        edge.sources = SourceGuard(new.access_control_list)
    if old.rate_limit != new.rate_limit:
        edge.rate.update(new.rate_limit)
    if old.limits != new.limits:
        _apply_limits(edge, new)
    if (old.localnets, old.external_addrs) != (new.localnets, new.external_addrs):
        edge.set_addresses(new.localnets, new.external_addrs)
    if tls is not None:
        edge.reload_tls(tls)
    if old.processor_token != new.processor_token:
        _apply_token(edge, new.processor_token)
    if old.log_level != new.log_level:
        apply_log_level(new.log_level)
    edge.config = new
    log.info("EdgePort %s: %s", new.ref, diff.summary())
    return diff


def _new_tls_context(edge: EdgePort, new: EdgePortConfig) -> Any:
    """The server context of the new ``securityContext`` (None without TLS/WSS listeners: the next start reads
    the config); raises TlsConfigError when the files cannot be used."""
    if not any(name.is_secure for name in edge.listeners):
        return None
    from routr_ray.edge.tlsutil import server_context_from_config

    return server_context_from_config(new.security_context, ["localhost"])


def _apply_limits(edge: EdgePort, new: EdgePortConfig) -> None:
    limits = new.limits
    edge.connections.max_connections = limits.max_connections
    edge.connections.max_connections_per_source = limits.max_connections_per_source
    transport = edge.transport_limits
    transport.max_message_size = limits.max_message_size
    transport.idle_timeout = limits.idle_timeout_seconds


def _apply_token(edge: EdgePort, token: str | None) -> None:
    """A ``host:port`` dispatcher's client sends ``token`` from the next call on (a ``serve://`` one has none)."""
    client = edge.dispatcher.client
    if hasattr(client, "metadata"):
        client.metadata = bearer_metadata(token)


__all__ = ["LOGGER", "ConfigRefused", "apply_log_level", "reconfigure"]
