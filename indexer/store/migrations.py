"""Numbered schema migrations: db/migrations/NNNN_name.sql, applied in order, each once, recorded
in victor_migrations.

In the manner of simonw/llm's migrations.py rather than a library: Alembic wants SQLAlchemy and
a synchronous driver, yoyo-migrations wants psycopg; Victor speaks asyncpg only, and plain SQL
files in a folder are what an operator can read. db/schema.sql is the readable snapshot of the
result (tests/test_migrations.py checks that the two agree).

Databases made before numbered migrations carry `schema_version` N in victor_meta: migrations
1..N are recorded for them as applied, then the rest run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from indexer.errors import SchemaError
from indexer.store import chunks, postings, space
from indexer.words import LEXICAL_VERSION

log = logging.getLogger(__name__)

LOCK = 7_401_001  # pg_advisory_xact_lock key: one migrating process at a time

# Data a migration's new tables need, computed in Python: migration id -> a function of the
# connection, run in the same transaction after the SQL of every pending migration (it is
# today's code, written for today's schema: e.g. the lexical index of 0005 is filled with the
# versions of 0008).
FILL = {
    5: postings.rebuild,  # the lexical index of the chunks already there
    7: space.keep_vectors_in_rows,  # their vectors out of TOAST
}
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    id: int
    name: str
    sql: str


def _folder():
    """db/migrations: packaged in the wheel as indexer/sql/migrations, else the source tree."""
    packaged = resources.files("indexer").joinpath("sql/migrations")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "db" / "migrations"


def all_migrations() -> list[Migration]:
    found = []
    for entry in _folder().iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.id)
    if [m.id for m in found] != list(range(1, len(found) + 1)):
        raise SchemaError(f"db/migrations is not numbered 1..N: {[m.id for m in found]}")
    return found


async def applied(conn: asyncpg.Connection) -> set[int]:
    """The ids of the migrations this database has."""
    if await conn.fetchval("SELECT to_regclass('victor_migrations') IS NOT NULL"):
        return {r["id"] for r in await conn.fetch("SELECT id FROM victor_migrations")}
    return set(range(1, await _legacy_version(conn) + 1))


async def _legacy_version(conn: asyncpg.Connection) -> int:
    if not await conn.fetchval("SELECT to_regclass('victor_meta') IS NOT NULL"):
        return 0
    value = await conn.fetchval("SELECT value FROM victor_meta WHERE key = 'schema_version'")
    return int(value) if value is not None else 0


async def _lexical_current(conn: asyncpg.Connection) -> bool:
    return await chunks.lexical_version(conn) == LEXICAL_VERSION


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply the pending migrations in one transaction; returns those applied.

    Chunks written before the current lexical rules get their lexical fields recomputed in the
    same transaction (no re-embedding: they derive from the stored chunk).
    """
    every = all_migrations()
    if {m.id for m in every} <= await applied(conn) and await _lexical_current(conn):
        return []
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK)
            done = await applied(conn)  # again, under the lock: another process may have won
            await _record_legacy(conn, done)
            pending = [m for m in every if m.id not in done]
            for m in pending:
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO victor_migrations (id, name) VALUES ($1, $2)", m.id, m.name
                )
                log.info("applied migration %04d_%s", m.id, m.name)
            for m in pending:
                if m.id in FILL:
                    await FILL[m.id](conn)
            if not await _lexical_current(conn):
                count = await chunks.refresh_lexical(conn)
                log.info("recomputed the lexical fields of %d chunks", count)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise SchemaError(await privilege_advice(conn, exc)) from None
    except asyncpg.UndefinedFileError as exc:
        raise SchemaError(
            f"pgvector is not installed on this PostgreSQL server ({exc}). "
            "Use an image with pgvector (e.g. pgvector/pgvector:pg16) or install the extension."
        ) from None
    return pending


async def _record_legacy(conn: asyncpg.Connection, done: set[int]) -> None:
    """Create victor_migrations; a database from before it gets its versions recorded."""
    if await conn.fetchval("SELECT to_regclass('victor_migrations') IS NOT NULL"):
        return
    await conn.execute(
        """
        CREATE TABLE victor_migrations (
            id         int PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    names = {m.id: m.name for m in all_migrations()}
    await conn.executemany(
        "INSERT INTO victor_migrations (id, name) VALUES ($1, $2)",
        [(i, names[i]) for i in sorted(done)],
    )
    if done:
        await conn.execute("DELETE FROM victor_meta WHERE key = 'schema_version'")


async def privilege_advice(conn: asyncpg.Connection, exc: asyncpg.PostgresError) -> str:
    """What to do when the role may not create the schema: say which right is missing."""
    role, database = await conn.fetchrow("SELECT current_user, current_database()")
    if "extension" in exc.message:
        return (
            f"The role {role} may not create the extensions Victor needs ({exc.message}). "
            f"Once, as a superuser (e.g. postgres), in the database {database}: "
            "`CREATE EXTENSION IF NOT EXISTS vector;` "
            "then run `victor init-db` again."
        )
    return (
        f"The role {role} may not create Victor's tables in {database} ({exc.message}). "
        f"Make it the database's owner (as a superuser: `ALTER DATABASE {database} OWNER TO "
        f"{role};` or `GRANT CREATE ON SCHEMA public TO {role};`), then run `victor init-db` "
        "again."
    )
