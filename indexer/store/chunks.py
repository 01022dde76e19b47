"""Files and chunks of the index: what is indexed now, writing a batch of files with their chunks
in one transaction, deleting files, the embedding cache, and recomputing lexical fields."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np

from indexer import words
from indexer.store import postings


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
    summary: str = ""  # an LLM-written summary (indexer/summaries), searched in field C


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


CHUNK_COLUMNS = (
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
    path: str, symbol: str, kind: str, signature: str, doc: str, text: str, summary: str = ""
) -> tuple[str, str, str, str, int, int, list[str], list[str], bool]:
    """The lexical columns of a chunk, in CHUNK_COLUMNS order (derived from the chunk and its
    summary alone)."""
    f = words.chunk_fields(path, symbol, kind, signature, doc, text, summary)
    names = words.defined_names(text)
    if kind in ("function", "method"):
        names = [symbol, *(n for n in names if n != symbol)]
    keys = list(dict.fromkeys(words.symbol_key(n) for n in names))
    searchable = not words.is_trivial(kind, text)
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
            columns=(*CHUNK_COLUMNS, "summary"),
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
                    *lexical_values(
                        c.path, c.symbol, c.kind, c.signature, c.doc, c.text, c.summary
                    ),
                    c.summary,
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
    and the lexical index derived from them (`indexer.store.postings`).

    Needs no embedding and no source file: the columns derive from the stored chunk. Chunks
    that are not searchable lose their embedding, so dense search skips them too.
    """
    done, last_id = 0, 0
    while True:
        rows = await conn.fetch(
            """
            SELECT id, path, symbol, kind, signature, doc, text, summary FROM chunks
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
                        r["path"],
                        r["symbol"],
                        r["kind"],
                        r["signature"],
                        r["doc"],
                        r["text"],
                        r["summary"],
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
        str(words.LEXICAL_VERSION),
    )
    return done


async def lexical_version(conn: asyncpg.Connection) -> int | None:
    value = await conn.fetchval("SELECT value FROM victor_meta WHERE key = 'lexical_version'")
    return int(value) if value is not None else None
