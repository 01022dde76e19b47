"""Summaries of functions (indexer/summaries) in the index: what is left to summarise, the
summaries kept by (summariser, chunk hash), and setting chunks' summaries with the lexical index
in step (in one transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from indexer.store import postings
from indexer.store.chunks import lexical_values

KINDS = ["function", "method"]  # module and window chunks are not summarised

# The chunks of the scope a summariser has not summarised: one per distinct text (a function
# indexed twice, in two repositories or unchanged in two files, is summarised once).
_TODO = """
    SELECT DISTINCT ON (c.embed_hash) c.id, c.embed_hash,
           length(c.text) + length(c.path) + length(c.symbol) AS chars
    FROM chunks c
    WHERE c.kind = ANY($2::text[]) AND c.searchable
      AND ($3::int[] IS NULL OR c.repo_id = ANY($3::int[]))
      AND NOT EXISTS (SELECT 1 FROM chunk_summaries s
                      WHERE s.summariser = $1 AND s.text_hash = c.embed_hash)
    ORDER BY c.embed_hash, c.id
"""


@dataclass(frozen=True, slots=True)
class Todo:
    ids: list[int]  # one chunk per text left to summarise, in id order (file order)
    chars: int  # characters of their code, paths and names: the estimate's input
    done: int  # texts of the scope already summarised by this summariser


async def todo(db: asyncpg.Pool | asyncpg.Connection, summariser: str, repo_ids) -> Todo:
    rows = await db.fetch(_TODO, summariser, KINDS, repo_ids)
    done = await db.fetchval(
        """
        SELECT count(DISTINCT c.embed_hash) FROM chunks c
        JOIN chunk_summaries s ON s.summariser = $1 AND s.text_hash = c.embed_hash
        WHERE c.kind = ANY($2::text[]) AND ($3::int[] IS NULL OR c.repo_id = ANY($3::int[]))
        """,
        summariser,
        KINDS,
        repo_ids,
    )
    ids = sorted(r["id"] for r in rows)
    return Todo(ids, sum(r["chars"] for r in rows), done)


async def subjects(db: asyncpg.Pool | asyncpg.Connection, ids: Sequence[int]) -> list:
    """The chunks to summarise (id, embed_hash, path, symbol, text); a chunk a
    concurrent index run replaced meanwhile is simply missing."""
    return await db.fetch(
        "SELECT id, embed_hash, path, symbol, text FROM chunks WHERE id = ANY($1) ORDER BY id",
        list(ids),
    )


async def save(
    db: asyncpg.Pool | asyncpg.Connection,
    summariser: str,
    items: Iterable[tuple[bytes, str, int | None, int | None]],
) -> None:
    """Keep (chunk hash, summary, input tokens, output tokens) of this summariser."""
    await db.executemany(
        """
        INSERT INTO chunk_summaries (summariser, text_hash, summary, input_tokens, output_tokens)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (summariser, text_hash) DO NOTHING
        """,
        [(summariser, *item) for item in items],
    )


async def for_hashes(
    db: asyncpg.Pool | asyncpg.Connection, summariser: str, hashes: Sequence[bytes]
) -> dict[bytes, str]:
    """The kept summaries of these chunk texts (an index run attaches them to new rows)."""
    if not hashes:
        return {}
    rows = await db.fetch(
        "SELECT text_hash, summary FROM chunk_summaries "
        "WHERE summariser = $1 AND text_hash = ANY($2)",
        summariser,
        list(set(hashes)),
    )
    return {bytes(r["text_hash"]): r["summary"] for r in rows}


async def apply(
    conn: asyncpg.Connection,
    summariser: str | None,
    repo_id: int,
    hashes: Sequence[bytes] | None = None,
) -> int:
    """Give the repository's functions (those of `hashes`, or all) the summary `summariser`
    wrote for their text; a function it wrote none for keeps the one it has (a summary of the
    same text by another model: still true). None clears every summary (`--clear`).
    Chunks, their lexical fields and the lexical index change together: call it in a
    transaction, holding the repository's lock (store.repo_lock) so no index run writes the
    same chunks meanwhile. Returns the chunks changed."""
    rows = await conn.fetch(
        """
        SELECT c.id, c.path, c.symbol, c.kind, c.signature, c.doc, c.text,
               coalesce(s.summary, '') AS want
        FROM chunks c
        LEFT JOIN chunk_summaries s ON s.summariser = $1 AND s.text_hash = c.embed_hash
        WHERE c.repo_id = $2 AND c.kind = ANY($3::text[])
          AND ($4::bytea[] IS NULL OR c.embed_hash = ANY($4::bytea[]))
          AND ($1::text IS NULL OR s.summary IS NOT NULL)
          AND c.summary <> coalesce(s.summary, '')
        ORDER BY c.id
        """,
        summariser,
        repo_id,
        KINDS,
        None if hashes is None else list(hashes),
    )
    if not rows:
        return 0
    ids = [r["id"] for r in rows]
    await postings.remove_chunks(conn, ids)
    await conn.executemany(
        """
        UPDATE chunks SET summary = $2, lex_name = $3, lex_context = $4, lex_doc = $5,
            lex_body = $6, lex_len = $7, lex_doc_len = $8
        WHERE id = $1
        """,
        [
            (
                r["id"],
                r["want"],
                *lexical_values(
                    r["path"],
                    r["symbol"],
                    r["kind"],
                    r["signature"],
                    r["doc"],
                    r["text"],
                    r["want"],
                )[:6],
            )
            for r in rows
        ],
    )
    await postings.add_chunks(conn, ids)
    return len(rows)
