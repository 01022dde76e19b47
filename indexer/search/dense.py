"""The dense side: the query's embedding (bounded in time, lexical fallback when the embedder is
down or slow) and the nearest chunks by cosine similarity: HNSW, or an exact scan of the
vectors of the repositories searched when they are few.

HNSW with a repository filter walks the graph of the whole index and throws away what the
filter rejects (pgvector's iterative scan): searching one repository of 5% of the chunks costs
several times an unfiltered search. Below `EXACT_SCOPE` chunks in scope, reading the scope's
vectors and computing every distance is cheaper than that, and exact (bench/README.md,
"The dense side of a one-repository search"); a bigger repository has a graph of its own, a
partial HNSW index (indexer/store/repo_graphs.py; bench/README.md, "A graph per big
repository").
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np

from indexer import store
from indexer.bounded import within
from indexer.embedding import Embedder
from indexer.errors import (
    EmbedderUnavailable,
    EmbeddingError,
    ModelMismatch,
    ModelMissing,
    VictorError,
)


async def check_space(
    db: asyncpg.Pool | asyncpg.Connection, embedder: Embedder
) -> store.EmbeddingSpace:
    """A query embedded in another vector space than the index's would return noise.
    Returns the index's space: its vector dimension and its model's cosine scale."""
    recorded = await store.embedding_space(db)
    if recorded is None:
        raise VictorError("The index is empty. Index some Lua code first: victor index PATH")
    if recorded.space != embedder.space:
        raise ModelMismatch(store.mismatch_message(recorded, embedder.space, embedder.model))
    return recorded


_EMBEDDER_DOWN = (EmbedderUnavailable, EmbeddingError, ModelMissing, TimeoutError, OSError)


# What any user may be shown when the query embedding failed: no host, no advice meant for the
# operator (the embedder's own message, in `Degraded.detail`, has both).
KEYWORD_ONLY = "keyword search only: embeddings unavailable"


@dataclass(frozen=True, slots=True)
class Degraded:
    """Why a search ran on keywords alone."""

    notice: str  # short and secret-free: what a chat user is shown
    detail: str  # what happened, for the operator and the log (redact before showing)


def embedder_missing() -> Degraded:
    return Degraded(KEYWORD_ONLY, "no embedder configured; lexical search only")


async def embed_queries(
    embedder: Embedder, queries: Sequence[str], timeout: float
) -> tuple[list[np.ndarray] | None, Degraded | None]:
    """The queries' vectors, or None and why when the embedder fails or takes longer than
    `timeout` seconds: a chat must get lexical results rather than wait or fail (their
    dimension is checked against the index's by `search.search_with`)."""
    try:
        await embedder.ready()
        vectors = await within(embedder.embed_queries(list(queries)), timeout)
    except _EMBEDDER_DOWN as exc:
        return None, embedder_down(exc, timeout)
    return [np.asarray(v, dtype=np.float32) for v in vectors], None


def embedder_down(exc: BaseException, timeout: float = 0.0) -> Degraded:
    """Why a search runs on keywords after the query embedding failed with `exc` (`timeout`:
    the time it had, for a TimeoutError)."""
    reason = (
        f"no answer within {timeout:.3g} s"  # a chat's share of its timeout: 1.2, not 1.19986
        if isinstance(exc, TimeoutError)
        else str(exc).rstrip(".")
    )
    return Degraded(KEYWORD_ONLY, f"embedder unavailable ({reason}); lexical search only")


# A search restricted to repositories holding at most this many searchable chunks computes
# every distance instead of asking HNSW (measured: bench/dense_scope.py); a repository holding
# more has a graph of its own (store.repo_graphs, same threshold: MIN_CHUNKS).
EXACT_SCOPE = 20_000


async def dense_ids(
    conn: asyncpg.Connection, vector: np.ndarray, depth: int, repos: list[int] | None
) -> dict[int, float]:
    """Chunk id -> cosine similarity of the `depth` nearest chunks: every distance computed
    for the repositories searched of at most EXACT_SCOPE chunks when together they hold at
    most EXACT_SCOPE (else the global graph, filtered), each bigger one's own graph (or the
    global one, filtered, while it has none); one statement either way."""
    if repos is None:
        return await hnsw_ids(conn, vector, depth, None)
    sql = scoped_statement(tuple(sorted({int(r) for r in repos})))
    return await _nearest(conn, sql, depth, vector, depth, repos, EXACT_SCOPE)


async def hnsw_ids(
    conn: asyncpg.Connection, vector: np.ndarray, depth: int, repos: list[int] | None
) -> dict[int, float]:
    """The `depth` nearest chunks by the HNSW index (approximate)."""
    return await _nearest(conn, _HNSW, depth, vector, depth, repos)


_HNSW = """
SELECT id, 1 - (embedding <=> $1) AS cos FROM chunks
WHERE embedding IS NOT NULL AND ($3::int[] IS NULL OR repo_id = ANY($3))
ORDER BY embedding <=> $1
LIMIT $2
"""

# The repositories $3 and their searchable chunks (lex_stats counts them: no scan). Those
# holding at most $4 ("small") are scanned exactly when together they hold at most $4, else
# the global graph serves the scope, filtered; each bigger one is searched in a branch of its
# own (`_OWN_GRAPH`). Each test is a one-time filter on its branch, evaluated before any row is
# read, so only the branches needed run; the outer query merges them by cosine.
# The exact branch reads each repository's rows in the order of `chunks_file_idx`, under a
# LIMIT the scope never reaches (it holds at most $4 chunks): so the index is the cheapest way
# to read them whatever the planner estimates. With `repo_id = ANY($3)`, a generic plan (made
# without the array's values, as PostgreSQL may after a statement's fifth execution) expected
# most of the table and scanned all of it (110 ms instead of 9 for 5,000 of 100k chunks); an
# unordered read per repository still did, expecting an average repository. The LIMIT also
# keeps the planner from handing the outer ORDER BY to the HNSW index.
_SCOPED = """
WITH sizes AS MATERIALIZED (
    SELECT repo_id, chunks FROM lex_stats WHERE repo_id = ANY($3)
), rest AS MATERIALIZED (
    SELECT coalesce(sum(chunks), 0) <= $4 AS small FROM sizes WHERE chunks <= $4
)
SELECT id, max(cos) AS cos FROM (
(SELECT c.id, 1 - (c.embedding <=> $1) AS cos
 FROM sizes r
 CROSS JOIN LATERAL (
    SELECT id, embedding FROM chunks
    WHERE repo_id = r.repo_id AND embedding IS NOT NULL
    ORDER BY path
    LIMIT 2 * $4
 ) c
 WHERE r.chunks <= $4 AND (SELECT small FROM rest)
 ORDER BY cos DESC, c.id
 LIMIT $2)
UNION ALL
(SELECT id, 1 - (embedding <=> $1) AS cos FROM chunks
 WHERE repo_id = ANY($3) AND embedding IS NOT NULL AND NOT (SELECT small FROM rest)
 ORDER BY embedding <=> $1
 LIMIT $2)
{own}
) AS found
GROUP BY id
ORDER BY cos DESC, id
LIMIT $2
"""

# One big repository's nearest chunks. Its id is a literal: PostgreSQL uses a partial index
# only when it can prove the index's predicate (`repo_id = N`) from the statement's text, which
# a parameter never allows in a generic plan. An int, so only digits reach the statement.
_OWN_GRAPH = """
UNION ALL
(SELECT id, 1 - (embedding <=> $1) AS cos FROM chunks
 WHERE repo_id = {id} AND embedding IS NOT NULL
   AND (SELECT chunks > $4 FROM sizes WHERE repo_id = {id})
 ORDER BY embedding <=> $1
 LIMIT $2)"""


@functools.lru_cache(maxsize=256)
def scoped_statement(repos: tuple[int, ...]) -> str:
    """The nearest-chunks statement for these repositories (sorted ids): one text per scope,
    so asyncpg prepares it once per connection."""
    return _SCOPED.format(own="".join(_OWN_GRAPH.format(id=int(r)) for r in repos))


async def _nearest(conn: asyncpg.Connection, sql: str, depth: int, *args) -> dict[int, float]:
    """Run a nearest-chunks statement. The pool's connections carry the HNSW settings
    (`store.HNSW_SETTINGS`); a depth beyond what they allow raises ef_search for this one
    statement."""
    if 2 * depth <= int(store.HNSW_SETTINGS["hnsw.ef_search"]):
        rows = await conn.fetch(sql, *args)
    else:
        async with conn.transaction():
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            await conn.execute("SELECT set_config('hnsw.ef_search', $1, true)", str(2 * depth))
            rows = await conn.fetch(sql, *args)
    return {r["id"]: float(r["cos"]) for r in rows}


async def scope_size(conn: asyncpg.Connection, repos: list[int]) -> int:
    """Searchable chunks in these repositories (kept by the lexical index: no count)."""
    return int(
        await conn.fetchval(
            "SELECT coalesce(sum(chunks), 0) FROM lex_stats WHERE repo_id = ANY($1)", repos
        )
    )
