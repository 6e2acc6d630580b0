"""TLS listener and the SSL contexts of routr_ray.edge.tlsutil: PEM, PKCS#12 (Routr's securityContext),
the self-signed development fallback, and outbound TLS to a next hop."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from routr_ray.edge import tlsutil
from routr_ray.edge.tlsutil import SecurityContext, TlsConfigError
from routr_ray.edge.transports import Flow, TlsListener, TransportName

pytestmark = pytest.mark.timeout(20)

REGISTER = (
    b"REGISTER sips:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS client.invalid;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sips:alice@example.com>\r\n"
    b"From: <sips:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"Content-Length: 0\r\n\r\n"
)
REPLY = b"SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\nCall-ID: a84b4c76e66710\r\nContent-Length: 0\r\n\r\n"


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Flow]] = asyncio.Queue()

    def __call__(self, data: bytes, flow: Flow) -> None:
        self.queue.put_nowait((data, flow))

    async def next(self, within: float = 2.0) -> tuple[bytes, Flow]:
        return await asyncio.wait_for(self.queue.get(), within)


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A test certificate for 127.0.0.1 / localhost, made here with `cryptography`."""
    cert_pem, key_pem = tlsutil.make_self_signed_pem(["localhost", "127.0.0.1"])
    folder = tmp_path_factory.mktemp("certs")
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key_pem)
    return folder / "cert.pem", folder / "key.pem"


def trusting(cert_path: Path) -> ssl.SSLContext:
    return tlsutil.client_context(cafile=str(cert_path))


def make_p12(cert_path: Path, key_path: Path, out: Path, password: bytes | None) -> Path:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    out.write_bytes(pkcs12.serialize_key_and_certificates(b"signaling", key, cert, None, encryption))  # type: ignore[arg-type]
    return out


@pytest.fixture
async def tls(pem: tuple[Path, Path]) -> AsyncIterator[tuple[TlsListener, Inbox]]:
    inbox = Inbox()
    ctx = tlsutil.server_context(cert_path=pem[0], key_path=pem[1])
    listener = TlsListener("127.0.0.1", 0, inbox, ssl_context=ctx, client_ssl_context=trusting(pem[0]))
    await listener.start()
    yield listener, inbox
    await listener.stop()


async def test_tls_delivers_and_replies_over_the_same_connection(
    tls: tuple[TlsListener, Inbox], pem: tuple[Path, Path]
) -> None:
    listener, inbox = tls
    reader, writer = await asyncio.open_connection(
        *listener.local_address, ssl=trusting(pem[0]), server_hostname="localhost"
    )
    try:
        writer.write(REGISTER[:10])
        await writer.drain()
        writer.write(REGISTER[10:] + b"\r\n\r\n")  # the rest, then a ping in the same write
        data, flow = await inbox.next()
        assert data == REGISTER
        assert flow.transport is TransportName.TLS and flow.connection_id is not None
        assert flow.remote == writer.get_extra_info("sockname")[:2]
        assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"  # RFC 5626 pong
        assert await listener.send(flow, REPLY)
        assert await asyncio.wait_for(reader.readexactly(len(REPLY)), 2) == REPLY
    finally:
        writer.close()


async def test_tls_rejects_a_plain_tcp_client(tls: tuple[TlsListener, Inbox]) -> None:
    listener, inbox = tls
    reader, writer = await asyncio.open_connection(*listener.local_address)
    writer.write(REGISTER)
    try:
        assert await asyncio.wait_for(reader.read(), 3) == b""
    except ConnectionResetError:
        pass
    writer.close()
    assert inbox.queue.empty()


async def test_tls_outbound_connection_verifies_the_next_hop(
    tls: tuple[TlsListener, Inbox], pem: tuple[Path, Path]
) -> None:
    listener, inbox = tls
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def next_hop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.put_nowait(await reader.readexactly(len(REGISTER)))
        writer.write(REPLY)
        await writer.drain()
        await reader.read()

    server_ctx = tlsutil.server_context(cert_path=pem[0], key_path=pem[1])
    hop = await asyncio.start_server(next_hop, "127.0.0.1", 0, ssl=server_ctx)
    try:
        address = hop.sockets[0].getsockname()[:2]
        assert await listener.send(address, REGISTER, server_name="localhost")
        assert await asyncio.wait_for(got.get(), 2) == REGISTER
        data, flow = await inbox.next()
        assert data == REPLY and flow.remote == address
        # a name the certificate does not carry fails verification: nothing is sent
        other = tlsutil.server_context(cert_path=pem[0], key_path=pem[1])
        hop2 = await asyncio.start_server(next_hop, "127.0.0.1", 0, ssl=other)
        try:
            assert not await listener.send(
                hop2.sockets[0].getsockname()[:2], REGISTER, server_name="evil.test"
            )
            assert listener.counters.connect_failures == 1
        finally:
            hop2.close()
    finally:
        await listener.stop()
        hop.close()
        await hop.wait_closed()


async def test_pkcs12_key_store_with_password(pem: tuple[Path, Path], tmp_path: Path) -> None:
    store = make_p12(pem[0], pem[1], tmp_path / "signaling.p12", b"changeme")
    security = SecurityContext(
        key_store=str(store),
        key_store_password="changeme",
        trust_store=str(store),
        trust_store_password="changeme",
        client_auth_type="DisabledAll",
        client_protocols=["SSLv3", "TLSv1.2", "TLSv1.3"],
    )
    ctx = tlsutil.server_context(security=security)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2  # SSLv3 in Routr's example is never enabled
    inbox = Inbox()
    listener = TlsListener("127.0.0.1", 0, inbox, ssl_context=ctx)
    await listener.start()
    try:
        reader, writer = await asyncio.open_connection(
            *listener.local_address, ssl=trusting(pem[0]), server_hostname="127.0.0.1"
        )
        writer.write(REGISTER)
        assert (await inbox.next())[0] == REGISTER
        writer.close()
    finally:
        await listener.stop()
    with pytest.raises(TlsConfigError, match="wrong password"):
        tlsutil.server_context(security=SecurityContext(key_store=str(store), key_store_password="nope"))
    with pytest.raises(TlsConfigError, match="authType"):
        tlsutil.server_context(
            security=SecurityContext(
                key_store=str(store), key_store_password="changeme", client_auth_type="x"
            )
        )


def test_pkcs12_without_password_and_client_auth_required(pem: tuple[Path, Path], tmp_path: Path) -> None:
    store = make_p12(pem[0], pem[1], tmp_path / "open.p12", None)
    ctx = tlsutil.server_context(
        security=SecurityContext(key_store=str(store), trust_store=str(store), client_auth_type="Required")
    )
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert len(ctx.get_ca_certs()) == 1


def test_missing_key_store_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match="cannot read"):
        tlsutil.server_context(security=SecurityContext(key_store=str(tmp_path / "absent.p12")))
    with pytest.raises(TlsConfigError, match="both"):
        tlsutil.server_context(cert_path=tmp_path / "cert.pem")


async def test_self_signed_fallback_logs_a_warning_and_serves(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="routr_ray.edge.tlsutil"):
        ctx = tlsutil.server_context()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "self-signed" in r.getMessage()]
    assert len(warnings) == 1
    inbox = Inbox()
    listener = TlsListener("127.0.0.1", 0, inbox, ssl_context=ctx)
    await listener.start()
    try:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection(*listener.local_address, ssl=insecure)
        writer.write(REGISTER)
        data, flow = await inbox.next()
        assert data == REGISTER
        assert await listener.send(flow, REPLY)
        assert await asyncio.wait_for(reader.readexactly(len(REPLY)), 2) == REPLY
        writer.close()
    finally:
        await listener.stop()


async def test_tls_listener_requires_a_context() -> None:
    with pytest.raises(ValueError, match="ssl_context"):
        await TlsListener("127.0.0.1", 0, Inbox()).start()


def test_context_from_the_edgeport_config_objects(pem: tuple[Path, Path], tmp_path: Path) -> None:
    from routr_ray.config.edgeport import SecurityContext as ConfigSecurity
    from routr_ray.config.edgeport import TlsClientAuth, TlsClientConfig

    store = make_p12(pem[0], pem[1], tmp_path / "signaling.p12", b"changeme")
    from_p12 = tlsutil.server_context_from_config(
        ConfigSecurity(
            key_store=str(store),
            key_store_password="changeme",
            client=TlsClientConfig(protocols=("TLSv1.3",), auth_type=TlsClientAuth.WANTED),
        )
    )
    assert from_p12.verify_mode == ssl.CERT_OPTIONAL and from_p12.minimum_version == ssl.TLSVersion.TLSv1_3
    from_pem = tlsutil.server_context_from_config(
        ConfigSecurity(certificate=str(pem[0]), private_key=str(pem[1]), ca_certificate=str(pem[0]))
    )
    assert len(from_pem.get_ca_certs()) == 1
