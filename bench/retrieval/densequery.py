"""Query clean-up of chat phrasing, dense side, on the levers' pools (levers.py).

    python -m bench.retrieval.densequery --pools P [--out bench/results/densequery.json]

A fixed rule (`dense_query` below, written before any figure) drops
a question's leading frame, "I/my/me" and the trailing "?" from the text the dense side embeds.
Each pool's same 50 candidates are re-scored with the tuned fusion, their cosines recomputed
from the stored candidate vectors against three query vectors: the query as typed (today),
the cleaned query, and the mean of both (normalised). The lexical side keeps the query as
typed. Queries are embedded with Victor's `local` model (the NumPy all-MiniLM-L6-v2). Picking
a variant is tuning: each corpus is scored with the variant best on the other 7 (MRR@10, each
set half), and every fold's choice is reported. bench/README.md, "Query clean-up of chat
phrasing, dense side", has the figures: every fold keeps the query as typed; not kept.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from bench.retrieval import levers
from bench.retrieval.stage import TUNED, fuse_cosine, run_eval
from bench.retrieval.study import (
    SETS,
    bm25f,
    by_score,
    eligible,
    fast_mrr,
    fused,
    labels,
    log,
    objective,
    table,
)
from indexer.embedding.local import _encode_one_thread, load_query_model

VARIANTS = ("typed", "clean", "mean")

# Chat phrasing a code chunk never carries: a question's leading frame ("what happens when",
# "how does", "why might my", "is there a way to" ...), the asker ("I", "my", "me") and the
# question mark. Written before any measurement; meant not to touch identifiers: a frame is
# only taken at the start,
# and a pronoun only as a plain word (not next to `.`, `:`, `_`, `/`, `-`, `(` or a backtick).
_FRAME = re.compile(
    r"^\s*(?:(?:how (?:does|do|can|could|is|are|should|would|will)"
    r"|what happens (?:when|if|after|before)"
    r"|what (?:does|do|is|are)"
    r"|why (?:is|does|do|are|would|might|can't|won't|doesn't|isn't|did)"
    r"|where (?:is|are|do|does)"
    r"|which (?:function|code|part)(?: of the code)?"
    r"|is there (?:a|any) (?:way|function|helper) to"
    r"|can i|i want to|explain how|tell me|show me)\b)",
    re.IGNORECASE,
)
_ASKER = re.compile(r"(?<![\w.:(`/'-])(?:i|my|me)(?![\w.:(`/'-])", re.IGNORECASE)


def dense_query(query: str) -> str:
    """The query as the dense side would embed it: without the chat phrasing above (the
    lexical side keeps the query as typed). A query with nothing else left stays as typed."""
    text = _FRAME.sub("", query, count=1)
    text = _ASKER.sub("", text)
    text = re.sub(r"\s*\?+\s*$", "", text)
    text = re.sub(r"\s{2,}", " ", text).strip()
    return text if text else query


def vectors(texts: list[str]) -> dict[str, np.ndarray]:
    model = load_query_model()
    unique = list(dict.fromkeys(texts))
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(unique), 64):
        part = unique[i : i + 64]
        out.update(zip(part, np.asarray(_encode_one_thread(model, part), np.float32), strict=True))
    return out


def answer_rank(p: levers.Pool, gold: np.ndarray, score: np.ndarray) -> int:
    """Rank (0-based) of the best-placed gold candidate, named symbols first as in the core."""
    order = [i for i in range(p.named)] + [i for i in by_score(score) if i >= p.named]
    return next(n for n, i in enumerate(order) if gold[i] > 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.retrieval.densequery", description=__doc__)
    ap.add_argument("--pools", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    cps = levers.load(args.pools)
    sets_in = eligible(cps)
    pools = [(cp, p) for cp in cps for p in cp.pools]
    cleaned = {id(p): dense_query(p.text) for _, p in pools}
    changed = {s: sum(cleaned[id(p)] != p.text for _, p in pools if p.set == s) for s in SETS}
    totals = {s: sum(p.set == s for _, p in pools) for s in SETS}
    log(f"queries the rule changes: {changed} of {totals}")
    vec = vectors([p.text for _, p in pools] + list(cleaned.values()))
    drift = max(float(np.abs(vec[p.text] - p.qvec.astype(np.float32)).max()) for _, p in pools)
    log(f"typed query vectors vs the pools' stored ones: max abs difference {drift:.2e}")

    def qvec(p, variant: str) -> np.ndarray:
        typed = p.qvec.astype(np.float32)  # exactly what the core embedded
        clean = vec[cleaned[id(p)]] if cleaned[id(p)] != p.text else typed
        q = {"typed": typed, "clean": clean, "mean": typed + clean}[variant]
        return q / (np.linalg.norm(q) + 1e-9)

    lex = {id(p): bm25f(cp, p, TUNED) for cp, p in pools}
    scores = {
        v: {
            id(p): fuse_cosine(cp, p, p.vecs.astype(np.float32) @ qvec(p, v), lex[id(p)])
            for cp, p in pools
        }
        for v in VARIANTS
    }
    same = max(float(np.abs(scores["typed"][id(p)] - fused(cp, p, TUNED)).max()) for cp, p in pools)
    log(f"typed variant vs the tuned fusion: max abs difference {same:.2e}")
    per = {
        v: {cp.corpus: {s: run_eval(cp, s, lambda p, v=v: by_score(scores[v][id(p)]),
                                    lambda p, v=v: scores[v][id(p)]) for s in SETS}
            for cp in cps}
        for v in VARIANTS
    }  # fmt: skip
    gold = {id(p): labels(cp, p) for cp, p in pools}
    mrr = {
        v: {cp.corpus: {s: {"MRR@10": fast_mrr([(p, gold[id(p)], scores[v][id(p)])
                                                 for p in cp.pools if p.set == s])}
                        for s in SETS} for cp in cps}
        for v in VARIANTS
    }  # fmt: skip
    moved = {}
    for v in VARIANTS[1:]:
        better = worse = 0
        for _, p in pools:
            if p.set != "questions" or cleaned[id(p)] == p.text or not gold[id(p)].any():
                continue
            a, b = (answer_rank(p, gold[id(p)], scores[x][id(p)]) for x in ("typed", v))
            better, worse = better + (b < a), worse + (b > a)
        moved[v] = {"answer_rank_better": better, "answer_rank_worse": worse}
    log(f"questions whose best gold moves up / down against typed: {moved}")
    names = [cp.corpus for cp in cps]
    chosen = {
        c: max(VARIANTS, key=lambda v, c=c: objective(mrr[v], [n for n in names if n != c]))
        for c in names
    }
    loco = {c: per[chosen[c]][c] for c in names}
    report = {
        "rule": "bench.retrieval.densequery.dense_query",
        "changed": changed,
        "queries": totals,
        "sets_in_mean": sets_in,
        "chosen_per_fold": chosen,
        "best_gold_rank_moves": moved,
        "objective_on_all": {v: objective(mrr[v], names) for v in VARIANTS},
        "loco": {"per_corpus": loco, "mean": table(loco, sets_in)},
    } | {v: {"per_corpus": per[v], "mean": table(per[v], sets_in)} for v in VARIANTS}
    cols = {"doc": ("R@5", "MRR@10"), "questions": ("answer@5", "any@5", "MRR@10")}
    for s in SETS:
        print(f"\n{s}: " + " ".join(cols[s]) + "  (per corpus: " + cols[s][0] + ")")
        for name in (*VARIANTS, "loco"):
            m = report[name]["mean"][s]
            pc = report[name]["per_corpus"]
            print(f"{name:<6} " + " ".join(f"{m[k]:.3f}" for k in cols[s]) + "  "
                  + " ".join(f"{c}={pc[c][s][cols[s][0]]:.3f}" for c in sets_in[s]))  # fmt: skip
    print(f"\nchosen per fold: {chosen}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
