"""The PostgreSQL store (issue 20 item 2), with asyncpg.

* Schema migrations are the numbered SQL files of ``routr_ray/api/migrations``, applied in order by
  :func:`upgrade` (``routr-ray db upgrade``, or at API start) under an advisory lock, each in its own transaction,
  recorded in ``routr_ray_schema_migrations``.
* Every write is one transaction: the row is locked (``FOR UPDATE``) for a read-modify-write, refs and unique
  values are checked and recorded in tables whose keys keep them true under concurrent writers too, and
  ``pg_notify('routr_ray_resources', …)`` tells every listener (the Connect feed, on any node) at commit.
* Passwords arrive sealed (routr_ray/api/secrets.py): this module never sees one in clear.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import asyncpg

from routr_ray.api import rbac
from routr_ray.api.errors import already_exists, invalid, not_found, precondition
from routr_ray.api.store.base import Stored, describe_users
from routr_ray.api.validate import Checked

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "routr_ray_resources"
MIGRATION_LOCK = 0x726F7574  # pg_advisory_lock key while migrating ("rout")
_COLUMNS = "workspace, kind, ref, document, created_at, updated_at, seq"


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped, in order."""
    folder = resources.files("routr_ray.api").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql") and entry.name[:4].isdigit():
            found.append((int(entry.name[:4]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url, timeout=10)
    await _init_connection(conn)
    return conn


async def upgrade(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not applied yet; returns their file names."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS routr_ray_schema_migrations "
                           "(version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {row["version"] for row in await conn.fetch("SELECT version FROM routr_ray_schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO routr_ray_schema_migrations (version, name) VALUES ($1, $2)",
                                   version, name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


async def pending(conn: asyncpg.Connection) -> list[str]:
    exists = await conn.fetchval("SELECT to_regclass('routr_ray_schema_migrations') IS NOT NULL")
    done = set()
    if exists:
        done = {row["version"] for row in await conn.fetch("SELECT version FROM routr_ray_schema_migrations")}
    return [name for version, name, _ in migrations() if version not in done]


def _stored(row: asyncpg.Record) -> Stored:
    return Stored(row["workspace"], row["kind"], row["ref"], row["document"], row["created_at"], row["updated_at"],
                  row["seq"])


class PostgresStore:
    read_only: str | None = None

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10, migrate: bool = True) -> PostgresStore:
        """A pool on ``url``; with ``migrate`` the schema is upgraded first, else a database that needs a migration
        is refused with a message naming ``routr-ray db upgrade``."""
        conn = await connect(url)
        try:
            if migrate:
                await upgrade(conn)
            else:
                missing = await pending(conn)
                if missing:
                    raise RuntimeError(f"the database needs `routr-ray db upgrade` ({', '.join(missing)})")
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init_connection,
                                         timeout=10, command_timeout=30)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    # -- workspaces and keys ------------------------------------------------------------------------------

    async def create_workspace(self, name: str) -> bool:
        """True when created, False when it existed."""
        if not rbac.WORKSPACE_NAME.match(name):
            raise invalid("workspace: lower-case letters, digits, '.', '_' and '-', at most 63, starting with a "
                          "letter or digit")
        status = await self.pool.execute("INSERT INTO workspaces (name) VALUES ($1) ON CONFLICT DO NOTHING", name)
        return status.endswith(" 1")

    async def workspaces(self) -> list[tuple[str, int]]:
        rows = await self.pool.fetch("SELECT w.name, count(r.ref) AS n FROM workspaces w LEFT JOIN resources r "
                                     "ON r.workspace = w.name GROUP BY w.name ORDER BY w.name")
        return [(row["name"], row["n"]) for row in rows]

    async def create_key(self, roles: dict[str, str], name: str = "") -> str:
        """A new key with these roles (the workspaces must exist); returns its text, which is not kept."""
        for workspace, role in roles.items():
            if role not in rbac.ROLES:
                raise invalid(f"role: one of {', '.join(rbac.ROLES)}; not {role!r}")
            if not await self.pool.fetchval("SELECT 1 FROM workspaces WHERE name = $1", workspace):
                raise not_found("workspace", workspace)
        key = rbac.new_key()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO api_keys (key_id, secret_sha256, name) VALUES ($1, $2, $3)",
                               key.key_id, rbac.secret_hash(key.secret), name)
            await conn.executemany("INSERT INTO key_roles (key_id, workspace, role) VALUES ($1, $2, $3)",
                                   [(key.key_id, w, r) for w, r in roles.items()])
        return key.text

    async def keys(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT k.key_id, k.name, k.created_at, k.revoked_at, "
            "coalesce(json_object_agg(r.workspace, r.role) FILTER (WHERE r.workspace IS NOT NULL), '{}') AS roles "
            "FROM api_keys k LEFT JOIN key_roles r USING (key_id) GROUP BY k.key_id ORDER BY k.created_at")
        return [{"id": row["key_id"], "name": row["name"], "created": row["created_at"].isoformat(),
                 "revoked": row["revoked_at"].isoformat() if row["revoked_at"] else None,
                 "roles": json.loads(row["roles"]) if isinstance(row["roles"], str) else row["roles"]}
                for row in rows]

    async def revoke_key(self, key_id: str) -> bool:
        status = await self.pool.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND "
                                         "revoked_at IS NULL", key_id)
        return status.endswith(" 1")

    async def key_count(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"))

    async def key_roles(self, key_id: str, secret: str) -> dict[str, str] | None:
        rows = await self.pool.fetch("SELECT k.secret_sha256, r.workspace, r.role FROM api_keys k JOIN key_roles r "
                                     "USING (key_id) WHERE k.key_id = $1 AND k.revoked_at IS NULL", key_id)
        if not rows or not hmac.compare_digest(bytes(rows[0]["secret_sha256"]), rbac.secret_hash(secret)):
            return None
        return {row["workspace"]: row["role"] for row in rows}

    # -- reads --------------------------------------------------------------------------------------------

    async def get(self, workspace: str, kind: str, ref: str) -> Stored | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM resources WHERE ref = $1 AND workspace = $2 "
                                       "AND kind = $3", ref, workspace, kind)
        return _stored(row) if row else None

    async def get_many(self, workspace: str, refs: list[str]) -> dict[str, Stored]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM resources WHERE ref = ANY($1::text[]) "
                                     "AND workspace = $2", refs, workspace)
        return {row["ref"]: _stored(row) for row in rows}

    async def list(self, workspace: str, kind: str, limit: int, before_seq: int | None) -> list[Stored]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM resources WHERE workspace = $1 AND kind = $2 "
                                     "AND seq < $3 ORDER BY seq DESC LIMIT $4", workspace, kind,
                                     before_seq if before_seq is not None else 2**62, limit)
        return [_stored(row) for row in rows]

    async def find_by(self, workspace: str, kind: str, path: tuple[str, ...], value: str) -> list[Stored]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM resources WHERE workspace = $1 AND kind = $2 "
                                     "AND document #>> $3::text[] = $4 ORDER BY seq DESC LIMIT 1001",
                                     workspace, kind, list(path), value)
        return [_stored(row) for row in rows]

    async def everything(self) -> list[Stored]:
        return [_stored(row) for row in await self.pool.fetch(f"SELECT {_COLUMNS} FROM resources ORDER BY seq")]

    # -- writes -------------------------------------------------------------------------------------------

    async def create(self, workspace: str, kind: str, ref: str, checked: Checked) -> Stored:
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT 1 FROM workspaces WHERE name = $1", workspace):
                raise not_found("workspace", workspace)
            await self._check(conn, workspace, ref, checked)
            now = int(time.time())
            try:
                row = await conn.fetchrow(
                    f"INSERT INTO resources (workspace, kind, ref, document, created_at, updated_at) "
                    f"VALUES ($1, $2, $3, $4, $5, $5) RETURNING {_COLUMNS}", workspace, kind, ref, checked.document, now)
            except asyncpg.UniqueViolationError:
                raise already_exists(f"ref {ref!r} is already used") from None
            await self._record(conn, ref, checked)
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"{workspace} {kind} {ref}")
            return _stored(row)

    async def update(self, workspace: str, kind: str, ref: str, change: Callable[[dict], Checked]) -> Stored:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM resources WHERE ref = $1 AND workspace = $2 "
                                      "AND kind = $3 FOR UPDATE", ref, workspace, kind)
            if row is None:
                raise not_found(kind, ref)
            checked = change(row["document"])
            await self._check(conn, workspace, ref, checked)
            row = await conn.fetchrow(f"UPDATE resources SET document = $2, updated_at = $3 WHERE ref = $1 "
                                      f"RETURNING {_COLUMNS}", ref, checked.document, int(time.time()))
            await conn.execute("DELETE FROM resource_refs WHERE ref = $1", ref)
            await conn.execute("DELETE FROM resource_uniques WHERE ref = $1", ref)
            await self._record(conn, ref, checked)
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"{workspace} {kind} {ref}")
            return _stored(row)

    async def delete(self, workspace: str, kind: str, ref: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT 1 FROM resources WHERE ref = $1 AND workspace = $2 AND kind = $3 "
                                       "FOR UPDATE", ref, workspace, kind):
                raise not_found(kind, ref)
            users = await conn.fetch("SELECT DISTINCT r.kind, r.ref FROM resource_refs x JOIN resources r "
                                     "ON r.ref = x.ref WHERE x.target = $1 ORDER BY r.kind, r.ref", ref)
            if users:
                raise precondition(f"{kind} {ref} is in use by "
                                   f"{describe_users([(u['kind'], u['ref']) for u in users])}: change or delete "
                                   "those first")
            try:
                await conn.execute("DELETE FROM resources WHERE ref = $1", ref)
            except asyncpg.ForeignKeyViolationError:  # a reference committed between the check and the delete
                raise precondition(f"{kind} {ref} is in use: change or delete its users first") from None
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"{workspace} {kind} {ref}")

    async def _check(self, conn: asyncpg.Connection, workspace: str, ref: str, checked: Checked) -> None:
        if checked.references:
            targets = [target for _, target, _ in checked.references]
            rows = await conn.fetch("SELECT ref, kind FROM resources WHERE ref = ANY($1::text[]) AND workspace = $2 "
                                    "FOR KEY SHARE", targets, workspace)
            kinds = {row["ref"]: row["kind"] for row in rows}
            for field, target, target_kind in checked.references:
                if kinds.get(target) != target_kind:
                    raise invalid(f"{field}: there is no {target_kind} with ref {target!r}")
        for label, value, field in checked.uniques:
            owner = await conn.fetchrow("SELECT u.ref, r.workspace FROM resource_uniques u JOIN resources r "
                                        "ON r.ref = u.ref WHERE u.label = $1 AND u.value = $2", label, value)
            if owner is not None and owner["ref"] != ref:
                mine = owner["workspace"] == workspace
                raise already_exists(f"{field}: this {label} is already used" + (f" by {owner['ref']}" if mine else ""))

    async def _record(self, conn: asyncpg.Connection, ref: str, checked: Checked) -> None:
        try:
            if checked.references:
                await conn.executemany("INSERT INTO resource_refs (ref, field, target) VALUES ($1, $2, $3)",
                                       [(ref, field, target) for field, target, _ in checked.references])
            if checked.uniques:
                await conn.executemany("INSERT INTO resource_uniques (label, value, ref, field) VALUES ($1, $2, $3, $4)",
                                       [(label, value, ref, field) for label, value, field in checked.uniques])
        except asyncpg.UniqueViolationError:  # written by a concurrent transaction since _check
            raise already_exists("a value that must be unique was taken by a concurrent write; retry") from None
        except asyncpg.ForeignKeyViolationError:  # a target deleted since _check
            raise invalid("a ref names a resource that was just deleted") from None

    # -- import ---------------------------------------------------------------------------------------------

    async def import_documents(self, workspace: str, items: list[tuple[str, Checked]]) -> int:
        """Store checked documents (kind, Checked) in one transaction: all or nothing. Refs may point at each
        other in any order (every row is inserted before the refs are recorded)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT 1 FROM workspaces WHERE name = $1", workspace):
                raise not_found("workspace", workspace)
            now = int(time.time())
            for kind, checked in items:
                ref = checked.document["ref"]
                try:
                    await conn.execute("INSERT INTO resources (workspace, kind, ref, document, created_at, updated_at) "
                                       "VALUES ($1, $2, $3, $4, $5, $5)", workspace, kind, ref, checked.document, now)
                except asyncpg.UniqueViolationError:
                    raise already_exists(f"ref {ref!r} is already in the database") from None
            for _, checked in items:
                ref = checked.document["ref"]
                await self._check(conn, workspace, ref, checked)
                await self._record(conn, ref, checked)
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"{workspace} import")
        return len(items)
