"""The ranking levers, measured on Victor's candidate pools (levers.py) with leave-one-corpus-out.

    python -m bench.retrieval.study collect --corpora DIR --shared ../shared/corpora --pools P
    python -m bench.retrieval.study study --pools P --out bench/results/levers.json

Every lever re-orders the same candidates (Victor's hybrid top 50 per query), so it is
compared with Victor's own order on exactly what the chat would get:
* `fusion`: Victor's score fusion re-computed with other weights — the lexical share alpha,
  the field weights of BM25F, k1 and the saturation point — picked on all corpora but one and
  scored on that one (LOCO), for every corpus in turn;
* `ranker-lr` / `ranker-gbt`: a learned ranking stage over per-candidate features (below),
  trained on all corpora but one, scored on that one.
A figure is the mean over held-out corpora (each corpus counts once). Re-ordering within the
top 50 cannot find what fusion left out, so R@10 of the top 50 bounds every lever.

Why these models: logistic regression (scikit-learn) is a weighted sum of the features after
scaling: 25 multiplications per candidate at query time, trivially versioned as a small
JSON of weights, and hard to overfit with ~20 features. Gradient-boosted trees
(scikit-learn's HistGradientBoosting, no extra dependency) can use interactions — e.g. a
name match matters more when the cosine is close — at the price of a larger artefact and
tens of microseconds per query; both are far inside the 20 ms budget of a ranking stage.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import mean

import numpy as np

from bench.retrieval import levers
from bench.retrieval.baselines import ident_tokens
from bench.retrieval.metrics import CONTEXT_MIN_SCORE, context_score, question_score, score
from bench.retrieval.systems import Hit
from indexer.search.fusion import DEFAULT_TUNING, Tuning, is_test_path


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- re-scoring Victor's fusion


@dataclass(frozen=True)
class Fusion:
    """Victor's score fusion (indexer/search/fusion.py `fuse`) with its knobs; the defaults
    are the core's settings before the cross-corpus tuning (main 58b3b02)."""

    alpha: float = 0.1
    weights: tuple[float, float, float, float] = (6.0, 2.0, 0.5, 0.5)
    k1: float = 6.0
    half: float = 30.0
    b_doc: float = 0.0  # the core's (see Tuning.b_doc)
    b_body: float = 1.0
    module: float = 0.0  # lexical factor of module chunks (Tuning.module_lexical)

    def label(self) -> str:
        w = "/".join(f"{x:g}" for x in self.weights)
        return f"alpha={self.alpha:g} w={w} k1={self.k1:g} half={self.half:g} b_doc={self.b_doc:g}"

    def tuning(self) -> Tuning:
        """The core's Tuning with these knobs (the rest as the core's defaults)."""
        return replace(
            DEFAULT_TUNING,
            alpha=self.alpha,
            weights=self.weights,
            k1=self.k1,
            lexical_half=self.half,
            b_doc=self.b_doc,
            b_body=self.b_body,
            module_lexical=self.module,
        )


_PREP: dict[int, dict] = {}  # id(pool) -> what every fusion variant of it reuses


def _prep(cp: levers.CorpusPools, p: levers.Pool) -> dict:
    key = id(p)
    if key not in _PREP:
        chunks = [cp.chunks[c] for c in p.chunk_ids]
        _PREP[key] = {
            "pool": p,  # keeps id(p) from being reused while cached
            "module": np.array([c.kind in ("module", "window") for c in chunks]),
            "test": np.array([is_test_path(c.path) for c in chunks]),
            "doc_len": np.array([c.lex_doc_len for c in chunks], np.float32),
            "body_len": np.array([c.lex_len for c in chunks], np.float32),
            "tf": {},
        }
    return _PREP[key]


def _norm_tf(cp: levers.CorpusPools, p: levers.Pool, f: Fusion) -> np.ndarray:
    """(n, L, 4) frequencies with the doc and body fields length-normalised as in BM25F."""
    pr = _prep(cp, p)
    key = (f.b_doc, f.b_body)
    if key not in pr["tf"]:
        tf = p.tf.copy()
        # a body of no words (b = 1) would divide by zero; its count is zero anyway
        doc = np.maximum(1 - f.b_doc + f.b_doc * pr["doc_len"] / cp.doc_avg, 0.05)
        body = np.maximum(1 - f.b_body + f.b_body * pr["body_len"] / cp.body_avg, 0.05)
        tf[:, :, 2] /= doc[:, None]
        tf[:, :, 3] /= body[:, None]
        pr["tf"][key] = tf
    return pr["tf"][key]


def bm25f(cp: levers.CorpusPools, p: levers.Pool, f: Fusion) -> np.ndarray:
    """Victor's BM25F score of each candidate (module chunks x `f.module`, as in the core).
    Computed for every candidate: the core scores the dense side's candidates too."""
    if p.tf.shape[1] == 0:
        return np.zeros(len(p.chunk_ids), np.float32)
    tf = _norm_tf(cp, p, f) @ np.asarray(f.weights, np.float32)  # (n, L)
    s = (p.idf[None, :] * tf * (f.k1 + 1) / (tf + f.k1)).sum(axis=1)
    return np.where(_prep(cp, p)["module"], s * f.module, s)


def _priors(cp: levers.CorpusPools, p: levers.Pool) -> tuple[np.ndarray, np.ndarray]:
    pr = _prep(cp, p)
    return pr["module"], pr["test"]


def fused(cp: levers.CorpusPools, p: levers.Pool, f: Fusion) -> np.ndarray:
    module, test = _priors(cp, p)
    cos = np.maximum(0.0, np.where(module, p.cos * 0.8, p.cos))
    s = bm25f(cp, p, f)
    score = (cos + f.alpha * s / (s + f.half)) / (1 + f.alpha)
    return np.where(test, score * 0.8, score)


# ---------------------------------------------------------------- features of the ranker

FEATURES = [
    "cos", "cos_gap", "cos_rank", "lex", "lex_gap", "lex_rank", "bm25_name", "bm25_module",
    "bm25_doc", "bm25_body", "hybrid", "hybrid_rank", "name_cov", "name_all", "path_cov",
    "module", "test", "log_lines", "has_doc", "file_count", "file_best_cos", "file_lex",
    "query_words", "lex_flat",
]  # fmt: skip


def _words(text: str) -> set[str]:
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in ident_tokens(text)}


def _rank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(-x, kind="stable")
    r = np.empty(len(x), np.float32)
    r[order] = np.arange(1, len(x) + 1)
    return np.log(r)


def features(cp: levers.CorpusPools, p: levers.Pool) -> np.ndarray:
    """(n, len(FEATURES)) for the candidates of one query, from what Victor already computes."""
    n = len(p.chunk_ids)
    chunks = [cp.chunks[c] for c in p.chunk_ids]
    module, test = _priors(cp, p)
    cos = p.cos
    lex_raw = bm25f(cp, p, Fusion())
    lex = lex_raw / (lex_raw + 30.0)
    flat = bm25f(cp, p, Fusion(weights=(1.0, 1.0, 1.0, 1.0), k1=1.2))  # plain BM25 over fields
    per_field = np.zeros((n, 4), np.float32)
    if p.tf.shape[1]:
        tf = _norm_tf(cp, p, Fusion())
        per_field = (p.idf[None, :, None] * tf * 2.2 / (tf + 1.2)).sum(axis=1)
    q = _words(p.text)
    name_cov = np.zeros(n, np.float32)
    name_all = np.zeros(n, np.float32)
    path_cov = np.zeros(n, np.float32)
    for i, c in enumerate(chunks):
        name = _words(c.symbol.replace(".", " ").replace(":", " "))
        if name:
            name_cov[i] = len(name & q) / len(name)
            name_all[i] = float(name <= q)
        path = _words(c.path.rsplit(".", 1)[0].replace("/", " "))
        path_cov[i] = len(path & q) / max(1, len(q))
    files = [c.path for c in chunks]
    file_count = np.array([files.count(f) for f in files], np.float32)
    file_best = np.zeros(n, np.float32)
    file_lex = np.zeros(n, np.float32)
    for i, f in enumerate(files):
        others = [j for j in range(n) if files[j] == f and j != i]
        if others:
            file_best[i] = max(cos[j] for j in others)
            file_lex[i] = max(lex[j] for j in others)
    lines = np.array([c.end_line - c.start_line + 1 for c in chunks], np.float32)
    hybrid = np.minimum(p.hybrid, 1.0)
    cols = [
        cos, cos - cos.max(), _rank(cos), lex, lex - lex.max(), _rank(lex_raw),
        per_field[:, 0], per_field[:, 1], per_field[:, 2], per_field[:, 3],
        hybrid, np.log(np.arange(1, n + 1, dtype=np.float32)), name_cov, name_all, path_cov,
        module.astype(np.float32), test.astype(np.float32), np.log1p(lines),
        np.array([c.lex_doc_len > 0 for c in chunks], np.float32), np.log(file_count),
        file_best, file_lex, np.full(n, np.log1p(len(q)), np.float32), flat / (flat + 30.0),
    ]  # fmt: skip
    return np.stack(cols, axis=1).astype(np.float32)


def labels(cp: levers.CorpusPools, p: levers.Pool) -> np.ndarray:
    out = np.zeros(len(p.chunk_ids), np.float32)
    for i, cid in enumerate(p.chunk_ids):
        c = cp.chunks[cid]
        if any(c.path == g[0] and c.start_line <= g[2] and c.end_line >= g[1] for g in p.golds):
            out[i] = 1.0
    return out


# ---------------------------------------------------------------- scoring an order


class _Q:
    """A query as the metrics read it (path/lines of the answer, golds, kind)."""

    def __init__(self, p: levers.Pool):
        self.golds = [_G(*g) for g in p.golds]
        self.path, self.start_line, self.end_line = p.golds[0]
        self.kind = p.kind


@dataclass
class _G:
    path: str
    start_line: int
    end_line: int


def hits_in_order(cp: levers.CorpusPools, p: levers.Pool, order: np.ndarray) -> list[Hit]:
    """Candidates in `order`, Victor's named-symbol results kept first (as the core does)."""
    keep = list(range(p.named)) + [i for i in order if i >= p.named]
    out = []
    for i in keep:
        c = cp.chunks[p.chunk_ids[i]]
        out.append(Hit(c.path, c.start_line, c.end_line, c.text, float(p.hybrid[i]), c.symbol))
    return out


def evaluate(cp: levers.CorpusPools, set_name: str, order_of) -> dict:
    """Metrics of one corpus and set when each pool is re-ordered by `order_of(pool)`."""
    pools = [p for p in cp.pools if p.set == set_name]
    if not pools:
        return {}
    rankings = [hits_in_order(cp, p, order_of(p)) for p in pools]
    qs = [_Q(p) for p in pools]
    base = score(rankings, qs) if set_name == "doc" else question_score(rankings, qs)
    return base | context_score(rankings, qs, CONTEXT_MIN_SCORE, gated=True)


def fast_mrr(items: list[tuple[levers.Pool, np.ndarray, np.ndarray]]) -> float:
    """MRR@10 of (pool, labels, scores) triples, named-symbol results kept first."""
    total = 0.0
    for p, y, sc in items:
        order = [*range(p.named), *(i for i in by_score(sc) if i >= p.named)][:10]
        rank = next((r for r, i in enumerate(order, 1) if y[i]), None)
        total += 1 / rank if rank else 0.0
    return total / len(items) if items else 0.0


def victor_order(p: levers.Pool) -> np.ndarray:
    return np.arange(len(p.chunk_ids))


def by_score(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, kind="stable")


# ---------------------------------------------------------------- LOCO


SETS = ("doc", "questions")
MIN_QUERIES = 10  # a corpus enters a set's mean with at least this many queries
KEY = {"doc": "MRR@10", "questions": "MRR@10"}


def objective(per_corpus: dict[str, dict[str, dict]], corpora: list[str]) -> float:
    """Mean over the two sets of the mean over corpora of MRR@10 (each set counts half)."""
    parts = []
    for s in SETS:
        vals = [per_corpus[c][s][KEY[s]] for c in corpora if per_corpus[c].get(s)]
        if vals:
            parts.append(mean(vals))
    return mean(parts) if parts else 0.0


def fusion_grid(quick: bool = False) -> list[Fusion]:
    """alpha x field weights x k1 x saturation x b of the doc field; `quick`: k1 1.2 / 6,
    half 30 and the core's b_doc (0) only."""
    grid = []
    weights = [(6, 2, 0.5, 0.5), (6, 2, 1, 1), (4, 2, 1, 1), (3, 1, 1, 1), (2, 1, 1, 1),
               (1, 1, 1, 1), (6, 2, 2, 2), (3, 2, 2, 1), (2, 1, 2, 1)]  # fmt: skip
    for a, w, k1, half, b_doc in itertools.product(
        (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
        weights,
        (1.2, 6.0) if quick else (1.2, 3.0, 6.0),
        (30.0,) if quick else (10.0, 30.0),
        (0.0,) if quick else (0.0, 0.75),
    ):
        grid.append(Fusion(a, tuple(float(x) for x in w), k1, half, b_doc))
    return grid


def eligible(cps: list[levers.CorpusPools]) -> dict[str, list[str]]:
    return {
        s: [cp.corpus for cp in cps if sum(p.set == s for p in cp.pools) >= MIN_QUERIES]
        for s in SETS
    }


def table(per_corpus: dict[str, dict[str, dict]], sets_in: dict[str, list[str]]) -> dict:
    out = {}
    for s in SETS:
        rows = [per_corpus[c][s] for c in sets_in[s] if per_corpus[c].get(s)]
        if rows:
            keys = dict.fromkeys(k for r in rows for k in r if k != "n" and not k.startswith("n "))
            # a per-kind figure is averaged over the corpora that have questions of that kind
            out[s] = {k: mean(r[k] for r in rows if k in r) for k in keys} | {"corpora": len(rows)}
    return out


def loco_fusion(cps: list[levers.CorpusPools], sets_in, quick: bool = False) -> tuple[dict, dict]:
    """For every corpus: the grid point best on the others, scored on it."""
    grid = fusion_grid(quick)
    log(f"fusion grid: {len(grid)} variants x {len(cps)} corpora")
    scores: dict[Fusion, dict[str, dict[str, dict]]] = {}
    t0 = time.perf_counter()
    gold = {id(p): labels(cp, p) for cp in cps for p in cp.pools}
    for f in grid:  # selection on MRR@10 alone (cheap); full figures for the chosen ones
        scores[f] = {
            cp.corpus: {
                s: {
                    "MRR@10": fast_mrr(
                        [(p, gold[id(p)], fused(cp, p, f)) for p in cp.pools if p.set == s]
                    )
                }
                for s in SETS
            }
            for cp in cps
        }
    log(f"fusion grid scored in {time.perf_counter() - t0:.0f}s")
    held: dict[str, dict[str, dict]] = {}
    chosen: dict[str, str] = {}
    picked: list[Fusion] = []
    names = [cp.corpus for cp in cps]
    for c in names:
        train = [x for x in names if x != c]
        train_in = {s: [x for x in sets_in[s] if x in train] for s in SETS}
        best = max(
            grid,
            key=lambda f: objective(
                scores[f], sorted(set(train_in["doc"] + train_in["questions"]))
            ),
        )
        cp = next(x for x in cps if x.corpus == c)
        held[c] = {
            s: evaluate(cp, s, lambda p, f=best, cp=cp: by_score(fused(cp, p, f))) for s in SETS
        }
        chosen[c] = best.label()
        picked.append(best)
    everywhere = max(grid, key=lambda f: objective(scores[f], names))
    default = Fusion()
    # what the folds agree on: each knob's most frequent choice over the folds
    agreed = {
        knob: Counter(str(getattr(f, knob)) for f in picked).most_common()
        for knob in ("alpha", "weights", "k1", "half", "b_doc")
    }
    return held, {
        "chosen_per_fold": chosen,
        "folds_agree": agreed,
        "best_on_all": everywhere.label(),
        "best_on_all_mrr": table(scores[everywhere], sets_in),
        "default_mrr": table(scores[default], sets_in),
        "grid_size": len(grid),
    }


def make_model(kind: str):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "lr":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
    return HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=50,
        l2_regularization=1.0, random_state=0,
    )  # fmt: skip


def loco_ranker(
    cps: list[levers.CorpusPools], feats: dict, kind: str, train_sets=SETS, balance: bool = True
) -> dict:
    """Train on every corpus but one (queries of `train_sets`), score the held-out one."""
    held: dict[str, dict[str, dict]] = {}
    for cp in cps:
        xs, ys, ws = [], [], []
        n_set = {s: 0 for s in SETS}
        for other in cps:
            if other is cp:
                continue
            for p, (x, y) in zip(other.pools, feats[other.corpus], strict=True):
                if p.set in train_sets and y.any():  # a pool without its answer teaches nothing
                    xs.append(x)
                    ys.append(y)
                    ws.append(p.set)
                    n_set[p.set] += 1
        if not xs:
            continue
        # each set weighs the same in training (questions are few next to doc comments)
        total = sum(n_set.values())
        w_of = {
            s: (total / (len(train_sets) * n)) if (balance and n) else 1.0 for s, n in n_set.items()
        }
        w = np.concatenate(
            [np.full(len(x), w_of[s], np.float32) for x, s in zip(xs, ws, strict=True)]
        )
        model = make_model(kind)
        X, Y = np.concatenate(xs), np.concatenate(ys)
        if kind == "lr":
            model.fit(X, Y, logisticregression__sample_weight=w)
        else:
            model.fit(X, Y, sample_weight=w)
        pool_feats = dict(zip((id(p) for p in cp.pools), feats[cp.corpus], strict=True))

        def order(p, model=model, pool_feats=pool_feats):
            return by_score(model.predict_proba(pool_feats[id(p)][0])[:, 1])

        held[cp.corpus] = {s: evaluate(cp, s, order) for s in SETS}
    return held


def latency(cps: list[levers.CorpusPools], feats: dict, kinds=("lr", "gbt")) -> dict:
    """Per query: features of 50 candidates + model, in this process (p50/p95 over queries)."""
    out = {}
    X = np.concatenate([x for c in cps for x, _ in feats[c.corpus]])
    Y = np.concatenate([y for c in cps for _, y in feats[c.corpus]])
    sample = [(cp, p) for cp in cps for p in cp.pools][:300]
    for kind in kinds:
        model = make_model(kind).fit(X, Y)
        times = []
        for cp, p in sample:
            t0 = time.perf_counter()
            model.predict_proba(features(cp, p))
            times.append(time.perf_counter() - t0)
        times.sort()
        out[kind] = {
            "p50_ms": 1000 * times[len(times) // 2],
            "p95_ms": 1000 * times[int(len(times) * 0.95)],
        }
        if kind == "lr":
            lr = model[-1]
            scale = model[0].scale_
            out["lr_weights"] = {
                f: round(float(w / s), 4)
                for f, w, s in zip(FEATURES, lr.coef_[0], scale, strict=True)
            }
    return out


def study(cps: list[levers.CorpusPools], quick: bool = False, fusion_only: bool = False) -> dict:
    """Every lever's LOCO figures; `quick`: the linear ranker only and a smaller fusion grid;
    `fusion_only`: no ranker (the fusion grid alone)."""
    sets_in = eligible(cps)
    log(f"corpora per set (>= {MIN_QUERIES} queries): {sets_in}")
    results: dict[str, dict] = {}
    base = {cp.corpus: {s: evaluate(cp, s, victor_order) for s in SETS} for cp in cps}
    results["victor-hybrid"] = {"per_corpus": base, "mean": table(base, sets_in)}
    log("features ...")
    feats = {
        cp.corpus: [(np.zeros((0, 0)) if fusion_only else features(cp, p), labels(cp, p))
                    for p in cp.pools]
        for cp in cps
    }  # fmt: skip
    ceiling = {
        cp.corpus: {s: evaluate(cp, s, lambda p, cp=cp: by_score(labels(cp, p))) for s in SETS}
        for cp in cps
    }
    results["oracle-top50"] = {"per_corpus": ceiling, "mean": table(ceiling, sets_in)}
    rankers = [("ranker-lr", "lr", SETS), ("ranker-lr-doc-only", "lr", ("doc",))]
    if fusion_only:
        rankers = []
    elif not quick:
        rankers += [("ranker-gbt", "gbt", SETS), ("ranker-gbt-doc-only", "gbt", ("doc",))]
    for name, kind, train in rankers:
        log(f"{name} ...")
        held = loco_ranker(cps, feats, kind, train)
        results[name] = {"per_corpus": held, "mean": table(held, sets_in)}
    # Victor's own weights, but the lexical score computed for every fused candidate: the core
    # adds it only for the lexical side's own top 50, so a candidate found by the dense side
    # alone gets no lexical share (search.py `fuse`, `lex.get(i, 0.0)`).
    full = {
        cp.corpus: {
            s: evaluate(cp, s, lambda p, cp=cp: by_score(fused(cp, p, Fusion()))) for s in SETS
        }
        for cp in cps
    }
    results["victor-weights-full-lexical"] = {"per_corpus": full, "mean": table(full, sets_in)}
    log("fusion grid ...")
    held, info = loco_fusion(cps, sets_in, quick)
    results["fusion-loco"] = {"per_corpus": held, "mean": table(held, sets_in), **info}
    if not fusion_only:
        results["latency"] = latency(cps, feats, ("lr",) if quick else ("lr", "gbt"))
    return {"sets_in_mean": sets_in, "min_queries": MIN_QUERIES, "depth": levers.DEPTH, **results}


COLS = {
    "doc": ("R@1", "R@5", "R@10", "MRR@10", "ctx@answer", "ctx_chars"),
    "questions": ("answer@5", "any@5", "any@10", "MRR@10", "ctx@answer", "ctx@any", "ctx_chars"),
}


def print_report(report: dict) -> None:
    systems = [k for k, v in report.items() if isinstance(v, dict) and "mean" in v]
    for s in SETS:
        print(f"\nLOCO mean over {len(report['sets_in_mean'][s])} corpora: {s}")
        print(f"{'system':<22}" + "".join(f"{c:>11}" for c in COLS[s]))
        for name in systems:
            m = report[name]["mean"].get(s, {})
            print(f"{name:<22}" + "".join(
                f"{m.get(c, 0):>11.0f}" if c.endswith("chars") else f"{m.get(c, 0):>11.3f}"
                for c in COLS[s]
            ))  # fmt: skip
    if "latency" in report:
        print("\nlatency:", json.dumps(report["latency"], indent=1))
    print("fusion best on all:", report["fusion-loco"]["best_on_all"])
    print("chosen per fold:", json.dumps(report["fusion-loco"]["chosen_per_fold"], indent=1))
    print("folds agree:", json.dumps(report["fusion-loco"]["folds_agree"]))


def main(argv: list[str] | None = None) -> int:
    from bench.retrieval import run as bench_run

    ap = argparse.ArgumentParser(prog="python -m bench.retrieval.study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="index each corpus with Victor and keep its pools")
    c.add_argument("corpus", type=Path, nargs="*")
    c.add_argument("--corpora", type=Path)
    c.add_argument("--shared", type=Path)
    c.add_argument("--list", type=Path)
    c.add_argument("--only", nargs="+")
    c.add_argument("--max-queries", type=int, default=300)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--cache", type=Path)
    c.add_argument("--pools", type=Path, required=True, help="folder for the pools (*.pkl)")
    s = sub.add_parser("study", help="LOCO figures of every lever from the pools")
    s.add_argument("--pools", type=Path, required=True)
    s.add_argument("--out", type=Path)
    s.add_argument("--quick", action="store_true", help="linear ranker, smaller fusion grid")
    s.add_argument("--fusion-only", action="store_true", help="no ranker: the fusion grid")
    args = ap.parse_args(argv)
    if args.cmd == "collect":
        from bench.retrieval.cache import VectorCache
        from tests.support import pg

        corpora = bench_run.find_corpora(args, ap)
        server = pg.start_server(Path(tempfile.mkdtemp(prefix="levers-pg-")))
        disk = VectorCache(args.cache)
        qdir = Path(bench_run.__file__).parent / "questions"
        for corpus in corpora:
            t0 = time.perf_counter()
            cp = levers.collect(corpus, server.get_uri(), disk, args.max_queries, args.seed, qdir)
            if cp.pools:
                levers.save(cp, args.pools)
            log(f"{corpus.name}: {len(cp.pools)} pools in {time.perf_counter() - t0:.0f}s")
        return 0
    report = study(levers.load(args.pools), args.quick, args.fusion_only)
    print_report(report)
    if args.out:
        slim = {k: v for k, v in report.items()}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(slim, indent=1, default=str))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
