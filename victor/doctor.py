"""`victor doctor`: check every dependency and say what to fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from indexer import store
from indexer.config import Settings
from indexer.embedding import make_embedder
from indexer.embedding.ollama import OllamaEmbedder
from indexer.errors import VictorError
from indexer.redaction import redact_url
from indexer.store import migrations


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False  # not run: a check it depends on failed
    note: bool = False  # passed, with something the operator should read


def skipped(name: str, because: str) -> Check:
    return Check(name, True, f"not checked: {because}", skipped=True)


async def run_checks(settings: Settings) -> AsyncIterator[Check]:
    where = "embedded" if settings.database_url is None else "VICTOR_DATABASE_URL"
    try:
        url = await asyncio.to_thread(store.database_url, settings)
        conn = await store.connect_once(url, timeout=5)
    except VictorError as exc:
        yield Check("database", False, str(exc))
        conn = None
    else:
        version = await conn.fetchval("SHOW server_version")
        yield Check("database", True, f"PostgreSQL {version} at {redact_url(url)} ({where})")
    recorded = None
    if conn is None:
        for name in ("pgvector", "schema", "index"):
            yield skipped(name, "the database is unreachable")
    else:
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
            done = await migrations.applied(conn)
            pending = [m for m in migrations.all_migrations() if m.id not in done]
            if not pending:
                yield Check("schema", True, f"up to date (migration {max(done):04d})")
            else:
                yield Check(
                    "schema", False, f"{len(pending)} migrations to apply: run `victor init-db`"
                )
            if done:
                recorded = await store.embedding_space(conn)
                repos = await conn.fetchval("SELECT count(*) FROM repos")
                chunks = await conn.fetchval("SELECT count(*) FROM chunks")
                yield Check("index", True, f"{repos} repositories, {chunks} chunks")
        finally:
            await conn.close()

    yield prompts_check(settings)
    embedder = make_embedder(settings, timeout=10.0, retries=0)
    try:
        if isinstance(embedder, OllamaEmbedder):
            await embedder.check_model()
            yield Check("embedder", True, f"Ollama at {settings.ollama_host} has {settings.model}")
        dims = await embedder.dimensions()
        yield Check("embedding", True, f"{settings.model} gives {dims}-dimension vectors")
    except VictorError as exc:
        yield Check("embedder", False, str(exc))
        yield skipped("model match", "the embedder is unavailable")
        return
    finally:
        await embedder.close()
    if conn is None:
        yield skipped("model match", "the database is unreachable")
    elif recorded is None:
        yield Check("model match", True, "index not bound to a model yet (first index will)")
    elif recorded.space == embedder.space and recorded.dims == dims:
        yield Check("model match", True, f"index uses {recorded.model} ({recorded.dims} dims)")
    else:
        message = store.mismatch_message(recorded, embedder.space, embedder.model)
        yield Check("model match", False, f"{message} {await _ollama_note(settings, recorded)}")


def prompts_check(settings: Settings) -> Check:
    """The query/document prompts the model gets (indexer/config.py MODEL_PREFIXES)."""
    if settings.prompt_notice:
        return Check("prompts", True, settings.prompt_notice, note=True)
    doc, query = settings.prefixes
    if not doc and not query:
        return Check("prompts", True, f"{settings.model} reads code and queries without a prompt")
    return Check("prompts", True, f"code {doc!r}, queries {query!r} ({settings.model})")


async def _ollama_note(settings: Settings, recorded: store.EmbeddingSpace) -> str:
    """Whether Ollama could embed for the index's model: the user's way back without
    re-embedding, when the index was built through Ollama."""
    if not recorded.space.startswith("ollama:"):
        return ""
    probe = make_embedder(
        settings.model_copy(update={"embed_backend": "ollama", "embed_model": recorded.model}),
        timeout=10.0,
        retries=0,
    )
    assert isinstance(probe, OllamaEmbedder)
    try:
        await probe.check_model()
    except VictorError as exc:
        return f"Ollama cannot serve {recorded.model} now: {exc}"
    finally:
        await probe.close()
    return f"Ollama at {settings.ollama_host} is reachable and has {recorded.model}."
