"""``routr-ray <topic> create|get|describe|update|delete`` round-trips every kind against a real API port (TLS,
as rctl talks to 51908), with table, JSON and YAML output; the operator commands against PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from routr_ray.api.core import ResourceApi
from routr_ray.api.server import TlsFiles, start_api_server
from routr_ray.api.store.memory import MemoryStore
from routr_ray.cli import main
from routr_ray.edge.tlsutil import make_self_signed_pem
from tests.support.postgres_server import AVAILABLE, SKIP_REASON, PostgresServer

pytestmark = pytest.mark.timeout(120)
SHIPPED_RESOURCES = Path(__file__).resolve().parents[2] / "config" / "resources"


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[tuple[list[str], MemoryStore]]:
    cert, key = make_self_signed_pem(["localhost", "127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    store = MemoryStore()
    api_key = store.add_key({"default": "admin"})
    server = await start_api_server(ResourceApi(store), "127.0.0.1:0",
                                    tls=TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem"))
    flags = ["-e", f"localhost:{server.bound_port}", "-c", str(tmp_path / "cert.pem"), "--key", api_key]
    yield flags, store
    await server.stop(0)


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def create(capsys: pytest.CaptureFixture[str], flags: list[str], topic: str, *fields: str) -> str:
    code, out, err = await cli(capsys, topic, "create", *fields, *flags, "-o", "json")
    assert code == 0, err
    return json.loads(out)["ref"]


async def test_every_kind_round_trips(endpoint: tuple[list[str], MemoryStore],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    flags, store = endpoint
    creds = await create(capsys, flags, "credentials", "--name", "Creds", "--username", "1001", "--password", "1234")
    acl = await create(capsys, flags, "acl", "--name", "LAN", "--allow", "10.0.0.0/8", "--allow", "192.168.0.0/16",
                       "--deny", "0.0.0.0/0")
    trunk = await create(capsys, flags, "trunks", "--name", "Provider", "--inbound-uri", "trunk.example.net",
                         "--access-control-list-ref", acl, "--outbound-credentials-ref", creds,
                         "--uri", "sip.provider.net:7060,transport=tcp,weight=5,priority=2", "--send-register")
    number = await create(capsys, flags, "numbers", "--name", "DID", "--tel-url", "tel:+17066041487",
                          "--aor-link", "sip:1001@sip.local", "--trunk-ref", trunk, "--extra-header", "X-Room=1",
                          "--country-iso-code", "US")
    domain = await create(capsys, flags, "domains", "--name", "Local", "--domain-uri", "sip.local",
                          "--egress-policy", f".*={number}")
    agent = await create(capsys, flags, "agents", "--name", "John", "--username", "1001", "--domain-ref", domain,
                         "--credentials-ref", creds, "--privacy", "PRIVATE", "--extended", '{"crm": 7}')
    peer = await create(capsys, flags, "peers", "--name", "Asterisk", "--username", "asterisk", "--aor",
                        "sip:conference@sip.local", "--balancing-algorithm", "LEAST_SESSIONS")

    # get (table), describe (yaml), get -o json
    code, out, _ = await cli(capsys, "agents", "get", *flags)
    assert code == 0 and out.splitlines()[0].split()[:3] == ["REF", "NAME", "USERNAME"]
    assert agent in out and "sip.local" in out and "1001" in out
    code, out, _ = await cli(capsys, "agents", "describe", agent, *flags)
    described = yaml.safe_load(out)
    assert described["privacy"] == "PRIVATE" and described["domain"]["domain_uri"] == "sip.local"
    assert described["extended"] == {"crm": 7} and described["credentials"]["password"] == ""
    code, out, _ = await cli(capsys, "trunks", "get", trunk, *flags, "-o", "json")
    got = json.loads(out)[0]
    assert (got["send_register"], got["uris"][0]["transport"], got["uris"][0]["port"], got["uris"][0]["weight"]) == (
        True, "tcp", 7060, 5)
    code, out, _ = await cli(capsys, "numbers", "get", *flags, "-o", "yaml")
    assert yaml.safe_load(out)[0]["extra_headers"] == [{"name": "X-Room", "value": "1"}]
    code, out, _ = await cli(capsys, "domains", "describe", domain, *flags, "-o", "json")
    assert json.loads(out)["egress_policies"][0]["number"]["trunk"]["ref"] == trunk

    # update changes exactly the flags given, zero values included
    code, out, err = await cli(capsys, "agents", "update", agent, "--no-enabled", "--max-contacts", "2", *flags,
                               "-o", "json")
    updated = json.loads(out)
    assert code == 0 and (updated["enabled"], updated["max_contacts"], updated["name"]) == (False, 2, "John"), err
    for topic, ref, field_flags, key, value in (
        ("peers", peer, ("--aor", "sip:voice@sip.local"), "aor", "sip:voice@sip.local"),
        ("domains", domain, ("--name", "Renamed"), "name", "Renamed"),
        ("numbers", number, ("--aor-link", "sip:1002@sip.local"), "aor_link", "sip:1002@sip.local"),
        ("trunks", trunk, ("--no-send-register",), "send_register", False),
        ("credentials", creds, ("--name", "New name"), "name", "New name"),
        ("acl", acl, ("--deny", "10.9.0.0/16"), "deny", ["10.9.0.0/16"]),
    ):
        code, out, err = await cli(capsys, topic, "update", ref, *field_flags, *flags, "-o", "json")
        assert code == 0 and json.loads(out)[key] == value, err

    # errors are one line with the gRPC status, exit 1
    code, _, err = await cli(capsys, "domains", "delete", domain, *flags)
    assert code == 1 and err.startswith("routr-ray: FAILED_PRECONDITION") and agent in err
    code, _, err = await cli(capsys, "agents", "create", "--name", "x", "--username", "1002", "--domain-ref", "nope",
                             "--credentials-ref", creds, *flags)
    assert code == 1 and "INVALID_ARGUMENT: domain_ref:" in err

    for topic, ref in (("agents", agent), ("peers", peer), ("domains", domain), ("numbers", number),
                       ("trunks", trunk), ("acl", acl), ("credentials", creds)):
        code, out, err = await cli(capsys, topic, "delete", ref, *flags)
        assert code == 0 and out.strip() == f"deleted {ref}", err
    assert await store.everything() == []


async def test_wrong_key_and_plaintext_against_tls(endpoint: tuple[list[str], MemoryStore],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    flags, _ = endpoint
    bad = [*flags[:-1], "rr-0000000000000000-" + "0" * 64]
    code, _, err = await cli(capsys, "agents", "get", *bad)
    assert code == 1 and "UNAUTHENTICATED" in err
    code, _, err = await cli(capsys, "agents", "get", *flags[:2], "--insecure", *flags[4:], "--timeout", "2")
    assert code == 1 and "UNAVAILABLE" in err or "DEADLINE" in err


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    if not AVAILABLE:
        pytest.skip(SKIP_REASON)
    server = PostgresServer()
    server.start()
    yield server
    server.cleanup()


async def test_operator_commands(postgres: PostgresServer, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTR_RAY_DATABASE_URL", postgres.url)
    monkeypatch.delenv("ROUTR_RAY_SECRETS_KEY", raising=False)
    code, _, err = await cli(capsys, "db", "upgrade")
    assert code == 1 and "ROUTR_RAY_SECRETS_KEY" in err
    monkeypatch.setenv("ROUTR_RAY_SECRETS_KEY", "s" * 40)
    code, out, _ = await cli(capsys, "db", "upgrade")
    assert code == 0 and "applied 0001_init.sql" in out and "first owner key" in out
    owner = out.strip().splitlines()[-1]
    assert owner.startswith("rr-")
    code, out, _ = await cli(capsys, "db", "upgrade")
    assert code == 0 and "up to date" in out and "owner key" not in out  # shown once
    assert (await cli(capsys, "workspaces", "create", "acme"))[0] == 0
    code, out, _ = await cli(capsys, "keys", "create", "--workspace", "acme", "--role", "viewer", "--name", "ops")
    viewer = out.strip()
    assert code == 0 and viewer.startswith("rr-") and viewer != owner
    code, out, _ = await cli(capsys, "keys", "list")
    assert "acme:viewer" in out and "default:owner" in out and viewer.split("-")[2] not in out  # no secrets
    code, _, err = await cli(capsys, "keys", "create", "--workspace", "nope", "--role", "admin")
    assert code == 1 and "workspace" in err
    code, out, err = await cli(capsys, "resources", "import", str(SHIPPED_RESOURCES), "--workspace", "acme")
    assert code == 0 and "imported 12 resource(s)" in out, err
    code, _, err = await cli(capsys, "resources", "import", str(SHIPPED_RESOURCES), "--workspace", "default")
    assert code == 1 and "already" in err  # all or nothing: refs and unique values are taken
    code, out, _ = await cli(capsys, "workspaces", "list")
    assert "acme\t12 resource(s)" in out and "default\t0 resource(s)" in out
    code, out, _ = await cli(capsys, "keys", "revoke", viewer.split("-")[1])
    assert code == 0 and "revoked" in out
    assert os.environ["ROUTR_RAY_DATABASE_URL"] == postgres.url
