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
