"""Levers on top of the tuned fusion, studied leave-one-corpus-out on the pools (levers.py).

    python -m bench.retrieval.stage --pools P --models lr gbt boost prf expand --C 0.02 \
        --out bench/results/stage-loco.json [--train model.json]

Every candidate of a pool (Victor's hybrid top 50) is re-scored with the core's tuned fusion
(`Tuning`'s defaults), then re-ordered by one lever:
* `lr` / `pair` / `gbt`: a learned stage, a model over features the core computes per
  candidate at query time (`indexer/search/ranking.py`: the fused score and its rank, the
  cosine and its gap to the best, per-field BM25 parts, how much of the query's idf the name
  holds, kind, test path, length, file agreement, call agreement); each held-out corpus is
  scored by a model trained on the other corpora (doc and question queries, each set half of
  the weight); `--train` writes the model trained on every corpus (the core's
  `indexer/search/ranking_model.json` is `lr`'s);
* `boost`: the fused score plus small agreement terms, a grid picked LOCO;
* `prf`: the query's vector moved towards its top fused candidates (Rocchio), picked LOCO;
* `expand`: the lexical query expanded with the words of its top results' names, picked LOCO.
All are compared with the tuned fusion on the same pools. Re-ordered results keep the fused
scores' values, handed out in the new order (a stage would change the order, not the scale:
the min_score calibration stays as measured). bench/README.md, "A learned stage on the tuned
fusion" and "A learned ranking stage in the core", has the figures: on 14 corpora the linear
stage gains on both sets held out and is the core's; the other levers are not kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.retrieval import levers
from bench.retrieval.metrics import CONTEXT_MIN_SCORE, context_score, question_score, score
from bench.retrieval.study import (
    _Q,
    SETS,
    Fusion,
    _prep,
    bm25f,
    by_score,
    eligible,
    fast_mrr,
    fused,
    labels,
    log,
    table,
)
from bench.retrieval.systems import Hit
from indexer.search import ranking

TUNED = Fusion(alpha=1.0, weights=(6.0, 2.0, 1.0, 1.0), k1=1.2, half=30.0, b_doc=0.0)


def candidates(cp: levers.CorpusPools, p: levers.Pool) -> ranking.Candidates:
    """What the core has for each candidate of the pool, as `indexer.search.ranking` reads it."""
    chunks = [cp.chunks[c] for c in p.chunk_ids]
    pr = _prep(cp, p)
    n = len(chunks)
    parts = np.zeros((n, 4), np.float32)
    cover = np.zeros((n, 2), np.float32)
    if p.tf.shape[1]:
        tf = p.tf
        k1 = ranking.PART_K1
        parts = (p.idf[None, :, None] * tf * (k1 + 1) / (tf + k1)).sum(axis=1)
        total = max(float(p.idf.sum()), 1e-6)
        cover[:, 0] = ((tf[:, :, 0] > 0) * p.idf[None, :]).sum(axis=1) / total
        cover[:, 1] = ((tf.sum(axis=2) > 0) * p.idf[None, :]).sum(axis=1) / total
    return ranking.Candidates(
        fused=fused(cp, p, TUNED).astype(np.float32),
        cos=p.cos.astype(np.float32),
        parts=parts,
        cover=cover,
        module=pr["module"],
        test=pr["test"],
        lines=np.array([c.end_line - c.start_line + 1 for c in chunks], np.float32),
        paths=[c.path for c in chunks],
        symbols=[c.symbol for c in chunks],
        texts=[c.text.lower() for c in chunks],
        query=p.text,
    )


def hits_with_scores(
    cp: levers.CorpusPools, p: levers.Pool, order: np.ndarray, fused_scores: np.ndarray
) -> list[Hit]:
    """Named symbols first (score 1, as the core), then `order`, each hit carrying the
    fused scores handed out in order (the stage's rule)."""
    rest = [i for i in order if i >= p.named]
    values = np.sort(fused_scores[rest])[::-1]
    out = []
    for i in range(p.named):
        c = cp.chunks[p.chunk_ids[i]]
        out.append(Hit(c.path, c.start_line, c.end_line, c.text, 1.0, c.symbol))
    for i, v in zip(rest, values, strict=True):
        c = cp.chunks[p.chunk_ids[i]]
        out.append(Hit(c.path, c.start_line, c.end_line, c.text, float(v), c.symbol))
    return out


def run_eval(cp: levers.CorpusPools, set_name: str, order_of, fused_of) -> dict:
    """`study.evaluate`, each hit with the stage's score (the fused values in the new order)."""
    pools = [p for p in cp.pools if p.set == set_name]
    if not pools:
        return {}
    rankings = [hits_with_scores(cp, p, order_of(p), fused_of(p)) for p in pools]
    qs = [_Q(p) for p in pools]
    base = score(rankings, qs) if set_name == "doc" else question_score(rankings, qs)
    return base | context_score(rankings, qs, CONTEXT_MIN_SCORE, gated=True)


def evaluate_scores(cps: list[levers.CorpusPools], scores: dict) -> dict:
    """Corpus -> set -> figures, each pool ordered by `scores[id(pool)]` (one score per
    candidate)."""

    def one(cp, s):
        return run_eval(cp, s, lambda p: by_score(scores[id(p)]), lambda p: scores[id(p)])

    return {cp.corpus: {s: one(cp, s) for s in SETS} for cp in cps}


def mrr_scores(cps: list[levers.CorpusPools], gold: dict, scores: dict) -> dict:
    """Corpus -> set -> MRR@10 alone (fast: for grids), `gold[id(pool)]` its labels."""

    def one(cp, s):
        return fast_mrr([(p, gold[id(p)], scores[id(p)]) for p in cp.pools if p.set == s])

    return {cp.corpus: {s: {"MRR@10": one(cp, s)} for s in SETS} for cp in cps}


def fit_lr(X, Y, W, C: float) -> ranking.Model:
    from sklearn.linear_model import LogisticRegression

    mu, sd = X.mean(axis=0), X.std(axis=0) + 1e-6
    lr = LogisticRegression(C=C, max_iter=3000).fit((X - mu) / sd, Y, sample_weight=W)
    w = lr.coef_[0] / sd
    b = float(lr.intercept_[0] - (lr.coef_[0] * mu / sd).sum())
    return ranking.Model(list(ranking.FEATURES), w.astype(np.float64), b)


def fit_pairwise(cps, feats, C: float, q_weight: float = 1.0) -> ranking.Model:
    """Pairwise logistic regression (RankNet-style, linear): within each training query, every
    gold against every non-gold; each query weighs the same, each set half (x `q_weight`
    for questions)."""
    from sklearn.linear_model import LogisticRegression

    ds, ws, sets = [], [], []
    for cp in cps:
        for p, (x, y) in zip(cp.pools, feats[cp.corpus], strict=True):
            lo = p.named
            yy, xx = y[lo:], x[lo:]
            pos, neg = np.flatnonzero(yy > 0), np.flatnonzero(yy == 0)
            if not len(pos) or not len(neg):
                continue
            d = (xx[pos][:, None, :] - xx[neg][None, :, :]).reshape(-1, x.shape[1])
            ds.append(d)
            ws.append(np.full(len(d), 1.0 / len(d)))
            sets.append(p.set)
    n_set = {s: sets.count(s) for s in SETS}
    mult = {"doc": 1.0 / n_set["doc"], "questions": q_weight / n_set["questions"]}
    w = np.concatenate([wi * mult[s] for wi, s in zip(ws, sets, strict=True)])
    D = np.concatenate(ds)
    sd = D.std(axis=0) + 1e-6
    X = np.concatenate([D / sd, -D / sd])
    Y = np.concatenate([np.ones(len(D)), np.zeros(len(D))])
    W = np.concatenate([w, w]) * len(sets)
    lr = LogisticRegression(C=C, max_iter=3000, fit_intercept=False).fit(X, Y, sample_weight=W)
    return ranking.Model(list(ranking.FEATURES), (lr.coef_[0] / sd).astype(np.float64), 0.0)


def train_rows(cps, feats, train_sets=SETS, q_weight: float = 1.0):
    xs, ys, sets = [], [], []
    for cp in cps:
        for p, (x, y) in zip(cp.pools, feats[cp.corpus], strict=True):
            if p.set in train_sets and y.any() and not (y[: p.named].any() and p.named):
                xs.append(x)
                ys.append(y)
                sets.append(p.set)
    n_set = {s: sets.count(s) for s in SETS}
    total = sum(n_set.values())
    w = np.concatenate(
        [
            np.full(len(x), total / (2 * n_set[s]) * (q_weight if s == "questions" else 1.0))
            for x, s in zip(xs, sets, strict=True)
        ]
    )
    return np.concatenate(xs), np.concatenate(ys), w


def fit_gbt(X, Y, W):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=50,
        l2_regularization=1.0, random_state=0,
    ).fit(X, Y, sample_weight=W)  # fmt: skip


def fit_fold(kind: str, train, feats, keep: np.ndarray, args):
    """A scorer (features, fused scores) -> scores, trained on the corpora `train`."""
    if kind == "gbt":
        X, Y, W = train_rows(train, feats, q_weight=args.q_weight)
        g = fit_gbt(X * keep, Y, W)
        return lambda x, f: g.predict_proba(x)[:, 1]
    if kind == "pair":
        m = fit_pairwise(train, feats, args.C, args.q_weight)
    else:
        X, Y, W = train_rows(train, feats, q_weight=args.q_weight)
        m = fit_lr(X * keep, Y, W, args.C)
    if args.blend is None:
        return lambda x, f: m.score(x)

    def blended(x, f):
        s = m.score(x)
        z = (f - f.mean()) / (f.std() + 1e-6)
        return z + args.blend * (s - s.mean()) / (s.std() + 1e-6)

    return blended


def timing(cands: dict, model: ranking.Model) -> dict:
    """Per query: features of its candidates and the model's scores (this process, ms)."""
    times = []
    for c in list(cands.values())[:400]:
        t0 = time.perf_counter()
        model.score(ranking.features(c))
        times.append(1000 * (time.perf_counter() - t0))
    times.sort()
    return {"p50_ms": times[len(times) // 2], "p95_ms": times[int(0.95 * len(times))]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.retrieval.stage", description=__doc__)
    ap.add_argument("--pools", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--models", nargs="+", default=["lr"])
    ap.add_argument("--C", type=float, default=0.5)
    ap.add_argument("--drop", nargs="*", default=[], help="features left out (set to 0)")
    ap.add_argument("--blend", type=float, help="order by z(fused) + BLEND x z(model)")
    ap.add_argument("--q-weight", type=float, default=1.0)
    ap.add_argument("--train", type=Path, help="write the model trained on every corpus here")
    ap.add_argument(
        "--train-loco",
        type=Path,
        metavar="DIR",
        help="write each fold's `lr` model, trained without corpus X, to DIR/X.json (for "
        "`bench.retrieval.run --systems victor-stage-loco`)",
    )
    args = ap.parse_args(argv)
    cps = levers.load(args.pools)
    sets_in = eligible(cps)
    cands = {id(p): candidates(cp, p) for cp in cps for p in cp.pools}
    feats = {
        cp.corpus: [(ranking.features(cands[id(p)]), labels(cp, p)) for p in cp.pools] for cp in cps
    }
    log(f"features of {sum(len(v) for v in feats.values())} pools")

    def fused_of(p):
        return cands[id(p)].fused

    keep = np.array([f not in args.drop for f in ranking.FEATURES], np.float32)
    report: dict = {"sets_in_mean": sets_in, "features": list(ranking.FEATURES)}
    base = {
        cp.corpus: {s: run_eval(cp, s, lambda p: by_score(fused_of(p)), fused_of) for s in SETS}
        for cp in cps
    }
    report["tuned-fusion"] = {"per_corpus": base, "mean": table(base, sets_in)}
    new_scores: dict[str, dict[int, np.ndarray]] = {}
    for kind in [m for m in args.models if m not in ("boost", "prf", "expand")]:
        held, new_scores[kind] = {}, {}
        for cp in cps:
            others = [o for o in cps if o is not cp]
            scorer = fit_fold(kind, others, feats, keep, args)
            xs = {id(p): x * keep for p, (x, _) in zip(cp.pools, feats[cp.corpus], strict=True)}

            def order(p, scorer=scorer, xs=xs):
                return by_score(scorer(xs[id(p)], fused_of(p)))

            held[cp.corpus] = {s: run_eval(cp, s, order, fused_of) for s in SETS}
            for p in cp.pools:
                new_scores[kind][id(p)] = scorer(xs[id(p)], fused_of(p))
            if kind == "lr" and args.train_loco:
                args.train_loco.mkdir(parents=True, exist_ok=True)
                X, Y, W = train_rows(others, feats, q_weight=args.q_weight)
                fit_lr(X * keep, Y, W, args.C).save(
                    args.train_loco / f"{cp.corpus}.json",
                    f"lr fold without {cp.corpus} (python -m bench.retrieval.stage --train-loco)",
                )
            log(f"{kind} held out {cp.corpus}: " + json.dumps(
                {s: {k: round(v, 3) for k, v in held[cp.corpus][s].items()
                     if k in ("R@5", "MRR@10", "answer@5")} for s in SETS}))  # fmt: skip
        report[f"stage-{kind}"] = {"per_corpus": held, "mean": table(held, sets_in)}
    if "prf" in args.models:
        report["prf-loco"] = loco_settings(cps, sets_in, fused_of, PRF, prf_fused)
        log(f"prf chosen: {report['prf-loco']['chosen_per_fold']}")
        new_scores["prf"] = chosen_scores(cps, report["prf-loco"], prf_fused)
        log(f"prf objective on all: {report['prf-loco']['mrr_on_all']}")
    if "expand" in args.models:
        report["expand-loco"] = loco_settings(cps, sets_in, fused_of, EXPANSION, expanded_fused)
        log(f"expansion chosen: {report['expand-loco']['chosen_per_fold']}")
        new_scores["expand"] = chosen_scores(cps, report["expand-loco"], expanded_fused)
        log(f"expansion objective on all: {report['expand-loco']['mrr_on_all']}")
    if "boost" in args.models:
        report["boost-loco"] = loco_boosts(cps, feats, sets_in, fused_of)
        log(f"boosts chosen: {report['boost-loco']['chosen_per_fold']}")
        chosen = report["boost-loco"]["chosen_per_fold"]
        new_scores["boost"] = {
            id(p): boosted(x, chosen[cp.corpus])
            for cp in cps
            for p, (x, _) in zip(cp.pools, feats[cp.corpus], strict=True)
        }
    report["top5_edge"] = {
        kind: edge_moves(cps, {id(p): fused_of(p) for cp in cps for p in cp.pools}, sc)
        for kind, sc in new_scores.items()
    }
    cols = {
        "doc": ("R@5", "MRR@10", "ctx@answer", "ctx_chars"),
        "questions": ("answer@5", "any@5", "MRR@10", "ctx@answer", "ctx_chars"),
    }
    for s in SETS:
        print(f"\nLOCO mean, {s}: " + " ".join(cols[s]))
        for name, v in report.items():
            if isinstance(v, dict) and "mean" in v:
                m = v["mean"][s]
                print(f"{name:<16}" + " ".join(f"{m[c]:.3f}" for c in cols[s]))
    for kind, e in report["top5_edge"].items():
        moves = [
            f"{s} +{e[s]['into_top5']} -{e[s]['out_of_top5']} of {e[s]['queries']}" for s in SETS
        ]
        print(f"{kind}: answers across the top-5 edge, " + ", ".join(moves))
    if args.train:
        X, Y, W = train_rows(cps, feats)
        m = fit_lr(X, Y, W, args.C)
        corpora = ", ".join(cp.corpus for cp in cps)
        m.save(
            args.train,
            f"logistic regression (C {args.C}) on the hybrid top 50 of the doc-comment and "
            f"developer-question pools of {len(cps)} corpora ({corpora}); "
            "python -m bench.retrieval.stage --models lr --train",
        )
        report["latency"] = timing(cands, m)
        print(f"wrote {args.train}; features + score per query: {report['latency']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0


def answer_rank(cp: levers.CorpusPools, p: levers.Pool, scores: np.ndarray) -> int | None:
    """Rank (0-based) of the answer (a question's first gold, a doc query's one) in the
    order of `scores`, named symbols first as in the core; None when it is not in the pool."""
    path, start, end = p.golds[0]
    order = [*range(p.named), *(i for i in by_score(scores) if i >= p.named)]
    for r, i in enumerate(order):
        c = cp.chunks[p.chunk_ids[i]]
        if c.path == path and c.start_line <= end and c.end_line >= start:
            return r
    return None


def edge_moves(cps, base: dict[int, np.ndarray], new: dict[int, np.ndarray]) -> dict:
    """Per set: answers that cross the top-5 edge each way (held-out scores against the
    tuned fusion), answers moved up / down at all, and each crossing."""
    out = {}
    for s in SETS:
        row = {"queries": 0, "into_top5": 0, "out_of_top5": 0, "up": 0, "down": 0, "moves": []}
        for cp in cps:
            for p in cp.pools:
                if p.set != s:
                    continue
                row["queries"] += 1
                r0, r1 = answer_rank(cp, p, base[id(p)]), answer_rank(cp, p, new[id(p)])
                if r0 is None or r1 is None:
                    continue
                row["up"] += r1 < r0
                row["down"] += r1 > r0
                if (r0 < 5) != (r1 < 5):
                    row["into_top5" if r1 < 5 else "out_of_top5"] += 1
                    row["moves"].append(
                        {"corpus": cp.corpus, "q": p.text[:120], "from": r0 + 1, "to": r1 + 1}
                    )
        out[s] = row
    return out


def chosen_scores(cps, loco: dict, scorer) -> dict[int, np.ndarray]:
    """Each pool scored with the setting its fold chose (`loco_settings`' result)."""
    chosen = loco["chosen_per_fold"]
    return {id(p): scorer(cp, p, chosen[cp.corpus]) for cp in cps for p in cp.pools}


# ---------------------------------------------------------------- agreement boosts, LOCO

BOOSTS = [
    (a, b, c)
    for a in (0.0, 0.02, 0.05, 0.1)  # x share of the query's idf in the name field
    for b in (0.0, 0.01, 0.02, 0.04)  # x calls to / called by a top-10 candidate (0/1)
    for c in (0.0, 0.02, 0.05)  # x another candidate of the same file near the best
]


def boosted(x: np.ndarray, boost: tuple[float, float, float]) -> np.ndarray:
    f = {n: x[:, i] for i, n in enumerate(ranking.FEATURES)}
    a, b, c = boost
    calls = ((f["calls_top"] > 0) | (f["called_by_top"] > 0)).astype(np.float32)
    near = np.clip(1 + 4 * f["file_best_gap"], 0, 1) * (f["file_others"] > 0)
    return f["fused"] + a * f["cover_name"] + b * calls + c * near


def loco_boosts(cps, feats, sets_in, fused_of) -> dict:
    from bench.retrieval.study import fast_mrr, objective

    mrr = {
        bst: {
            cp.corpus: {
                s: {
                    "MRR@10": fast_mrr(
                        [
                            (p, y, boosted(x, bst))
                            for p, (x, y) in zip(cp.pools, feats[cp.corpus], strict=True)
                            if p.set == s
                        ]
                    )
                }
                for s in SETS
            }
            for cp in cps
        }
        for bst in BOOSTS
    }
    held, chosen = {}, {}
    names = [cp.corpus for cp in cps]
    for cp in cps:
        train = sorted(n for n in names if n != cp.corpus)
        best = max(BOOSTS, key=lambda b: objective(mrr[b], train))
        xs = {id(p): x for p, (x, _) in zip(cp.pools, feats[cp.corpus], strict=True)}
        held[cp.corpus] = {
            s: run_eval(cp, s, lambda p, b=best, xs=xs: by_score(boosted(xs[id(p)], b)), fused_of)
            for s in SETS
        }
        chosen[cp.corpus] = best
    everywhere = max(BOOSTS, key=lambda b: objective(mrr[b], names))
    return {
        "per_corpus": held,
        "mean": table(held, sets_in),
        "chosen_per_fold": chosen,
        "best_on_all": everywhere,
    }


# ---------------------------------------------------------------- dense pseudo-relevance, LOCO

PRF = [(0.0, 0)] + [(b, k) for b in (0.1, 0.25, 0.5, 1.0) for k in (1, 3, 5)]


def fuse_cosine(
    cp: levers.CorpusPools, p: levers.Pool, cos: np.ndarray, lex: np.ndarray
) -> np.ndarray:
    """The tuned fusion of a cosine and a BM25F score per candidate (`fusion.fuse`)."""
    pr = _prep(cp, p)
    cos = np.maximum(0.0, np.where(pr["module"], cos * 0.8, cos))
    score = (cos + TUNED.alpha * lex / (lex + TUNED.half)) / (1 + TUNED.alpha)
    return np.where(pr["test"], score * 0.8, score).astype(np.float32)


def prf_fused(cp: levers.CorpusPools, p: levers.Pool, setting: tuple[float, int]) -> np.ndarray:
    """The tuned fusion with the query's vector moved towards its top-k fused candidates
    (Rocchio: q + beta x their mean, normalised), the same candidates re-scored."""
    base = fused(cp, p, TUNED)
    beta, k = setting
    if not beta or p.vecs is None:
        return base
    vecs = p.vecs.astype(np.float32)
    q = p.qvec.astype(np.float32) + beta * vecs[np.argsort(-base, kind="stable")[:k]].mean(axis=0)
    return fuse_cosine(cp, p, vecs @ (q / (np.linalg.norm(q) + 1e-9)), bm25f(cp, p, TUNED))


def expanded_fused(cp: levers.CorpusPools, p: levers.Pool, setting: tuple[float, int]):
    """The tuned fusion with the lexical query expanded by the words of the names of its top
    k results (as the core ranked them) that it lacks, each word's idf x gamma."""
    gamma, k = setting
    x = getattr(p, "expansion", None)
    if not gamma or x is None or not x.source.shape[1]:
        return fused(cp, p, TUNED)
    keep = x.source[:k].any(axis=0)
    tf = np.concatenate([p.tf, x.tf[:, keep]], axis=1)
    idf = np.concatenate([p.idf, gamma * x.idf[keep]])
    pr = _prep(cp, p)
    doc = np.maximum(1 - TUNED.b_doc + TUNED.b_doc * pr["doc_len"] / cp.doc_avg, 0.05)
    body = np.maximum(1 - TUNED.b_body + TUNED.b_body * pr["body_len"] / cp.body_avg, 0.05)
    tf[:, :, 2] /= doc[:, None]
    tf[:, :, 3] /= body[:, None]
    w = tf @ np.asarray(TUNED.weights, np.float32)
    lex = (idf[None, :] * w * (TUNED.k1 + 1) / (w + TUNED.k1)).sum(axis=1)
    lex = np.where(pr["module"], lex * TUNED.module, lex)
    return fuse_cosine(cp, p, p.cos, lex)


PRF = [(0.0, 0)] + [(b, k) for b in (0.1, 0.25, 0.5, 1.0) for k in (1, 3, 5)]
EXPANSION = [(0.0, 0)] + [(g, k) for g in (0.1, 0.25, 0.5, 1.0) for k in (1, 2, 3)]


def loco_settings(cps, sets_in, fused_of, grid, scorer) -> dict:
    """For every corpus, the setting of `grid` best on the others (MRR@10, each set half),
    `scorer(cp, pool, setting)` scored on it."""
    from bench.retrieval.study import fast_mrr, objective

    gold = {id(p): labels(cp, p) for cp in cps for p in cp.pools}
    mrr = {
        st: {
            cp.corpus: {
                s: {
                    "MRR@10": fast_mrr(
                        [(p, gold[id(p)], scorer(cp, p, st)) for p in cp.pools if p.set == s]
                    )
                }
                for s in SETS
            }
            for cp in cps
        }
        for st in grid
    }
    held, chosen = {}, {}
    names = [cp.corpus for cp in cps]
    for cp in cps:
        train = sorted(n for n in names if n != cp.corpus)
        best = max(grid, key=lambda st: objective(mrr[st], train))
        held[cp.corpus] = {
            s: run_eval(cp, s, lambda p, b=best, cp=cp: by_score(scorer(cp, p, b)), fused_of)
            for s in SETS
        }
        chosen[cp.corpus] = best
    return {
        "per_corpus": held,
        "mean": table(held, sets_in),
        "chosen_per_fold": chosen,
        "best_on_all": max(grid, key=lambda st: objective(mrr[st], names)),
        "mrr_on_all": {str(st): objective(mrr[st], names) for st in grid},
    }


if __name__ == "__main__":
    sys.exit(main())
