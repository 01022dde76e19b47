"""Searching the index: dense, lexical and hybrid, all inside PostgreSQL.

* dense: cosine similarity of the query's embedding to each chunk's vector (HNSW).
* lexical: BM25F over the identifier-split fields of `indexer.lexical` (name, module and
  parameters, doc and called names, body), computed in SQL from the chunks' tsvectors, so a
  function whose name says what the query says ranks above one that only mentions it.
* hybrid: both, fused at score level: cosine + ALPHA x the lexical score scaled to the best of
  this query. docs/retrieval-eval.md measured score fusion above reciprocal rank fusion, and
  bench/README.md has the figures for this implementation.

On top of every mode, a query that names a symbol (`Picker:get_selection`, `get_selection`,
`where is trim defined`) gets that symbol's definition first.

Scores are in [0, 1] in every mode, so one `min_score` works for all: dense = cosine
similarity; lexical = BM25F / (BM25F + LEXICAL_HALF), i.e. 0.5 for a match about as strong
as a name word in common use; hybrid = (cosine + ALPHA x lexical share) / (1 + ALPHA); the
definition of a symbol the query names scores 1.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import asyncpg
import numpy as np

from . import lexical, store
from .embedder import Embedder
from .errors import EmbedderUnavailable, EmbeddingError, ModelMismatch, ModelMissing, VictorError

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")


@dataclass(frozen=True, slots=True)
class SearchResult:
    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    score: float
    text: str
    signature: str = ""
    commit: str | None = None
    github_url: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["score"] = round(self.score, 4)
        return data


@dataclass(frozen=True, slots=True)
class Tuning:
    """The knobs of ranking. The defaults are what bench/README.md measured best on Lua."""

    # BM25F: weight of a word in each field (A name, B module/params, C doc/calls, D body)
    weights: tuple[float, float, float, float] = (6.0, 2.0, 1.0, 1.0)
    k1: float = 1.2
    b: float = 0.75  # length normalisation, of the body only: names are short anyway
    depth: int = 50  # candidates taken from each side before fusing
    alpha: float = 0.5  # hybrid: weight of the lexical share next to the cosine
    fusion: Literal["score", "rrf"] = "score"
    rrf_k: int = 10
    lexical_half: float = 10.0  # lexical mode: the BM25F score that maps to 0.5
    symbols: bool = True  # put the definition of a named symbol first
    module_factor: float = 1.0  # lexical score multiplier for module/window chunks
    test_factor: float = 1.0  # score multiplier for chunks in test/spec files


DEFAULT_TUNING = Tuning()


@dataclass(slots=True)
class Found:
    """What a search returns: results, the mode that actually ran, and why it differs."""

    results: list[SearchResult]
    mode: Mode
    notice: str = ""  # set when the search was degraded (embedder down: lexical only)
    timings: dict[str, float] = field(default_factory=dict)


async def check_space(db: asyncpg.Pool | asyncpg.Connection, embedder: Embedder) -> None:
    """A query embedded in another vector space than the index's would return noise."""
    recorded = await store.embedding_space(db)
    if recorded is None:
        raise VictorError("The index is empty. Index some Lua code first: victor index PATH")
    if recorded.space != embedder.space:
        raise ModelMismatch(store.mismatch_message(recorded, embedder.space, embedder.model))


# --- the embedder, bounded ------------------------------------------------------------------

_EMBEDDER_DOWN = (EmbedderUnavailable, EmbeddingError, ModelMissing, TimeoutError, OSError)


async def embed_queries(
    embedder: Embedder, queries: Sequence[str], timeout: float
) -> tuple[list[np.ndarray] | None, str]:
    """The queries' vectors, or None and a notice when the embedder fails or takes longer
    than `timeout` seconds: a chat must get lexical results rather than wait or fail."""
    try:
        vectors = await asyncio.wait_for(embedder.embed_queries(list(queries)), timeout)
    except _EMBEDDER_DOWN as exc:
        reason = (
            f"no answer within {timeout:g} s"
            if isinstance(exc, TimeoutError)
            else str(exc).rstrip(".")
        )
        return None, f"embedder unavailable ({reason}); lexical search only"
    return [np.asarray(v, dtype=np.float32) for v in vectors], ""


# --- the three sides, in SQL ----------------------------------------------------------------


async def repo_ids(conn: asyncpg.Connection, repos: Sequence[str] | None) -> list[int] | None:
    if not repos:
        return None
    rows = await conn.fetch("SELECT id FROM repos WHERE name = ANY($1)", list(repos))
    return [r["id"] for r in rows]


async def dense_ids(
    conn: asyncpg.Connection, vector: np.ndarray, depth: int, repos: list[int] | None
) -> dict[int, float]:
    """Chunk id -> cosine similarity of the `depth` nearest chunks (HNSW)."""
    async with conn.transaction():
        # with a repo filter, let HNSW keep scanning until enough rows pass it
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = await conn.fetch(
            """
            SELECT id, 1 - (embedding <=> $1) AS cos FROM chunks
            WHERE embedding IS NOT NULL AND ($3::int[] IS NULL OR repo_id = ANY($3))
            ORDER BY embedding <=> $1
            LIMIT $2
            """,
            vector,
            depth,
            repos,
        )
    return {r["id"]: float(r["cos"]) for r in rows}


async def cosines(
    conn: asyncpg.Connection, ids: list[int], vector: np.ndarray
) -> dict[int, float]:
    """The cosine similarity of these chunks (lexical candidates the dense side missed)."""
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT id, 1 - (embedding <=> $2) AS cos FROM chunks "
        "WHERE id = ANY($1) AND embedding IS NOT NULL",
        ids,
        vector,
    )
    return {r["id"]: float(r["cos"]) for r in rows}


async def query_lexemes(conn: asyncpg.Connection, query: str) -> list[str]:
    """The query's words as the index stores them (identifiers split, stemmed, no stop words)."""
    words = lexical.query_words(query)
    if not words:
        return []
    return list(
        await conn.fetchval("SELECT tsvector_to_array(to_tsvector('english', $1))", words)
    )


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
    then saturated with k1. The GIN index finds the chunks holding any query word.
    """
    if not lexemes:
        return {}
    wa, wb, wc, wd = tuning.weights
    rows = await conn.fetch(
        """
        WITH scope AS (
            SELECT count(*)::float8 AS n, greatest(avg(lex_len), 1)::float8 AS avglen
            FROM chunks WHERE searchable AND ($2::int[] IS NULL OR repo_id = ANY($2))
        ),
        idf AS (
            SELECT t.lexeme, ln(1 + (s.n - d.df + 0.5) / (d.df + 0.5)) AS idf
            FROM unnest($1::text[]) AS t(lexeme) CROSS JOIN scope s
            CROSS JOIN LATERAL (
                SELECT count(*)::float8 AS df FROM chunks c
                WHERE c.lex @@ quote_literal(t.lexeme)::tsquery AND c.searchable
                  AND ($2::int[] IS NULL OR c.repo_id = ANY($2))
            ) d
        ),
        query AS (
            SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery AS q FROM unnest($1::text[])
                AS t(lexeme)
        )
        SELECT c.id, sum(i.idf * f.tf * ($8 + 1) / (f.tf + $8))
               * CASE WHEN c.kind IN ('module', 'window') THEN $10 ELSE 1 END AS score
        FROM chunks c CROSS JOIN query CROSS JOIN scope s
        CROSS JOIN LATERAL (
            SELECT u.lexeme,
                   sum(CASE w WHEN 'A' THEN $4 WHEN 'B' THEN $5 WHEN 'C' THEN $6
                       ELSE $7 / (1 - $9 + $9 * c.lex_len / s.avglen) END) AS tf
            FROM unnest(c.lex) AS u, unnest(u.weights) AS w
            WHERE u.lexeme = ANY($1)
            GROUP BY u.lexeme
        ) f
        JOIN idf i ON i.lexeme = f.lexeme
        WHERE c.lex @@ query.q AND c.searchable AND ($2::int[] IS NULL OR c.repo_id = ANY($2))
        GROUP BY c.id
        ORDER BY score DESC, c.id
        LIMIT $3
        """,
        lexemes,
        repos,
        depth,
        wa,
        wb,
        wc,
        wd,
        tuning.k1,
        tuning.b,
        tuning.module_factor,
    )
    return {r["id"]: float(r["score"]) for r in rows}


@dataclass(frozen=True, slots=True)
class _SymbolHit:
    id: int
    strength: int  # 3 exact name, 2 qualified match, 1 last name only


async def symbol_hits(conn: asyncpg.Connection, query: str, repos: list[int] | None):
    """Definitions of the symbols the query names, strongest match first.

    In a lookup (`where is trim defined`) any definition of that name counts; in a longer
    question only a name that matches with its qualifier (`Picker:get_selection`) or one
    spelled like an identifier (`get_selection`) does: prose such as 'list[first:last]'
    must not pull up some function called `last`.
    """
    terms, lookup = lexical.symbol_terms(query)
    if not terms:
        return []
    keys = list({lexical.symbol_key(t) for t in terms})
    rows = await conn.fetch(
        """
        SELECT id, symbol, path, part FROM chunks
        WHERE symbol_key = ANY($1) AND searchable AND ($2::int[] IS NULL OR repo_id = ANY($2))
        ORDER BY path, start_line
        """,
        keys,
        repos,
    )
    hits: dict[int, _SymbolHit] = {}
    for r in rows:
        if r["part"] > 1:
            continue  # later windows of a large function: its first part stands for it
        strength = max(_match_strength(t, r["symbol"], r["path"]) for t in terms)
        if strength >= (1 if lookup else 2):
            hits[r["id"]] = _SymbolHit(r["id"], strength)
    return sorted(hits.values(), key=lambda h: -h.strength)


def _match_strength(term: str, symbol: str, path: str) -> int:
    """How well a query term names a symbol: 3 the same name (`Picker:get_selection`), 2 a
    qualified name that fits (`pl.List:slice` for `List:slice` in pl/List.lua, `M.foo` for
    `utils.foo` in utils.lua), 1 the same last name only, 0 not this symbol."""
    term_l, symbol_l = term.lower(), symbol.lower()
    if lexical.symbol_key(term) != lexical.symbol_key(symbol):
        return 0
    if term_l == symbol_l:
        return 3
    term_parts = re.split(r"[.:]", term_l)
    if len(term_parts) == 1:
        return 2 if "_" in term.strip("_") or re.search(r"[a-z][A-Z]", term) else 1
    if term_l.endswith(("." + symbol_l, ":" + symbol_l)):
        return 2
    qualifiers = set(term_parts[:-1])
    where = set(re.split(r"[/._-]", path.lower())) | set(re.split(r"[.:]", symbol_l)[:-1])
    return 2 if qualifiers <= where else 1


async def fetch_results(
    conn: asyncpg.Connection, ids: list[int], vector: np.ndarray | None
) -> dict[int, tuple[SearchResult, float]]:
    """id -> (result without its final score, cosine similarity or 0 without a vector)."""
    if not ids:
        return {}
    cos = "1 - (c.embedding <=> $2)" if vector is not None else "0.0"
    args: list = [ids] if vector is None else [ids, vector]
    rows = await conn.fetch(
        f"""
        SELECT c.id, r.name AS repo, c.path, c.start_line, c.end_line, c.symbol, c.kind,
               c.text, c.signature, f.commit_sha, r.github_url,
               coalesce({cos}, 0.0) AS cos
        FROM chunks c
        JOIN repos r ON r.id = c.repo_id
        JOIN files f ON f.repo_id = c.repo_id AND f.path = c.path
        WHERE c.id = ANY($1)
        """,
        *args,
    )
    return {
        r["id"]: (
            SearchResult(
                repo=r["repo"],
                path=r["path"],
                start_line=r["start_line"],
                end_line=r["end_line"],
                symbol=r["symbol"],
                kind=r["kind"],
                score=0.0,
                text=r["text"],
                signature=r["signature"],
                commit=r["commit_sha"],
                github_url=r["github_url"],
            ),
            float(r["cos"]),
        )
        for r in rows
    }


# --- fusion ---------------------------------------------------------------------------------


def fuse(
    dense: dict[int, float], lex: dict[int, float], mode: Mode, tuning: Tuning
) -> dict[int, float]:
    """id -> score in [0, 1] for the mode (see the module docstring)."""
    if mode == "dense":
        return {i: max(0.0, c) for i, c in dense.items()}
    if mode == "lexical":
        return {i: s / (s + tuning.lexical_half) for i, s in lex.items()}
    if tuning.fusion == "rrf":
        return _rrf([dense, lex], tuning.rrf_k)
    best = max(lex.values(), default=0.0) or 1.0
    ids = dense.keys() | lex.keys()
    return {
        i: (max(0.0, dense.get(i, 0.0)) + tuning.alpha * lex.get(i, 0.0) / best)
        / (1 + tuning.alpha)
        for i in ids
    }


def _rrf(rankings: list[dict[int, float]], k: int) -> dict[int, float]:
    """Reciprocal rank fusion, scaled so that first in every ranking scores 1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(sorted(ranking, key=lambda i: -ranking[i]), 1):
            fused[i] = fused.get(i, 0.0) + 1 / (k + rank)
    top = len(rankings) / (k + 1)
    return {i: s / top for i, s in fused.items()}


# --- one search -----------------------------------------------------------------------------


async def run(
    conn: asyncpg.Connection,
    query: str,
    vector: np.ndarray | None,
    *,
    mode: Mode,
    top_k: int,
    repos: list[int] | None,
    tuning: Tuning = DEFAULT_TUNING,
) -> list[SearchResult]:
    """One search on one connection. Without a vector, only the lexical side runs."""
    if vector is None and mode != "lexical":
        mode = "lexical"
    depth = max(tuning.depth, top_k)
    dense: dict[int, float] = {}
    lex: dict[int, float] = {}
    if mode != "lexical":
        dense = await dense_ids(conn, vector, depth, repos)
    if mode != "dense":
        lex = await lexical_ids(conn, await query_lexemes(conn, query), depth, repos, tuning)
    symbols = (
        await symbol_hits(conn, query, repos) if tuning.symbols else []
    )
    if mode == "hybrid":
        dense |= await cosines(conn, [i for i in lex if i not in dense], vector)
    scores = fuse(dense, lex, mode, tuning)
    ranked = sorted(scores, key=lambda i: -scores[i])
    order = _with_symbols_first(ranked, symbols, scores)
    rows = await fetch_results(conn, order[:top_k], vector if mode != "lexical" else None)
    strong = {h.id for h in symbols}
    out: list[SearchResult] = []
    for i in order[:top_k]:
        if i not in rows:
            continue
        result, _ = rows[i]
        score = 1.0 if i in strong else scores.get(i, 0.0)
        out.append(replace(result, score=score))
    return out


def _with_symbols_first(
    ranked: list[int], symbols: list[_SymbolHit], scores: dict[int, float]
) -> list[int]:
    """The named symbol's definitions (best match, then best score) ahead of the ranking."""
    if not symbols:
        return ranked
    best = max(h.strength for h in symbols)
    first = sorted(
        (h.id for h in symbols if h.strength == best), key=lambda i: -scores.get(i, 0.0)
    )
    return first + [i for i in ranked if i not in set(first)]


async def search(
    pool: asyncpg.Pool,
    embedder: Embedder | None,
    queries: Sequence[str],
    *,
    mode: Mode = "hybrid",
    top_k: int = 8,
    repos: Sequence[str] | None = None,
    timeout: float = 5.0,
    tuning: Tuning = DEFAULT_TUNING,
) -> list[Found]:
    """Search for every query with one embedding request; lexical only when the embedder
    is down or slow (each Found then carries a notice)."""
    if mode not in MODES:
        raise VictorError(f"Unknown search mode {mode!r}: use one of {', '.join(MODES)}.")
    vectors: list[np.ndarray] | None = None
    notice = ""
    if mode != "lexical" and queries:
        if embedder is None:
            notice = "no embedder configured; lexical search only"
        else:
            await check_space(pool, embedder)
            vectors, notice = await embed_queries(embedder, queries, timeout)
    used: Mode = mode if vectors is not None or mode == "lexical" else "lexical"
    found: list[Found] = []
    async with pool.acquire() as conn:
        ids = await repo_ids(conn, repos)
        for n, query in enumerate(queries):
            vector = vectors[n] if vectors is not None else None
            results = await run(
                conn, query, vector, mode=used, top_k=top_k, repos=ids, tuning=tuning
            )
            found.append(Found(results, used, notice))
    return found
