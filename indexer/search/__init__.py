"""Searching the index: dense, lexical and hybrid, inside PostgreSQL (a chat process ranks the
lexical side from its own copy of the lexical index, with the same result:
`indexer.search.lexical_memory`).

* dense: cosine similarity of the query's embedding to each chunk's vector (HNSW). A
  function's vector averages its full text's embedding with a short name text's
  (`indexer.embedding.texts.name_text`).
* lexical (`indexer.search.lexical`): BM25F over the identifier-split fields of
  `indexer.words` (name, module and parameters, doc and called names, body), read from the
  lexical index Victor keeps itself (`indexer.store.postings`), so a function whose name says
  what the query says outranks long code that merely mentions the words.
* hybrid: the cosine plus an equal share of the lexical score (score-level fusion; RRF is
  kept as an option for comparison), then the ranking stage (`indexer.search.ranking`): a
  linear model trained on 14 Lua codebases re-orders the fused top 50 by what fusion cannot
  see (the name's share of the query, calls to and from the best candidates, the file's other
  candidates). bench/README.md has the measurements behind every default in `Tuning`.

In every mode a query that names a function (`Picker:get_selection`, `get_selection`,
`where is trim defined`) gets its definition first, also when it is a helper defined inside
another function. Questions are about functions, and about the code rather than its tests:
module and window chunks get no lexical share (`Tuning.module_lexical` 0) and 0.8 of their
cosine, so the lexical fallback returns them only when the query names a function they
define; chunks of test/spec files get 0.8 of their fused score.

Scores are in [0, 1] in every mode, so one `min_score` works for all:
* dense: the cosine similarity, on all-MiniLM-L6-v2's scale whatever the model (each model's
  cosines are mapped onto it: `indexer.embedding.scale`), as everywhere below;
* lexical: s / (s + `Tuning.lexical_half`) for a BM25F score s (30: a share of 0.5 is a match
  about as strong as a few rare words in a function's name);
* hybrid: (cosine + alpha x lexical share) / (1 + alpha), every candidate with its real
  lexical score (the dense side's candidates are scored in the lexical statement too); with
  `Tuning.alpha` 1 a chunk with no lexical match scores half its cosine. The ranking stage
  changes the order, not the scale: the n-th result carries the n-th best fused score;
* the definition of the function a query names scores 1.
Measured with all-MiniLM-L6-v2 on the developer questions of 14 codebases (bench/README.md,
`bench.retrieval.scores`, "Where min_score sits, on 14 codebases", and with the ranking
stage, "A learned ranking stage in the core"): in hybrid mode the right function scores
0.25-0.5 (10th-90th percentile), while the best chunk for an off-topic chat message ("hello,
how are you?", "write me a poem about the sea") scores 0.06-0.18. A chat gets code when its
best result passes `min_score` (`search.context.passing`), so a min_score of 0.25 (the
Pipelines filter's default) keeps code out of 98 % of chats that are not about code and sends
the answer for 76.5 % of questions (81 % have it in the top 10; held to the floor one result
at a time, 72 % would pass); 0.2 would send it for 80 %, and 6.5 % of off-topic chats would get
code. Lexical-only scores (the fallback) are on another scale: s / (s + 30) alone, common
English words can reach 0.3.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import asyncpg
import numpy as np

from indexer.embedding import Embedder, check_dimensions
from indexer.embedding.scale import IDENTITY, Mapping
from indexer.errors import EmbeddingError, VictorError
from indexer.search import ranking
from indexer.search.dense import (
    Degraded,
    check_space,
    dense_ids,
    embed_queries,
    embedder_down,
    embedder_missing,
)
from indexer.search.fusion import DEFAULT_TUNING, Tuning, fuse, is_test_path
from indexer.search.lexical import Side, lexical_extra, lexical_side, merge_sides
from indexer.search.lexical_memory import LexicalMemory, Scope, Scored, with_extra
from indexer.search.results import (
    MODES,
    RESULT_SELECT,
    Candidate,
    Found,
    Mode,
    SearchResult,
    result_of,
)
from indexer.search.symbols import SymbolHit, symbol_hits

__all__ = [
    "DEFAULT_TUNING",
    "MODES",
    "Embedded",
    "Found",
    "Mode",
    "SearchResult",
    "Tuning",
    "embedded",
    "lexical_ahead",
    "search",
    "search_with",
]


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
    memory: LexicalMemory | None = None,
) -> list[Found]:
    """Search for every query with one embedding request; lexical only when the embedder
    is down or slow (each Found then carries a notice)."""
    asked = await embedded(embedder, queries, mode=mode, timeout=timeout)
    async with pool.acquire() as conn:
        return await search_with(
            conn,
            embedder,
            queries,
            asked,
            mode=mode,
            top_k=top_k,
            repos=repos,
            tuning=tuning,
            memory=memory,
        )


@dataclass(frozen=True, slots=True)
class Embedded:
    """The queries' vectors (`embedded`), or why a search runs without them."""

    vectors: list[np.ndarray] | None
    degraded: Degraded | None


async def embedded(
    embedder: Embedder | None, queries: Sequence[str], *, mode: Mode, timeout: float
) -> Embedded:
    """The queries' vectors for a search in `mode`, in one request, before any connection is
    taken: a search holds a connection of the pool only while it talks to the database."""
    if mode not in MODES:
        raise VictorError(f"Unknown search mode {mode!r}: use one of {', '.join(MODES)}.")
    if mode == "lexical" or not queries:
        return Embedded(None, None)
    if embedder is None:
        return Embedded(None, embedder_missing())
    vectors, degraded = await embed_queries(embedder, queries, timeout)
    return Embedded(vectors, degraded)


@dataclass(frozen=True, slots=True)
class HeldTop:
    """A search's lexical top ranked from the index held in memory (`lexical_ahead`), and the
    scope it came from, to score the dense side's candidates with once they are known."""

    scope: Scope
    top: dict[int, Scored] | None  # None: not ranked yet


@dataclass(frozen=True, slots=True)
class Ahead:
    """A hybrid search's lexical top, being read on a connection of its own (`lexical_ahead`)
    for the search it was started for."""

    task: asyncio.Task[Side | HeldTop]
    query: str
    top_k: int
    repos: tuple[str, ...]
    tuning: Tuning

    def serves(
        self, queries: Sequence[str], top_k: int, repos: Sequence[str] | None, tuning: Tuning
    ) -> bool:
        return (list(queries), top_k, tuple(repos or ()), tuning) == (
            [self.query],
            self.top_k,
            self.repos,
            self.tuning,
        )


@asynccontextmanager
async def lexical_ahead(
    pool: asyncpg.Pool,
    query: str,
    *,
    top_k: int = 8,
    repos: Sequence[str] | None = None,
    tuning: Tuning = DEFAULT_TUNING,
    memory: LexicalMemory | None = None,
) -> AsyncIterator[Ahead | None]:
    """Read the lexical side's own top for `query` while the caller embeds it and runs the
    dense side (`search_with(..., ahead=)`): that statement needs no vector, and it is most of
    a search's time in PostgreSQL, so a chat waits for the longer of the two instead of both.
    With `memory` current for the scope, the top is ranked there instead (`HeldTop`): one
    short statement, then Python while the query is still being embedded.

    Only on a connection the pool has idle (else None: the search reads its own top): when
    every connection is busy, the cores are too, and a second connection per chat would only
    queue. It is taken here, before the caller takes its own, and given back as soon as the
    statement has run: a search never holds one connection while it waits for another, so a
    full pool makes it wait, never deadlock. Leaving the block waits for the statement (a
    search that did not use it, e.g. lexical because the embedder is down)."""
    if pool.get_idle_size() == 0:
        yield None
        return
    conn = await pool.acquire()

    depth = max(tuning.depth, top_k)

    async def own_top() -> Side | HeldTop:
        try:
            ids = await repo_ids(conn, repos)
            scope = await memory.scope(conn, query, ids) if memory is not None else None
            if scope is None:
                return await lexical_side(
                    conn, query=query, vector=None, depth=depth, repos=ids, tuning=tuning
                )
        finally:
            await pool.release(conn)
        return HeldTop(scope, scope.rank(tuning, depth))

    task = asyncio.create_task(own_top())
    try:
        yield Ahead(task, query, top_k, tuple(repos or ()), tuning)
    finally:
        await asyncio.gather(task, return_exceptions=True)


async def search_with(
    conn: asyncpg.Connection,
    embedder: Embedder | None,
    queries: Sequence[str],
    asked: Embedded,
    *,
    mode: Mode = "hybrid",
    top_k: int = 8,
    repos: Sequence[str] | None = None,
    tuning: Tuning = DEFAULT_TUNING,
    ahead: Ahead | None = None,
    memory: LexicalMemory | None = None,
) -> list[Found]:
    """The searches for `queries` on one connection, with their vectors from `embedded`.

    The index's vector space is checked first, on this connection (no other one is taken
    for it): a query embedded by another model than the index's would return noise, so a
    search refuses it, as it refuses an empty index; vectors of another dimension than the
    index's make the search lexical, as a down embedder does. `ahead`: the lexical top of
    the one query, read meanwhile (`lexical_ahead`); a search it was not started for, or one
    that is not hybrid with score fusion, reads its own. `memory`: the lexical index held in
    this process (`indexer.search.lexical_memory`), used when it is current."""
    vectors, degraded = asked.vectors, asked.degraded
    cosines = IDENTITY
    if mode != "lexical" and queries and embedder is not None:
        space = await check_space(conn, embedder)
        if space.scale is not None:
            cosines = space.scale.mapping()
        if vectors is not None:
            try:
                check_dimensions(vectors, space.dims, embedder.model)
            except EmbeddingError as exc:
                vectors, degraded = None, embedder_down(exc)
    notice, summary = (degraded.detail, degraded.notice) if degraded else ("", "")
    used: Mode = mode if vectors is not None or mode == "lexical" else "lexical"
    found: list[Found] = []
    ids = await repo_ids(conn, repos)
    early = None
    if ahead is not None and used == "hybrid" and ahead.serves(queries, top_k, repos, tuning):
        early = ahead.task
    for n, query in enumerate(queries):
        vector = vectors[n] if vectors is not None else None
        results = await _one(
            conn,
            query,
            vector,
            mode=used,
            top_k=top_k,
            repos=ids,
            tuning=tuning,
            ahead=early,
            cosines=cosines,
            memory=memory,
        )
        found.append(Found(results, used, notice, summary))
    return found


async def _one(
    conn: asyncpg.Connection,
    query: str,
    vector: np.ndarray | None,
    *,
    mode: Mode,
    top_k: int,
    repos: list[int] | None,
    tuning: Tuning = DEFAULT_TUNING,
    ahead: asyncio.Task[Side] | None = None,
    cosines: Mapping = IDENTITY,
    memory: LexicalMemory | None = None,
) -> list[SearchResult]:
    """One search on one connection (and the lexical top read `ahead` on another). Without
    a vector, only the lexical side runs. `cosines` puts the model's cosines on the scale
    fusion, the ranking stage and `min_score` were tuned on (`indexer.embedding.scale`)."""
    if vector is None:
        mode = "lexical"
    depth = max(tuning.depth, top_k)
    dense: dict[int, float] = {}
    lex: dict[int, float] = {}
    candidates: dict[int, Candidate] = {}
    if mode != "lexical":
        dense = await dense_ids(conn, vector, depth, repos)
    symbols = await symbol_hits(conn, query, repos) if tuning.symbols else []
    if mode == "lexical":
        tuning = replace(tuning, weights=tuning.lexical_weights, k1=tuning.lexical_k1)
    if mode != "dense":
        # score fusion: the dense side's candidates get their real lexical score too (in the
        # same statement), not 0 for missing the lexical side's own top `depth`; RRF fuses
        # each side's own ranks, so it gets the lexical side's top alone. The statement also
        # reads what fusion needs of every candidate it is given or finds.
        extra = dense.keys() | {h.id for h in symbols}
        own = await ahead if ahead is not None else None
        held = own if isinstance(own, HeldTop) else None
        if held is None and memory is not None and ahead is None:
            scope = await memory.scope(conn, query, repos)
            held = HeldTop(scope, None) if scope is not None else None
        if held is not None:
            extra = extra if tuning.fusion == "score" else set()
            lex, candidates = await _held_side(conn, held, vector, depth, tuning, extra)
        elif own is not None and mode == "hybrid" and tuning.fusion == "score":
            more = await lexical_extra(
                conn,
                query=query,
                vector=vector,
                repos=repos,
                tuning=tuning,
                extra=sorted(extra),
                also=sorted(own[1].keys() - extra),
            )
            lex, candidates = merge_sides(own, more, depth, extra)
        else:
            lex, candidates = await lexical_side(
                conn,
                query=query,
                vector=vector,
                depth=depth,
                repos=repos,
                tuning=tuning,
                extra=sorted(extra) if tuning.fusion == "score" else (),
            )
    ids = dense.keys() | lex.keys() | {h.id for h in symbols}
    if ids - candidates.keys():  # dense mode, RRF, or a query with no word to search for
        candidates |= await fetch_candidates(conn, list(ids - candidates.keys()), vector)
    # in id order, as one fetch by primary key returned them: equal scores keep their order
    candidates = {i: candidates[i] for i in sorted(ids) if i in candidates}
    scores = fuse(candidates, dense, lex, mode, tuning, cosines)
    named = _named_first(symbols, candidates, scores)
    # a result with no score at all (lexical mode: none of the query's words) is noise
    ranked = [i for i in sorted(scores, key=lambda i: -scores[i]) if scores[i] > 0]
    order = named + [i for i in ranked if i not in named]
    rows: dict[int, SearchResult] = {}
    if mode == "hybrid" and tuning.fusion == "score" and tuning.stage:
        model = ranking.model_at(tuning.stage_model)
        order, scores, rows = await _staged(
            conn, query, order, len(named), candidates, scores, model, cosines
        )
    order = order[:top_k]
    if not rows.keys() >= set(order):
        rows = await fetch_results(conn, order)
    return [replace(rows[i], score=1.0 if i in named else scores[i]) for i in order if i in rows]


async def _held_side(
    conn: asyncpg.Connection,
    held: HeldTop,
    vector: np.ndarray | None,
    depth: int,
    tuning: Tuning,
    extra: set[int],
) -> Side:
    """What `lexical_side` returns, ranked from the postings held in memory (with the top
    ranked ahead, if it was: `held.top`): only the candidates' rows are read (a chunk
    deleted since has none and is left out)."""
    scope = held.scope
    if held.top is not None:
        ranked = with_extra(held.top, scope.score(tuning, sorted(extra)), depth)
    else:
        ranked = scope.rank(tuning, depth, sorted(extra))
    candidates = await fetch_candidates(conn, sorted(ranked.keys() | extra), vector)
    for i, s in ranked.items():
        if i in candidates:
            c = candidates[i]
            candidates[i] = Candidate(c.path, c.kind, c.cos, c.symbol, c.lines, s.parts, s.cover)
    return {i: s.score for i, s in ranked.items() if i in candidates}, candidates


async def _staged(
    conn: asyncpg.Connection,
    query: str,
    order: list[int],
    named: int,
    candidates: dict[int, Candidate],
    scores: dict[int, float],
    model: ranking.Model,
    cosines: Mapping = IDENTITY,
) -> tuple[list[int], dict[int, float], dict[int, SearchResult]]:
    """`order` with its top STAGE_DEPTH re-ordered by the ranking stage, the scores each
    re-ordered candidate now carries (the fused score of the rank it lands on), and those
    candidates as results: the stage reads their texts, so the results come with them
    rather than in one more statement."""
    top = order[: ranking.STAGE_DEPTH]
    if len(top) - named < 2:
        return order, scores, {}
    rows = await fetch_results(conn, top)
    texts = {i: r.text for i, r in rows.items()}
    cands = [candidates[i] for i in top]
    fused = np.array([scores[i] for i in top])  # float64: handed out as the scores
    c = ranking.Candidates(
        fused=fused,
        cos=cosines(np.array([x.cos for x in cands], np.float32)),
        parts=np.array([x.parts for x in cands], np.float32),
        cover=np.array([x.cover for x in cands], np.float32),
        module=np.array([x.kind in ("module", "window") for x in cands]),
        test=np.array([is_test_path(x.path) for x in cands]),
        lines=np.array([x.lines for x in cands], np.float32),
        paths=[x.path for x in cands],
        symbols=[x.symbol for x in cands],
        texts=[texts.get(i, "").lower() for i in top],
        query=query,
    )
    positions, values = ranking.reorder(c, named, model)
    moved = [top[p] for p in positions]
    scores = scores | dict(zip(moved[named:], values, strict=True))
    return moved + order[len(top) :], scores, rows


def _named_first(
    symbols: list[SymbolHit], candidates: dict[int, Candidate], scores: dict[int, float]
) -> list[int]:
    """The definitions of the named function: code before tests, then the closest match
    (see `symbols.match_strength`), then the best scored."""
    return sorted(
        (h.id for h in symbols),
        key=lambda i: (
            not is_test_path(candidates[i].path),
            next(h.strength for h in symbols if h.id == i),
            scores[i],
        ),
        reverse=True,
    )


async def repo_ids(conn: asyncpg.Connection, repos: Sequence[str] | None) -> list[int] | None:
    if not repos:
        return None
    rows = await conn.fetch("SELECT id FROM repos WHERE name = ANY($1)", list(repos))
    return [r["id"] for r in rows]


async def fetch_candidates(
    conn: asyncpg.Connection, ids: list[int], vector: np.ndarray | None
) -> dict[int, Candidate]:
    """id -> what fusion needs: path, kind and cosine similarity (0 without a vector)."""
    if not ids:
        return {}
    columns = "id, path, kind, symbol, end_line - start_line + 1 AS lines"
    if vector is None:
        rows = await conn.fetch(
            f"SELECT {columns}, 0.0::float8 AS cos FROM chunks WHERE id = ANY($1)", ids
        )
    else:
        rows = await conn.fetch(
            f"SELECT {columns}, coalesce(1 - (embedding <=> $2), 0.0) AS cos FROM chunks"
            " WHERE id = ANY($1)",
            ids,
            vector,
        )
    return {
        r["id"]: Candidate(r["path"], r["kind"], float(r["cos"]), r["symbol"], r["lines"])
        for r in rows
    }


async def fetch_results(conn: asyncpg.Connection, ids: list[int]) -> dict[int, SearchResult]:
    """id -> the chunk as a result (score 0), text and links included: only for the results
    a search returns."""
    if not ids:
        return {}
    rows = await conn.fetch(RESULT_SELECT + "WHERE c.id = ANY($1)", ids)
    return {r["id"]: result_of(r, 0.0) for r in rows}
