"""Structured logs: a JSON formatter and the Call-ID of the message being handled in the log context.

``ROUTR_RAY_LOG_FORMAT=json`` switches :func:`configure_logging` to one JSON object per line::

    {"ts": "2026-01-01T12:00:00.123Z", "level": "WARNING", "logger": "routr_ray.edge.edgeport",
     "msg": "...", "call_id": "a84b4c76e66710@pc33", "edgeport": "edgeport-01"}

The Call-ID comes from a :mod:`contextvars` variable set with :func:`call_id_context` (or
:func:`set_call_id`) around the handling of one message; asyncio tasks created inside inherit it, so the
records of a whole dispatch carry it. A record's own ``call_id`` attribute (``extra={"call_id": ...}``) wins.
Other ``extra`` fields of a record are added as top-level keys when they are JSON-serializable (else their
``repr``). Any other value of the variable (or none) keeps the plain text format.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "LOG_FORMAT_ENV",
    "TEXT_FORMAT",
    "JsonFormatter",
    "call_id_context",
    "configure_logging",
    "current_call_id",
    "log_context",
    "set_call_id",
]

LOG_FORMAT_ENV = "ROUTR_RAY_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("routr_call_id", default=None)
_fields: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("routr_log_fields", default=None)

# attributes every LogRecord has: not "extra" fields
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def current_call_id() -> str | None:
    return _call_id.get()


def set_call_id(call_id: str | None) -> contextvars.Token[str | None]:
    """Set the Call-ID of the current context; ``_call_id.reset(token)`` is done by :func:`call_id_context`."""
    return _call_id.set(call_id)


@contextlib.contextmanager
def call_id_context(call_id: str | None) -> Iterator[None]:
    """``with call_id_context(request.call_id): ...`` - every record logged inside carries the Call-ID."""
    token = _call_id.set(call_id)
    try:
        yield
    finally:
        _call_id.reset(token)


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Extra fields for every record logged inside (e.g. ``edgeport="edgeport-01"``); nests."""
    token = _fields.set({**(_fields.get() or {}), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record (no newline inside: exceptions are a string field)."""

    def __init__(self, static_fields: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._static = dict(static_fields or {})

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_id = getattr(record, "call_id", None) or _call_id.get()
        if call_id is not None:
            out["call_id"] = call_id
        out.update(self._static)
        out.update(_fields.get() or {})
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = _jsonable(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level: int | str = logging.INFO, *, fmt: str | None = None,
                      static_fields: Mapping[str, str] | None = None,
                      stream: Any = None) -> logging.Handler:
    """Configure the root logger once for a process (CLI, actor ``__init__``): ``fmt`` "json" or "text",
    default from ``ROUTR_RAY_LOG_FORMAT``. Replaces the handlers a previous call installed; returns the handler."""
    chosen = (fmt or os.environ.get(LOG_FORMAT_ENV, "text")).strip().lower()
    handler = logging.StreamHandler(stream)
    handler.set_name("routr-ray")
    if chosen == "json":
        handler.setFormatter(JsonFormatter(static_fields))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "routr-ray"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
