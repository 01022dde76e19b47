"""The lexical index Victor keeps itself: each searchable chunk's words as postings, and the
counts BM25F needs, written in the same transaction as the chunks they describe.

Three tables (db/migrations/0005_lexical_index.sql):
* `lex_postings`: one row per (chunk, word): the word's occurrences in each field (A name,
  B module/params, C doc/calls, D body), the chunk's field lengths and kind, and `impact`,
  the word's BM25F part with a frozen tuning at the *reference* field lengths below. The
  impact only orders a word's postings (best first) so a query reads the few best of a
  common word instead of every chunk holding it (`indexer.search.lexical`); final scores are
  computed again from the counts with the searched scope's real mean lengths. So the mean lengths
  never drift: nothing stored depends on them.
* `lex_terms`: per (repository, word) how many searchable chunks hold it (document frequency).
* `lex_stats`: per repository the number of searchable chunks and the sums of their body and
  doc lengths (N and the mean lengths of BM25), and a `version` every change of the
  repository's postings renews (from a sequence: never the same twice), which tells a process
  holding them in memory (`indexer.search.lexical_memory`) whether they are still current.

Postings derive from `chunks.lex`, the weighted tsvector PostgreSQL builds from the lexical
fields (`indexer.words`): the counts are exactly what PostgreSQL's stemmer and position
limits give, as when the scores were computed by unnesting that tsvector at query time.
Every function here takes a connection inside the caller's transaction: chunks, postings and
counts change together or not at all (`check` proves it).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

# The ordering key's BM25F, FROZEN here: the tuning of indexer.search.Tuning when the lexical
# index was introduced (migration 0005; weights A..D, k1, b of doc and body, factor of module
# chunks) at reference field lengths. It is deliberately not read from `DEFAULT_TUNING`: the
# impact only orders a word's postings (which few a query reads first), every returned score
# is recomputed from the counts with the search's own `Tuning`, so the ranking defaults can
# change without a migration or a rebuild of stored postings (the cross-corpus tuning changed
# them). Changing a constant below changes every stored impact and needs `rebuild` (`check`
# reports it).
# Reference lengths near a codebase's real means make the ordering closest to the final
# score; any values give the same scores. Measured means of searchable chunks (words, body /
# doc): Penlight 53 / 23, Roact 154 / 21, Lume 26 / 4, the synthetic bench codebase 59 / 23.
REF_WEIGHTS = (6.0, 2.0, 0.5, 0.5)
REF_K1 = 6.0
REF_B_DOC = 0.0
REF_B_BODY = 1.0
REF_MODULE = 0.0
REF_DOC_LEN = 20.0
REF_BODY_LEN = 55.0

# The postings of the chunks a WHERE clause on `c` (chunks) selects, from their tsvector.
_DERIVE = """
    SELECT c.id AS chunk_id, u.lexeme AS term, c.repo_id,
           cardinality(array_positions(u.weights, 'A'))::int2 AS na,
           cardinality(array_positions(u.weights, 'B'))::int2 AS nb,
           cardinality(array_positions(u.weights, 'C'))::int2 AS nc,
           cardinality(array_positions(u.weights, 'D'))::int2 AS nd,
           c.lex_doc_len AS doc_len, c.lex_len AS body_len,
           c.kind IN ('module', 'window') AS module
    FROM chunks c CROSS JOIN LATERAL unnest(c.lex) AS u
    WHERE c.searchable AND {where}
"""


def _f(x: float) -> str:
    return f"{x!r}::float8"


_X = (
    f"({_f(REF_WEIGHTS[0])} * d.na + {_f(REF_WEIGHTS[1])} * d.nb"
    f" + CASE WHEN d.nc > 0 THEN {_f(REF_WEIGHTS[2])} * d.nc"
    f" / ({_f(1 - REF_B_DOC)} + {_f(REF_B_DOC)} * d.doc_len / {_f(REF_DOC_LEN)}) ELSE 0 END"
    f" + CASE WHEN d.nd > 0 THEN {_f(REF_WEIGHTS[3])} * d.nd"
    f" / ({_f(1 - REF_B_BODY)} + {_f(REF_B_BODY)} * d.body_len / {_f(REF_BODY_LEN)}) ELSE 0 END)"
)
_IMPACT = (
    f"({_X} * {_f(REF_K1 + 1)} / ({_X} + {_f(REF_K1)})"
    f" * CASE WHEN d.module THEN {_f(REF_MODULE)} ELSE 1 END)::real"
)

# Add the postings, document frequencies and chunk statistics of the selected chunks (which
# must have none yet). Frequencies are upserted in key order: two writers never deadlock.
_ADD = f"""
    WITH derived AS ({_DERIVE}),
    added AS (
        INSERT INTO lex_postings (chunk_id, term, repo_id, impact, na, nb, nc, nd,
                                  doc_len, body_len, module)
        SELECT d.chunk_id, d.term, d.repo_id, {_IMPACT}, d.na, d.nb, d.nc, d.nd,
               d.doc_len, d.body_len, d.module
        FROM derived d
        RETURNING repo_id, term
    ),
    terms AS (
        INSERT INTO lex_terms (repo_id, term, df)
        SELECT repo_id, term, count(*) FROM added GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (repo_id, term) DO UPDATE SET df = lex_terms.df + EXCLUDED.df
        RETURNING 1
    ),
    stats AS (
        INSERT INTO lex_stats (repo_id, chunks, body_len, doc_len)
        SELECT c.repo_id, count(*), sum(c.lex_len), sum(c.lex_doc_len)
        FROM chunks c WHERE c.searchable AND {{where}} GROUP BY 1 ORDER BY 1
        ON CONFLICT (repo_id) DO UPDATE SET chunks = lex_stats.chunks + EXCLUDED.chunks,
            body_len = lex_stats.body_len + EXCLUDED.body_len,
            doc_len = lex_stats.doc_len + EXCLUDED.doc_len, version = nextval('lex_version')
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM added) + 0 * (SELECT count(*) FROM terms)
           + 0 * (SELECT count(*) FROM stats)
"""

# Remove the postings of the selected chunks and take them out of the counts.
_REMOVE = """
    WITH gone_chunks AS (
        SELECT c.id, c.repo_id, c.lex_len, c.lex_doc_len FROM chunks c
        WHERE c.searchable AND {where}
    ),
    gone AS (
        DELETE FROM lex_postings p USING gone_chunks g WHERE p.chunk_id = g.id
        RETURNING p.repo_id, p.term
    ),
    terms AS (
        UPDATE lex_terms t SET df = t.df - d.n
        FROM (SELECT repo_id, term, count(*) AS n FROM gone GROUP BY 1, 2) d
        WHERE t.repo_id = d.repo_id AND t.term = d.term
        RETURNING 1
    ),
    stats AS (
        UPDATE lex_stats s SET chunks = s.chunks - x.n, body_len = s.body_len - x.body,
            doc_len = s.doc_len - x.doc, version = nextval('lex_version')
        FROM (SELECT repo_id, count(*) AS n, sum(lex_len) AS body, sum(lex_doc_len) AS doc
              FROM gone_chunks GROUP BY 1) x
        WHERE s.repo_id = x.repo_id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone) + 0 * (SELECT count(*) FROM terms)
           + 0 * (SELECT count(*) FROM stats)
"""

_FILES = "c.repo_id = $1 AND c.path = ANY($2::text[])"


async def add_files(conn: asyncpg.Connection, repo_id: int, paths: Sequence[str]) -> int:
    """Index the chunks of these files (just written, in the caller's transaction)."""
    return await conn.fetchval(_ADD.format(where=_FILES), repo_id, list(paths))


async def remove_files(conn: asyncpg.Connection, repo_id: int, paths: Sequence[str]) -> int:
    """Take the chunks of these files out of the index (before the chunks are deleted)."""
    return await conn.fetchval(_REMOVE.format(where=_FILES), repo_id, list(paths))


_CHUNKS = "c.id = ANY($1::bigint[])"


async def add_chunks(conn: asyncpg.Connection, ids: Sequence[int]) -> int:
    """Index these chunks again after their lexical fields changed (a summary was set)."""
    return await conn.fetchval(_ADD.format(where=_CHUNKS), list(ids))


async def remove_chunks(conn: asyncpg.Connection, ids: Sequence[int]) -> int:
    """Take these chunks out of the index (before their lexical fields change)."""
    return await conn.fetchval(_REMOVE.format(where=_CHUNKS), list(ids))


async def remove_repo(conn: asyncpg.Connection, repo_id: int) -> None:
    for table in ("lex_postings", "lex_terms", "lex_stats"):
        await conn.execute(f"DELETE FROM {table} WHERE repo_id = $1", repo_id)


async def rebuild(conn: asyncpg.Connection) -> int:
    """Derive the whole lexical index from the chunks again (schema upgrade, a changed
    LEXICAL_VERSION, a bulk load). Returns the number of postings."""
    await conn.execute("TRUNCATE lex_postings, lex_terms, lex_stats")
    # a bulk insert into an impact-ordered index is random I/O: build it after the rows
    # (the primary key follows chunk ids, the order the rows come in)
    indexes = await conn.fetch(
        "SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS sql "
        "FROM pg_index WHERE indrelid = 'lex_postings'::regclass AND NOT indisprimary"
    )
    for index in indexes:
        await conn.execute(f"DROP INDEX {index['name']}")
    count = await conn.fetchval(_ADD.format(where="true"))
    for index in indexes:
        await conn.execute(index["sql"])
    await conn.execute("ANALYZE lex_postings")
    return count


async def check(conn: asyncpg.Connection, repo_id: int | None = None) -> dict[str, int]:
    """Differences between the stored lexical index and one derived from the chunks now:
    all counts 0 when they are in step (tests, `victor doctor`)."""
    where = "true" if repo_id is None else "c.repo_id = $1"
    own = "true" if repo_id is None else "repo_id = $1"
    args = [] if repo_id is None else [repo_id]
    postings = await conn.fetchval(
        f"""
        WITH want AS (SELECT d.chunk_id, d.term, d.repo_id, {_IMPACT} AS impact, d.na, d.nb,
                             d.nc, d.nd, d.doc_len, d.body_len, d.module
                      FROM ({_DERIVE.format(where=where)}) d),
        have AS (SELECT chunk_id, term, repo_id, impact, na, nb, nc, nd, doc_len, body_len,
                        module FROM lex_postings WHERE {own})
        SELECT (SELECT count(*) FROM (TABLE want EXCEPT ALL TABLE have) a)
             + (SELECT count(*) FROM (TABLE have EXCEPT ALL TABLE want) b)
        """,
        *args,
    )
    terms = await conn.fetchval(
        f"""
        WITH want AS (SELECT repo_id, term, count(*)::int AS df FROM lex_postings
                      WHERE {own} GROUP BY 1, 2),
        have AS (SELECT repo_id, term, df FROM lex_terms WHERE {own} AND df <> 0)
        SELECT (SELECT count(*) FROM (TABLE want EXCEPT TABLE have) a)
             + (SELECT count(*) FROM (TABLE have EXCEPT TABLE want) b)
        """,
        *args,
    )
    stats = await conn.fetchval(
        f"""
        WITH want AS (SELECT c.repo_id, count(*)::int8 AS chunks, sum(c.lex_len)::int8 AS body,
                             sum(c.lex_doc_len)::int8 AS doc
                      FROM chunks c WHERE c.searchable AND {where} GROUP BY 1),
        have AS (SELECT repo_id, chunks, body_len, doc_len FROM lex_stats
                 WHERE {own} AND chunks <> 0)
        SELECT (SELECT count(*) FROM (TABLE want EXCEPT TABLE have) a)
             + (SELECT count(*) FROM (TABLE have EXCEPT TABLE want) b)
        """,
        *args,
    )
    return {"postings": postings, "terms": terms, "stats": stats}
