"""Tune Victor's ranking knobs across several corpora at once, so defaults hold for Lua in
general rather than for one project.

    python -m bench.retrieval.tune ../shared/corpora/penlight ../shared/corpora/roact \
        other/lua/project ... [--seeds 0 1] [--out bench/results/tune.json]

Each corpus is indexed once per seed (held-out copy, Victor's own indexing), then every
variant of `indexer.search.Tuning` in the grid searches the same index. Reports, per variant,
the doc-comment -> function metrics pooled over all queries and averaged per corpus, and the
symbol-lookup recall@1, sorted by the per-corpus mean of MRR@10.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from bench.retrieval.heldout import write_heldout
from bench.retrieval.metrics import score
from bench.retrieval.queries import doc_candidates, sample, symbol_candidates
from bench.retrieval.victor import VictorIndex
from indexer.search import DEFAULT_TUNING, Tuning

K = 10


def grid() -> dict[str, Tuning]:
    variants = {"default": DEFAULT_TUNING}
    for alpha, half in itertools.product((0.1, 0.2, 0.35, 0.5, 0.75, 1.0), (15.0, 30.0, 60.0)):
        variants[f"alpha={alpha} half={half:g}"] = replace(
            DEFAULT_TUNING, alpha=alpha, lexical_half=half
        )
    for k in (5, 10, 30):
        variants[f"rrf k={k}"] = replace(DEFAULT_TUNING, fusion="rrf", rrf_k=k)
    return variants


def evaluate(corpus: Path, seed: int, max_queries: int, variants: dict[str, Tuning]) -> dict:
    doc = sample(doc_candidates(corpus), max_queries, seed)
    sym = sample(symbol_candidates(corpus, seed), max_queries, seed)
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="tune-") as tmp:
        heldout = write_heldout(corpus, doc, Path(tmp) / corpus.name)
        index = VictorIndex()
        index.index(heldout)
        for name, tuning in variants.items():
            entry = {}
            if doc:
                entry["doc"] = score(index.search([q.text for q in doc], "hybrid", K, tuning), doc)
            if sym:
                entry["symbol"] = score(
                    index.search([q.text for q in sym], "hybrid", K, tuning), sym
                )
            out[name] = entry
        print(f"{corpus.name} seed {seed}: {len(doc)} doc, {len(sym)} symbol queries", flush=True)
    return out


def summarise(per_corpus: dict[str, dict[str, dict]]) -> list[dict]:
    names = next(iter(per_corpus.values())).keys()
    rows = []
    for name in names:
        docs = [(r[name]["doc"]) for r in per_corpus.values() if "doc" in r[name]]
        syms = [(r[name]["symbol"]) for r in per_corpus.values() if "symbol" in r[name]]
        n = sum(d["n"] for d in docs)
        rows.append(
            {
                "variant": name,
                "pooled_r5": sum(d["R@5"] * d["n"] for d in docs) / n,
                "pooled_mrr": sum(d["MRR@10"] * d["n"] for d in docs) / n,
                "mean_r5": sum(d["R@5"] for d in docs) / len(docs),
                "mean_mrr": sum(d["MRR@10"] for d in docs) / len(docs),
                "worst_r5": min(d["R@5"] for d in docs),
                "symbol_r1": sum(s["R@1"] * s["n"] for s in syms) / sum(s["n"] for s in syms),
            }
        )
    return sorted(rows, key=lambda r: -r["mean_mrr"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpora", nargs="+", type=Path)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--max-queries", type=int, default=300)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    variants = grid()
    per_corpus = {
        f"{c.name}@{seed}": evaluate(c, seed, args.max_queries, variants)
        for c in args.corpora
        for seed in args.seeds
    }
    rows = summarise(per_corpus)
    print(
        f"{'variant':<24} {'poolR@5':>8} {'poolMRR':>8} {'meanR@5':>8} {'meanMRR':>8} "
        f"{'worstR@5':>8} {'symR@1':>7}"
    )
    for r in rows:
        print(
            f"{r['variant']:<24} {r['pooled_r5']:8.3f} {r['pooled_mrr']:8.3f} "
            f"{r['mean_r5']:8.3f} {r['mean_mrr']:8.3f} {r['worst_r5']:8.3f} "
            f"{r['symbol_r1']:7.3f}"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "corpora": [str(c) for c in args.corpora],
                    "seeds": args.seeds,
                    "variants": {k: asdict(v) for k, v in variants.items()},
                    "per_corpus": per_corpus,
                    "summary": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
