"""Attacks on the provisioning API's ports (51907 internal, 51908 external; docs/security.md "Provisioning API"):
in-process servers on loopback, no Ray.

* every call needs a live key: none, a forged one, a revoked one, the token of another port -> UNAUTHENTICATED;
* a viewer cannot write; a key cannot reach another workspace (picking it with x-workspace, guessing refs,
  pointing refs into it, FindBy across it), and a unique-value clash never names the other workspace's resource;
* plaintext off loopback is refused before binding; mTLS refuses a client without a certificate;
* secrets never come back (passwords) and never reach the log (keys, passwords).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from routr_ray.api.core import ResourceApi
from routr_ray.api.server import ApiServerRefused, TlsFiles, check_bind, start_api_server
from routr_ray.api.store.files import FileStore
from routr_ray.api.store.memory import MemoryStore
from routr_ray.edge.tlsutil import make_self_signed_pem
from routr_ray.proto.gen import agents_pb2, credentials_pb2, domains_pb2
from tests.support.api_client import bearer, stubs

pytestmark = pytest.mark.timeout(60)
SHIPPED_RESOURCES = Path(__file__).resolve().parents[2] / "config" / "resources"


async def refused(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    raise AssertionError("the call was accepted")


@pytest.fixture
async def two_tenants() -> AsyncIterator[tuple[object, MemoryStore, dict[str, str]]]:
    store = MemoryStore()
    keys = {"alpha": store.add_key({"alpha": "admin"}), "beta": store.add_key({"beta": "admin"}),
            "viewer": store.add_key({"alpha": "viewer"})}
    server = await start_api_server(ResourceApi(store), "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}")
    yield stubs(channel), store, keys
    await channel.close()
    await server.stop(0)


async def test_no_forged_revoked_or_foreign_credentials(two_tenants: tuple[object, MemoryStore, dict[str, str]]
                                                        ) -> None:
    s, store, keys = two_tenants
    request = agents_pb2.ListAgentsRequest()
    key_id = keys["alpha"].split("-")[1]
    for metadata in (
        (),
        # right id, wrong secret (its last character changed: never the same key, whatever that character is)
        (("authorization", "Bearer " + keys["alpha"][:-1] + ("1" if keys["alpha"].endswith("0") else "0")),),
        (("authorization", f"Bearer rr-{key_id}-"),),
        (("authorization", "Basic " + "A" * 200),),
        (("x-routr-token", "anything"),),  # the token header of 51901/51902 means nothing here
        (("authorization", "Bearer " + "x" * 5_000),),
    ):
        assert await refused(s.agents.List(request, metadata=metadata)) == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    store._keys.pop(key_id)  # revoked
    assert await refused(s.agents.List(request, metadata=bearer(keys["alpha"]))) == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


async def test_a_key_never_reaches_another_workspace(two_tenants: tuple[object, MemoryStore, dict[str, str]]) -> None:
    s, _, keys = two_tenants
    alpha, beta = bearer(keys["alpha"]), bearer(keys["beta"])
    domain = await s.domains.Create(domains_pb2.CreateDomainRequest(name="A", domain_uri="a.example"), metadata=alpha)  # type: ignore[attr-defined]
    creds = await s.credentials.Create(credentials_pb2.CreateCredentialsRequest(  # type: ignore[attr-defined]
        name="c", username="u", password="secret-of-alpha"), metadata=alpha)
    # pick the other workspace by name
    assert await refused(s.domains.List(domains_pb2.ListDomainRequest(),  # type: ignore[attr-defined]
                                        metadata=(*beta, ("x-workspace", "alpha")))) == grpc.StatusCode.PERMISSION_DENIED
    # guess its refs: not found, exactly as a ref that does not exist
    for call in (s.domains.Get(domains_pb2.GetDomainRequest(ref=domain.ref), metadata=beta),  # type: ignore[attr-defined]
                 s.domains.Delete(domains_pb2.DeleteDomainRequest(ref=domain.ref), metadata=beta),  # type: ignore[attr-defined]
                 s.credentials.Get(credentials_pb2.GetCredentialsRequest(ref=creds.ref), metadata=beta)):  # type: ignore[attr-defined]
        assert await refused(call) == grpc.StatusCode.NOT_FOUND
    # point a ref into it: the credentials of alpha do not exist for beta
    beta_domain = await s.domains.Create(domains_pb2.CreateDomainRequest(name="B", domain_uri="b.example"),  # type: ignore[attr-defined]
                                         metadata=beta)
    assert await refused(s.agents.Create(agents_pb2.CreateAgentRequest(  # type: ignore[attr-defined]
        name="x", username="1", domain_ref=beta_domain.ref, credentials_ref=creds.ref),
        metadata=beta)) == grpc.StatusCode.INVALID_ARGUMENT
    # FindBy never crosses
    found = await s.domains.FindBy(domains_pb2.FindByRequest(field_name="domainUri", field_value="a.example"),  # type: ignore[attr-defined]
                                   metadata=beta)
    assert not found.items
    # a clash on a global unique value says so without naming the other workspace's resource
    try:
        await s.domains.Create(domains_pb2.CreateDomainRequest(name="dup", domain_uri="a.example"), metadata=beta)  # type: ignore[attr-defined]
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.ALREADY_EXISTS and domain.ref not in (exc.details() or "")
    else:
        raise AssertionError("a second a.example was accepted")


async def test_viewer_cannot_write(two_tenants: tuple[object, MemoryStore, dict[str, str]]) -> None:
    s, store, keys = two_tenants
    viewer = bearer(keys["viewer"])
    assert await refused(s.domains.Create(domains_pb2.CreateDomainRequest(name="v", domain_uri="v.example"),  # type: ignore[attr-defined]
                                          metadata=viewer)) == grpc.StatusCode.PERMISSION_DENIED
    assert await store.everything() == []


async def test_secrets_never_come_back_nor_reach_the_log(two_tenants: tuple[object, MemoryStore, dict[str, str]],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    s, _, keys = two_tenants
    caplog.set_level(logging.DEBUG)
    alpha = bearer(keys["alpha"])
    creds = await s.credentials.Create(credentials_pb2.CreateCredentialsRequest(  # type: ignore[attr-defined]
        name="c", username="u", password="never-shown-password"), metadata=alpha)
    assert creds.password == ""
    listed = await s.credentials.List(credentials_pb2.ListCredentialsRequest(), metadata=alpha)  # type: ignore[attr-defined]
    assert all(item.password == "" for item in listed.items)
    await refused(s.credentials.Update(credentials_pb2.UpdateCredentialsRequest(ref="nope", password="another-pass"),  # type: ignore[attr-defined]
                                       metadata=alpha))
    await refused(s.agents.List(agents_pb2.ListAgentsRequest(), metadata=bearer(keys["alpha"][:-1] + "f")))  # type: ignore[attr-defined]
    logged = caplog.text
    assert "never-shown-password" not in logged and "another-pass" not in logged
    assert keys["alpha"].split("-")[2] not in logged and keys["alpha"][:-1] not in logged


async def test_yaml_directory_is_read_only_through_the_api(tmp_path: Path) -> None:
    key = "rr-0123456789abcdef-" + "ab" * 32
    store = FileStore(SHIPPED_RESOURCES, key_text=key)
    server = await start_api_server(ResourceApi(store), "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}") as channel:
            s = stubs(channel)
            listed = await s.agents.List(agents_pb2.ListAgentsRequest(), metadata=bearer(key))
            assert {a.username for a in listed.items} == {"1001", "1002"}
            assert all(a.credentials.password == "" for a in listed.items)
            try:
                await s.agents.Delete(agents_pb2.DeleteAgentRequest(ref=listed.items[0].ref), metadata=bearer(key))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "read-only" in (exc.details() or "")
            else:
                raise AssertionError("a write went through to the YAML directory")
            assert await refused(s.agents.List(agents_pb2.ListAgentsRequest())) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(0)


def test_plaintext_is_refused_off_loopback() -> None:
    for addr in ("0.0.0.0:51907", "192.0.2.1:51907", "[::]:51908", "api.example.com:51908"):
        with pytest.raises(ApiServerRefused, match="TLS"):
            check_bind(addr, None, what="the API")
    check_bind("127.0.0.1:51907", None, what="the API")
    check_bind("0.0.0.0:51908", TlsFiles(Path("c"), Path("k")), what="the API")
    with pytest.raises(ApiServerRefused, match="caCert"):
        check_bind("0.0.0.0:51908", TlsFiles(Path("c"), Path("k"), verify_client_cert=True), what="the API")


def _ca_and_client(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A CA (PEM file) and a client certificate it signed (PEM, key PEM)."""
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME,
                                                                                    "client")]))
              .issuer_name(ca_name).public_key(client_key.public_key()).serial_number(2).not_valid_before(now)
              .not_valid_after(now + datetime.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_pem = client_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    return tmp_path / "ca.pem", client.public_bytes(serialization.Encoding.PEM), key_pem


async def test_mtls_refuses_a_client_without_a_certificate(tmp_path: Path) -> None:
    cert, key = make_self_signed_pem(["localhost"])
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    ca_path, client_cert, client_key = _ca_and_client(tmp_path)
    store = MemoryStore()
    api_key = store.add_key({"default": "viewer"})
    tls = TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem", ca_path, verify_client_cert=True)
    server = await start_api_server(ResourceApi(store), "127.0.0.1:0", tls=tls)
    target = f"localhost:{server.bound_port}"
    try:
        async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(cert)) as channel:
            code = await refused(stubs(channel).agents.List(agents_pb2.ListAgentsRequest(), metadata=bearer(api_key),
                                                            timeout=5))
            assert code == grpc.StatusCode.UNAVAILABLE  # the handshake fails: no certificate
        async with grpc.aio.insecure_channel(target) as channel:
            assert await refused(stubs(channel).agents.List(agents_pb2.ListAgentsRequest(), timeout=5)) in (
                grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
        credentials = grpc.ssl_channel_credentials(cert, client_key, client_cert)
        async with grpc.aio.secure_channel(target, credentials) as channel:
            listed = await stubs(channel).agents.List(agents_pb2.ListAgentsRequest(), metadata=bearer(api_key))
            assert list(listed.items) == []
    finally:
        await server.stop(0)
