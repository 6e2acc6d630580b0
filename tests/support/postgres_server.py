"""A throw-away PostgreSQL server on 127.0.0.1 (Debian's ``postgresql`` package: initdb, pg_ctl) for tests, as
redis_server.py does for Redis. PostgreSQL refuses to run as root: as root it runs as the ``postgres`` user that
Debian's package creates, in a temp directory given to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.redis_server import free_port


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


INITDB = _bin("initdb")
PG_CTL = _bin("pg_ctl")
AVAILABLE = INITDB is not None and PG_CTL is not None
SKIP_REASON = "these tests need Debian's postgresql package (scripts/install-test-deps)"


class PostgresServer:
    """``start()`` makes a cluster with a ``routr`` database and user (password auth on TCP), ``url`` reaches it."""

    user = "routr"
    password = "routr-test-password"
    database = "routr"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="routr-pg-"))
        self.data = self._dir / "data"
        self._run_as: str | None = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(args, check=True, capture_output=True, user=self._run_as, **kwargs)  # type: ignore[call-overload]

    def start(self) -> None:
        if not AVAILABLE:
            raise RuntimeError(SKIP_REASON)
        if self._run_as:
            os.chmod(self._dir, 0o755)
            entry = pwd.getpwnam(self._run_as)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
        if not self.data.exists():
            password_file = self._dir / "pw"
            password_file.write_text(self.password + "\n")
            if self._run_as:
                entry = pwd.getpwnam(self._run_as)
                os.chown(password_file, entry.pw_uid, entry.pw_gid)
            self._run([INITDB, "-D", str(self.data), "-U", self.user, "--pwfile", str(password_file), "-A",
                       "scram-sha-256", "-E", "UTF8", "--no-sync"])
            password_file.unlink()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self._dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        self._run([PG_CTL, "-D", str(self.data), "-o", options, "-l", str(self._dir / "log"), "-w", "-t", "30",
                   "start"])
        self._create_database()

    def _create_database(self) -> None:
        import asyncio

        import asyncpg

        async def create() -> None:
            deadline = time.monotonic() + 10
            while True:
                try:
                    conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user=self.user,
                                                 password=self.password, database="postgres")
                    break
                except (OSError, asyncpg.PostgresError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{self.database}"')
            finally:
                await conn.close()

        asyncio.run(create())

    def stop(self) -> None:
        if self.data.exists() and PG_CTL is not None:
            subprocess.run([PG_CTL, "-D", str(self.data), "-m", "fast", "-w", "stop"], capture_output=True,
                           user=self._run_as)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self._dir / "log").read_text().splitlines()[-lines:])
        except OSError:
            return ""
