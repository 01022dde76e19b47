"""`victor doctor`: check every dependency and say what to fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

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
        for name in ("pgvector", "schema", "index", "memory"):
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
                yield memory_check(*await searched_bytes(conn))
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
        yield Check(
            "model match",
            True,
            f"index uses {recorded.model} ({recorded.dims} dims); {_scale_note(recorded)}",
        )
    else:
        message = store.mismatch_message(recorded, embedder.space, embedder.model)
        yield Check("model match", False, f"{message} {await _ollama_note(settings, recorded)}")


def _scale_note(recorded: store.EmbeddingSpace) -> str:
    """Whether searches map this model's cosines (`indexer.embedding.scale`)."""
    if recorded.scale is None:
        return "its cosine scale is not measured yet (the next `victor index` or sync will)"
    if recorded.scale.mapping().identity:
        return "its cosines are on the scale the ranking was tuned on"
    return (
        f"its cosines are mapped onto the scale the ranking was tuned on (question and answer "
        f"{recorded.scale.related:.2f}, unrelated code {recorded.scale.unrelated:.2f})"
    )


# What searches read, besides the few texts they return: the HNSW graph, the lexical index's
# lists and counts, the chunk rows (path, kind, vector) and the primary keys on the way; and
# the big repositories' own graphs (`store.repo_graphs`).
SEARCHED = (
    "chunks",
    "chunks_pkey",
    "chunks_embedding_hnsw",
    "lex_postings",
    "lex_postings_pkey",
    "lex_postings_impact_idx",
    "lex_terms",
    "lex_terms_pkey",
    "files_pkey",
)


async def searched_bytes(conn: asyncpg.Connection) -> tuple[int, int]:
    """(shared_buffers, size of what searches read) in bytes."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT setting::bigint * current_setting('block_size')::bigint
                FROM pg_settings WHERE name = 'shared_buffers') AS buffers,
               (SELECT coalesce(sum(pg_relation_size(to_regclass(n))), 0)
                FROM unnest($1::text[]) AS n) AS searched
        """,
        list(SEARCHED),
    )
    return int(row["buffers"]), int(row["searched"]) + await store.repo_graphs.size(conn)


def memory_check(buffers: int, searched: int) -> Check:
    """Whether PostgreSQL's buffer cache holds what searches read. When it does not, a search
    copies pages in from the OS cache (at 100k chunks with the default 128 MB, a fifth of
    the pages a search touched): a search measured 38-56 vs 32-35 ms p50 (bench/README.md)."""
    have, need = f"{buffers / 2**20:,.0f} MB", f"{searched / 2**20:,.0f} MB"
    if searched <= buffers:
        return Check("memory", True, f"shared_buffers {have} holds what searches read ({need})")
    return Check(
        "memory",
        True,
        f"shared_buffers {have} is smaller than what searches read ({need}): "
        f"searches are slower; give PostgreSQL more (e.g. `postgres -c shared_buffers="
        f"{max(1, -(-searched * 5 // 4 // 2**30))}GB`, at most a quarter of its RAM)",
        note=True,
    )


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
