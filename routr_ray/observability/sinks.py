"""Event sinks: log, NATS and Redis pub/sub, and the environment that chooses them (none by default).

Subjects and channels are ``<prefix>.<event name>`` with prefix ``routr`` by default (Routr's NATS publisher:
``<NATS_PUBLISHER_SUBJECT|routr>.<event>``); the payload is the JSON of the event's data.

Environment (:func:`sinks_from_env`; Routr's own names are accepted where Routr has one):

=================================  ======================================================================
``ROUTR_RAY_EVENTS_LOG``           ``true`` / ``false`` (default, as Routr); Routr: ``CONSOLE_PUBLISHER_ENABLED``
``ROUTR_RAY_EVENTS_NATS_URL``      e.g. ``nats://127.0.0.1:4222`` (comma-separated servers); Routr:
                                   ``NATS_PUBLISHER_ENABLED=true`` + ``NATS_PUBLISHER_URL``
``ROUTR_RAY_EVENTS_NATS_SUBJECT``  subject prefix, default ``routr``; Routr: ``NATS_PUBLISHER_SUBJECT``
``ROUTR_RAY_EVENTS_REDIS_URL``     e.g. ``redis://127.0.0.1:6380/0``
``ROUTR_RAY_EVENTS_REDIS_CHANNEL`` channel prefix, default ``routr``
=================================  ======================================================================

The NATS client (``nats-py``) and ``redis.asyncio`` are imported when such a sink is built, so the log sink
needs neither.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from routr_ray.observability.events import Event

__all__ = ["DEFAULT_PREFIX", "LogSink", "NatsSink", "RedisSink", "sinks_from_env"]

DEFAULT_PREFIX = "routr"
EVENTS_LOGGER = "routr_ray.events"


class LogSink:
    """One INFO record per event on ``routr_ray.events``: ``<name> <json>``, with ``event`` and ``data``
    as record fields (top-level keys in the JSON log format)."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self._logger = logger or logging.getLogger(EVENTS_LOGGER)
        self._level = level

    async def publish(self, event: Event) -> None:
        if self._logger.isEnabledFor(self._level):
            text = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
            self._logger.log(self._level, "%s %s", event.name, text, extra={"event": event.name,
                                                                           "data": dict(event.data)})

    async def close(self) -> None:
        return None


class NatsSink:
    """Publishes to NATS core subjects ``<prefix>.<event>``; connects on first use and reconnects forever
    (nats-py buffers what is published while disconnected, up to its pending limit)."""

    name = "nats"

    def __init__(self, servers: str | list[str], *, prefix: str = DEFAULT_PREFIX,
                 connect_timeout: float = 2.0) -> None:
        self.servers = [s.strip() for s in servers.split(",")] if isinstance(servers, str) else list(servers)
        self.prefix = prefix
        self._connect_timeout = connect_timeout
        self._client: Any = None

    async def _connection(self) -> Any:
        if self._client is None or self._client.is_closed:
            import nats

            self._client = await nats.connect(
                servers=self.servers,
                connect_timeout=self._connect_timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                name="routr-ray-events",
            )
        return self._client

    async def publish(self, event: Event) -> None:
        client = await self._connection()
        await client.publish(event.subject(self.prefix), event.payload())

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            await client.drain()


class RedisSink:
    """``PUBLISH <prefix>.<event> <json>`` on a Redis server (redis-py's asyncio client, one pooled
    connection)."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, socket_timeout: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self._socket_timeout = socket_timeout
        self._client: Any = None

    def _connection(self) -> Any:
        if self._client is None:
            from redis import asyncio as aioredis

            self._client = aioredis.from_url(
                self.url, socket_timeout=self._socket_timeout, socket_connect_timeout=self._socket_timeout
            )
        return self._client

    async def publish(self, event: Event) -> None:
        await self._connection().publish(event.subject(self.prefix), event.payload())

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _flag(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def sinks_from_env(environ: Mapping[str, str] | None = None) -> list[LogSink | NatsSink | RedisSink]:
    """The sinks the environment asks for (see the module docstring). The log sink is off unless asked for, as
    Routr's console publisher: one INFO line per registration and per call would flood the log under load."""
    env = os.environ if environ is None else environ
    sinks: list[LogSink | NatsSink | RedisSink] = []
    log_on = env.get("ROUTR_RAY_EVENTS_LOG", env.get("CONSOLE_PUBLISHER_ENABLED"))
    if _flag(log_on, False):
        sinks.append(LogSink())
    nats_url = env.get("ROUTR_RAY_EVENTS_NATS_URL")
    if not nats_url and _flag(env.get("NATS_PUBLISHER_ENABLED"), False):
        nats_url = env.get("NATS_PUBLISHER_URL", "nats://127.0.0.1:4222")
    if nats_url:
        subject = env.get("ROUTR_RAY_EVENTS_NATS_SUBJECT") or env.get("NATS_PUBLISHER_SUBJECT") or DEFAULT_PREFIX
        sinks.append(NatsSink(nats_url, prefix=subject))
    redis_url = env.get("ROUTR_RAY_EVENTS_REDIS_URL")
    if redis_url:
        sinks.append(RedisSink(redis_url, prefix=env.get("ROUTR_RAY_EVENTS_REDIS_CHANNEL") or DEFAULT_PREFIX))
    return sinks
