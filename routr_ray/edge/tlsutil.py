"""SSL contexts for the TLS and WSS listeners.

Three sources, in the order `server_context` tries them:
1. PEM certificate chain and key paths;
2. Routr's ``securityContext``: a PKCS#12 key store with its password (``keyStore``, ``keyStorePassword``), an
   optional trust store (``trustStore``, ``trustStorePassword``; PKCS#12 or PEM) and ``client.authType``
   (Disabled | DisabledAll | Wanted | Required) / ``client.protocols``;
3. neither: a self-signed development certificate generated at start, with a WARNING in the log.

TLS below 1.2 is never enabled, whatever ``client.protocols`` lists (Routr's example still names SSLv3).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

CLIENT_AUTH_MODES: dict[str, ssl.VerifyMode] = {
    "disabled": ssl.CERT_NONE,
    "disabledall": ssl.CERT_NONE,
    "wanted": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {"tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}


class TlsConfigError(ValueError):
    """A key store, certificate or setting that cannot be used; the message names the file and the reason."""


@dataclass(slots=True)
class SecurityContext:
    """Routr's EdgePort ``spec.securityContext`` (field names as in Routr, snake_cased)."""

    key_store: str | None = None
    key_store_password: str | None = None
    trust_store: str | None = None
    trust_store_password: str | None = None
    key_store_type: str = "pkcs12"
    client_auth_type: str = "Disabled"
    client_protocols: list[str] = field(default_factory=list)


def server_context_from_config(security: object | None, dev_hosts: Iterable[str] = ()) -> ssl.SSLContext:
    """The server context for the EdgePort config's ``securityContext`` (routr_ray.config.edgeport).

    Read by attribute so this module does not depend on the config package: ``certificate``/``private_key``
    (PEM, routr-ray's addition) win over ``key_store``; ``trust_store`` or ``ca_certificate`` is the trust
    store; ``client.protocols`` and ``client.auth_type`` as in Routr. None → self-signed development cert.
    """
    if security is None:
        return self_signed_context(dev_hosts)
    client = getattr(security, "client", None)
    settings = SecurityContext(
        key_store=getattr(security, "key_store", None),
        key_store_password=getattr(security, "key_store_password", None),
        trust_store=getattr(security, "trust_store", None) or getattr(security, "ca_certificate", None),
        trust_store_password=getattr(security, "trust_store_password", None),
        key_store_type=getattr(security, "key_store_type", None) or "pkcs12",
        client_auth_type=str(getattr(client, "auth_type", None) or "Disabled"),
        client_protocols=list(getattr(client, "protocols", None) or ()),
    )
    cert, key = getattr(security, "certificate", None), getattr(security, "private_key", None)
    if cert or key:
        ctx = server_context(cert_path=cert, key_path=key, security=settings)
        if settings.trust_store:
            _load_trust_store(ctx, settings.trust_store, settings.trust_store_password)
        return ctx
    return server_context(security=settings, dev_hosts=dev_hosts)


class ReloadableServerContext:
    """A listener's server context whose certificate can be replaced while it runs (issue 18: TLS certificates
    reloaded for new connections). The listeners keep the context they were created with (``live``); after
    :meth:`reload`, its SNI callback (called on every handshake, with or without SNI) hands each new handshake the
    newest context, so the new certificate, key and trust store apply to new connections while the open ones
    keep theirs. ``verify_mode`` and the protocol versions are copied onto ``live`` too: OpenSSL takes them from
    it when a connection starts, before the callback runs."""

    def __init__(self, live: ssl.SSLContext) -> None:
        self.live = live
        self.current = live
        self.reloads = 0
        live.sni_callback = self._pick

    def _pick(self, ssl_object: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> None:
        current = self.current
        if current is not self.live:
            ssl_object.context = current

    def reload(self, new: ssl.SSLContext) -> None:
        """New handshakes use ``new`` from now on."""
        self.live.verify_mode = new.verify_mode
        self.live.minimum_version = new.minimum_version
        self.live.maximum_version = new.maximum_version
        self.current = new
        self.reloads += 1


def server_context(
    *,
    cert_path: str | os.PathLike[str] | None = None,
    key_path: str | os.PathLike[str] | None = None,
    key_password: str | None = None,
    security: SecurityContext | None = None,
    dev_hosts: Iterable[str] = (),
) -> ssl.SSLContext:
    """The server SSLContext from PEM paths, else a PKCS#12 security context, else a self-signed dev cert."""
    if cert_path or key_path:
        if not (cert_path and key_path):
            raise TlsConfigError("TLS needs both a certificate and a key path")
        ctx = _new_server_context(security)
        try:
            ctx.load_cert_chain(os.fspath(cert_path), os.fspath(key_path), password=key_password)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"cannot load certificate {cert_path} / key {key_path}: {exc}") from exc
        return ctx
    if security is not None and security.key_store:
        return server_context_from_pkcs12(security)
    return self_signed_context(dev_hosts)


def server_context_from_pkcs12(security: SecurityContext) -> ssl.SSLContext:
    """The server SSLContext from a PKCS#12 key store (and trust store) as Routr configures it."""
    if not security.key_store:
        raise TlsConfigError("securityContext.keyStore is required")
    if security.key_store_type.lower() not in ("pkcs12", "p12"):
        raise TlsConfigError(
            f"securityContext.keyStoreType {security.key_store_type!r} is not supported (use pkcs12)"
        )
    key, cert, chain = _load_pkcs12(security.key_store, security.key_store_password)
    if key is None or cert is None:
        raise TlsConfigError(f"{security.key_store}: the key store holds no private key with its certificate")
    ctx = _new_server_context(security)
    _load_key_pair(ctx, key, [cert, *chain])
    if security.trust_store:
        _load_trust_store(ctx, security.trust_store, security.trust_store_password)
    return ctx


def client_context(
    *, trust_store: str | None = None, trust_store_password: str | None = None, cafile: str | None = None
) -> ssl.SSLContext:
    """An SSLContext for outbound TLS that verifies the peer (system CAs, or the given trust store/CA file)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if trust_store:
        _load_trust_store(ctx, trust_store, trust_store_password)
    return ctx


def self_signed_context(hosts: Iterable[str] = ()) -> ssl.SSLContext:
    """A server context with a freshly generated self-signed certificate. For development only."""
    names = ["localhost", "127.0.0.1", "::1", *hosts]
    log.warning(
        "TLS: no certificate configured; using a self-signed development certificate for %s. "
        "Clients will not trust it: configure securityContext (PKCS#12) or PEM cert/key paths in production.",
        ", ".join(dict.fromkeys(names)),
    )
    cert_pem, key_pem = make_self_signed_pem(names)
    key = serialization.load_pem_private_key(key_pem, password=None)
    cert = x509.load_pem_x509_certificate(cert_pem)
    ctx = _new_server_context(None)
    _load_key_pair(ctx, key, [cert])
    return ctx


def make_self_signed_pem(hosts: Sequence[str] = ("localhost",), *, days: int = 365) -> tuple[bytes, bytes]:
    """(certificate PEM, unencrypted key PEM) of a self-signed EC P-256 certificate naming ``hosts``.

    Host entries that are IP literals go into IP SANs, the others into DNS SANs; the first is the CN.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(dict.fromkeys(hosts)) or ["localhost"]
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem


def _new_server_context(security: SecurityContext | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if security is None:
        return ctx
    versions = [_TLS_VERSIONS[p.lower()] for p in security.client_protocols if p.lower() in _TLS_VERSIONS]
    if versions:
        ctx.minimum_version = min(versions)
        ctx.maximum_version = max(versions)
    mode = CLIENT_AUTH_MODES.get(security.client_auth_type.replace(" ", "").lower())
    if mode is None:
        known = ", ".join(("Disabled", "DisabledAll", "Wanted", "Required"))
        raise TlsConfigError(
            f"securityContext.client.authType {security.client_auth_type!r}: expected {known}"
        )
    ctx.verify_mode = mode
    return ctx


def _load_pkcs12(
    path: str, password: str | None
) -> tuple[pkcs12.PKCS12PrivateKeyTypes | None, x509.Certificate | None, list[x509.Certificate]]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read PKCS#12 store {path}: {exc}") from exc
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError as exc:
        raise TlsConfigError(
            f"cannot open PKCS#12 store {path} (wrong password or not PKCS#12): {exc}"
        ) from exc
    return key, cert, list(extra)


def _load_key_pair(ctx: ssl.SSLContext, key: object, chain: list[x509.Certificate]) -> None:
    """Load an in-memory key and chain: ssl only reads files, so write them to a private temp dir.

    The key is written encrypted with a one-time password and both files are removed at once.
    """
    one_time = secrets.token_urlsafe(24)
    key_pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time.encode()),
    )
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    with tempfile.TemporaryDirectory(prefix="routr-tls-") as tmp:
        cert_file = Path(tmp, "chain.pem")
        key_file = Path(tmp, "key.pem")
        cert_file.write_bytes(chain_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key_pem)
        ctx.load_cert_chain(cert_file, key_file, password=one_time)


def _load_trust_store(ctx: ssl.SSLContext, path: str, password: str | None) -> None:
    """Trusted CAs from a PKCS#12 store (every certificate in it) or a PEM bundle."""
    data = Path(path).read_bytes() if Path(path).is_file() else None
    if data is None:
        raise TlsConfigError(f"cannot read trust store {path}")
    if b"-----BEGIN CERTIFICATE-----" in data:
        ctx.load_verify_locations(cadata=data.decode("ascii", errors="replace"))
        return
    _, cert, extra = _load_pkcs12(path, password)
    certs = ([cert] if cert is not None else []) + extra
    if not certs:
        raise TlsConfigError(f"trust store {path} holds no certificates")
    ctx.load_verify_locations(
        cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
    )
