"""Issue 20 "Done when", acceptance: ``routr-ray run`` with the provisioning API on PostgreSQL. An agent created
through the API registers with SIPp within 1 s and calls another agent; after ``Delete`` its next REGISTER is
refused and its binding is gone from the Location."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from routr_ray.proto.gen import (
    agents_pb2,
    credentials_pb2,
    domains_pb2,
    location_pb2,
    location_pb2_grpc,
)
from tests.support.acceptance import (
    ACCEPTANCE,
    CONTACT_PORTS,
    SHIPPED_CONFIG_DIR,
    Profile,
    Server,
    Sipp,
    _serve,
)
from tests.support.api_client import bearer, stubs
from tests.support.postgres_server import AVAILABLE, SKIP_REASON, PostgresServer

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=SKIP_REASON)

API_PORTS = {5060: 35060, 5061: 35061, 5062: 35062, 5063: 35063, 8080: 38080, 9464: 35464, 51901: 35901, 51902: 35902,
             5080: 35080, 51907: 35907}
PASSWORDS = {"1001": "api-pass-1001", "1002": "api-pass-1002"}
API_PROFILE = Profile("api", SHIPPED_CONFIG_DIR, API_PORTS, 35060, 35061, 35062, 35063, 35080, PASSWORDS,
                      overlay=ACCEPTANCE / "api" / "config")
SECRETS_KEY = "acceptance-secrets-key-" + "x" * 20


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    postgres = PostgresServer()
    postgres.start()
    patch = pytest.MonkeyPatch()
    patch.setenv("ROUTR_RAY_DATABASE_URL", postgres.url)
    patch.setenv("ROUTR_RAY_SECRETS_KEY", SECRETS_KEY)
    try:
        for server in _serve(API_PROFILE, tmp_path_factory):
            text = server.log_path.read_text(errors="replace")
            key = next(line.split()[3] for line in text.splitlines() if "API owner key" in line)
            yield server, key
    finally:
        patch.undo()
        postgres.cleanup()


def find_routes(aor: str) -> list[location_pb2.Route]:
    with grpc.insecure_channel(f"127.0.0.1:{API_PORTS[51902]}") as channel:
        return list(location_pb2_grpc.LocationStub(channel).FindRoutes(
            location_pb2.FindRoutesRequest(aor=aor), timeout=5).routes)


async def provision(key: str) -> dict[str, str]:
    md = bearer(key)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{API_PORTS[51907]}") as channel:
        s = stubs(channel)
        creds = {user: (await s.credentials.Create(credentials_pb2.CreateCredentialsRequest(
            name=f"creds {user}", username=user, password=password), metadata=md)).ref
            for user, password in PASSWORDS.items()}
        domain = await s.domains.Create(domains_pb2.CreateDomainRequest(name="Local", domain_uri="sip.local"),
                                        metadata=md)
        callee = await s.agents.Create(agents_pb2.CreateAgentRequest(
            name="Callee", username="1002", domain_ref=domain.ref, credentials_ref=creds["1002"]), metadata=md)
        return {"domain": domain.ref, "creds-1001": creds["1001"], "callee": callee.ref}


async def create_caller(key: str, refs: dict[str, str]) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{API_PORTS[51907]}") as channel:
        agent = await stubs(channel).agents.Create(agents_pb2.CreateAgentRequest(
            name="Caller", username="1001", domain_ref=refs["domain"], credentials_ref=refs["creds-1001"]),
            metadata=bearer(key))
        return agent.ref


async def delete_agent(key: str, ref: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{API_PORTS[51907]}") as channel:
        await stubs(channel).agents.Delete(agents_pb2.DeleteAgentRequest(ref=ref), metadata=bearer(key))


def test_agent_created_through_the_api_registers_calls_and_is_removed(api_server: tuple[Server, str],
                                                                      tmp_path: Path) -> None:
    server, key = api_server
    sipp = Sipp(tmp_path, API_PROFILE)
    refs = asyncio.run(provision(key))
    # no such agent yet: its REGISTER does not get a 200
    assert not sipp.register("1001").ok

    started = time.monotonic()
    caller = asyncio.run(create_caller(key, refs))
    sipp.assert_ok(sipp.register("1001"))
    took = time.monotonic() - started
    assert took < 1.0, f"the agent registered {took:.2f}s after it was created"
    assert find_routes("sip:1001@sip.local")

    sipp.assert_ok(sipp.register("1002"))
    try:
        callee = sipp.uas("agent_call/uas.xml", CONTACT_PORTS["1002"], keys={"me": "1002"})
        call = sipp.run("agent_call/uac.xml", service="1002", keys={"caller": "1001"},
                        auth=("1001", PASSWORDS["1001"]))
        sipp.assert_ok(call, callee.result())
    finally:
        sipp.unregister("1002")

    asyncio.run(delete_agent(key, caller))
    deadline = time.monotonic() + 1.0
    while find_routes("sip:1001@sip.local") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not find_routes("sip:1001@sip.local"), "the deleted agent's binding is still there"
    refused = sipp.register("1001")
    assert not refused.ok
    answers = refused.received("SIP/2.0 ")
    assert answers and all(a.startswith(("SIP/2.0 401", "SIP/2.0 403", "SIP/2.0 404")) for a in answers), \
        refused.report()
    assert "API owner key" in server.log_path.read_text()
