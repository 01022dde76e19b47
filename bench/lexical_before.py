"""The lexical side as it was before Victor's own lexical index, for before/after benchmarks.

BM25F computed by unnesting each candidate chunk's tsvector (`chunks.lex`), candidates found
through the GIN index, document frequencies counted (or read from pg_stats in a large index).
`bench.scale` and `bench.lexical` time it next to `indexer.search.lexical` on the same database, and
use its exhaustive form (`bound=None`) as the exact BM25F reference.
"""

from __future__ import annotations

import math

import asyncpg

from indexer.search import Tuning

# A query word found in more chunks than this is "common": it still counts in every score,
# but the chunks to score are found through the rarer words. Scoring costs about 0.04 ms per
# chunk (each tsvector is read and unnested), and in a large index one common word ("player",
# "set") can be in a third of a million chunks: this bound keeps a search at most a few
# hundred milliseconds. Indexes of fewer chunks are scored exactly, as before.
MAX_LEXICAL_CANDIDATES = 10_000


async def lexical_ids(
    conn: asyncpg.Connection,
    lexemes: list[str],
    depth: int,
    repos: list[int] | None,
    tuning: Tuning,
    bound: int | None = MAX_LEXICAL_CANDIDATES,
) -> dict[int, float]:
    """Chunk id -> BM25F score of the `depth` best lexical matches.

    Per query word: idf from how many chunks hold it; its frequency in a chunk summed over
    fields with the field weights (the body's part normalised by body length, like BM25),
    then saturated with k1. The GIN index finds the chunks holding the query words: all of
    them while they are in at most MAX_LEXICAL_CANDIDATES chunks together, else the rarest
    words up to that many chunks (when every word is common: chunks holding all of them, at
    most that many). In a large index, frequent words' counts come from PostgreSQL's
    statistics (see document_frequencies).
    """
    if not lexemes:
        return {}
    scope = await conn.fetchrow(
        """
        SELECT count(*)::float8 AS n, greatest(avg(lex_len), 1)::float8 AS body_avg,
               greatest(avg(lex_doc_len), 1)::float8 AS doc_avg
        FROM chunks WHERE searchable AND ($1::int[] IS NULL OR repo_id = ANY($1))
        """,
        repos,
    )
    n = scope["n"]
    limit = bound if bound is not None else math.inf  # None: every candidate, exact counts
    df = await document_frequencies(conn, lexemes, repos, n, bound)
    found = sorted((w for w in lexemes if df[w] > 0), key=lambda w: df[w])
    if not found:
        return {}
    chosen: list[str] = []
    for word in found:
        if chosen and sum(df[w] for w in chosen) + df[word] > limit:
            break
        chosen.append(word)
    exact = n <= limit or len(chosen) == len(found)
    every = not exact and df[chosen[0]] > limit  # only common words
    if exact:
        chosen = found
    idf = [math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5)) for w in found]
    wa, wb, wc, wd = tuning.weights
    rows = await conn.fetch(
        """
        WITH words AS (SELECT * FROM unnest($1::text[], $2::float8[]) AS t(lexeme, idf)),
        s AS (SELECT $15::float8 AS body_avg, $16::float8 AS doc_avg),
        candidates AS (
            SELECT c.id, c.kind, c.lex, c.lex_len, c.lex_doc_len FROM chunks c
            WHERE c.lex @@ (SELECT string_agg(quote_literal(w), $4)::tsquery
                            FROM unnest($3::text[]) AS w)
              AND c.searchable AND ($5::int[] IS NULL OR c.repo_id = ANY($5))
            LIMIT $6
        )
        SELECT c.id, sum(words.idf * f.tf * ($11 + 1) / (f.tf + $11))
               * CASE WHEN c.kind IN ('module', 'window') THEN $14 ELSE 1 END AS score
        FROM candidates c CROSS JOIN s
        CROSS JOIN LATERAL (
            SELECT u.lexeme,
                   sum(CASE w WHEN 'A' THEN $7 WHEN 'B' THEN $8
                       WHEN 'C' THEN $9 / (1 - $12 + $12 * c.lex_doc_len / s.doc_avg)
                       ELSE $10 / (1 - $13 + $13 * c.lex_len / s.body_avg) END) AS tf
            FROM unnest(c.lex) AS u, unnest(u.weights) AS w
            WHERE u.lexeme = ANY($1)
            GROUP BY u.lexeme
        ) f
        JOIN words ON words.lexeme = f.lexeme
        GROUP BY c.id, c.kind
        ORDER BY score DESC, c.id
        LIMIT $17
        """,
        found,
        idf,
        found if every else chosen,
        " & " if every else " | ",
        repos,
        bound if every else None,
        wa,
        wb,
        wc,
        wd,
        tuning.k1,
        tuning.b_doc,
        tuning.b_body,
        tuning.module_lexical,
        scope["body_avg"],
        scope["doc_avg"],
        depth,
    )
    return {r["id"]: float(r["score"]) for r in rows}


async def document_frequencies(
    conn: asyncpg.Connection,
    lexemes: list[str],
    repos: list[int] | None,
    n: float,
    bound: int | None = MAX_LEXICAL_CANDIDATES,
) -> dict[str, float]:
    """How many chunks in scope hold each word. Counted (up to MAX_LEXICAL_CANDIDATES + 1: a
    bounded scan) in a scope of at most MAX_LEXICAL_CANDIDATES chunks; in a larger one the
    frequent words' counts are estimated from PostgreSQL's statistics of the tsvector column
    (the share of rows holding each of its most common words, kept by ANALYZE) and only the
    others are counted."""
    df: dict[str, float] = {}
    if bound is not None and n > bound:
        rows = await conn.fetch(
            """
            SELECT e.lexeme, e.share FROM pg_stats s
            CROSS JOIN LATERAL unnest(s.most_common_elems::text::text[],
                                      s.most_common_elem_freqs) AS e(lexeme, share)
            WHERE s.schemaname = current_schema() AND s.tablename = 'chunks'
              AND s.attname = 'lex' AND e.lexeme = ANY($1)
            """,
            lexemes,
        )
        df = {r["lexeme"]: r["share"] * n for r in rows}
    rows = await conn.fetch(
        """
        SELECT t.lexeme, (
            SELECT count(*) FROM (
                SELECT 1 FROM chunks c
                WHERE c.lex @@ quote_literal(t.lexeme)::tsquery AND c.searchable
                  AND ($2::int[] IS NULL OR c.repo_id = ANY($2))
                LIMIT $3) s
        )::float8 AS df
        FROM unnest($1::text[]) AS t(lexeme)
        """,
        [w for w in lexemes if w not in df],
        repos,
        None if bound is None else bound + 1,
    )
    return df | {r["lexeme"]: r["df"] for r in rows}
