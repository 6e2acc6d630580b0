"""The provisioning API's config (issue 20): ``kind: APIServer``. Without one, ``routr-ray run`` serves no API.

spec:
  bindAddr: 127.0.0.1:51907          # internal port, plaintext: loopback only
  externalBindAddr: 0.0.0.0:51908    # optional external port: TLS (mTLS with caCert + verifyClientCert)
  tls: {cert: certs/api.pem, key: certs/api.key, caCert: certs/ca.pem, verifyClientCert: true}
  database: {url: postgresql://routr@db:5432/routr}   # absent: the YAML resources directory, read-only

``$ROUTR_RAY_DATABASE_URL`` overrides ``database.url`` (so a password need not be in a file). Relative TLS paths
are relative to the config file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routr_ray.config.problems import Place

DATABASE_URL_ENV = "ROUTR_RAY_DATABASE_URL"


@dataclass(frozen=True)
class ApiTls:
    cert: str
    key: str
    ca_cert: str | None = None
    verify_client_cert: bool = False


@dataclass(frozen=True)
class ApiServerConfig:
    ref: str = "api"
    bind_addr: str = "127.0.0.1:51907"
    external_bind_addr: str | None = None
    tls: ApiTls | None = None
    database_url: str | None = field(default=None, repr=False)
    migrate: bool = True

    def database(self) -> str | None:
        """The database URL in force: ``$ROUTR_RAY_DATABASE_URL``, else ``database.url`` (None: YAML files)."""
        return os.environ.get(DATABASE_URL_ENV) or self.database_url


def build_api_server(document: dict[str, Any], place: Place) -> ApiServerConfig:
    spec = document["spec"]
    base = Path(place.file).parent
    tls_raw = spec.get("tls")
    tls = None
    if tls_raw is not None:
        def path(text: str | None) -> str | None:
            return str(base / text) if text is not None and not os.path.isabs(text) else text

        tls = ApiTls(path(tls_raw["cert"]) or "", path(tls_raw["key"]) or "", path(tls_raw.get("caCert")),
                     bool(tls_raw.get("verifyClientCert", False)))
        if tls.verify_client_cert and tls.ca_cert is None:
            place.child("spec", "tls", "verifyClientCert").error("needs caCert (the CA that signs client certificates)")
    external = spec.get("externalBindAddr")
    database = spec.get("database") or {}
    return ApiServerConfig(ref=document["ref"], bind_addr=spec.get("bindAddr", "127.0.0.1:51907"),
                           external_bind_addr=external, tls=tls, database_url=database.get("url"),
                           migrate=bool(database.get("migrate", True)))
