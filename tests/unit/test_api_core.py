"""The provisioning API's pure parts: API field names of document pointers, zero values and the field mask,
key parsing, sealed passwords, the AORs of deleted agents, and the store rules on the memory store."""

from __future__ import annotations

import base64

import pytest

from routr_ray.api import rbac
from routr_ray.api.convert import apply_request, new_document
from routr_ray.api.core import ResourceApi, parse_page_token
from routr_ray.api.errors import ApiError
from routr_ray.api.feed import removed_aors
from routr_ray.api.kinds import AGENT, DOMAIN, KINDS, TRUNK, references
from routr_ray.api.secrets import Sealer, SecretsKeyError
from routr_ray.api.store.memory import MemoryStore
from routr_ray.api.validate import check
from routr_ray.config import load_resources
from routr_ray.proto.gen import agents_pb2, domains_pb2, trunks_pb2


def test_pointers_are_named_as_api_fields() -> None:
    assert AGENT.field_at("/spec/domainRef") == "domain_ref"
    assert AGENT.field_at("/metadata/name") == "name"
    assert DOMAIN.field_at("/spec/context/egressPolicies/0/numberRef") == "egress_policies[0].number_ref"
    assert TRUNK.field_at("/spec/outbound/uris/1/uri/port") == "uris[1].uri.port"
    assert AGENT.field_at("/spec/forking/mode") == "/spec/forking/mode"  # no API field: the pointer itself
    assert AGENT.find_path("username") == ("spec", "username") and DOMAIN.find_path("domain_uri")
    assert AGENT.find_path("password") is None


def test_zero_values_mean_not_given_unless_masked() -> None:
    created = new_document(AGENT, agents_pb2.CreateAgentRequest(name="A", username="1", domain_ref="d",
                                                                credentials_ref="c"))
    assert "privacy" not in created["spec"] and "enabled" not in created["spec"]  # NONE and enabled by default
    private = new_document(AGENT, agents_pb2.CreateAgentRequest(name="A"), frozenset({"privacy", "enabled"}))
    assert private["spec"]["privacy"] == "PRIVATE" and private["spec"]["enabled"] is False
    document = {"metadata": {"name": "A"}, "spec": {"username": "1", "domainRef": "d", "credentialsRef": "c",
                                                    "maxContacts": 3, "forking": {"mode": "latest"}}}
    apply_request(AGENT, agents_pb2.UpdateAgentRequest(ref="x", name="B"), document)
    assert document["spec"]["maxContacts"] == 3 and document["metadata"]["name"] == "B"
    assert document["spec"]["forking"] == {"mode": "latest"}  # routr-ray extensions survive an update
    apply_request(AGENT, agents_pb2.UpdateAgentRequest(ref="x"), document, mask=frozenset({"max_contacts"}))
    assert "maxContacts" not in document["spec"]
    with pytest.raises(ApiError, match="x-field-mask"):
        apply_request(AGENT, agents_pb2.UpdateAgentRequest(ref="x"), document, mask=frozenset({"password"}))
    trunk = new_document(TRUNK, trunks_pb2.CreateTrunkRequest(name="T", uris=[trunks_pb2.TrunkURI(host="h")]))
    assert trunk["spec"]["outbound"]["uris"] == [{"uri": {"host": "h", "port": 5060, "transport": "udp"},
                                                  "priority": 0, "weight": 1, "enabled": True}]
    domain = new_document(DOMAIN, domains_pb2.CreateDomainRequest(
        name="D", domain_uri="x", egress_policies=[domains_pb2.EgressPolicy(rule=".*", number_ref="n1")]))
    assert references(DOMAIN, domain) == [("egress_policies[0].number_ref", "n1", "Number")]


def test_validation_names_every_bad_field() -> None:
    with pytest.raises(ApiError) as caught:
        check(AGENT, {"apiVersion": "v2beta1", "kind": "Agent", "ref": "a", "metadata": {"name": "x" * 61},
                      "spec": {"username": "has space", "domainRef": "d"}})
    assert caught.value.code == "INVALID_ARGUMENT"
    assert {"name:", "username:", "credentials_ref:"} <= {part.split()[0] for part in caught.value.message.split("; ")}


def test_keys_and_metadata() -> None:
    key = rbac.new_key()
    assert rbac.parse_key(key.text) == (key.key_id, key.secret)
    assert rbac.parse_key(key.text + "0") is None and rbac.parse_key("rr-xyz-abc") is None
    basic = base64.b64encode(f"{key.key_id}:{key.secret}".encode()).decode()
    assert rbac.credentials_from_metadata([("authorization", f"Basic {basic}")]) == (key.key_id, key.secret)
    assert rbac.credentials_from_metadata([("authorization", f"bearer {key.text}")]) == (key.key_id, key.secret)
    assert rbac.credentials_from_metadata([("authorization", "Basic !!!")]) is None
    assert rbac.credentials_from_metadata([("x-routr-token", key.text)]) is None


def test_sealed_passwords() -> None:
    sealer = Sealer("k" * 32)
    sealed = sealer.seal("1234", "creds-1")
    assert sealed.startswith("enc:v1:") and "1234" not in sealed and sealer.seal("1234", "creds-1") != sealed
    assert sealer.open(sealed, "creds-1") == "1234"
    with pytest.raises(SecretsKeyError):
        sealer.open(sealed, "creds-2")  # bound to its row
    with pytest.raises(SecretsKeyError):
        Sealer("l" * 32).open(sealed, "creds-1")
    with pytest.raises(SecretsKeyError, match="32"):
        Sealer("short")


def test_removed_aors() -> None:
    resources = load_resources("config/resources")
    import dataclasses

    fewer = dataclasses.replace(resources, agents=resources.agents[:1])
    assert removed_aors(resources, fewer) == [f"sip:{resources.agents[1].username}@sip.local"]
    assert removed_aors(None, fewer) == [] and removed_aors(fewer, resources) == []


def test_page_tokens() -> None:
    assert parse_page_token("") is None and parse_page_token("p42") == 42
    for bad in ("42", "p", "p-1", "agent-01"):
        with pytest.raises(ApiError):
            parse_page_token(bad)


async def test_memory_store_rules() -> None:
    store = MemoryStore()
    api = ResourceApi(store)
    admin = rbac.Caller("k", "w", "admin")
    other = rbac.Caller("k2", "v", "admin")
    creds = await api.create(admin, KINDS["Credentials"], {"metadata": {"name": "c"},
                                                           "spec": {"credentials": {"username": "u", "password": "p"}}})
    domain = await api.create(admin, DOMAIN, {"metadata": {"name": "d"}, "spec": {"context": {"domainUri": "x.y"}}})
    agent_doc = {"metadata": {"name": "a"}, "spec": {"username": "1", "domainRef": domain.ref,
                                                    "credentialsRef": creds.ref}}
    agent = await api.create(admin, AGENT, agent_doc)
    with pytest.raises(ApiError) as caught:
        await api.create(admin, AGENT, agent_doc)
    assert caught.value.code == "ALREADY_EXISTS"
    with pytest.raises(ApiError) as caught:
        await api.delete(admin, DOMAIN, domain.ref)
    assert caught.value.code == "FAILED_PRECONDITION" and agent.ref in caught.value.message
    with pytest.raises(ApiError) as caught:
        await api.get(other, AGENT, agent.ref)
    assert caught.value.code == "NOT_FOUND"
    with pytest.raises(ApiError) as caught:
        await api.create(rbac.Caller("k3", "w", "viewer"), AGENT, agent_doc)
    assert caught.value.code == "PERMISSION_DENIED"
    await api.delete(admin, AGENT, agent.ref)
    await api.delete(admin, DOMAIN, domain.ref)
