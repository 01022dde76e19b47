"""The embedding space an index is bound to (model, prefixes, dimensions): recorded once, every
other model refused until `victor reembed`."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from indexer.embedding.scale import Scale
from indexer.errors import ModelMismatch, SchemaError
from indexer.store import repo_graphs
from indexer.store.limits import BUILD_MEMORY, UNBOUNDED
from indexer.store.locks import transaction


@dataclass(frozen=True, slots=True)
class EmbeddingSpace:
    space: str
    model: str
    dims: int
    scale: Scale | None = None  # where the model puts the probes (`indexer.embedding.scale`)


async def embedding_space(db: asyncpg.Pool | asyncpg.Connection) -> EmbeddingSpace | None:
    rows = await db.fetch(
        "SELECT key, value FROM victor_meta "
        "WHERE key IN ('embed_space', 'embed_model', 'embed_dims', 'embed_scale')"
    )
    meta = {r["key"]: r["value"] for r in rows}
    if "embed_space" not in meta:
        return None
    scale = Scale.from_json(meta["embed_scale"]) if "embed_scale" in meta else None
    return EmbeddingSpace(meta["embed_space"], meta["embed_model"], int(meta["embed_dims"]), scale)


async def record_scale(db: asyncpg.Pool | asyncpg.Connection, space: str, scale: Scale) -> None:
    """Record the scale of an index bound to `space` before Victor measured scales; nothing
    when the index has moved to another space meanwhile (`victor reembed` records its own)."""
    await db.execute(
        """
        INSERT INTO victor_meta (key, value)
        SELECT 'embed_scale', $2 FROM victor_meta WHERE key = 'embed_space' AND value = $1
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
        """,
        space,
        scale.to_json(),
    )


def describe_space(space: str) -> str:
    """`local:all-MiniLM-L6-v2||` -> `all-MiniLM-L6-v2 (local backend)`: no internals."""
    backend, _, rest = space.partition(":")
    model, _, prefixes = rest.partition("|")
    text = f"{model} ({backend} backend"
    if prefixes.strip("|"):
        doc, _, query = prefixes.partition("|")
        text += f", prefixes {doc!r} for code and {query!r} for queries"
    return text + ")"


def mismatch_message(recorded: EmbeddingSpace, space: str, model: str) -> str:
    backend = recorded.space.partition(":")[0]
    was, _, prompts = recorded.space.partition("|")
    if was == space.partition("|")[0] and recorded.space != space:
        # same model, other prompts: e.g. an index built before Victor knew the model's prompts
        doc, _, query = prompts.partition("|")
        return (
            f"The index was built with {describe_space(recorded.space)}, but Victor now "
            f"embeds with {describe_space(space)}. Either keep the index's prompts with "
            f"VICTOR_DOCUMENT_PREFIX={doc!r} VICTOR_QUERY_PREFIX={query!r}, or run "
            f"`victor reembed` to re-embed the whole index with the new ones."
        )
    return (
        f"The index was built with {describe_space(recorded.space)}, {recorded.dims} dims, "
        f"but Victor is configured for {describe_space(space)}. Either set "
        f"VICTOR_EMBED_BACKEND={backend} VICTOR_EMBED_MODEL={recorded.model} (the index's "
        f"model), or run `victor reembed` to re-embed the whole index with {model!r}."
    )


# Vectors live in the row, not in TOAST: a search restricted to a few repositories reads all
# of theirs (indexer/search/dense.py). A change of type resets a column's storage to the
# type's default, so every ALTER ... TYPE of the column says it again, in the same statement
# (the table is rewritten once, with the vectors in the rows).
_IN_ROW = "ALTER COLUMN embedding SET STORAGE MAIN"


async def keep_vectors_in_rows(conn: asyncpg.Connection) -> None:
    """Move the vectors stored before migration 7 out of TOAST into their rows: SET STORAGE
    applies to rows written after it, so the table is rewritten (CLUSTER: in file order,
    which also keeps each repository's rows together)."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM chunks WHERE embedding IS NOT NULL)"):
        await conn.execute("CLUSTER chunks USING chunks_file_idx")
        await conn.execute("ALTER TABLE chunks SET WITHOUT CLUSTER")


async def use_embedding_space(
    db: asyncpg.Pool | asyncpg.Connection,
    space: str,
    model: str,
    dims: int,
    scale: Scale | None = None,
) -> None:
    """Bind the index to one vector space; refuse another one.

    The first time, this fixes the embedding column to vector(dims) and builds
    the HNSW cosine index (a vector column needs a dimension to be indexed).
    """
    recorded = await embedding_space(db)
    if recorded is not None:
        if recorded.space != space or recorded.dims != dims:
            raise ModelMismatch(mismatch_message(recorded, space, model))
        return
    try:
        async with transaction(db) as conn:
            await conn.execute("LOCK TABLE victor_meta IN EXCLUSIVE MODE")
            recorded = await embedding_space(conn)
            if recorded is not None:
                if recorded.space != space or recorded.dims != dims:
                    raise ModelMismatch(mismatch_message(recorded, space, model))
                return
            await bind_space(conn, space, model, dims, scale)
    except asyncpg.InsufficientPrivilegeError as exc:
        # a runtime role without DDL rights (docs/database-role.md): say who can do it
        raise SchemaError(
            f"The database role may not fix the embedding column to {model!r} ({dims} dims): "
            f"{exc.message}. The first index of a database alters its tables: run it once "
            "as the database's owner (the role that ran `victor init-db`); later runs work "
            "with the runtime role. See docs/database-role.md."
        ) from None


async def bind_space(
    conn: asyncpg.Connection, space: str, model: str, dims: int, scale: Scale | None = None
) -> None:
    """Fix the column to vector(dims), build the HNSW index, record the model and its scale
    (without one, a recorded scale is removed: a search never maps one model's cosines with
    another's scale). Inside the caller's transaction. On an empty index (the first run) this
    is instant; after `victor reembed` it rewrites and indexes every chunk: no per-statement
    limit, and the graph's build memory (`limits.BUILD_MEMORY`) for this transaction."""
    await conn.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw", timeout=UNBOUNDED)
    await conn.execute(
        f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({int(dims)}), {_IN_ROW}",
        timeout=UNBOUNDED,
    )
    await conn.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
    await conn.execute(
        "CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks "
        "USING hnsw (embedding vector_cosine_ops)",
        timeout=UNBOUNDED,
    )
    await conn.executemany(
        """
        INSERT INTO victor_meta (key, value) VALUES ($1, $2)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
        """,
        [
            ("embed_space", space),
            ("embed_model", model),
            ("embed_dims", str(dims)),
            *([("embed_scale", scale.to_json())] if scale else []),
        ],
    )
    if scale is None:
        await conn.execute("DELETE FROM victor_meta WHERE key = 'embed_scale'")


async def unbind_space(conn: asyncpg.Connection) -> None:
    """For `victor reembed`: free the column from its dimension, inside its transaction (the
    repositories' own graphs go with the global one; the next index run or `reembed` builds
    them again: `repo_graphs.reconcile`). Each statement waits for the table (searches
    reading it) and may rewrite it: no per-statement limit (`limits.UNBOUNDED`)."""
    await conn.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw", timeout=UNBOUNDED)
    await repo_graphs.drop_all(conn)
    await conn.execute(
        f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector, {_IN_ROW}", timeout=UNBOUNDED
    )


async def set_vectors_from_cache(conn: asyncpg.Connection, space: str) -> None:
    """Every searchable chunk's vector from the cache of `space`: its full text's embedding,
    averaged with its name text's when it has one (as indexing computes it)."""
    await conn.execute(
        """
        UPDATE chunks c SET embedding = (
            SELECT CASE WHEN n.embedding IS NULL THEN e.embedding
                        ELSE l2_normalize(e.embedding + n.embedding) END
            FROM embedding_cache e
            LEFT JOIN embedding_cache n ON n.space = e.space AND n.text_hash = c.name_hash
            WHERE e.space = $1 AND e.text_hash = c.embed_hash)
        WHERE c.searchable
        """,
        space,
        timeout=UNBOUNDED,
    )
