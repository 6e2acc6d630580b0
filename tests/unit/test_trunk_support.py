"""Trunk support pieces (issue 15): which trunks register (specs), the EdgePort's hold-down table, the trunk
gauges on /metrics, the registrar loop with a provider that never answers, and `routr-ray status` lines."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from prometheus_client import CollectorRegistry, generate_latest
from test_connect_support import resources

from routr_ray.actors.status import ClusterStatus, TrunkRegistrationStatus, format_status
from routr_ray.config.registry import RegistryConfig
from routr_ray.edge.hold_down import HoldDown, up_first
from routr_ray.edge.next_hop import NextHop
from routr_ray.edge.transports import TransportName
from routr_ray.edge.trunk_metrics import TrunkMetrics
from routr_ray.sip import Request, Response
from routr_ray.trunks.contact_token import TrunkContactTokens
from routr_ray.trunks.registrar import TrunkRegistrar
from routr_ray.trunks.registration import RegistrationSpec, RegState
from routr_ray.trunks.specs import registration_specs

TOKENS = TrunkContactTokens(b"k" * 32)


def test_only_send_register_trunks_with_credentials_register() -> None:
    res = resources()
    assert registration_specs(res, TOKENS) == []  # nothing has sendRegister in the test set
    trunks = tuple(dataclasses.replace(t, outbound=dataclasses.replace(t.outbound, send_register=True))
                   for t in res.trunks if t.outbound is not None)
    specs = registration_specs(dataclasses.replace(res, trunks=trunks), TOKENS,
                               RegistryConfig(expires=300, methods=("INVITE",), gin=False))
    (spec,) = specs  # trunk-02 has no outbound credentials: skipped (with a warning)
    assert spec.trunk_ref == "trunk-01"
    # the enabled URI of the lowest priority, highest weight: primary.provider.net over TCP
    assert spec.target == "sip:primary.provider.net:5060;transport=tcp" == spec.request_uri
    assert spec.aor == "sip:pbx-1@primary.provider.net" and spec.username == "pbx-1"
    assert spec.contact_token == TOKENS.token("trunk-01")
    assert (spec.expires, spec.allow, spec.gin) == (300, ("INVITE",), False)


def test_hold_down_expires_and_orders_alternates() -> None:
    now = [0.0]
    table = HoldDown(30, clock=lambda: now[0])
    a = NextHop(TransportName.UDP, "127.0.0.1", 5070)
    b = NextHop(TransportName.UDP, "127.0.0.1", 5071)
    table.mark("udp", "127.0.0.1", 5070)
    assert table.is_down("UDP", "127.0.0.1", 5070) and not table.is_down("udp", "127.0.0.1", 5071)
    hop = up_first(a._replace(alternates=(b,)), table)
    assert (hop.port, [h.port for h in hop.alternates]) == (5071, [5070])  # the held-down one last, not dropped
    now[0] = 31
    assert not table.is_down("udp", "127.0.0.1", 5070) and len(table) == 0


def test_trunk_gauges_follow_the_registrar() -> None:
    registry = CollectorRegistry()
    metrics = TrunkMetrics(registry, held_down=lambda: 3)
    metrics.update([{"trunk": "trunk-01", "state": "registered", "expires_at": time.time() + 60, "failures": 0},
                    {"trunk": "trunk-02", "state": "failed", "expires_at": None, "failures": 4}])
    text = generate_latest(registry).decode()
    assert 'routr_trunk_registration_state{trunk="trunk-01"} 1.0' in text
    assert 'routr_trunk_registration_state{trunk="trunk-02"} 0.0' in text
    assert 'routr_trunk_registration_failures{trunk="trunk-02"} 4.0' in text
    assert 'routr_trunk_registration_expires_seconds{trunk="trunk-02"} 0.0' in text
    assert "routr_edge_servers_held_down 3.0" in text
    value = registry.get_sample_value("routr_trunk_registration_expires_seconds", {"trunk": "trunk-01"})
    assert value is not None and 55 < value <= 60
    metrics.update([])
    assert "trunk-01" not in generate_latest(registry).decode()


SPEC = RegistrationSpec(trunk_ref="trunk-01", target="sip:127.0.0.1:5080", request_uri="sip:127.0.0.1:5080",
                        aor="sip:trunk01@127.0.0.1", username="trunk01", password="1234")


async def test_a_provider_that_hangs_never_delays_a_re_registration() -> None:
    """A round waiting for a dead provider (Timer F can take 32 s) must not hold back the new registration a
    reload asks for (tests/acceptance/trunks relies on this)."""
    hang = asyncio.Event()
    answered: list[str] = []

    async def send(request: Request, target: str) -> Response | None:
        if target == SPEC.target:
            await hang.wait()
            return None
        answered.append(target)
        response = request.make_response(503)
        return response

    registrar = TrunkRegistrar(send)
    task = asyncio.create_task(registrar.run())
    try:
        registrar.update([SPEC])
        await asyncio.sleep(0.05)
        registrar.update([dataclasses.replace(SPEC, target="sip:127.0.0.1:5090")])
        for _ in range(100):
            if answered:
                break
            await asyncio.sleep(0.01)
        assert answered == ["sip:127.0.0.1:5090"]
        (status,) = registrar.statuses()
        assert status.state is RegState.FAILED and status.last_error.startswith("503")
    finally:
        hang.set()
        task.cancel()


def test_status_lists_the_trunk_registrations() -> None:
    status = ClusterStatus((), (), None, {}, (), (
        TrunkRegistrationStatus("trunk-01", "registered", 42),
        TrunkRegistrationStatus("trunk-02", "failed", None, "408 no response", 3),
    ))
    lines = format_status(status)
    at = lines.index("Trunk registrations:")
    assert "ok " in lines[at + 1] and "trunk-01" in lines[at + 1] and "expires in 42 s" in lines[at + 1]
    assert "BAD" in lines[at + 2] and "failed (3 in a row): 408 no response" in lines[at + 2]
