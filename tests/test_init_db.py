"""`victor init-db` against a server Victor does not own, as on the user's PostgreSQL (5433):
a role that is not a superuser, a database made for it. Real PostgreSQL, the real CLI."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.conftest import SAMPLE, victor_cli
from tests.support import pg


def as_role(url: str, role: str, database: str) -> str:
    """The admin URL, logged in as `role` to `database` (pgserver trusts its socket)."""
    parts = urlsplit(pg.with_database(url, database))
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname or ''}"))


async def admin(url: str, database: str, *statements: str) -> None:
    conn = await asyncpg.connect(pg.with_database(url, database))
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


@pytest.fixture
async def owned_database(pg_admin_url):
    """A role that is not a superuser and a database it owns: what docs/mac-mini.md makes."""
    role = f"victor_{uuid.uuid4().hex[:8]}"
    database = f"{role}_db"
    await admin(
        pg_admin_url,
        "postgres",
        f"CREATE ROLE {role} LOGIN",
        f"CREATE DATABASE {database} OWNER {role}",
    )
    return role, database


async def test_role_without_extension_rights_gets_the_sql_to_run(
    owned_database, pg_admin_url, cli_env
):
    role, database = owned_database
    env = {**cli_env, "VICTOR_DATABASE_URL": as_role(pg_admin_url, role, database)}

    done = victor_cli("init-db", env=env, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"victor: error: The role {role} may not create the extensions Victor needs "
        '(permission denied to create extension "vector"). '
        f"Once, as a superuser (e.g. postgres), in the database {database}: "
        "`CREATE EXTENSION IF NOT EXISTS vector;` "
        "then run `victor init-db` again."
    ), done.stderr
    assert "Traceback" not in done.stderr
    assert await tables(env["VICTOR_DATABASE_URL"]) == set()  # nothing half-made

    # What the message says, run by the superuser; then the role does the rest, twice.
    await admin(
        pg_admin_url,
        database,
        "CREATE EXTENSION IF NOT EXISTS vector",
    )
    first = victor_cli("init-db", env=env)
    second = victor_cli("init-db", env=env)
    for run in (first, second):
        assert "schema up to date at migration" in run.stderr and "pgvector 0.8" in run.stderr
    assert {"repos", "files", "chunks", "victor_meta"} <= await tables(env["VICTOR_DATABASE_URL"])


async def test_init_db_again_keeps_the_index(owned_database, pg_admin_url, cli_env, ollama):
    role, database = owned_database
    await admin(
        pg_admin_url,
        database,
        "CREATE EXTENSION IF NOT EXISTS vector",
    )
    env = {**cli_env, "VICTOR_DATABASE_URL": as_role(pg_admin_url, role, database)}
    victor_cli("init-db", env=env)
    victor_cli("index", str(SAMPLE), "--name", "shop", env=env)
    before = json.loads(victor_cli("search", "--json", "trim whitespace", env=env).stdout)

    victor_cli("init-db", env=env)
    after = json.loads(victor_cli("search", "--json", "trim whitespace", env=env).stdout)
    assert after == before and after[0]["path"] == "src/shop/strings.lua"
    assert "FAIL" not in victor_cli("doctor", env=env).stdout


async def test_role_that_may_not_create_tables_is_told_which_right(
    owned_database, pg_admin_url, cli_env
):
    """A role that is neither the owner nor granted CREATE on schema public (PostgreSQL 15+)."""
    owner, database = owned_database
    await admin(pg_admin_url, database, "CREATE EXTENSION vector")
    reader = f"{owner}_r"
    await admin(pg_admin_url, "postgres", f"CREATE ROLE {reader} LOGIN")
    env = {**cli_env, "VICTOR_DATABASE_URL": as_role(pg_admin_url, reader, database)}

    done = victor_cli("init-db", env=env, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"victor: error: The role {reader} may not create Victor's tables in {database} "
        "(permission denied for schema public). Make it the database's owner "
        f"(as a superuser: `ALTER DATABASE {database} OWNER TO {reader};` or "
        f"`GRANT CREATE ON SCHEMA public TO {reader};`), then run `victor init-db` again."
    ), done.stderr

    await admin(pg_admin_url, database, f"GRANT CREATE ON SCHEMA public TO {reader}")
    assert "schema up to date at migration" in victor_cli("init-db", env=env).stderr
