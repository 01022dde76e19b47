"""Reading and writing the index in PostgreSQL. All SQL of the index lives here.

Every statement is parameterised. Writes that must be atomic (a file and its
chunks) happen in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import numpy as np

from . import lexical, postings
from .errors import ModelMismatch, NotFound, SchemaError

_REPO_LOCK_SPACE = 7_401_002  # pg_advisory_lock(space, repo_id): one index run per repo
_SYNC_LOCK_SPACE = 7_401_003  # pg_advisory_lock(space, repo_id): one fetch + sync per repo


@dataclass(frozen=True, slots=True)
class Repo:
    id: int
    name: str
    source: str
    ref: str | None
    commit_sha: str | None
    github_url: str | None
    indexed_at: datetime | None
    last_run: dict | None
    tracked: bool = False  # followed by the webhook and `victor sync` (source = URL, ref = branch)


@dataclass(frozen=True, slots=True)
class FileRecord:
    path: str
    content_hash: str
    commit_sha: str | None
    parse_mode: str
    parse_error: str
    chunker_version: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class ChunkRow:
    path: str
    symbol: str
    kind: str
    signature: str
    doc: str
    start_line: int
    end_line: int
    part: int
    text: str
    embed_hash: bytes
    embedding: np.ndarray | None  # None for chunks that are not searchable
    name_hash: bytes | None = None  # the short name text's hash, when it was embedded too


@dataclass(frozen=True, slots=True)
class EmbeddingSpace:
    space: str
    model: str
    dims: int


def _repo(row: asyncpg.Record) -> Repo:
    last_run = row["last_run"]
    return Repo(
        id=row["id"],
        name=row["name"],
        source=row["source"],
        ref=row["ref"],
        commit_sha=row["commit_sha"],
        github_url=row["github_url"],
        indexed_at=row["indexed_at"],
        last_run=json.loads(last_run) if isinstance(last_run, str) else last_run,
        tracked=row["tracked"],
    )


# --- repositories ---------------------------------------------------------------------------


async def upsert_repo(
    db: asyncpg.Pool | asyncpg.Connection,
    name: str,
    source: str,
    ref: str | None,
    github_url: str | None,
) -> Repo:
    row = await db.fetchrow(
        """
        INSERT INTO repos (name, source, ref, github_url) VALUES ($1, $2, $3, $4)
        ON CONFLICT (name) DO UPDATE
            SET source = EXCLUDED.source, ref = EXCLUDED.ref,
                github_url = COALESCE(EXCLUDED.github_url, repos.github_url)
        RETURNING *
        """,
        name,
        source,
        ref,
        github_url,
    )
    return _repo(row)


async def get_repo(db: asyncpg.Pool | asyncpg.Connection, name: str) -> Repo:
    row = await db.fetchrow("SELECT * FROM repos WHERE name = $1", name)
    if row is None:
        known = [r["name"] for r in await db.fetch("SELECT name FROM repos ORDER BY name")]
        hint = f" Known: {', '.join(known)}." if known else " Nothing is indexed yet."
        raise NotFound(f"No repository named {name!r} in the index.{hint}")
    return _repo(row)


async def list_repos(db: asyncpg.Pool | asyncpg.Connection) -> list[Repo]:
    return [_repo(r) for r in await db.fetch("SELECT * FROM repos ORDER BY name")]


async def repo_counts(db: asyncpg.Pool | asyncpg.Connection) -> dict[int, tuple[int, int]]:
    """repo id -> (files, chunks)."""
    rows = await db.fetch(
        """
        SELECT r.id,
               (SELECT count(*) FROM files f WHERE f.repo_id = r.id) AS files,
               (SELECT count(*) FROM chunks c WHERE c.repo_id = r.id) AS chunks
        FROM repos r
        """
    )
    return {r["id"]: (r["files"], r["chunks"]) for r in rows}


async def remove_repo(db: asyncpg.Pool | asyncpg.Connection, name: str) -> None:
    await get_repo(db, name)
    async with _transaction(db) as conn:
        repo_id = await conn.fetchval("SELECT id FROM repos WHERE name = $1", name)
        await postings.remove_repo(conn, repo_id)
        await conn.execute("DELETE FROM chunks WHERE repo_id = $1", repo_id)
        await conn.execute("DELETE FROM repos WHERE id = $1", repo_id)


async def repo_commit(db: asyncpg.Pool | asyncpg.Connection, repo_id: int) -> str | None:
    """The last commit indexed completely."""
    return await db.fetchval("SELECT commit_sha FROM repos WHERE id = $1", repo_id)


# --- tracked repositories (the webhook and `victor sync`) ----------------------------------


async def track_repo(
    db: asyncpg.Pool | asyncpg.Connection, name: str, url: str, branch: str, github_url: str
) -> Repo:
    """Follow `branch` of `url`. An existing index of that name is kept and synced from now on."""
    row = await db.fetchrow(
        """
        INSERT INTO repos (name, source, ref, github_url, tracked) VALUES ($1, $2, $3, $4, true)
        ON CONFLICT (name) DO UPDATE
            SET source = EXCLUDED.source, ref = EXCLUDED.ref,
                github_url = EXCLUDED.github_url, tracked = true
        RETURNING *
        """,
        name,
        url,
        branch,
        github_url,
    )
    return _repo(row)


async def untrack_repo(db: asyncpg.Pool | asyncpg.Connection, name: str) -> None:
    """Stop following a repository; its index stays searchable."""
    await get_repo(db, name)
    await db.execute("UPDATE repos SET tracked = false WHERE name = $1", name)


async def tracked_repos(db: asyncpg.Pool | asyncpg.Connection) -> list[Repo]:
    rows = await db.fetch("SELECT * FROM repos WHERE tracked ORDER BY name")
    return [_repo(r) for r in rows]


async def repos_for_push(
    db: asyncpg.Pool | asyncpg.Connection, github_url: str, branch: str
) -> list[Repo]:
    """Tracked repositories a push to `branch` of `github_url` concerns."""
    rows = await db.fetch(
        "SELECT * FROM repos WHERE tracked AND lower(github_url) = lower($1) AND ref = $2 "
        "ORDER BY name",
        github_url,
        branch,
    )
    return [_repo(r) for r in rows]


async def finish_run(
    db: asyncpg.Pool | asyncpg.Connection, repo_id: int, commit_sha: str | None, summary: dict
) -> None:
    """Record a complete run: only now does the repo's commit move forward."""
    await db.execute(
        "UPDATE repos SET commit_sha = $2, indexed_at = now(), last_run = $3::jsonb WHERE id = $1",
        repo_id,
        commit_sha,
        json.dumps(summary),
    )


@asynccontextmanager
async def _session_lock(pool: asyncpg.Pool, space: int, key: int):
    """Hold a session advisory lock on a connection of the pool for the block.

    The lock belongs to the connection: if the connection breaks (the database stopped), the
    lock is already gone, and failing to unlock must not hide the error that ended the work.
    """
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1, $2)", space, key)
        try:
            yield
        finally:
            with suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", space, key)


def repo_lock(pool: asyncpg.Pool, repo_id: int):
    """Hold a session advisory lock so two runs never index the same repo at once."""
    return _session_lock(pool, _REPO_LOCK_SPACE, repo_id)


def sync_lock(pool: asyncpg.Pool, repo_id: int):
    """One fetch + sync per repository at a time (workers, `victor sync`), across processes.

    A session lock: it is released when its connection closes, so a killed worker never
    leaves it behind.
    """
    return _session_lock(pool, _SYNC_LOCK_SPACE, repo_id)


@asynccontextmanager
async def _transaction(db: asyncpg.Pool | asyncpg.Connection):
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db


# --- embedding space ------------------------------------------------------------------------


async def embedding_space(db: asyncpg.Pool | asyncpg.Connection) -> EmbeddingSpace | None:
    rows = await db.fetch(
        "SELECT key, value FROM victor_meta "
        "WHERE key IN ('embed_space', 'embed_model', 'embed_dims')"
    )
    meta = {r["key"]: r["value"] for r in rows}
    if "embed_space" not in meta:
        return None
    return EmbeddingSpace(meta["embed_space"], meta["embed_model"], int(meta["embed_dims"]))


def mismatch_message(recorded: EmbeddingSpace, space: str, model: str) -> str:
    return (
        f"The index was built with the embedding model {recorded.model!r} "
        f"({recorded.dims} dims), but Victor is configured for {model!r}. "
        f"Either set VICTOR_EMBED_MODEL={recorded.model} (and the backend/prefixes it used: "
        f"{recorded.space}), or run `victor reembed` to re-embed the whole index with {model!r}."
    )


async def use_embedding_space(
    db: asyncpg.Pool | asyncpg.Connection, space: str, model: str, dims: int
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
        async with _transaction(db) as conn:
            await conn.execute("LOCK TABLE victor_meta IN EXCLUSIVE MODE")
            recorded = await embedding_space(conn)
            if recorded is not None:
                if recorded.space != space or recorded.dims != dims:
                    raise ModelMismatch(mismatch_message(recorded, space, model))
                return
            await bind_space(conn, space, model, dims)
    except asyncpg.InsufficientPrivilegeError as exc:
        # a runtime role without DDL rights (docs/database-role.md): say who can do it
        raise SchemaError(
            f"The database role may not fix the embedding column to {model!r} ({dims} dims): "
            f"{exc.message}. The first index of a database alters its tables: run it once "
            "as the database's owner (the role that ran `victor init-db`); later runs work "
            "with the runtime role. See docs/database-role.md."
        ) from None


async def bind_space(conn: asyncpg.Connection, space: str, model: str, dims: int) -> None:
    """Fix the column to vector(dims), build the HNSW index, record the model."""
    await conn.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")
    await conn.execute(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({int(dims)})")
    await conn.execute(
        "CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks "
        "USING hnsw (embedding vector_cosine_ops)"
    )
    await conn.executemany(
        """
        INSERT INTO victor_meta (key, value) VALUES ($1, $2)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
        """,
        [("embed_space", space), ("embed_model", model), ("embed_dims", str(dims))],
    )


async def unbind_space(conn: asyncpg.Connection) -> None:
    """For `victor reembed`: free the column from its dimension, inside its transaction."""
    await conn.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")
    await conn.execute("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector")


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
    )


# --- files and chunks -----------------------------------------------------------------------


async def file_states(
    db: asyncpg.Pool | asyncpg.Connection, repo_id: int
) -> dict[str, tuple[str, int]]:
    """path -> (content hash, chunker version) of what is indexed now."""
    rows = await db.fetch(
        "SELECT path, content_hash, chunker_version FROM files WHERE repo_id = $1", repo_id
    )
    return {r["path"]: (r["content_hash"], r["chunker_version"]) for r in rows}


async def cached_embeddings(
    db: asyncpg.Pool | asyncpg.Connection, space: str, hashes: Sequence[bytes]
) -> dict[bytes, np.ndarray]:
    if not hashes:
        return {}
    rows = await db.fetch(
        "SELECT text_hash, embedding FROM embedding_cache WHERE space = $1 AND text_hash = ANY($2)",
        space,
        list(set(hashes)),
    )
    return {bytes(r["text_hash"]): _array(r["embedding"]) for r in rows}


def _array(value) -> np.ndarray:
    """pgvector's codec returns a Vector (0.5) or an array (older): always an array here."""
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else value, dtype=np.float32)


async def cache_embeddings(
    db: asyncpg.Pool | asyncpg.Connection, space: str, items: Iterable[tuple[bytes, np.ndarray]]
) -> None:
    records = [(space, h, v) for h, v in items]
    if not records:
        return
    await db.executemany(
        """
        INSERT INTO embedding_cache (space, text_hash, embedding) VALUES ($1, $2, $3)
        ON CONFLICT (space, text_hash) DO NOTHING
        """,
        records,
    )


_CHUNK_COLUMNS = (
    "repo_id",
    "path",
    "symbol",
    "kind",
    "signature",
    "doc",
    "start_line",
    "end_line",
    "part",
    "text",
    "embed_hash",
    "embedding",
    "name_hash",
    "lex_name",
    "lex_context",
    "lex_doc",
    "lex_body",
    "lex_len",
    "lex_doc_len",
    "defines",
    "symbol_keys",
    "searchable",
)


def lexical_values(
    path: str, symbol: str, kind: str, signature: str, doc: str, text: str
) -> tuple[str, str, str, str, int, int, list[str], list[str], bool]:
    """The lexical columns of a chunk, in _CHUNK_COLUMNS order (derived from the chunk alone)."""
    f = lexical.chunk_fields(path, symbol, kind, signature, doc, text)
    names = lexical.defined_names(text)
    if kind in ("function", "method"):
        names = [symbol, *(n for n in names if n != symbol)]
    keys = list(dict.fromkeys(lexical.symbol_key(n) for n in names))
    searchable = not lexical.is_trivial(kind, text)
    return (
        f.name,
        f.context,
        f.doc,
        f.body,
        f.body_length,
        f.doc_length,
        names,
        keys,
        searchable,
    )


async def replace_files(
    pool: asyncpg.Pool, repo_id: int, files: Sequence[FileRecord], chunks: Sequence[ChunkRow]
) -> None:
    """Replace these files and all their chunks, and their lexical index, in one transaction."""
    if not files:
        return
    paths = [f.path for f in files]
    async with pool.acquire() as conn, conn.transaction():
        await postings.remove_files(conn, repo_id, paths)
        await conn.execute(
            "DELETE FROM chunks WHERE repo_id = $1 AND path = ANY($2)", repo_id, paths
        )
        await conn.executemany(
            """
            INSERT INTO files (repo_id, path, content_hash, commit_sha, parse_mode, parse_error,
                               chunker_version, size_bytes, indexed_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
            ON CONFLICT (repo_id, path) DO UPDATE SET
                content_hash = EXCLUDED.content_hash, commit_sha = EXCLUDED.commit_sha,
                parse_mode = EXCLUDED.parse_mode, parse_error = EXCLUDED.parse_error,
                chunker_version = EXCLUDED.chunker_version, size_bytes = EXCLUDED.size_bytes,
                indexed_at = now()
            """,
            [
                (
                    repo_id,
                    f.path,
                    f.content_hash,
                    f.commit_sha,
                    f.parse_mode,
                    f.parse_error or None,
                    f.chunker_version,
                    f.size_bytes,
                )
                for f in files
            ],
        )
        await conn.copy_records_to_table(
            "chunks",
            columns=_CHUNK_COLUMNS,
            records=[
                (
                    repo_id,
                    c.path,
                    c.symbol,
                    c.kind,
                    c.signature,
                    c.doc,
                    c.start_line,
                    c.end_line,
                    c.part,
                    c.text,
                    c.embed_hash,
                    c.embedding,
                    c.name_hash,
                    *lexical_values(c.path, c.symbol, c.kind, c.signature, c.doc, c.text),
                )
                for c in chunks
            ],
        )
        await postings.add_files(conn, repo_id, paths)


async def analyze_chunks(pool: asyncpg.Pool) -> None:
    await pool.execute("ANALYZE chunks")


async def delete_files(pool: asyncpg.Pool, repo_id: int, paths: Sequence[str]) -> None:
    if not paths:
        return
    async with pool.acquire() as conn, conn.transaction():
        await postings.remove_files(conn, repo_id, paths)
        await conn.execute(
            "DELETE FROM chunks WHERE repo_id = $1 AND path = ANY($2)", repo_id, list(paths)
        )
        await conn.execute(
            "DELETE FROM files WHERE repo_id = $1 AND path = ANY($2)", repo_id, list(paths)
        )


async def update_commit(
    pool: asyncpg.Pool, repo_id: int, paths: Sequence[str], commit: str
) -> None:
    """Files whose content did not change still now belong to the new commit."""
    if paths:
        await pool.execute(
            "UPDATE files SET commit_sha = $3 WHERE repo_id = $1 AND path = ANY($2)",
            repo_id,
            list(paths),
            commit,
        )


async def refresh_lexical(conn: asyncpg.Connection, batch: int = 2000) -> int:
    """Recompute every chunk's lexical columns (after an upgrade or a LEXICAL_VERSION bump)
    and the lexical index derived from them (`indexer.postings`).

    Needs no embedding and no source file: the columns derive from the stored chunk. Chunks
    that are not searchable lose their embedding, so dense search skips them too.
    """
    done, last_id = 0, 0
    while True:
        rows = await conn.fetch(
            """
            SELECT id, path, symbol, kind, signature, doc, text FROM chunks
            WHERE id > $1 ORDER BY id LIMIT $2
            """,
            last_id,
            batch,
        )
        if not rows:
            break
        await conn.executemany(
            """
            UPDATE chunks SET lex_name = $2, lex_context = $3, lex_doc = $4, lex_body = $5,
                lex_len = $6, lex_doc_len = $7, defines = $8, symbol_keys = $9,
                searchable = $10, embedding = CASE WHEN $10 THEN embedding END
            WHERE id = $1
            """,
            [
                (
                    r["id"],
                    *lexical_values(
                        r["path"], r["symbol"], r["kind"], r["signature"], r["doc"], r["text"]
                    ),
                )
                for r in rows
            ],
        )
        done += len(rows)
        last_id = rows[-1]["id"]
    await postings.rebuild(conn)  # the words changed: so does the lexical index
    await conn.execute(
        """
        INSERT INTO victor_meta (key, value) VALUES ('lexical_version', $1)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
        """,
        str(lexical.LEXICAL_VERSION),
    )
    return done


async def lexical_version(conn: asyncpg.Connection) -> int | None:
    value = await conn.fetchval("SELECT value FROM victor_meta WHERE key = 'lexical_version'")
    return int(value) if value is not None else None
