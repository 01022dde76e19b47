"""Searching the index: dense, lexical and hybrid, all inside PostgreSQL.

* dense: cosine similarity of the query's embedding to each chunk's vector (HNSW). A
  function's vector averages its full text's embedding with a short name text's
  (`indexer.embedtext.name_text`).
* lexical: BM25F over the identifier-split fields of `indexer.lexical` (name, module and
  parameters, doc and called names, body), computed in one SQL statement from Victor's own
  lexical index (`indexer.postings`, `indexer.bm25f`), so a function whose name says what the
  query says outranks long code that merely mentions the words.
* hybrid: the cosine plus a small share of the lexical score (score-level fusion; RRF is
  kept as an option for comparison). bench/README.md has the measurements behind every
  default in `Tuning`.

In every mode a query that names a function (`Picker:get_selection`, `get_selection`,
`where is trim defined`) gets its definition first, also when it is a helper defined inside
another function. Module chunks and test/spec files are ranked slightly lower: questions are
about functions, and about the code rather than its tests.

Scores are in [0, 1] in every mode, so one `min_score` works for all:
* dense: the cosine similarity;
* lexical: s / (s + LEXICAL_HALF) for a BM25F score s (0.5 is a match about as strong as a
  few rare words in a function's name);
* hybrid: (cosine + ALPHA x lexical share) / (1 + ALPHA), so about the cosine for a chunk
  with no lexical match;
* the definition of the function a query names scores 1.
Measured with all-MiniLM-L6-v2 (bench/README.md queries): in hybrid mode the right function
scores 0.35-0.65 (10th-90th percentile), while the best chunk for an off-topic chat message
("hello, how are you?", "write me a poem about the sea") scores 0.08-0.22, so a min_score of
0.25 keeps code out of chats that are not about code. Lexical-only scores (the fallback) have
a similar range for the right function, but common English words can reach 0.3.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

import asyncpg
import numpy as np

from . import bm25f, lexical, store
from .bounded import within
from .embedder import Embedder, check_dimensions
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
    """The knobs of ranking. The defaults are what bench/README.md measured best on Lua
    (tuned on Penlight, checked on Roact)."""

    # BM25F: weight of a word in each field (A name, B module/params, C doc/calls, D body)
    weights: tuple[float, float, float, float] = (6.0, 2.0, 0.5, 0.5)
    k1: float = 6.0  # high: a name word should count about as much as many body words
    # 0: the doc field is not length-normalised. Until issue 13 the SQL passed b_doc and
    # module_lexical where PostgreSQL inferred integer parameters, so 0.75 and 0.25 ran as
    # 0: every figure in bench/README.md was measured with 0, which these defaults now say.
    b_doc: float = 0.0
    b_body: float = 1.0  # and of the body; names are short and not normalised
    depth: int = 50  # candidates taken from each side before fusing
    alpha: float = 0.1  # hybrid: weight of the lexical share next to the cosine
    fusion: Literal["score", "rrf"] = "score"
    rrf_k: int = 10  # for fusion="rrf"
    lexical_half: float = 30.0  # the BM25F score whose lexical share is 0.5
    symbols: bool = True  # put the definition of a named symbol first
    module_lexical: float = 0.0  # lexical score factor of module/window chunks (see b_doc)
    module_dense: float = 0.8  # cosine factor of module/window chunks
    tests: float = 0.8  # score factor of chunks in test/spec files


DEFAULT_TUNING = Tuning()


@dataclass(slots=True)
class Found:
    """What a search returns: results, the mode that actually ran, and why it differs."""

    results: list[SearchResult]
    mode: Mode
    notice: str = ""  # set when the search was degraded (embedder down: lexical only)


async def check_space(db: asyncpg.Pool | asyncpg.Connection, embedder: Embedder) -> int:
    """A query embedded in another vector space than the index's would return noise.
    Returns the index's vector dimension."""
    recorded = await store.embedding_space(db)
    if recorded is None:
        raise VictorError("The index is empty. Index some Lua code first: victor index PATH")
    if recorded.space != embedder.space:
        raise ModelMismatch(store.mismatch_message(recorded, embedder.space, embedder.model))
    return recorded.dims


# --- the embedder, bounded ------------------------------------------------------------------

_EMBEDDER_DOWN = (EmbedderUnavailable, EmbeddingError, ModelMissing, TimeoutError, OSError)


async def embed_queries(
    embedder: Embedder, queries: Sequence[str], timeout: float, dims: int | None = None
) -> tuple[list[np.ndarray] | None, str]:
    """The queries' vectors, or None and a notice when the embedder fails, takes longer
    than `timeout` seconds or answers with vectors of another dimension than the index's
    (`dims`): a chat must get lexical results rather than wait or fail."""
    try:
        await embedder.ready()
        vectors = await within(embedder.embed_queries(list(queries)), timeout)
        if dims is not None:
            check_dimensions(vectors, dims, embedder.model)
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
        # the default ef_search (40) caps how many candidates one scan can return
        await conn.execute("SELECT set_config('hnsw.ef_search', $1, true)", str(max(40, 2 * depth)))
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


async def query_lexemes(conn: asyncpg.Connection, query: str) -> list[str]:
    """The query's words as the index stores them (identifiers split, stemmed, no stop words)."""
    words = lexical.query_words(query)
    if not words:
        return []
    return list(await conn.fetchval("SELECT tsvector_to_array(to_tsvector('english', $1))", words))


async def lexical_ids(
    conn: asyncpg.Connection,
    lexemes: list[str],
    depth: int,
    repos: list[int] | None,
    tuning: Tuning,
) -> dict[int, float]:
    """Chunk id -> BM25F score of the `depth` best lexical matches of these lexemes, from
    Victor's lexical index (`indexer.bm25f`)."""
    if not lexemes:
        return {}
    return await bm25f.top(conn, lexemes=lexemes, depth=depth, repos=repos, tuning=tuning)


@dataclass(frozen=True, slots=True)
class _SymbolHit:
    id: int
    strength: tuple[int, bool]  # (match level, same letter case): see _match_strength


async def symbol_hits(
    conn: asyncpg.Connection, query: str, repos: list[int] | None
) -> list[_SymbolHit]:
    """Definitions of the symbols the query names, strongest match first.

    A chunk matches through any function it defines: its own symbol, or a helper defined
    inside it (`local function helper`, `self.update = function`). In a lookup (`where is
    trim defined`) any definition of that name counts; in a longer question only a name
    that matches with its qualifier (`Picker:get_selection`) or one spelled like an
    identifier (`get_selection`) does: prose such as 'list[first:last]' must not pull up
    some function called `last`.
    """
    terms, lookup = lexical.symbol_terms(query)
    if not terms:
        return []
    keys = list({lexical.symbol_key(t) for t in terms})
    rows = await conn.fetch(
        """
        SELECT id, symbol, kind, part, path, defines FROM chunks
        WHERE symbol_keys && $1::text[] AND searchable
          AND ($2::int[] IS NULL OR repo_id = ANY($2))
        """,
        keys,
        repos,
    )
    hits: list[_SymbolHit] = []
    for r in rows:
        names = list(r["defines"])
        if r["part"] > 1 and r["kind"] in ("function", "method"):
            names = names[1:]  # a later window of a large function: its first part stands for it
        strength = max(
            (_match_strength(t, n, r["path"]) for t in terms for n in names), default=(0, False)
        )
        if strength[0] >= (1 if lookup else 2):
            hits.append(_SymbolHit(r["id"], strength))
    return sorted(hits, key=lambda h: h.strength, reverse=True)


def _match_strength(term: str, name: str, path: str) -> tuple[int, bool]:
    """How well a query term names a defined function, as (level, same case).

    Level 4: the same name (`Picker:get_selection`); 3: the term ends with the name
    (`pl.data.write` for `data.write`); 2: the term's qualifiers are in the file's path or
    the name (`pl.List:slice` for `List:slice` in pl/List.lua), or an identifier-like
    term (`get_selection`) names it; 1: only the last names agree; 0: another function.
    """
    if lexical.symbol_key(term) != lexical.symbol_key(name):
        return (0, False)
    same_case = re.split(r"[.:]", term)[-1] == re.split(r"[.:]", name)[-1]
    term_l, name_l = term.lower(), name.lower()
    if term_l == name_l:
        return (4, same_case)
    if term_l.endswith(("." + name_l, ":" + name_l)):
        return (3, same_case)
    term_parts = re.split(r"[.:]", term_l)
    if len(term_parts) == 1:
        identifier = "_" in term.strip("_") or re.search(r"[a-z][A-Z]", term) is not None
        return (2 if identifier else 1, same_case)
    where = set(re.split(r"[/._-]", path.lower())) | set(re.split(r"[.:]", name_l)[:-1])
    return (2 if set(term_parts[:-1]) <= where else 1, same_case)


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

_TEST_PATH = re.compile(r"(^|/)(tests?|spec|specs|__tests__)/|[_.-](spec|test)\.lua$|(^|/)test[_-]")


def is_test_path(path: str) -> bool:
    """Test and spec files: a question about the code is rarely about its tests."""
    return _TEST_PATH.search(path.lower()) is not None


def fuse(
    rows: dict[int, tuple[SearchResult, float]],
    dense: dict[int, float],
    lex: dict[int, float],
    mode: Mode,
    tuning: Tuning,
) -> dict[int, float]:
    """id -> score in [0, 1] for the mode (see the module docstring)."""
    dense_rank = {i: n for n, i in enumerate(sorted(dense, key=lambda i: -dense[i]), 1)}
    lex_rank = {i: n for n, i in enumerate(sorted(lex, key=lambda i: -lex[i]), 1)}
    scores: dict[int, float] = {}
    for i, (result, cos) in rows.items():
        if result.kind in ("module", "window"):
            cos *= tuning.module_dense
        cos = max(0.0, cos)
        if mode == "dense":
            score = cos
        elif mode == "lexical":
            score = lex.get(i, 0.0) / (lex.get(i, 0.0) + tuning.lexical_half)
        elif tuning.fusion == "rrf":
            score = sum(1 / (tuning.rrf_k + r[i]) for r in (dense_rank, lex_rank) if i in r) / (
                2 / (tuning.rrf_k + 1)
            )
        else:
            s = lex.get(i, 0.0)
            score = (cos + tuning.alpha * s / (s + tuning.lexical_half)) / (1 + tuning.alpha)
        if is_test_path(result.path):
            score *= tuning.tests
        scores[i] = score
    return scores


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
    if vector is None:
        mode = "lexical"
    depth = max(tuning.depth, top_k)
    dense: dict[int, float] = {}
    lex: dict[int, float] = {}
    if mode != "lexical":
        dense = await dense_ids(conn, vector, depth, repos)
    if mode != "dense":
        words = lexical.query_words(query)  # stemmed in the same statement: one round trip
        lex = await bm25f.top(conn, words=words, depth=depth, repos=repos, tuning=tuning)
    symbols = await symbol_hits(conn, query, repos) if tuning.symbols else []
    ids = dense.keys() | lex.keys() | {h.id for h in symbols}
    rows = await fetch_results(conn, list(ids), vector)
    scores = fuse(rows, dense, lex, mode, tuning)
    named = _named_first(symbols, rows, scores)
    order = named + [i for i in sorted(scores, key=lambda i: -scores[i]) if i not in named]
    return [replace(rows[i][0], score=1.0 if i in named else scores[i]) for i in order[:top_k]]


def _named_first(
    symbols: list[_SymbolHit],
    rows: dict[int, tuple[SearchResult, float]],
    scores: dict[int, float],
) -> list[int]:
    """The definitions of the named function: code before tests, then the closest match
    (see _match_strength), then the best scored."""
    return sorted(
        (h.id for h in symbols),
        key=lambda i: (
            not is_test_path(rows[i][0].path),
            next(h.strength for h in symbols if h.id == i),
            scores[i],
        ),
        reverse=True,
    )


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
            dims = await check_space(pool, embedder)
            vectors, notice = await embed_queries(embedder, queries, timeout, dims)
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
