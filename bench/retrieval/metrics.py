"""Scoring a ranking against a query's target (docs/retrieval-eval.md, step 4)."""

from __future__ import annotations

from bench.retrieval.queries import Query
from bench.retrieval.systems import Hit


def is_hit(hit: Hit, q: Query) -> bool:
    """Same file and overlapping line ranges (lenient to big chunks: read with ctx_chars)."""
    return hit.path == q.path and hit.start_line <= q.end_line and hit.end_line >= q.start_line


def first_hit_rank(hits: list[Hit], q: Query) -> int | None:
    """1-based rank of the first hit on the target, None if none."""
    return next((i for i, h in enumerate(hits, 1) if is_hit(h, q)), None)


def score(rankings: list[list[Hit]], queries: list[Query]) -> dict[str, float]:
    """recall@1/5/10, MRR@10 and ctx_chars@5 (mean characters of the top 5 results)."""
    n = len(queries)
    if n == 0:
        return {"n": 0}
    ranks = [first_hit_rank(hits[:10], q) for hits, q in zip(rankings, queries, strict=True)]
    out: dict[str, float] = {"n": n}
    for k in (1, 5, 10):
        out[f"R@{k}"] = sum(r is not None and r <= k for r in ranks) / n
    out["MRR@10"] = sum(1 / r for r in ranks if r is not None) / n
    out["ctx_chars@5"] = sum(sum(len(h.text) for h in hits[:5]) for hits in rankings) / n
    return out


# ---------------------------------------------------------------- several golds, and the context

# The Pipelines filter's defaults (pipelines/lua_codebase.py valves): what the chat really sends.
CONTEXT_TOP_K = 12
CONTEXT_MIN_SCORE = 0.25
CONTEXT_TOKENS = 3000


def spans(q) -> list[tuple[str, int, int]]:
    """The gold spans of a query (doc/symbol: one; a developer question: 1-3, answer first)."""
    golds = getattr(q, "golds", None)
    if golds is None:
        return [(q.path, q.start_line, q.end_line)]
    return [(g.path, g.start_line, g.end_line) for g in golds]


def _overlaps(path: str, start: int, end: int, span: tuple[str, int, int]) -> bool:
    return path == span[0] and start <= span[2] and end >= span[1]


def gold_ranks(hits: list[Hit], q) -> list[int | None]:
    """1-based rank of the first hit on each gold span (None: not in `hits`)."""
    return [
        next(
            (i for i, h in enumerate(hits, 1) if _overlaps(h.path, h.start_line, h.end_line, s)),
            None,
        )
        for s in spans(q)
    ]


def question_score(rankings: list[list[Hit]], queries: list) -> dict[str, float]:
    """answer@5 (the first gold in the top 5), any@5 (any gold), any@10, MRR@10 of the
    first-ranked gold, and answer@5 per question kind."""
    n = len(queries)
    if n == 0:
        return {"n": 0}
    ranks = [gold_ranks(hits[:10], q) for hits, q in zip(rankings, queries, strict=True)]
    best = [min((r for r in rs if r is not None), default=None) for rs in ranks]
    out: dict[str, float] = {"n": n}
    out["answer@5"] = sum(rs[0] is not None and rs[0] <= 5 for rs in ranks) / n
    out["any@5"] = sum(b is not None and b <= 5 for b in best) / n
    out["any@10"] = sum(b is not None for b in best) / n
    out["MRR@10"] = sum(1 / b for b in best if b is not None) / n
    kinds = sorted({getattr(q, "kind", "") for q in queries} - {""})
    for kind in kinds:
        idx = [i for i, q in enumerate(queries) if q.kind == kind]
        out[f"answer@5 {kind}"] = sum(
            ranks[i][0] is not None and ranks[i][0] <= 5 for i in idx
        ) / len(idx)
        out[f"n {kind}"] = len(idx)
    return out


def _build_context():
    from indexer.search import SearchResult
    from indexer.search.context import budget_chars, build_context, passing

    return budget_chars, build_context, passing, SearchResult


def context_score(
    rankings: list[list[Hit]], queries: list, min_score: float | None, *, gated: bool = False
) -> dict:
    """What the chat filter sends: Victor's context assembly over the top CONTEXT_TOP_K results
    with score >= `min_score` (None: no floor, for systems whose scores are not on Victor's 0-1
    scale; `gated`: Victor's own rule, `indexer.search.context.passing`, all of them when the
    best passes) under a budget of CONTEXT_TOKENS. ctx@answer / ctx@any: the answer / any
    gold function overlaps a snippet that made it into the block; ctx_chars: its length.
    (Victor's own systems are scored on `Victor.assemble` itself: `contexts_score`.)"""
    budget_chars, build_context, passing, SearchResult = _build_context()
    budget = budget_chars(tokens=CONTEXT_TOKENS)
    contexts = []
    for hits in rankings:
        results = [
            SearchResult("bench", h.path, h.start_line, h.end_line, h.symbol, "", h.score, h.text)
            for h in hits[:CONTEXT_TOP_K]
        ]
        if gated and min_score is not None:
            results = passing(results, min_score)
        elif min_score is not None:
            results = [r for r in results if r.score >= min_score]
        contexts.append(build_context(results, budget=budget))
    return contexts_score(contexts, queries)


def contexts_score(contexts: list, queries: list, suffix: str = "") -> dict:
    """ctx@answer, ctx@any and ctx_chars of the context blocks (indexer.search.context.Context)
    built for `queries`, one each; `suffix` is appended to every key."""
    n = len(queries)
    if n == 0:
        return {}
    answer = anyg = chars = 0
    for ctx, q in zip(contexts, queries, strict=True):
        chars += len(ctx.text)
        inside = [
            any(_overlaps(s.path, s.start_line, s.end_line, g) for s in ctx.sources)
            for g in spans(q)
        ]
        answer += inside[0]
        anyg += any(inside)
    return {
        f"ctx@answer{suffix}": answer / n,
        f"ctx@any{suffix}": anyg / n,
        f"ctx_chars{suffix}": chars / n,
    }
