"""`victor doctor`: check every dependency and say what to fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from . import db, store
from .config import Settings
from .embedder import OllamaEmbedder, make_embedder
from .errors import VictorError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


async def run_checks(settings: Settings) -> AsyncIterator[Check]:
    where = "embedded" if settings.database_url is None else "VICTOR_DATABASE_URL"
    try:
        url = await asyncio.to_thread(db.database_url, settings)
        conn = await db.connect_once(url, timeout=5)
    except VictorError as exc:
        yield Check("database", False, str(exc))
        conn = None
    else:
        version = await conn.fetchval("SHOW server_version")
        yield Check("database", True, f"PostgreSQL {version} at {db.redact(url)} ({where})")
    recorded = None
    if conn is not None:
        try:
            installed = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            )
            available = await conn.fetchval(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            )
            if installed:
                yield Check("pgvector", True, f"version {installed}")
            elif available:
                yield Check(
                    "pgvector",
                    False,
                    f"{available} available but not created: run `victor init-db`",
                )
            else:
                yield Check(
                    "pgvector",
                    False,
                    "not installed on this server: use a PostgreSQL "
                    "with pgvector (e.g. the pgvector/pgvector image)",
                )
            schema = await db.current_schema_version(conn)
            if schema == db.SCHEMA_VERSION:
                yield Check("schema", True, f"version {schema}")
            else:
                yield Check(
                    "schema",
                    False,
                    f"found {schema}, need {db.SCHEMA_VERSION}: run `victor init-db`",
                )
            if schema is not None:
                recorded = await store.embedding_space(conn)
                repos = await conn.fetchval("SELECT count(*) FROM repos")
                chunks = await conn.fetchval("SELECT count(*) FROM chunks")
                yield Check("index", True, f"{repos} repositories, {chunks} chunks")
        finally:
            await conn.close()

    embedder = make_embedder(settings, timeout=10.0, retries=0)
    try:
        if isinstance(embedder, OllamaEmbedder):
            await embedder.check_model()
            yield Check("embedder", True, f"Ollama at {settings.ollama_host} has {settings.model}")
        dims = await embedder.dimensions()
        yield Check("embedding", True, f"{settings.model} gives {dims}-dimension vectors")
    except VictorError as exc:
        yield Check("embedder", False, str(exc))
        return
    finally:
        await embedder.close()
    if recorded is None:
        yield Check("model match", True, "index not bound to a model yet (first index will)")
    elif recorded.space == embedder.space and recorded.dims == dims:
        yield Check("model match", True, f"index uses {recorded.model} ({recorded.dims} dims)")
    else:
        yield Check(
            "model match", False, store.mismatch_message(recorded, embedder.space, embedder.model)
        )
