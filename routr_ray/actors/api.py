"""``api-server``: the actor that serves the provisioning API (routr_ray/api, issue 20) on its ports and, with a
database, follows it and publishes every change to Connect's resource board (routr_ray/actors/connect.py), which
every Connect replica on every node long-polls: a created, changed or deleted resource is in force within a
second, with no restart.

Detached, restarted after a crash with its arguments; :func:`deploy_api_server` replaces it when its config or
secrets changed (routr_ray/actors/detached.py). It runs on the driver's node, so that a loopback ``bindAddr`` is
the loopback of the machine the operator started routr-ray on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import ray

from routr_ray.actors import NAMESPACE
from routr_ray.actors.detached import driver_node_strategy, fingerprint, replace_if_changed
from routr_ray.config.api import ApiServerConfig

log = logging.getLogger(__name__)

API_SERVER_NAME = "api-server"


def _digest(text: str | None) -> str | None:
    return hashlib.blake2s(text.encode()).hexdigest() if text else None


def api_fingerprint(config: ApiServerConfig, resources_dir: str, database_url: str | None, secrets_key: str | None,
                    api_key: str | None, board: str | None) -> str:
    return fingerprint("api", repr(config), resources_dir, _digest(database_url), _digest(secrets_key),
                       _digest(api_key), board)


class _BoardPublish:
    """``publish(resources)`` to the board named ``name`` (looked up again after a failure)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._board: Any = None

    async def __call__(self, resources: Any) -> None:
        if self._board is None:
            self._board = ray.get_actor(self.name, namespace=NAMESPACE)
        try:
            await self._board.publish.remote(resources)
        except Exception:
            self._board = None
            raise


def _remove_bindings(shard_count: int) -> Any:
    """``on_removed(aors)``: RemoveRoutes of each AOR on the Location shards (none without shards)."""
    if shard_count <= 0:
        return None

    async def remove(aors: list[str]) -> None:
        from routr_ray.actors.location import ShardedLocationClient, shard_handles
        from routr_ray.proto.gen import location_pb2

        client = ShardedLocationClient(shard_handles(shard_count))
        for aor in aors:
            await client.remove_routes(location_pb2.RemoveRoutesRequest(aor=aor))
        log.info("removed the bindings of %d deleted agent(s)", len(aors))

    return remove


@ray.remote(num_cpus=0.05, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class ApiServerActor:
    async def __init__(self, config: ApiServerConfig, resources_dir: str, database_url: str | None,
                       secrets_key: str | None, api_key: str | None, board: str | None, shard_count: int = 0) -> None:
        from pathlib import Path

        from routr_ray.api.core import ResourceApi
        from routr_ray.api.feed import PostgresFeed
        from routr_ray.api.secrets import Sealer
        from routr_ray.api.server import TlsFiles, start_api_server
        from routr_ray.api.store.files import FileStore
        from routr_ray.api.store.postgres import PostgresStore

        logging.basicConfig(level=logging.INFO)
        self._fingerprint = api_fingerprint(config, resources_dir, database_url, secrets_key, api_key, board)
        self.feed_task: asyncio.Task[None] | None = None
        if database_url:
            sealer = Sealer(secrets_key or "")
            store: Any = await PostgresStore.open(database_url, migrate=config.migrate)
            if board:
                feed = PostgresFeed(database_url, store.everything, sealer, _BoardPublish(board),
                                    on_removed=_remove_bindings(shard_count))
                self.feed_task = asyncio.get_running_loop().create_task(feed.run())
        else:
            sealer = None
            store = FileStore(resources_dir, key_text=api_key or "")
        self.store = store
        api = ResourceApi(store, sealer)
        self.servers = [await start_api_server(api, config.bind_addr, what="the API's internal port (bindAddr)")]
        if config.external_bind_addr:
            tls = None
            if config.tls is not None:
                tls = TlsFiles(Path(config.tls.cert), Path(config.tls.key),
                               Path(config.tls.ca_cert) if config.tls.ca_cert else None, config.tls.verify_client_cert)
            self.servers.append(await start_api_server(api, config.external_bind_addr, tls=tls,
                                                       what="the API's external port (externalBindAddr)"))
        log.info("provisioning API on %s", ", ".join(str(s.bound_port) for s in self.servers))

    async def ready(self) -> list[int]:
        return [server.bound_port for server in self.servers]

    async def fingerprint(self) -> str:
        return self._fingerprint


def deploy_api_server(config: ApiServerConfig, resources_dir: str, *, database_url: str | None,
                      secrets_key: str | None, api_key: str | None, board: str | None, shard_count: int = 0,
                      timeout: float = 60.0, name: str = API_SERVER_NAME) -> Any:
    """Start the API actor (or keep the running one when nothing changed) and wait until it listens."""
    wanted = api_fingerprint(config, resources_dir, database_url, secrets_key, api_key, board)
    replace_if_changed(name, wanted, timeout=timeout)
    handle = ApiServerActor.options(  # type: ignore[attr-defined]
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        scheduling_strategy=driver_node_strategy(),
    ).remote(config, resources_dir, database_url, secrets_key, api_key, board, shard_count)
    try:
        ray.get(handle.ready.remote(), timeout=timeout)
    except Exception:
        ray.kill(handle, no_restart=True)  # an API that cannot start would be restarted forever
        raise
    return handle




# -- what `routr-ray run` / `deploy` call (routr_ray/actors/launcher.py) ---------------------------------------


class ApiStartupError(RuntimeError):
    """One line to print: the API cannot start as configured."""


@dataclass
class ApiPlan:
    config: ApiServerConfig
    database_url: str | None
    secrets_key: str | None
    api_key: str | None
    resources: Any = None  # the database's set (None: Connect follows the files)
    lines: list[str] = field(default_factory=list)  # for the startup summary


def plan_api(api: ApiServerConfig | None) -> ApiPlan | None:
    """Check the ports and secrets (DESIGN §6b: plaintext only on loopback; no database without the secrets key),
    then with a database: migrate, make the first owner key if there is none (printed once), load Connect's set.
    Raises :class:`ApiStartupError`."""
    if api is None:
        return None
    import asyncio
    import os
    from pathlib import Path

    from routr_ray.api.secrets import Sealer, SecretsKeyError
    from routr_ray.api.server import ApiServerRefused, TlsFiles, check_bind
    from routr_ray.api.startup import prepare_database, redacted_url, secrets_key
    from routr_ray.api.store.files import API_KEY_ENV

    try:
        check_bind(api.bind_addr, None, what="the API's internal port (APIServer bindAddr)")
        if api.external_bind_addr:
            tls = TlsFiles(Path(api.tls.cert), Path(api.tls.key)) if api.tls is not None else None
            check_bind(api.external_bind_addr, tls, what="the API's external port (APIServer externalBindAddr)")
        url = api.database()
        if url:
            Sealer.from_env()  # a missing or short key is refused now, not after Ray started
    except (ApiServerRefused, SecretsKeyError) as exc:
        raise ApiStartupError(str(exc)) from exc
    plan = ApiPlan(api, url, secrets_key() or None, os.environ.get(API_KEY_ENV) or None)
    if url:
        try:
            prepared = asyncio.run(prepare_database(url, migrate=api.migrate))
        except Exception as exc:  # noqa: BLE001 - one line
            lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            raise ApiStartupError(f"the API's database {redacted_url(url)}: {lines[-1]}") from exc
        plan.resources = prepared.resources
        plan.lines.append(f"API database         {redacted_url(url)}"
                          + (f" (migrations applied: {', '.join(prepared.applied)})" if prepared.applied else ""))
        if prepared.owner_key:
            plan.lines.append(f"API owner key        {prepared.owner_key}  (workspace default; shown once: keep it)")
    return plan


def start_api(plan: ApiPlan, config_dir: Any, shard_count: int = 0) -> tuple[Any, list[str]]:
    """Deploy the actor; returns its handle and the summary lines."""
    from pathlib import Path

    from routr_ray.actors.connect import BOARD_NAME

    api = plan.config
    handle = deploy_api_server(api, str((Path(config_dir) / "resources").resolve()), database_url=plan.database_url,
                               secrets_key=plan.secrets_key, api_key=plan.api_key,
                               board=BOARD_NAME if plan.database_url else None, shard_count=shard_count)
    store = "PostgreSQL" if plan.database_url else "the resource files, read-only"
    lines = [f"API (internal)       {api.bind_addr} (connect services; {store}; API key required)"]
    if api.external_bind_addr:
        tls = "mTLS" if api.tls and api.tls.verify_client_cert else "TLS" if api.tls else "plaintext, loopback"
        lines.append(f"API (external)       {api.external_bind_addr} ({tls})")
    return handle, lines


__all__ = ["API_SERVER_NAME", "ApiPlan", "ApiServerActor", "ApiStartupError", "deploy_api_server", "plan_api",
           "start_api"]
