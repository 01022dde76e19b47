"""Numbered migrations: a new database and one of every earlier released schema (v1-v4, as they
shipped, in tests/fixtures/schema_vN.sql) reach the same schema, which is what db/schema.sql
says, with their data intact. Real PostgreSQL + pgvector."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from indexer.store import migrations
from indexer.words import LEXICAL_VERSION
from tests.support import pg

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


async def catalog(url: str) -> dict[str, set]:
    """Tables, columns, indexes and constraints of the public schema, order left out."""
    conn = await asyncpg.connect(url)
    try:
        columns = await conn.fetch(
            """
            SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default,
                   generation_expression
            FROM information_schema.columns WHERE table_schema = 'public'
            """
        )
        # how each column is stored (the vectors in their rows: migration 7)
        storage = await conn.fetch(
            """
            SELECT a.attrelid::regclass::text, a.attname, a.attstorage FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
              AND a.attnum > 0 AND NOT a.attisdropped
            """
        )
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        )
        constraints = await conn.fetch(
            """
            SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def
            FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            """
        )
        # Schemas before the migrations also created pg_trgm, which nothing ever used; it stays
        # where it is (dropping it needs its owner, often a superuser) and is not compared.
        extensions = await conn.fetch(
            "SELECT extname FROM pg_extension WHERE extname NOT IN ('plpgsql', 'pg_trgm')"
        )
    finally:
        await conn.close()
    return {
        "columns": {tuple(r) for r in columns},
        "storage": {tuple(r) for r in storage},
        "indexes": {tuple(r) for r in indexes},
        "constraints": {tuple(r) for r in constraints},
        "extensions": {r["extname"] for r in extensions},
    }


async def run_sql(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def migrate(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [m.id for m in await migrations.migrate(conn)]
    finally:
        await conn.close()


def differences(got: dict[str, set], want: dict[str, set]) -> str:
    lines = []
    for key in want:
        for item in sorted(want[key] - got[key], key=str):
            lines.append(f"missing {key}: {item}")
        for item in sorted(got[key] - want[key], key=str):
            lines.append(f"extra {key}: {item}")
    return "\n".join(lines)


async def test_migrations_build_what_schema_sql_says(pg_admin_url):
    migrated = await pg.create_database(pg_admin_url)
    snapshot = await pg.create_database(pg_admin_url)
    every = [m.id for m in migrations.all_migrations()]
    assert await migrate(migrated) == every
    await run_sql(snapshot, (ROOT / "db" / "schema.sql").read_text(encoding="utf-8"))
    diff = differences(await catalog(migrated), await catalog(snapshot))
    assert not diff, "db/schema.sql and db/migrations disagree:\n" + diff


def test_migrations_are_numbered_one_to_n():
    every = migrations.all_migrations()
    assert [m.id for m in every] == list(range(1, len(every) + 1))
    folder = ROOT / "db" / "migrations"
    assert sorted(p.name for p in folder.glob("*.sql")) == [
        f"{m.id:04d}_{m.name}.sql" for m in every
    ]
    # a data step belongs to a migration that exists (renumbering one must carry its step)
    assert set(migrations.FILL) <= {m.id for m in every}


# --- every released schema, with data, up to head -----------------------------------------

REPO = "INSERT INTO repos (name, source) VALUES ('shop', '/src/shop')"
FILE = """
INSERT INTO files (repo_id, path, content_hash, parse_mode, chunker_version, size_bytes)
VALUES (1, 'src/cart.lua', 'abc123', 'ast', 1, 120)
"""
CHUNK = """
INSERT INTO chunks (repo_id, path, symbol, kind, signature, doc, start_line, end_line, text,
                    embed_hash, embedding)
VALUES (1, 'src/cart.lua', 'Cart:add_item', 'method', 'function Cart:add_item(sku)',
        'Adds an item to the cart.', 3, 9,
        E'function Cart:add_item(sku)\\n  self.items[sku] = true\\nend', '\\x01', '[1,0,0]')
"""
JOB = "INSERT INTO sync_jobs (repo_id, reason) VALUES (1, 'push')"


@pytest.mark.parametrize("version", [1, 2, 3, 4])
async def test_a_released_database_migrates_to_head_with_its_data(pg_admin_url, version):
    url = await pg.create_database(pg_admin_url)
    await run_sql(url, (FIXTURES / f"schema_v{version}.sql").read_text(encoding="utf-8"))
    await run_sql(url, REPO + ";" + FILE + ";" + CHUNK + (";" + JOB if version >= 3 else ""))

    every = [m.id for m in migrations.all_migrations()]
    assert await migrate(url) == every[version:]  # only what that version lacked
    assert await migrate(url) == []  # and once only

    head = await pg.create_database(pg_admin_url)
    await migrate(head)
    diff = differences(await catalog(url), await catalog(head))
    assert not diff, f"v{version} migrated differs from a new database:\n{diff}"

    conn = await asyncpg.connect(url)
    try:
        chunk = await conn.fetchrow("SELECT * FROM chunks")
        assert chunk["symbol"] == "Cart:add_item" and chunk["doc"] == "Adds an item to the cart."
        assert chunk["text"].startswith("function Cart:add_item(sku)")
        assert str(chunk["embedding"]) == "[1,0,0]"
        # the lexical fields derive from the stored chunk: computed during the migration
        assert chunk["lex_name"] == "cart add item additem"
        assert chunk["symbol_keys"] == ["add_item"]
        assert await conn.fetchval(
            "SELECT value FROM victor_meta WHERE key = 'lexical_version'"
        ) == str(LEXICAL_VERSION)
        assert await conn.fetchval("SELECT count(*) FROM files") == 1
        assert await conn.fetchval("SELECT name FROM repos") == "shop"
        if version >= 3:
            assert await conn.fetchval("SELECT reason FROM sync_jobs") == "push"
        recorded = await conn.fetch("SELECT id FROM victor_migrations ORDER BY id")
        assert [r["id"] for r in recorded] == every
        assert (
            await conn.fetchval("SELECT count(*) FROM victor_meta WHERE key = 'schema_version'")
            == 0
        )
    finally:
        await conn.close()
