"""The provisioning API over real gRPC (a client generated from protos/) with PostgreSQL (Debian's postgresql,
started here): CRUD of every kind, pagination over 1,000 agents, referential errors, two workspaces that cannot
see each other, a viewer that cannot write, concurrent updates, passwords sealed at rest, and changes reaching
the Connect feed within 1 s (issue 20 "Done when")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import grpc
import pytest
from google.protobuf import struct_pb2

from routr_ray.api.core import ResourceApi
from routr_ray.api.feed import PostgresFeed, resources_of
from routr_ray.api.secrets import Sealer
from routr_ray.api.server import start_api_server
from routr_ray.api.store.postgres import PostgresStore
from routr_ray.config import Resources
from routr_ray.proto.gen import (
    acl_pb2,
    agents_pb2,
    credentials_pb2,
    domains_pb2,
    numbers_pb2,
    peers_pb2,
    trunks_pb2,
)
from tests.support.api_client import Stubs, basic, bearer, stubs
from tests.support.postgres_server import AVAILABLE, SKIP_REASON, PostgresServer

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not AVAILABLE, reason=SKIP_REASON)]

SECRETS_KEY = "k" * 40


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.cleanup()


@dataclass
class Api:
    stubs: Stubs
    store: PostgresStore
    url: str
    alpha: tuple[tuple[str, str], ...]  # admin of alpha
    beta: tuple[tuple[str, str], ...]  # admin of beta
    viewer: tuple[tuple[str, str], ...]  # viewer of alpha
    alpha_key: str


@pytest.fixture
async def api(postgres: PostgresServer) -> AsyncIterator[Api]:
    conn = await asyncpg.connect(postgres.url)
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    await conn.close()
    store = await PostgresStore.open(postgres.url)
    await store.create_workspace("alpha")
    await store.create_workspace("beta")
    alpha = await store.create_key({"alpha": "admin"})
    beta = await store.create_key({"beta": "admin"})
    viewer = await store.create_key({"alpha": "viewer"})
    server = await start_api_server(ResourceApi(store, Sealer(SECRETS_KEY)), "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}")
    try:
        yield Api(stubs(channel), store, postgres.url, bearer(alpha), bearer(beta), bearer(viewer), alpha)
    finally:
        await channel.close()
        await server.stop(0)
        await store.close()


async def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


async def base_set(api: Api, md: tuple[tuple[str, str], ...] | None = None, uri: str = "sip.local") -> dict[str, str]:
    """Credentials, ACL, Trunk, Number, Domain; returns their refs."""
    s, md = api.stubs, md or api.alpha
    creds = await s.credentials.Create(credentials_pb2.CreateCredentialsRequest(
        name="Agent creds", username="1001", password="1234"), metadata=md)
    acl = await s.acl.Create(acl_pb2.CreateACLRequest(name="LAN", allow=["10.0.0.0/8"], deny=["0.0.0.0/0"]),
                             metadata=md)
    trunk = await s.trunks.Create(trunks_pb2.CreateTrunkRequest(
        name="Provider", inbound_uri=f"trunk.{uri}", access_control_list_ref=acl.ref,
        outbound_credentials_ref=creds.ref,
        uris=[trunks_pb2.TrunkURI(host="sip.provider.net", port=7060, transport="udp", weight=10, priority=1,
                                  enabled=True)]), metadata=md)
    number = await s.numbers.Create(numbers_pb2.CreateNumberRequest(
        name="DID", tel_url=f"tel:+1706604{len(uri):04d}", aor_link=f"sip:1001@{uri}", city="Columbus",
        country="USA", country_iso_code="US", trunk_ref=trunk.ref,
        extra_headers=[numbers_pb2.ExtraHeader(name="X-Room-Id", value="abc")]), metadata=md)
    domain = await s.domains.Create(domains_pb2.CreateDomainRequest(
        name="Local", domain_uri=uri, access_control_list_ref=acl.ref,
        egress_policies=[domains_pb2.EgressPolicy(rule=".*", number_ref=number.ref)]), metadata=md)
    return {"credentials": creds.ref, "acl": acl.ref, "trunk": trunk.ref, "number": number.ref, "domain": domain.ref}


async def test_crud_of_every_kind(api: Api) -> None:
    s, md = api.stubs, api.alpha
    refs = await base_set(api)
    extended = struct_pb2.Struct()
    extended.update({"crm": "42"})
    agent = await s.agents.Create(agents_pb2.CreateAgentRequest(
        name="John", username="1001", domain_ref=refs["domain"], credentials_ref=refs["credentials"],
        max_contacts=3, extended=extended), metadata=md)
    peer = await s.peers.Create(peers_pb2.CreatePeerRequest(
        name="Asterisk", username="asterisk", aor="sip:conference@sip.local", contact_addr="10.0.0.5:5060",
        balancing_algorithm=peers_pb2.LEAST_SESSIONS, with_session_affinity=True, credentials_ref=refs["credentials"],
        access_control_list_ref=refs["acl"]), metadata=md)

    # Get: refs come back as the resources they name, nested as Routr's pgdata does; no password ever
    got = await s.agents.Get(agents_pb2.GetAgentRequest(ref=agent.ref), metadata=md)
    assert (got.username, got.name, got.enabled, got.privacy, got.max_contacts) == ("1001", "John", True,
                                                                                   agents_pb2.NONE, 3)
    assert got.domain.domain_uri == "sip.local" and got.domain.access_control_list.allow == ["10.0.0.0/8"]
    assert got.domain.egress_policies[0].number.trunk.uris[0].host == "sip.provider.net"
    assert got.credentials.username == "1001" and got.credentials.password == ""
    assert dict(got.extended) == {"crm": "42"} and got.created_at > 1_600_000_000
    p = await s.peers.Get(peers_pb2.GetPeerRequest(ref=peer.ref), metadata=md)
    assert (p.aor, p.balancing_algorithm, p.with_session_affinity, p.access_control_list.ref) == (
        "sip:conference@sip.local", peers_pb2.LEAST_SESSIONS, True, refs["acl"])
    n = await s.numbers.Get(numbers_pb2.GetNumberRequest(ref=refs["number"]), metadata=md)
    assert (n.city, n.country_iso_code, n.extra_headers[0].name, n.trunk.ref) == ("Columbus", "US", "X-Room-Id",
                                                                                  refs["trunk"])
    t = await s.trunks.Get(trunks_pb2.GetTrunkRequest(ref=refs["trunk"]), metadata=md)
    assert (t.inbound_uri, t.outbound_credentials.ref, t.uris[0].port, t.uris[0].weight) == (
        "trunk.sip.local", refs["credentials"], 7060, 10)

    # Update: the fields sent change, the others stay
    updated = await s.agents.Update(agents_pb2.UpdateAgentRequest(ref=agent.ref, name="Jane"), metadata=md)
    assert (updated.name, updated.username, updated.max_contacts, updated.domain.ref) == ("Jane", "1001", 3,
                                                                                          refs["domain"])
    disabled = await s.agents.Update(agents_pb2.UpdateAgentRequest(ref=agent.ref, privacy=agents_pb2.PRIVATE),
                                     metadata=(*md, ("x-field-mask", "enabled,privacy")))
    assert (disabled.enabled, disabled.privacy, disabled.name) == (False, agents_pb2.PRIVATE, "Jane")
    await s.peers.Update(peers_pb2.UpdatePeerRequest(ref=peer.ref, aor="sip:voice@sip.local"), metadata=md)
    await s.domains.Update(domains_pb2.UpdateDomainRequest(ref=refs["domain"], name="Renamed"), metadata=md)
    await s.numbers.Update(numbers_pb2.UpdateNumberRequest(ref=refs["number"], aor_link="sip:1002@sip.local"),
                           metadata=md)
    await s.trunks.Update(trunks_pb2.UpdateTrunkRequest(ref=refs["trunk"], send_register=True), metadata=md)
    await s.acl.Update(acl_pb2.UpdateACLRequest(ref=refs["acl"], allow=["192.168.0.0/16"]), metadata=md)
    await s.credentials.Update(credentials_pb2.UpdateCredentialsRequest(ref=refs["credentials"], password="5678"),
                               metadata=md)
    assert (await s.peers.Get(peers_pb2.GetPeerRequest(ref=peer.ref), metadata=md)).aor == "sip:voice@sip.local"
    assert (await s.domains.Get(domains_pb2.GetDomainRequest(ref=refs["domain"]), metadata=md)).name == "Renamed"
    assert (await s.trunks.FindBy(trunks_pb2.FindByRequest(field_name="sendRegister", field_value="true"),
                                  metadata=md)).items[0].ref == refs["trunk"]
    assert (await s.acl.Get(acl_pb2.GetACLRequest(ref=refs["acl"]), metadata=md)).allow == ["192.168.0.0/16"]
    number = await s.numbers.Get(numbers_pb2.GetNumberRequest(ref=refs["number"]), metadata=md)
    assert number.aor_link == "sip:1002@sip.local" and number.tel_url.startswith("tel:+1706604")

    # List and FindBy (Routr's field names)
    assert [a.ref for a in (await s.agents.List(agents_pb2.ListAgentsRequest(), metadata=md)).items] == [agent.ref]
    assert (await s.domains.FindBy(domains_pb2.FindByRequest(field_name="domainUri", field_value="sip.local"),
                                   metadata=md)).items[0].ref == refs["domain"]
    assert (await s.peers.FindBy(peers_pb2.FindByRequest(fieldName="username", fieldValue="asterisk"),
                                 metadata=md)).items[0].ref == peer.ref
    assert len((await s.credentials.List(credentials_pb2.ListCredentialsRequest(), metadata=md)).items) == 1
    assert len((await s.acl.List(acl_pb2.ListACLsRequest(), metadata=md)).items) == 1
    assert len((await s.numbers.List(numbers_pb2.ListNumberRequest(), metadata=md)).items) == 1
    assert len((await s.trunks.List(trunks_pb2.ListTrunkRequest(), metadata=md)).items) == 1

    # Delete, users first
    await s.agents.Delete(agents_pb2.DeleteAgentRequest(ref=agent.ref), metadata=md)
    await s.peers.Delete(peers_pb2.DeletePeerRequest(ref=peer.ref), metadata=md)
    await s.domains.Delete(domains_pb2.DeleteDomainRequest(ref=refs["domain"]), metadata=md)
    await s.numbers.Delete(numbers_pb2.DeleteNumberRequest(ref=refs["number"]), metadata=md)
    await s.trunks.Delete(trunks_pb2.DeleteTrunkRequest(ref=refs["trunk"]), metadata=md)
    await s.acl.Delete(acl_pb2.DeleteACLRequest(ref=refs["acl"]), metadata=md)
    await s.credentials.Delete(credentials_pb2.DeleteCredentialsRequest(ref=refs["credentials"]), metadata=md)
    code, _ = await code_of(s.agents.Get(agents_pb2.GetAgentRequest(ref=agent.ref), metadata=md))
    assert code == grpc.StatusCode.NOT_FOUND
    assert await api.store.everything() == []


async def test_pagination_over_1000_agents(api: Api) -> None:
    s, md = api.stubs, api.alpha
    refs = await base_set(api)
    created: list[str] = []
    for batch in range(20):
        agents = await asyncio.gather(*(s.agents.Create(agents_pb2.CreateAgentRequest(
            name=f"Agent {n}", username=f"u{n}", domain_ref=refs["domain"], credentials_ref=refs["credentials"]),
            metadata=md) for n in range(batch * 50, batch * 50 + 50)))
        created += [a.ref for a in agents]
    seen: list[str] = []
    token, pages = "", 0
    while True:
        page = await s.agents.List(agents_pb2.ListAgentsRequest(page_size=128, page_token=token), metadata=md)
        seen += [a.ref for a in page.items]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 8 and len(seen) == 1000 and set(seen) == set(created)
    numbers = [int(a.split()[-1]) for a in [(await s.agents.Get(agents_pb2.GetAgentRequest(ref=r), metadata=md)).name
                                            for r in (seen[0], seen[-1])]]
    assert numbers[0] >= 950 and numbers[1] < 50  # newest first, as Routr's createdAt desc
    default = await s.agents.List(agents_pb2.ListAgentsRequest(), metadata=md)
    assert len(default.items) == 50 and default.next_page_token
    # a page token stays valid when the resource it came from is deleted meanwhile
    first = await s.agents.List(agents_pb2.ListAgentsRequest(page_size=10), metadata=md)
    await s.agents.Delete(agents_pb2.DeleteAgentRequest(ref=first.items[-1].ref), metadata=md)
    second = await s.agents.List(agents_pb2.ListAgentsRequest(page_size=10, page_token=first.next_page_token),
                                 metadata=md)
    assert len(second.items) == 10 and not {a.ref for a in second.items} & {a.ref for a in first.items}
    code, details = await code_of(s.agents.List(agents_pb2.ListAgentsRequest(page_token="garbage"), metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in details


async def test_referential_and_validation_errors_name_the_field(api: Api) -> None:
    s, md = api.stubs, api.alpha
    refs = await base_set(api)
    users = [(await s.agents.Create(agents_pb2.CreateAgentRequest(
        name=f"A{n}", username=f"10{n}", domain_ref=refs["domain"], credentials_ref=refs["credentials"]),
        metadata=md)).ref for n in range(3)]
    code, details = await code_of(s.domains.Delete(domains_pb2.DeleteDomainRequest(ref=refs["domain"]), metadata=md))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and all(ref in details for ref in users)
    code, details = await code_of(s.credentials.Delete(
        credentials_pb2.DeleteCredentialsRequest(ref=refs["credentials"]), metadata=md))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "Trunk" in details and "Agent" in details
    code, details = await code_of(s.agents.Create(agents_pb2.CreateAgentRequest(
        name="X", username="2000", domain_ref="no-such-domain", credentials_ref=refs["credentials"]), metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("domain_ref:")
    code, details = await code_of(s.agents.Create(agents_pb2.CreateAgentRequest(
        name="X", username="2000", domain_ref=refs["credentials"], credentials_ref=refs["credentials"]), metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "no Domain" in details
    code, details = await code_of(s.agents.Create(agents_pb2.CreateAgentRequest(name="X", username="has space",
                                                                                 domain_ref=refs["domain"]),
                                                  metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "username:" in details and "credentials_ref:" in details
    code, details = await code_of(s.domains.Create(domains_pb2.CreateDomainRequest(
        name="D", domain_uri="other.local", egress_policies=[domains_pb2.EgressPolicy(rule="(", number_ref="n")]),
        metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "egress_policies[0].rule" in details
    code, details = await code_of(s.acl.Create(acl_pb2.CreateACLRequest(name="bad", allow=["10.0.0.300/8"]),
                                               metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "allow[0]" in details
    code, details = await code_of(s.agents.Create(agents_pb2.CreateAgentRequest(
        name="dup", username="100", domain_ref=refs["domain"], credentials_ref=refs["credentials"]), metadata=md))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "username" in details
    code, _ = await code_of(s.agents.Update(agents_pb2.UpdateAgentRequest(ref="nope", name="x"), metadata=md))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_two_workspaces_cannot_see_each_other(api: Api) -> None:
    s = api.stubs
    alpha = await base_set(api, api.alpha)
    agent = await s.agents.Create(agents_pb2.CreateAgentRequest(
        name="A", username="1001", domain_ref=alpha["domain"], credentials_ref=alpha["credentials"]),
        metadata=api.alpha)
    beta = await base_set(api, api.beta, uri="beta.example")
    for call in (s.agents.Get(agents_pb2.GetAgentRequest(ref=agent.ref), metadata=api.beta),
                 s.domains.Get(domains_pb2.GetDomainRequest(ref=alpha["domain"]), metadata=api.beta),
                 s.agents.Delete(agents_pb2.DeleteAgentRequest(ref=agent.ref), metadata=api.beta),
                 s.agents.Update(agents_pb2.UpdateAgentRequest(ref=agent.ref, name="stolen"), metadata=api.beta)):
        code, _ = await code_of(call)
        assert code == grpc.StatusCode.NOT_FOUND
    assert not (await s.agents.List(agents_pb2.ListAgentsRequest(), metadata=api.beta)).items
    assert not (await s.agents.FindBy(agents_pb2.FindByRequest(field_name="username", field_value="1001"),
                                      metadata=api.beta)).items
    # a ref into another workspace does not exist for this key
    code, details = await code_of(s.agents.Create(agents_pb2.CreateAgentRequest(
        name="B", username="2001", domain_ref=alpha["domain"], credentials_ref=beta["credentials"]),
        metadata=api.beta))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("domain_ref:")
    # domains are unique across workspaces, and the message does not name the other workspace's resource
    code, details = await code_of(s.domains.Create(domains_pb2.CreateDomainRequest(name="X", domain_uri="sip.local"),
                                                   metadata=api.beta))
    assert code == grpc.StatusCode.ALREADY_EXISTS and alpha["domain"] not in details
    # a key may not pick a workspace it has no role in
    code, _ = await code_of(s.agents.List(agents_pb2.ListAgentsRequest(),
                                          metadata=(*api.beta, ("x-workspace", "alpha"))))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert (await s.agents.Get(agents_pb2.GetAgentRequest(ref=agent.ref), metadata=api.alpha)).name == "A"


async def test_viewer_reads_and_cannot_write(api: Api) -> None:
    s = api.stubs
    refs = await base_set(api)
    assert (await s.domains.Get(domains_pb2.GetDomainRequest(ref=refs["domain"]), metadata=api.viewer)).name
    assert len((await s.domains.List(domains_pb2.ListDomainRequest(), metadata=api.viewer)).items) == 1
    for call in (
        s.credentials.Create(credentials_pb2.CreateCredentialsRequest(name="c", username="u", password="p"),
                             metadata=api.viewer),
        s.domains.Update(domains_pb2.UpdateDomainRequest(ref=refs["domain"], name="x"), metadata=api.viewer),
        s.domains.Delete(domains_pb2.DeleteDomainRequest(ref=refs["domain"]), metadata=api.viewer),
    ):
        code, details = await code_of(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "viewer" in details
    assert (await s.domains.Get(domains_pb2.GetDomainRequest(ref=refs["domain"]), metadata=api.alpha)).name == "Local"


async def test_every_call_needs_a_live_key(api: Api) -> None:
    s = api.stubs
    request = agents_pb2.ListAgentsRequest()
    for metadata in ((), (("authorization", "Bearer rr-0000000000000000-" + "0" * 64),),
                     (("authorization", "Basic Zm9vOmJhcg=="),), (("x-routr-token", api.alpha_key),)):
        code, details = await code_of(s.agents.List(request, metadata=metadata))
        assert code == grpc.StatusCode.UNAUTHENTICATED and api.alpha_key not in details
    # Routr's SDK sends Basic credentials: key id as the username, secret as the password
    assert (await s.agents.List(request, metadata=basic(api.alpha_key))).next_page_token == ""
    key_id = api.alpha_key.split("-")[1]
    assert await api.store.revoke_key(key_id)
    code, _ = await code_of(s.agents.List(request, metadata=api.alpha))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_concurrent_updates_lose_no_write(api: Api) -> None:
    s, md = api.stubs, api.alpha
    refs = await base_set(api)
    agent = await s.agents.Create(agents_pb2.CreateAgentRequest(
        name="A", username="1001", domain_ref=refs["domain"], credentials_ref=refs["credentials"]), metadata=md)
    for round_ in range(1, 6):
        await asyncio.gather(
            s.agents.Update(agents_pb2.UpdateAgentRequest(ref=agent.ref, name=f"name {round_}"), metadata=md),
            s.agents.Update(agents_pb2.UpdateAgentRequest(ref=agent.ref, max_contacts=round_), metadata=md),
            s.agents.Update(agents_pb2.UpdateAgentRequest(ref=agent.ref, expires=600 + round_), metadata=md),
        )
        got = await s.agents.Get(agents_pb2.GetAgentRequest(ref=agent.ref), metadata=md)
        assert (got.name, got.max_contacts, got.expires) == (f"name {round_}", round_, 600 + round_)
    # many writers at once, each on its own field of its own agent and all on the shared one: none lost
    others = [(await s.agents.Create(agents_pb2.CreateAgentRequest(
        name=f"O{n}", username=f"20{n}", domain_ref=refs["domain"], credentials_ref=refs["credentials"]),
        metadata=md)).ref for n in range(10)]
    await asyncio.gather(*(s.agents.Update(agents_pb2.UpdateAgentRequest(ref=ref, max_contacts=7), metadata=md)
                           for ref in others),
                         *(s.agents.Update(agents_pb2.UpdateAgentRequest(ref=ref, name="renamed"), metadata=md)
                           for ref in others))
    for ref in others:
        got = await s.agents.Get(agents_pb2.GetAgentRequest(ref=ref), metadata=md)
        assert (got.name, got.max_contacts) == ("renamed", 7)


async def test_passwords_are_sealed_at_rest(api: Api) -> None:
    s, md = api.stubs, api.alpha
    creds = await s.credentials.Create(credentials_pb2.CreateCredentialsRequest(
        name="c", username="1001", password="s3cret-password"), metadata=md)
    conn = await asyncpg.connect(api.url)
    try:
        raw = await conn.fetchval("SELECT document::text FROM resources WHERE ref = $1", creds.ref)
    finally:
        await conn.close()
    assert "s3cret-password" not in raw and "enc:v1:" in raw
    assert (await s.credentials.Get(credentials_pb2.GetCredentialsRequest(ref=creds.ref), metadata=md)).password == ""
    # Connect gets the password in clear; a wrong key does not open it
    resources = resources_of(await api.store.everything(), Sealer(SECRETS_KEY))
    assert resources.credentials[0].password == "s3cret-password"
    await s.credentials.Update(credentials_pb2.UpdateCredentialsRequest(ref=creds.ref, name="renamed"), metadata=md)
    resources = resources_of(await api.store.everything(), Sealer(SECRETS_KEY))
    assert resources.credentials[0].password == "s3cret-password" and resources.credentials[0].name == "renamed"
    assert resources_of(await api.store.everything(), Sealer("w" * 40)).credentials == ()


async def test_changes_reach_the_connect_feed_within_a_second(api: Api) -> None:
    s, md = api.stubs, api.alpha
    published: list[tuple[float, Resources]] = []

    async def publish(resources: Resources) -> None:
        published.append((time.monotonic(), resources))

    feed = PostgresFeed(api.url, api.store.everything, Sealer(SECRETS_KEY), publish)
    task = asyncio.create_task(feed.run())
    try:
        refs = await base_set(api)

        async def until(check: object, since: float) -> float:
            while time.monotonic() - since < 1.0:
                if published and check(published[-1][1]):  # type: ignore[operator]
                    return published[-1][0] - since
                await asyncio.sleep(0.01)
            raise AssertionError("the change did not reach the feed within 1 s")

        started = time.monotonic()
        agent = await s.agents.Create(agents_pb2.CreateAgentRequest(
            name="A", username="1001", domain_ref=refs["domain"], credentials_ref=refs["credentials"]), metadata=md)
        await until(lambda r: r.agent("1001", "sip.local") is not None, started)
        started = time.monotonic()
        await s.credentials.Update(credentials_pb2.UpdateCredentialsRequest(ref=refs["credentials"], password="99"),
                                   metadata=md)
        await until(lambda r: r.credentials[0].password == "99", started)
        started = time.monotonic()
        await s.agents.Delete(agents_pb2.DeleteAgentRequest(ref=agent.ref), metadata=md)
        await until(lambda r: r.agent("1001", "sip.local") is None, started)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
