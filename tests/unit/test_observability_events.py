"""Call events: Routr's names and fields, when the EdgePort emits them, and a publisher that never blocks."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

import pytest

from routr_ray.observability.call_events import CallEventEmitter
from routr_ray.observability.events import Event, call_ended, hangup_cause, iso_time
from routr_ray.observability.publisher import EventPublisher
from routr_ray.observability.sinks import LogSink, NatsSink, RedisSink, sinks_from_env
from routr_ray.sip import Request, Response, parse

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.UTC)


def request(method: str, *, to_tag: str = "", call_id: str = "c1@host", extra: str = "") -> Request:
    tag = f";tag={to_tag}" if to_tag else ""
    msg = parse((
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n"
        "Max-Forwards: 70\r\n"
        "From: \"Alice\" <sip:alice@example.com:5060;transport=udp>;tag=a1\r\n"
        f"To: <sip:bob@example.com>{tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Contact: <sip:alice@10.0.0.1:5060>\r\n"
        "X-Account: 42\r\n"
        "x-trace: t1\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode())
    assert isinstance(msg, Request)
    return msg


def ok_register(req: Request, contact_expires: str) -> Response:
    resp = req.make_response(200)
    resp.headers.add("Contact", f"<sip:alice@10.0.0.1:5060>;expires={contact_expires}")
    return resp


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event) -> bool:
        self.events.append(event)
        return True


def test_hangup_causes_follow_routr() -> None:
    assert hangup_cause(200) == hangup_cause(487) == "NORMAL_CLEARING"
    assert hangup_cause(403) == hangup_cause(407) == hangup_cause(603) == "CALL_REJECTED"
    assert hangup_cause(404) == "UNALLOCATED"
    assert hangup_cause(408) == "NO_USER_RESPONSE"
    assert hangup_cause(486) == hangup_cause(600) == "USER_BUSY"
    assert hangup_cause(503) == "SERVICE_UNAVAILABLE"
    assert hangup_cause(500) == "UNKNOWN"
    assert iso_time(NOW) == "2026-01-02T03:04:05.678Z"


def test_register_200_emits_endpoint_registered_with_routr_fields() -> None:
    sink = Collect()
    emitter = CallEventEmitter(sink, clock=lambda: NOW)
    req = request("REGISTER", extra="Expires: 600\r\n")
    emitter.register_answered(req, req.make_response(401))  # a challenge is not a registration
    emitter.register_answered(req, ok_register(req, "300"))
    emitter.register_answered(req, ok_register(req, "0"))  # de-registration: nothing
    assert [e.name for e in sink.events] == ["endpoint.registered"]
    assert dict(sink.events[0].data) == {
        "aor": "sip:bob@example.com",
        "registeredAt": "2026-01-02T03:04:05.678Z",
        "expires": 300,
        "extraHeaders": {"X-Account": "42", "x-trace": "t1"},
    }


def test_call_started_then_ended_by_bye() -> None:
    sink = Collect()
    emitter = CallEventEmitter(sink, clock=lambda: NOW)
    invite = request("INVITE")
    emitter.invite_forwarded(invite, metadata={"accountRef": "acc-1"})
    emitter.invite_forwarded(invite)  # a retried forward of the same call: one event
    emitter.invite_final(invite, 200)  # answered: the call goes on
    emitter.invite_forwarded(request("INVITE", to_tag="b1"))  # re-INVITE: not a new call
    emitter.bye_answered(request("BYE", to_tag="b1"), 200)
    assert [e.name for e in sink.events] == ["call.started", "call.ended"]
    started, ended = (dict(e.data) for e in sink.events)
    assert started == {
        "accountRef": "acc-1",
        "callId": "c1@host",
        "from": "sip:alice@example.com",
        "to": "sip:bob@example.com",
        "startTime": "2026-01-02T03:04:05.678Z",
        "extraHeaders": {"X-Account": "42", "x-trace": "t1"},
    }
    assert ended == {"callId": "c1@host", "endTime": "2026-01-02T03:04:05.678Z", "hangupCause": "NORMAL_CLEARING",
                     "extraHeaders": {"X-Account": "42", "x-trace": "t1"}}
    assert emitter.open_calls == 0


def test_cancel_and_failures_end_only_started_calls_once() -> None:
    sink = Collect()
    emitter = CallEventEmitter(sink, clock=lambda: NOW)
    challenged = request("INVITE", call_id="auth@host")
    emitter.invite_final(challenged, 407)  # never forwarded: no call.ended
    cancelled = request("INVITE", call_id="cancel@host")
    emitter.invite_forwarded(cancelled)
    emitter.cancelled(request("CANCEL", call_id="cancel@host"))
    emitter.invite_final(cancelled, 487)  # the 487 after the CANCEL: already ended
    busy = request("INVITE", call_id="busy@host")
    emitter.invite_forwarded(busy)
    emitter.invite_final(busy, 486)
    ended = [(e.data["callId"], e.data["hangupCause"]) for e in sink.events if e.name == "call.ended"]
    assert ended == [("cancel@host", "NORMAL_CLEARING"), ("busy@host", "USER_BUSY")]


def test_started_calls_are_bounded() -> None:
    emitter = CallEventEmitter(Collect(), max_calls=10)
    for n in range(50):
        emitter.invite_forwarded(request("INVITE", call_id=f"{n}@h"))
    assert emitter.open_calls == 10


class SlowSink:
    name = "slow"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[str] = []

    async def publish(self, event: Event) -> None:
        await self.release.wait()
        self.sent.append(event.name)

    async def close(self) -> None:
        return None


class FailingSink:
    name = "failing"

    async def publish(self, event: Event) -> None:
        raise ConnectionError("down")

    async def close(self) -> None:
        return None


async def test_publisher_drops_when_a_sink_queue_is_full_and_others_still_get_events() -> None:
    from prometheus_client import CollectorRegistry

    slow, fast = SlowSink(), Collect()

    class FastSink:
        name = "fast"

        async def publish(self, event: Event) -> None:
            fast.publish(event)

        async def close(self) -> None:
            return None

    registry = CollectorRegistry()
    publisher = EventPublisher([slow, FastSink(), FailingSink()], max_queue=3, registry=registry)
    await publisher.start()
    loop = asyncio.get_running_loop()
    results = []
    for n in range(10):
        started = loop.time()
        results.append(publisher.publish(call_ended(f"{n}", 200)))
        assert loop.time() - started < 0.01  # never waits for a sink
        await asyncio.sleep(0.002)  # the fast sink keeps up; the slow one does not
    assert results.count(False) == 6
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(fast.events) == 10 and publisher.stats()["failing"].failed + publisher.stats()["failing"].dropped == 10:
            break
    stats = publisher.stats()
    assert len(fast.events) == 10
    assert stats["slow"].dropped == 6  # 1 in the sink's hands + 3 queued
    slow.release.set()
    await publisher.stop(drain_timeout=1.0)
    assert len(slow.sent) == 10 - stats["slow"].dropped
    assert registry.get_sample_value("routr_events_dropped_total", {"sink": "slow"}) == stats["slow"].dropped
    assert registry.get_sample_value("routr_events_failed_total", {"sink": "failing"}) == stats["failing"].failed
    assert registry.get_sample_value("routr_events_published_total", {"sink": "fast", "event": "call.ended"}) == 10


async def test_log_sink_writes_name_and_json(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="routr_ray.events")
    await LogSink().publish(call_ended("x@y", 486))
    record = caplog.records[-1]
    name, _, payload = record.getMessage().partition(" ")
    assert name == "call.ended"
    assert json.loads(payload)["hangupCause"] == "USER_BUSY"
    assert record.event == "call.ended"  # type: ignore[attr-defined]


def test_sinks_from_env() -> None:
    assert sinks_from_env({}) == []  # nothing by default (Routr: CONSOLE_PUBLISHER_ENABLED unset = false)
    assert [s.name for s in sinks_from_env({"ROUTR_RAY_EVENTS_LOG": "true"})] == ["log"]
    assert [s.name for s in sinks_from_env({"CONSOLE_PUBLISHER_ENABLED": "true"})] == ["log"]
    sinks = sinks_from_env({"CONSOLE_PUBLISHER_ENABLED": "false", "NATS_PUBLISHER_ENABLED": "true",
                            "NATS_PUBLISHER_URL": "nats://127.0.0.1:4333", "NATS_PUBLISHER_SUBJECT": "pbx",
                            "ROUTR_RAY_EVENTS_REDIS_URL": "redis://127.0.0.1:6390/0"})
    assert [s.name for s in sinks] == ["nats", "redis"]
    nats_sink, redis_sink = sinks
    assert isinstance(nats_sink, NatsSink) and nats_sink.servers == ["nats://127.0.0.1:4333"]
    assert nats_sink.prefix == "pbx"
    assert isinstance(redis_sink, RedisSink) and redis_sink.prefix == "routr"
