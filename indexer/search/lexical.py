"""The lexical side: BM25F over Victor's own lexical index (`indexer.store.postings`), in one
statement.

The score is the one Victor has always used: per query word, idf from how many
searchable chunks in scope hold it; the word's occurrences summed over the four fields with
the field weights, the doc and body parts normalised by length against the scope's mean
lengths; saturated with k1; module and window chunks scaled by `module_lexical`.

What changed is how the chunks to score are found. Each word's postings are ordered by
impact (its BM25F part at reference lengths), so one statement:
1. reads the best `reach` postings of each query word in each repository in scope
   (index-only scans of `lex_postings_impact_idx`; a repository gets a share of `reach`
   by its size, so a one-repository search reads its own short lists);
2. ranks their chunks by an approximation of the score: the sum over the words of idf x the
   posting's BM25F part at reference lengths, saturated with the search's own k1 (the stored
   impact was saturated with a reference k1, `postings.REF_K1`, and is turned back into the
   field-weighted frequency first: with the hybrid's k1 of 1.2 instead of 6, a chunk holding
   several query words once outranks one holding a single word many times, as its exact score
   will; bench/README.md, "The lexical statement's bounds");
3. computes the exact score of the best `rescore` of them (of all, when every list was read
   to its end and they hold at most EXACT postings, or the scope at most EXACT chunks: then
   the result is exactly BM25F over every chunk holding a query word) and returns the best
   `depth`. Each chosen chunk's postings are read by primary key (a LATERAL subquery per
   chunk): left to choose, the planner joined every posting of the query's words instead
   whenever it planned for the statement's actual values, as it does for a connection's
   first five executions (0.5-3 s instead of 10-20 ms at 100k chunks; bench/README.md).
   When every list was read to its end, the lists' own rows hold every posting to score:
   they are read again with their counts, one index scan per list (the same bounded LIMIT),
   instead of a primary-key lookup per chunk (a third of the pages for a one-repository
   search at 100k chunks). A one-time filter runs one of the two ways, never both;
4. also scores exactly the `extra` chunks the caller names (the dense side's candidates, a
   few primary-key reads each), so every candidate of the hybrid fusion gets its real
   lexical share, not 0 because the lexical side's own top `depth` missed it;
5. in a search (`lexical_side`), also returns what fusion needs of every candidate (path,
   kind, cosine to the query vector), so no other statement reads the candidates' rows.
A chat may run it in two halves (`indexer.search.lexical_ahead`): steps 1-3 before the query's
vector is known, on a connection of their own while the query is embedded; then step 4 and the
cosines (`lexical_extra`); `merge_sides` gives what the one statement gives.
N, the document frequencies and the mean lengths come from `lex_stats` and `lex_terms`: no
statistics scan, no estimate. A word in a third of a large index costs `reach` index entries,
not a third of the index.
"""

from __future__ import annotations

from collections.abc import Sequence, Set

import asyncpg
import numpy as np

from indexer import words as lexical_words
from indexer.search.fusion import Tuning
from indexer.search.ranking import PART_K1
from indexer.search.results import Candidate
from indexer.store.named import named
from indexer.store.postings import REF_K1

# Postings read per query word (shared out over the repositories in scope by their size).
# An index whose words are each in at most this many chunks is scored exactly; in a larger
# one the chunks that hold a common word where it weighs most are scored. 3,000 rather than
# 4,000 since the approximation saturates with the search's k1: at 100k chunks the hybrid's
# top 8 is closer to exhaustive scoring than 4,000 was before (0.981 against 0.973) for a
# quarter less time, and the retrieval benchmark's 14 corpora rank the same but for one
# query's R@10 (bench/README.md, "The lexical statement's bounds").
REACH = 3000
MIN_REACH = 100  # per repository: a small repository still gets a fair look at its lists
RESCORE = 200  # approximate-best candidates scored exactly (at least 2 x depth)
EXACT = 3000  # lists read to their ends and <= this many postings or chunks: all scored

# One posting's field-weighted term frequency (`x.tf`, BM25F's length normalisation of the
# doc and body fields against the scope's means in `consts k`) and its word's idf (`x.idf`),
# and a chunk's score summed over its postings in term order (so equal scores are equal to the
# bit): both ways of scoring in `scored` below use them.
_TF = """CROSS JOIN LATERAL (SELECT :w_name::float8 * p.na + :w_context::float8 * p.nb
                 + CASE WHEN p.nc > 0 THEN :w_doc::float8 * p.nc / (1 - :b_doc::float8
                        + :b_doc::float8 * p.doc_len / k.doc_avg) ELSE 0 END
                 + CASE WHEN p.nd > 0 THEN :w_body::float8 * p.nd / (1 - :b_body::float8
                        + :b_body::float8 * p.body_len / k.body_avg) ELSE 0 END
                 AS tf,
                 k.idfs[array_position(k.terms, p.term)] AS idf) x"""
_IDF = "x.idf"  # the posting's word's idf, looked up once in `_TF`
_SCORE = f"""sum({_IDF} * x.tf * (:k1::float8 + 1) / (x.tf + :k1::float8) ORDER BY p.term)
               * CASE WHEN bool_or(p.module) THEN :module_factor::float8 ELSE 1 END AS score"""
# What the ranking stage reads of a scored chunk (`indexer.search.ranking`): per field, the
# words' idf x saturated count, unweighted and not length-normalised; and the share of the
# query's idf the name field holds, and all fields.
_PART = "sum({idf} * p.{n} * (:part_k1::float8 + 1) / (p.{n} + :part_k1::float8)) AS {name}"
_PARTS = (
    ",\n".join(
        _PART.format(idf=_IDF, n=n, name=name)
        for n, name in (
            ("na", "part_name"),
            ("nb", "part_context"),
            ("nc", "part_doc"),
            ("nd", "part_body"),
        )
    )
    + f""",
               sum(CASE WHEN p.na > 0 THEN {_IDF} ELSE 0 END) / k.idf_total AS cover_name,
               sum({_IDF}) / k.idf_total AS cover_any"""
)
_STAGE = ("part_name", "part_context", "part_doc", "part_body", "cover_name", "cover_any")
_STAGE_COLUMNS = ", ".join(_STAGE)

# The reference k1 the stored impacts were saturated with (`indexer.store.postings`).
_REF_K1 = f"{float(REF_K1)!r}::float8"

_TOP = f"""
WITH terms AS (
    SELECT DISTINCT t AS term
    FROM unnest(coalesce(:lexemes::text[],
                         tsvector_to_array(to_tsvector('english', :words::text)))) AS t
),
scope AS (
    SELECT repo_id, chunks, body_len, doc_len FROM lex_stats
    WHERE chunks > 0 AND (:repos::int[] IS NULL OR repo_id = ANY(:repos::int[]))
),
totals AS (
    SELECT sum(chunks)::float8 AS n,
           greatest(sum(body_len)::float8 / sum(chunks), 1) AS body_avg,
           greatest(sum(doc_len)::float8 / sum(chunks), 1) AS doc_avg
    FROM scope
),
dfs AS (
    SELECT t.repo_id, t.term, t.df,
           greatest(:min_reach::int, ceil(:reach::int * s.chunks / tot.n))::int AS reach
    FROM lex_terms t JOIN scope s ON s.repo_id = t.repo_id CROSS JOIN totals tot
    WHERE t.term IN (SELECT term FROM terms) AND t.df > 0
),
idf AS (
    SELECT d.term, ln(1 + (tot.n - sum(d.df) + 0.5) / (sum(d.df) + 0.5)) AS idf
    FROM dfs d CROSS JOIN totals tot GROUP BY d.term, tot.n
),
lists AS (
    SELECT top.chunk_id, i.idf * top.tf * (:k1::float8 + 1) / (top.tf + :k1::float8) AS part
    FROM dfs d JOIN idf i ON i.term = d.term
    CROSS JOIN LATERAL (
        SELECT p.chunk_id, p.impact * {_REF_K1} / ({_REF_K1} + 1 - p.impact) AS tf
        FROM lex_postings p
        WHERE p.repo_id = d.repo_id AND p.term = d.term
        ORDER BY p.impact DESC, p.chunk_id
        LIMIT d.reach
    ) top
),
complete AS MATERIALIZED (
    SELECT coalesce(bool_and(d.df <= d.reach) AND least(sum(d.df), min(t.n)) <= :exact::int,
                    false) AS yes
    FROM dfs d CROSS JOIN totals t
),
consts AS (
    SELECT array_agg(i.term ORDER BY i.term) AS terms, array_agg(i.idf ORDER BY i.term) AS idfs,
           sum(i.idf) AS idf_total, tot.doc_avg, tot.body_avg
    FROM idf i CROSS JOIN totals tot
    GROUP BY tot.doc_avg, tot.body_avg
),
best AS (
    (SELECT chunk_id FROM lists GROUP BY chunk_id ORDER BY sum(part) DESC, chunk_id
     LIMIT :rescore::int)
    UNION
    SELECT unnest(:extra::int8[])
),
scored AS (
    SELECT b.chunk_id, s.*
    FROM best b
    CROSS JOIN consts k
    CROSS JOIN LATERAL (
        SELECT {_SCORE},
               {_PARTS}
        FROM lex_postings p
        {_TF}
        WHERE p.chunk_id = b.chunk_id AND p.term = ANY(k.terms)
        HAVING count(*) > 0
    ) s
    WHERE NOT (SELECT yes FROM complete)
    UNION ALL
    SELECT p.chunk_id, {_SCORE},
           {_PARTS}
    FROM consts k
    CROSS JOIN dfs d
    CROSS JOIN LATERAL (
        SELECT * FROM lex_postings p
        WHERE p.repo_id = d.repo_id AND p.term = d.term
        ORDER BY p.impact DESC, p.chunk_id
        LIMIT d.reach
    ) p
    {_TF}
    WHERE (SELECT yes FROM complete)
    GROUP BY p.chunk_id, k.idf_total
),
ranked AS (
    SELECT chunk_id, score, {_STAGE_COLUMNS} FROM (
        SELECT *, row_number() OVER (ORDER BY score DESC, chunk_id) AS n
        FROM scored
    ) s
    WHERE n <= :depth::int OR chunk_id = ANY(:extra::int8[])
)
"""

_SCORES = _TOP + "SELECT chunk_id, score FROM ranked"

# The same, and what fusion and the ranking stage need of every candidate (the lexical
# side's and the `extra` ones, and the `also` ones, which are not scored): path, kind, symbol,
# lines and the cosine to the query vector, read in the same statement rather than in one more
# round trip. An `extra` chunk holding no query word has no score and no parts.
_CANDIDATES = (
    _TOP
    + f"""
SELECT c.id AS chunk_id, u.score, {_STAGE_COLUMNS},
       c.path, c.kind, c.symbol, c.end_line - c.start_line + 1 AS lines,
       coalesce(1 - (c.embedding <=> :vector::vector), 0.0) AS cos
FROM (
    SELECT chunk_id, max(score) AS score, {", ".join(f"max({c}) AS {c}" for c in _STAGE)}
    FROM (
        SELECT chunk_id, score, {_STAGE_COLUMNS} FROM ranked
        UNION ALL
        SELECT unnest(:extra::int8[] || :also::int8[]),
               {", ".join(["NULL::float8"] * (len(_STAGE) + 1))}
    ) a
    GROUP BY chunk_id
) u
JOIN chunks c ON c.id = u.chunk_id
"""
)


async def lexical_ids(
    conn: asyncpg.Connection,
    *,
    depth: int,
    repos: Sequence[int] | None,
    tuning: Tuning,
    lexemes: Sequence[str] | None = None,
    query: str = "",
    reach: int = REACH,
    rescore: int = RESCORE,
    extra: Sequence[int] = (),
) -> dict[int, float]:
    """Chunk id -> BM25F score of the `depth` best lexical matches, for the `query` as typed
    (its words are split here and stemmed in the same statement: one round trip) or for
    `lexemes` as the index stores them; and of each `extra` chunk holding a query word."""
    statement = _statement(_SCORES, depth, repos, tuning, lexemes, query, reach, rescore, extra)
    if statement is None:
        return {}
    sql, args = statement
    rows = await conn.fetch(sql, *args)
    return {r["chunk_id"]: float(r["score"]) for r in rows}


async def lexical_side(
    conn: asyncpg.Connection,
    *,
    query: str,
    vector: np.ndarray | None,
    depth: int,
    repos: Sequence[int] | None,
    tuning: Tuning,
    extra: Sequence[int] = (),
    also: Sequence[int] = (),
    reach: int = REACH,
    rescore: int = RESCORE,
) -> tuple[dict[int, float], dict[int, Candidate]]:
    """What `lexical_ids` returns, and in the same statement the `Candidate` of each chunk
    scored, of each `extra` one and of each `also` one (cosine to `vector`; 0 without one;
    an `also` chunk is not scored): a search's lexical side and its fetch of the candidates
    in one round trip. With `reach` 0 no list is read: only the `extra` chunks are scored
    (`lexical_extra`). A query with no word to search for returns nothing, not even the
    extra chunks."""
    statement = _statement(
        _CANDIDATES,
        depth,
        repos,
        tuning,
        None,
        query,
        reach,
        rescore,
        extra,
        vector=vector,
        also=list(also),
    )
    if statement is None:
        return {}, {}
    sql, args = statement
    rows = await conn.fetch(sql, *args)
    scores = {r["chunk_id"]: float(r["score"]) for r in rows if r["score"] is not None}
    return scores, {r["chunk_id"]: _candidate(r) for r in rows}


def _candidate(row: asyncpg.Record) -> Candidate:
    if row["score"] is None:  # an `extra` chunk holding no query word
        parts, cover = (0.0, 0.0, 0.0, 0.0), (0.0, 0.0)
    else:
        parts = (row["part_name"], row["part_context"], row["part_doc"], row["part_body"])
        cover = (row["cover_name"], row["cover_any"])
    return Candidate(
        row["path"], row["kind"], float(row["cos"]), row["symbol"], row["lines"], parts, cover
    )


def _statement(
    sql: str,
    depth: int,
    repos: Sequence[int] | None,
    tuning: Tuning,
    lexemes: Sequence[str] | None,
    query: str,
    reach: int,
    rescore: int,
    extra: Sequence[int],
    **more: object,
) -> tuple[str, list] | None:
    """(SQL, arguments) of a lexical statement, or None when the query has no word."""
    text = "" if lexemes is not None else lexical_words.query_words(query)
    if lexemes is None and not text:
        return None
    wa, wb, wc, wd = tuning.weights
    params = dict(
        lexemes=None if lexemes is None else list(lexemes),
        words=text,
        repos=None if repos is None else list(repos),
        reach=reach,
        min_reach=MIN_REACH if reach > 0 else 0,
        rescore=max(rescore, 2 * depth),
        w_name=wa,
        w_context=wb,
        w_doc=wc,
        w_body=wd,
        k1=tuning.k1,
        b_doc=tuning.b_doc,
        b_body=tuning.b_body,
        module_factor=tuning.module_lexical,
        part_k1=PART_K1,
        depth=depth,
        exact=EXACT,
        extra=list(extra),
    )
    return named(sql, **params, **more)


async def query_lexemes(conn: asyncpg.Connection, query: str) -> list[str]:
    """The query's words as the index stores them (identifiers split, stemmed, no stop words)."""
    text = lexical_words.query_words(query)
    if not text:
        return []
    return list(await conn.fetchval("SELECT tsvector_to_array(to_tsvector('english', $1))", text))


async def lexical_extra(
    conn: asyncpg.Connection,
    *,
    query: str,
    vector: np.ndarray | None,
    repos: Sequence[int] | None,
    tuning: Tuning,
    extra: Sequence[int],
    also: Sequence[int],
) -> tuple[dict[int, float], dict[int, Candidate]]:
    """The second half of a lexical side whose own top was read before the query's vector was
    known (`lexical_side` without `vector` or `extra`): the `extra` chunks scored, no list
    read, and the `Candidate` of each `extra` and `also` chunk with its cosine to `vector`.
    `merge_sides` puts the halves together."""
    return await lexical_side(
        conn,
        query=query,
        vector=vector,
        depth=0,
        repos=repos,
        tuning=tuning,
        extra=extra,
        also=also,
        reach=0,
        rescore=0,
    )


Side = tuple[dict[int, float], dict[int, Candidate]]


def merge_sides(own: Side, more: Side, depth: int, extra: Set[int]) -> Side:
    """What `lexical_side` returns with `extra`, from its two halves: `own`, the lexical
    side's own top (`lexical_side` with no `extra`), and `more`, the `extra` chunks scored
    with every candidate's cosine (`lexical_extra`, `also` = the rest of the own top).

    The statement keeps the best `depth` of all it scored (ties by chunk id) and every extra
    chunk; the own top is the best `depth` of the same approximate stage, so the best `depth`
    of both halves together is the statement's. A chunk of the own top with no candidate row
    in `more` was deleted between the two statements (a re-index): it is left out."""
    (own_scores, own_cands), (more_scores, more_cands) = own, more
    scored = {i: s for i, s in own_scores.items() if i in more_cands} | more_scores
    best = sorted(scored, key=lambda i: (-scored[i], i))[:depth]
    scores = {i: scored[i] for i in best} | more_scores
    candidates = {i: own_cands[i].with_cos(more_cands[i].cos) for i in scores.keys() - extra}
    return scores, candidates | {i: more_cands[i] for i in extra if i in more_cands}
