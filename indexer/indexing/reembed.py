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

from indexer import store
from indexer.embedding import Embedder, scale
from indexer.embedding.texts import embedding_text, name_text, text_hash
from indexer.indexing.run import NoProgress, Progress
from indexer.models import Chunk, ChunkKind

BATCH = 256


async def reembed(pool, embedder: Embedder, progress: Progress | None = None) -> tuple[int, int]:
    """Re-embed every chunk with `embedder`. Returns (chunks, newly embedded texts)."""
    progress = progress or NoProgress()
    dims = await embedder.dimensions()
    measured = await scale.measure(embedder)  # before the swap: it never waits for a model
    total = await pool.fetchval("SELECT count(*) FROM chunks WHERE searchable")
    progress.start(total)
    embedded, last_id = 0, 0
    while True:
        rows = await pool.fetch(
            """
            SELECT id, path, symbol, kind, signature, doc, start_line, end_line, part, text
            FROM chunks c
            WHERE id > $3 AND searchable AND (
                NOT EXISTS (SELECT 1 FROM embedding_cache e
                            WHERE e.space = $1 AND e.text_hash = c.embed_hash)
                OR (name_hash IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM embedding_cache e
                    WHERE e.space = $1 AND e.text_hash = c.name_hash)))
            ORDER BY id
            LIMIT $2
            """,
            embedder.space,
            BATCH,
            last_id,
        )
        if not rows:
            break
        last_id = rows[-1]["id"]
        texts = {}
        for r in rows:
            chunk = _chunk(r)
            for text in (embedding_text(r["path"], chunk), name_text(r["path"], chunk)):
                if text:
                    texts[text_hash(text)] = text
        vectors = await embedder.embed_documents(list(texts.values()))
        await store.cache_embeddings(
            pool,
            embedder.space,
            [(h, np.asarray(v, dtype=np.float32)) for h, v in zip(texts, vectors, strict=True)],
        )
        embedded += len(texts)
        progress.advance(len(rows), len(rows))
    async with pool.acquire() as conn, conn.transaction():
        await store.unbind_space(conn)
        await store.set_vectors_from_cache(conn, embedder.space)
        await store.bind_space(conn, embedder.space, embedder.model, dims, measured)
        count = await conn.fetchval("SELECT count(*) FROM chunks")
    await store.repo_graphs.reconcile(pool)  # the big repositories' own graphs, in the new space
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
