"""The lexical side: BM25F over the identifier-split fields of `indexer.words` (name, module and
parameters, doc and called names, body), computed in SQL from the chunks' weighted tsvectors."""

from __future__ import annotations

import math

import asyncpg

from indexer import words
from indexer.search.fusion import Tuning
from indexer.store.named import named


async def query_lexemes(conn: asyncpg.Connection, query: str) -> list[str]:
    """The query's words as the index stores them (identifiers split, stemmed, no stop words)."""
    text = words.query_words(query)
    if not text:
        return []
    return list(await conn.fetchval("SELECT tsvector_to_array(to_tsvector('english', $1))", text))


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
    df = await document_frequencies(conn, lexemes, repos, n)
    found = sorted((w for w in lexemes if df[w] > 0), key=lambda w: df[w])
    if not found:
        return {}
    chosen: list[str] = []
    for word in found:
        if chosen and sum(df[w] for w in chosen) + df[word] > MAX_LEXICAL_CANDIDATES:
            break
        chosen.append(word)
    exact = n <= MAX_LEXICAL_CANDIDATES or len(chosen) == len(found)
    every = not exact and df[chosen[0]] > MAX_LEXICAL_CANDIDATES  # only common words
    if exact:
        chosen = found
    idf = [math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5)) for w in found]
    wa, wb, wc, wd = tuning.weights
    sql, args = named(
        """
        WITH words AS (SELECT * FROM unnest(:lexemes::text[], :idf::float8[]) AS t(lexeme, idf)),
        s AS (SELECT :body_avg::float8 AS body_avg, :doc_avg::float8 AS doc_avg),
        candidates AS (
            SELECT c.id, c.kind, c.lex, c.lex_len, c.lex_doc_len FROM chunks c
            WHERE c.lex @@ (SELECT string_agg(quote_literal(w), :operator)::tsquery
                            FROM unnest(:match::text[]) AS w)
              AND c.searchable AND (:repos::int[] IS NULL OR c.repo_id = ANY(:repos))
            LIMIT :candidates
        )
        SELECT c.id, sum(words.idf * f.tf * (:k1 + 1) / (f.tf + :k1))
               * CASE WHEN c.kind IN ('module', 'window') THEN :module_factor ELSE 1 END AS score
        FROM candidates c CROSS JOIN s
        CROSS JOIN LATERAL (
            SELECT u.lexeme,
                   sum(CASE w WHEN 'A' THEN :w_name WHEN 'B' THEN :w_context
                       WHEN 'C' THEN :w_doc / (1 - :b_doc + :b_doc * c.lex_doc_len / s.doc_avg)
                       ELSE :w_body / (1 - :b_body + :b_body * c.lex_len / s.body_avg) END) AS tf
            FROM unnest(c.lex) AS u, unnest(u.weights) AS w
            WHERE u.lexeme = ANY(:lexemes)
            GROUP BY u.lexeme
        ) f
        JOIN words ON words.lexeme = f.lexeme
        GROUP BY c.id, c.kind
        ORDER BY score DESC, c.id
        LIMIT :depth
        """,
        lexemes=found,
        idf=idf,
        match=found if every else chosen,
        operator=" & " if every else " | ",
        repos=repos,
        candidates=MAX_LEXICAL_CANDIDATES if every else None,
        w_name=wa,
        w_context=wb,
        w_doc=wc,
        w_body=wd,
        k1=tuning.k1,
        b_doc=tuning.b_doc,
        b_body=tuning.b_body,
        module_factor=tuning.module_lexical,
        body_avg=scope["body_avg"],
        doc_avg=scope["doc_avg"],
        depth=depth,
    )
    rows = await conn.fetch(sql, *args)
    return {r["id"]: float(r["score"]) for r in rows}


async def document_frequencies(
    conn: asyncpg.Connection, lexemes: list[str], repos: list[int] | None, n: float
) -> dict[str, float]:
    """How many chunks in scope hold each word. Counted (up to MAX_LEXICAL_CANDIDATES + 1: a
    bounded scan) in a scope of at most MAX_LEXICAL_CANDIDATES chunks; in a larger one the
    frequent words' counts are estimated from PostgreSQL's statistics of the tsvector column
    (the share of rows holding each of its most common words, kept by ANALYZE) and only the
    others are counted."""
    df: dict[str, float] = {}
    if n > MAX_LEXICAL_CANDIDATES:
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
        MAX_LEXICAL_CANDIDATES + 1,
    )
    return df | {r["lexeme"]: r["df"] for r in rows}
