"""Rate-limited logging: one record per key per interval, counting what was suppressed.

A failing processor, a broken peer or a flood fails every message; logging each one would flood the logs
(DESIGN §8). :class:`RateLimitedLog` is the general tool (moved here from ``routr_ray.dispatch.ratelimit``, same
API); :class:`MessageErrorLog` is the per-message flavour: keyed by an error kind from a small set, with the
message's Call-ID in the record (``call_id`` attribute, shown by the JSON formatter of
:mod:`routr_ray.observability.logs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["MessageErrorLog", "RateLimitedLog"]


class RateLimitedLog:
    """Logs at most once per ``interval`` seconds per key; the next record says how many were dropped."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 1024) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: Any, exc_info: Any = None,
            extra: dict[str, Any] | None = None) -> bool:
        """Log unless ``key`` logged less than ``interval`` ago. Returns whether it logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if last is None and len(self._last) >= self._max_keys:
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        dropped = self._suppressed.pop(key, 0)
        if dropped:
            msg = msg + " (%d similar messages suppressed)"
            args = (*args, dropped)
        if extra is not None:
            extra = {**extra, "suppressed": dropped}
        self._logger.log(level, msg, *args, exc_info=exc_info, extra=extra)
        return True

    def warning(self, key: str, msg: str, *args: Any, exc_info: Any = None) -> bool:
        return self.log(logging.WARNING, key, msg, *args, exc_info=exc_info)

    def error(self, key: str, msg: str, *args: Any, exc_info: Any = None) -> bool:
        return self.log(logging.ERROR, key, msg, *args, exc_info=exc_info)


class MessageErrorLog:
    """Errors about single SIP messages: at most one record per ``kind`` per ``interval``.

    ``kind`` must come from a small closed set ("parse", "dispatcher", "send", ...) - never a Call-ID or an
    address, or the limiter's key table becomes the flood. The Call-ID goes into the record instead.
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = RateLimitedLog(logger, interval=interval, clock=clock, max_keys=256)

    def error(self, kind: str, msg: str, *args: Any, call_id: str | None = None, exc_info: Any = None,
              level: int = logging.WARNING) -> bool:
        extra: dict[str, Any] = {"error_kind": kind}
        if call_id is not None:
            extra["call_id"] = call_id
        return self._log.log(level, kind, msg, *args, exc_info=exc_info, extra=extra)
