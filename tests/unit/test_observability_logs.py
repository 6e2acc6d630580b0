"""Structured logs: JSON lines that parse, the Call-ID from the context, rate-limited per-message errors."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from routr_ray.observability.logs import (
    call_id_context,
    configure_logging,
    current_call_id,
    log_context,
)
from routr_ray.observability.ratelimit import MessageErrorLog, RateLimitedLog


@pytest.fixture
def json_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.setenv("ROUTR_RAY_LOG_FORMAT", "json")
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(logging.DEBUG, stream=stream, static_fields={"component": "edgeport"})
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_parse_and_carry_the_call_id(json_stream: io.StringIO) -> None:
    log = logging.getLogger("routr_ray.test")
    log.info("outside")
    with call_id_context("a84b4c76e66710@pc33"), log_context(edgeport="ep-1"):
        log.warning("bad \"quoted\"\nmulti-line %s", "value", extra={"status": 503})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    assert current_call_id() is None
    first, second, third = lines(json_stream)
    assert "call_id" not in first and first["msg"] == "outside" and first["component"] == "edgeport"
    assert second["call_id"] == "a84b4c76e66710@pc33"
    assert second["msg"] == "bad \"quoted\"\nmulti-line value"
    assert second["level"] == "WARNING" and second["logger"] == "routr_ray.test"
    assert second["status"] == 503 and second["edgeport"] == "ep-1"
    assert str(second["ts"]).endswith("Z")
    assert "RuntimeError: boom" in str(third["exc"]) and third["call_id"] == "a84b4c76e66710@pc33"
    assert len(json_stream.getvalue().splitlines()) == 3  # one line per record, tracebacks included


async def test_call_id_follows_asyncio_tasks(json_stream: io.StringIO) -> None:
    log = logging.getLogger("routr_ray.test")

    async def handle(call_id: str) -> None:
        with call_id_context(call_id):
            await asyncio.sleep(0.001)
            await asyncio.create_task(asyncio.sleep(0))  # a child task inherits the context
            log.info("handled")

    await asyncio.gather(*(handle(f"call-{n}") for n in range(5)))
    ours = [line for line in lines(json_stream) if line["logger"] == "routr_ray.test"]
    assert sorted(str(line["call_id"]) for line in ours) == [f"call-{n}" for n in range(5)]


def test_text_format_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTR_RAY_LOG_FORMAT", raising=False)
    stream = io.StringIO()
    handler = configure_logging(logging.INFO, stream=stream)
    try:
        logging.getLogger("routr_ray.test").info("plain")
    finally:
        logging.getLogger().removeHandler(handler)
    assert stream.getvalue().rstrip().endswith("INFO routr_ray.test: plain")


def test_message_errors_are_rate_limited_per_kind(json_stream: io.StringIO) -> None:
    now = [0.0]
    errors = MessageErrorLog(logging.getLogger("routr_ray.test"), interval=10.0, clock=lambda: now[0])
    logged = [errors.error("parse", "malformed from %s", "10.0.0.1", call_id=f"c{n}") for n in range(100)]
    assert logged.count(True) == 1
    assert errors.error("dispatcher", "unavailable", call_id="d1")  # another kind has its own budget
    now[0] = 11.0
    assert errors.error("parse", "malformed from %s", "10.0.0.2", call_id="c200")
    records = lines(json_stream)
    assert [(r["error_kind"], r["call_id"]) for r in records] == [("parse", "c0"), ("dispatcher", "d1"),
                                                                 ("parse", "c200")]
    assert records[2]["suppressed"] == 99
    assert "(99 similar messages suppressed)" in str(records[2]["msg"])


def test_rate_limited_log_keeps_the_dispatch_api(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("routr_ray.test"), interval=5.0, clock=lambda: now[0])
    assert limited.warning("k", "one")
    assert not limited.error("k", "two")
    now[0] = 6.0
    assert limited.error("k", "three")
    assert [r.getMessage() for r in caplog.records] == ["one", "three (1 similar messages suppressed)"]
