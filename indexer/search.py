"""Searching the index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import asyncpg
import numpy as np

from . import store
from .embedder import Embedder
from .errors import ModelMismatch, VictorError


@dataclass(frozen=True, slots=True)
class SearchResult:
    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    score: float
    text: str
    signature: str = ""
    commit: str | None = None
    github_url: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["score"] = round(self.score, 4)
        return data


async def check_space(db: asyncpg.Pool | asyncpg.Connection, embedder: Embedder) -> None:
    """A query embedded in another vector space than the index's would return noise."""
    recorded = await store.embedding_space(db)
    if recorded is None:
        raise VictorError("The index is empty. Index some Lua code first: victor index PATH")
    if recorded.space != embedder.space:
        raise ModelMismatch(store.mismatch_message(recorded, embedder.space, embedder.model))


async def dense(
    pool: asyncpg.Pool,
    embedder: Embedder,
    query: str,
    *,
    top_k: int = 8,
    repos: Sequence[str] | None = None,
) -> list[SearchResult]:
    """Nearest chunks by cosine distance (HNSW)."""
    await check_space(pool, embedder)
    vector = np.asarray(await embedder.embed_query(query), dtype=np.float32)
    async with pool.acquire() as conn, conn.transaction():
        # with a repo filter, let HNSW keep scanning until enough rows pass it
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = await conn.fetch(
            """
            SELECT r.name AS repo, c.path, c.start_line, c.end_line, c.symbol, c.kind, c.text,
                   c.signature, f.commit_sha, r.github_url, c.embedding <=> $1 AS distance
            FROM chunks c
            JOIN repos r ON r.id = c.repo_id
            JOIN files f ON f.repo_id = c.repo_id AND f.path = c.path
            WHERE $3::text[] IS NULL OR r.name = ANY($3)
            ORDER BY c.embedding <=> $1
            LIMIT $2
            """,
            vector,
            top_k,
            list(repos) if repos else None,
        )
    results = [
        SearchResult(
            repo=r["repo"],
            path=r["path"],
            start_line=r["start_line"],
            end_line=r["end_line"],
            symbol=r["symbol"],
            kind=r["kind"],
            score=1.0 - float(r["distance"]),
            text=r["text"],
            signature=r["signature"],
            commit=r["commit_sha"],
            github_url=r["github_url"],
        )
        for r in rows
    ]
    # relaxed_order may return rows slightly out of order
    return sorted(results, key=lambda r: -r.score)
