"""What ``routr-ray run`` / ``deploy`` and ``routr-ray db upgrade`` do with the database before anything serves:
apply the migrations, create the first workspace and its owner key when the database has no key yet (the key is
printed once, never stored in clear), and load the resource set Connect starts with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from routr_ray.api.feed import resources_of
from routr_ray.api.secrets import SECRETS_KEY_ENV, Sealer
from routr_ray.config import Resources

DEFAULT_WORKSPACE = "default"


@dataclass
class Prepared:
    applied: list[str] = field(default_factory=list)  # migrations applied now
    owner_key: str | None = None  # the first owner key, when made now: print it once
    resources: Resources = Resources()


def secrets_key() -> str:
    return os.environ.get(SECRETS_KEY_ENV, "")


async def prepare_database(url: str, *, migrate: bool = True, load: bool = True) -> Prepared:
    """Raises RuntimeError / OSError / asyncpg errors with a message to print; SecretsKeyError without a key."""
    from routr_ray.api.store.postgres import PostgresStore, connect, upgrade

    sealer = Sealer.from_env()
    prepared = Prepared()
    if migrate:
        conn = await connect(url)
        try:
            prepared.applied = await upgrade(conn)
        finally:
            await conn.close()
    store = await PostgresStore.open(url, migrate=False, max_size=2)
    try:
        if await store.key_count() == 0:
            await store.create_workspace(DEFAULT_WORKSPACE)
            prepared.owner_key = await store.create_key({DEFAULT_WORKSPACE: "owner"}, name="first owner")
        if load:
            prepared.resources = resources_of(await store.everything(), sealer)
    finally:
        await store.close()
    return prepared


def redacted_url(url: str) -> str:
    """A database URL without its password (for messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    return f"{scheme}://{userinfo.partition(':')[0]}@{host}"
