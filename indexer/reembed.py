"""`victor reembed`: move the whole index to another embedding model.

The embedded text of a chunk does not depend on the model (prefixes are the
embedder's business), so its hash stays valid. Step 1 fills the embedding
cache for the new model batch by batch (committed as it goes: an interrupted
run resumes where it stopped). Step 2 swaps every chunk's vector, the column
dimension, the HNSW index and the recorded model in one transaction: search
never sees a mix of two models.
"""

from __future__ import annotations

import numpy as np

from . import store
from .embedder import Embedder
from .embedtext import embedding_text
from .indexing import Progress, _NoProgress
from .models import Chunk, ChunkKind

BATCH = 256


async def reembed(pool, embedder: Embedder, progress: Progress | None = None) -> tuple[int, int]:
    """Re-embed every chunk with `embedder`. Returns (chunks, newly embedded texts)."""
    progress = progress or _NoProgress()
    dims = await embedder.dimensions()
    total = await pool.fetchval("SELECT count(DISTINCT embed_hash) FROM chunks")
    progress.start(total)
    embedded = 0
    while True:
        rows = await pool.fetch(
            """
            SELECT DISTINCT ON (embed_hash) id, path, symbol, kind, signature, doc,
                   start_line, end_line, part, text, embed_hash
            FROM chunks
            WHERE NOT EXISTS (
                SELECT 1 FROM embedding_cache e WHERE e.space = $1 AND e.text_hash = embed_hash)
            ORDER BY embed_hash, id
            LIMIT $2
            """,
            embedder.space,
            BATCH,
        )
        if not rows:
            break
        texts = [embedding_text(r["path"], _chunk(r)) for r in rows]
        vectors = await embedder.embed_documents(texts)
        await store.cache_embeddings(
            pool,
            embedder.space,
            [
                (bytes(r["embed_hash"]), np.asarray(v, dtype=np.float32))
                for r, v in zip(rows, vectors, strict=True)
            ],
        )
        embedded += len(rows)
        progress.advance(len(rows), len(rows))
    async with pool.acquire() as conn, conn.transaction():
        await store.unbind_space(conn)
        await conn.execute(
            """
            UPDATE chunks c SET embedding = e.embedding
            FROM embedding_cache e WHERE e.space = $1 AND e.text_hash = c.embed_hash
            """,
            embedder.space,
        )
        await store.bind_space(conn, embedder.space, embedder.model, dims)
        count = await conn.fetchval("SELECT count(*) FROM chunks")
    return count, embedded


def _chunk(row) -> Chunk:
    return Chunk(
        symbol=row["symbol"],
        kind=ChunkKind(row["kind"]),
        signature=row["signature"],
        doc=row["doc"],
        start_line=row["start_line"],
        end_line=row["end_line"],
        text=row["text"],
        part=row["part"],
    )
