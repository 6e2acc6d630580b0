"""The API's two gRPC ports, as Routr's pgdata serves them (routr.md §1.10), with grpc health on each:

* **internal** (``bindAddr``, default ``127.0.0.1:51907``): plaintext, so loopback only: the server refuses any
  other address (API keys would cross the network in the clear).
* **external** (``externalBindAddr``, default off; Routr's 51908): TLS with ``tls.cert``/``tls.key``, and mTLS
  when ``tls.caCert`` is given with ``verifyClientCert: true`` (a client without a certificate signed by that CA
  does not get past the handshake). Plaintext only on a loopback address (behind a local TLS proxy, or tests).

Both serve the same seven services and every call on either needs an API key (routr_ray/api/rbac.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from routr_ray.api.core import ResourceApi
from routr_ray.api.service import add_services
from routr_ray.grpcutil.auth import is_loopback_host, split_host_port

SERVER_OPTIONS = (("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 4 << 20))


class ApiServerRefused(ValueError):
    """A port configuration that would expose keys or resources (one line to print)."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca_cert: Path | None = None
    verify_client_cert: bool = False


def check_bind(bind_addr: str, tls: TlsFiles | None, *, what: str) -> None:
    host, _ = split_host_port(bind_addr)
    if tls is None and not is_loopback_host(host):
        raise ApiServerRefused(f"{what} would listen on {bind_addr} without TLS: API keys would cross the network in "
                               "the clear. Bind it to 127.0.0.1 or configure tls (cert, key)")
    if tls is not None and tls.verify_client_cert and tls.ca_cert is None:
        raise ApiServerRefused(f"{what}: verifyClientCert needs tls.caCert (the CA that signs client certificates)")


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    try:
        pair = (tls.key.read_bytes(), tls.cert.read_bytes())
        ca = tls.ca_cert.read_bytes() if tls.ca_cert is not None else None
    except OSError as exc:
        raise ApiServerRefused(f"cannot read the API's TLS files: {exc}") from exc
    return grpc.ssl_server_credentials([pair], root_certificates=ca,
                                       require_client_auth=bool(tls.verify_client_cert and ca))


async def start_api_server(api: ResourceApi, bind_addr: str, *, tls: TlsFiles | None = None,
                           what: str = "the provisioning API") -> grpc.aio.Server:
    """Start one port; raises :class:`ApiServerRefused` or OSError (cannot bind). ``server.bound_port`` is set."""
    check_bind(bind_addr, tls, what=what)
    server = grpc.aio.server(options=list(SERVER_OPTIONS))
    names = add_services(api, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if tls is None:
            port = server.add_insecure_port(bind_addr)
        else:
            port = server.add_secure_port(bind_addr, server_credentials(tls))
    except RuntimeError as exc:
        raise OSError(f"cannot bind {what} to {bind_addr}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot bind {what} to {bind_addr}")
    await server.start()
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.bound_port = port  # type: ignore[attr-defined]
    return server
