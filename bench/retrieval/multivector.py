"""Multi-vector dense scoring on the levers' pools (levers.py): more than one vector per chunk.

    python -m bench.retrieval.multivector --pools P [--out bench/results/multivector-loco.json]

Today a function's vector is the normalised mean of two embeddings (indexer/embedding/texts.py):
its full text (path, name, code; all-MiniLM-L6-v2 reads the first 256 word pieces only) and a
short name text. Each pool's same 50 candidates get a new dense score from one of three
families, fused exactly as the core fuses the cosine (`stage.fuse_cosine`, the tuned fusion):
* `maxp`: the full text cut into windows of WINDOW word pieces, the header line repeated in
  each (`split_windows`), the stored cosine combined with the best window's (Dai & Callan
  2019, MaxP) or with the windows' mean: `(1 - w) * stored + w * window`, or the max;
* `headdoc`: a third vector of the header, signature and doc comment only, combined with the
  stored cosine by a weight or the max;
* `parts`: the full-text and name-text cosines kept apart, weighted (`w * name + (1 - w) *
  full`) or their max, instead of the cosine of their mean.
A weight of 0 is today's score. Each corpus is scored with the family's setting best on the
other 7 (MRR@10, each set half), every fold's choice reported. The two part vectors come from
the benchmark's embedding cache (the texts the core embedded, rebuilt here); when one is
missing, the other and the stored mean give it back exactly (unit vectors: n = 2(s.f)s - f);
a candidate with neither keeps its stored vector in every variant. New texts (windows, header
and doc) are embedded with the real model and cached. bench/README.md, "Multi-vector dense
scoring", has the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.retrieval import levers
from bench.retrieval.cache import VectorCache
from bench.retrieval.densequery import answer_rank
from bench.retrieval.stage import TUNED, evaluate_scores, fuse_cosine, mrr_scores
from bench.retrieval.study import (
    SETS,
    bm25f,
    by_score,
    eligible,
    fused,
    labels,
    log,
    objective,
    table,
)
from indexer.config import LOCAL_MODEL_NAME
from indexer.embedding.texts import name_text
from indexer.models import ChunkKind
from indexer.parsing.chunker import chunk_source

WINDOW = 200  # word pieces per window, header included (the model reads 256)
WEIGHTS = (0.0, 0.15, 0.3, 0.5, 0.7)
FAMILIES = {
    "maxp": [("max", w) for w in WEIGHTS] + [("mean", w) for w in WEIGHTS[1:]] + [("maxof", 1)],
    "headdoc": [("w", w) for w in WEIGHTS[1:]] + [("w", 0.0), ("maxof", 1)],
    "parts": [("today", 0.0)] + [("w", w) for w in (0.3, 0.4, 0.5, 0.6, 0.7)] + [("maxof", 1)],
}


def split_windows(lines: list[str], count: Callable[[str], int], budget: int) -> list[list[str]]:
    """Consecutive runs of `lines`, each at most `budget` tokens by `count` (a line longer
    than the budget is a run of its own). The caller puts the header in front of each run, so
    `budget` is what is left after it."""
    runs: list[list[str]] = []
    run: list[str] = []
    used = 0
    for line in lines:
        n = count(line) + 1  # the newline's share: keeps a run a little under the budget
        if run and used + n > budget:
            runs.append(run)
            run, used = [], 0
        run.append(line)
        used += n
    if run:
        runs.append(run)
    return runs


@dataclass
class Texts:
    """What a candidate chunk was (full, name) and could be (windows, header+doc) embedded as."""

    full: str
    name: str | None
    headdoc: str | None
    windows: list[str]


def _parsed(path: str, chunk: levers.Chunk):
    """The function chunk the core would make of this text alone (signature, doc), or None."""
    fns = [c for c in chunk_source(path, chunk.text).chunks if c.kind.value != "module"]
    return next((c for c in fns if c.symbol == chunk.symbol), fns[0] if fns else None)


def texts_of(chunk: levers.Chunk, count: Callable[[str], int]) -> Texts:
    head = f"{chunk.path} :: {chunk.symbol} ({chunk.kind})"
    full = f"{head}\n{chunk.text}"
    name = headdoc = None
    signature = ""
    if chunk.kind in ("function", "method"):
        fn = _parsed(chunk.path, chunk)
        if fn is not None:
            named = replace(fn, symbol=chunk.symbol, kind=ChunkKind(chunk.kind))
            name = name_text(chunk.path, named)
            signature = fn.signature
            headdoc = f"{head}\n{fn.signature}\n{fn.doc}".rstrip()
    windows: list[str] = []
    if count(full) > 256:
        lines = chunk.text.split("\n")
        first = f"{head}\n{signature}" if signature else head
        runs = split_windows(lines, count, WINDOW - count(first))
        windows = [f"{head}\n" + "\n".join(runs[0])] + [
            f"{first}\n" + "\n".join(r) for r in runs[1:]
        ]
    return Texts(full, name, headdoc, windows)


def _encode(texts: list[str], cache: VectorCache) -> dict[str, np.ndarray]:
    """Vectors of `texts`: the cache's, and the real model's for the rest (then cached)."""
    known = cache.get_many(LOCAL_MODEL_NAME, texts)
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        from indexer.embedding.local import load_local_model

        log(f"embedding {len(missing)} new texts")
        model = load_local_model()
        vecs = model.encode(missing, batch_size=16, normalize_embeddings=True)
        pairs = [(t, np.asarray(v, np.float32)) for t, v in zip(missing, vecs, strict=True)]
        cache.put_many(LOCAL_MODEL_NAME, pairs)
        known.update(pairs)
    return known


@dataclass
class Vectors:
    """Per candidate chunk: the part vectors and the new ones (None where not applicable)."""

    full: np.ndarray
    name: np.ndarray | None
    headdoc: np.ndarray | None
    windows: np.ndarray | None  # (k, dims)
    exact: bool  # the parts were recovered (else full = name = the stored mean)


def _mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m = a + b
    return m / (np.linalg.norm(m) + 1e-9)


def _split_mean(stored: np.ndarray, one: np.ndarray) -> np.ndarray:
    """The other unit vector of a normalised mean of two, knowing one of them."""
    return 2 * float(stored @ one) * stored - one


def chunk_vectors(cps: list[levers.CorpusPools], cache: VectorCache, count) -> dict:
    """(corpus, chunk id) -> Vectors for every candidate of every pool."""
    stored: dict[tuple[str, int], np.ndarray] = {}
    for cp in cps:
        for p in cp.pools:
            for cid, v in zip(p.chunk_ids, p.vecs, strict=True):
                stored[(cp.corpus, cid)] = v.astype(np.float32)
    by = {cp.corpus: cp for cp in cps}
    texts = {key: texts_of(by[key[0]].chunks[key[1]], count) for key in stored}
    known = cache.get_many(LOCAL_MODEL_NAME, [t for x in texts.values() for t in (x.full, x.name)
                                              if t])  # fmt: skip
    new = [t for x in texts.values() for t in (x.headdoc, *x.windows) if t]
    known |= _encode(new, cache)
    out = {}
    for key, s in stored.items():
        x = texts[key]
        norm = float(np.linalg.norm(s))
        s = s / norm if norm else s  # no vector (a trivial chunk): cosine 0 in every variant
        f, n = known.get(x.full), known.get(x.name) if x.name else None
        exact = norm > 0
        if x.name is None:  # a module chunk: one vector, the full text's
            f, exact = s, exact and f is not None
        elif f is not None and n is None:
            n = _split_mean(s, f)
        elif n is not None and f is None:
            f = _split_mean(s, n)
        if x.name is not None and (f is None or float(_mean(f, n) @ s) < 0.999):
            f = n = s  # not recovered (or a rebuilt text the core did not embed)
            exact = False
        hd = known.get(x.headdoc) if x.headdoc else None
        ws = np.stack([known[w] for w in x.windows]) if x.windows else None
        out[key] = Vectors(f, n, hd, ws, exact)
    return out


def dense(p: levers.Pool, vs: list[Vectors], family: str, setting: tuple[str, float]):
    """The candidates' new dense score under one family's setting."""
    q = p.qvec.astype(np.float32)
    s = p.cos.astype(np.float32)
    how, w = setting
    if family == "parts":
        if how == "today":
            return s
        f = np.array([v.full @ q for v in vs], np.float32)
        n = np.array([v.name @ q if v.name is not None else v.full @ q for v in vs], np.float32)
        alt = np.maximum(f, n) if how == "maxof" else w * n + (1 - w) * f
        # a candidate whose parts are unknown keeps today's cosine
        return np.where([v.exact and v.name is not None for v in vs], alt, s)
    if family == "headdoc":
        h = np.array([v.headdoc @ q if v.headdoc is not None else np.nan for v in vs])
        alt = np.maximum(s, h) if how == "maxof" else (1 - w) * s + w * h
        return np.where(np.isnan(h), s, alt).astype(np.float32)
    # maxp: the best window (or the windows' mean) weighted in, or the max of all
    cos_w = [v.windows @ q if v.windows is not None else None for v in vs]
    pick = np.mean if how == "mean" else np.max
    win = np.array([np.nan if c is None else pick(c) for c in cos_w])
    if how == "maxof":
        alt = np.maximum(s, win)
    elif how == "max":  # the best window counts only where it beats the stored cosine
        alt = (1 - w) * s + w * np.maximum(s, win)
    else:
        alt = (1 - w) * s + w * win
    return np.where(np.isnan(win), s, alt).astype(np.float32)


def failures(cps, vecs, base) -> dict:
    """The questions whose answer the default leaves out of the top 5: kind, where the answer
    ranks, and on which side (dense/lexical) it ranks better."""
    rows = []
    for cp in cps:
        for p in cp.pools:
            if p.set != "questions":
                continue
            y = np.zeros(len(p.chunk_ids), np.float32)
            first = p.golds[0]
            for i, cid in enumerate(p.chunk_ids):
                c = cp.chunks[cid]
                if c.path == first[0] and c.start_line <= first[2] and c.end_line >= first[1]:
                    y[i] = 1.0
            if not y.any():
                rows.append({"corpus": cp.corpus, "kind": p.kind, "rank": None, "q": p.text})
                continue
            r = answer_rank(p, y, base[id(p)])
            if r < 5:
                continue
            i = next(i for i in range(len(y)) if y[i])
            cos_rank = int((p.cos > p.cos[i]).sum())
            lex = bm25f(cp, p, TUNED)
            lex_rank = int((lex > lex[i]).sum())
            c = cp.chunks[p.chunk_ids[i]]
            rows.append({"corpus": cp.corpus, "kind": p.kind, "rank": r + 1,
                         "dense_rank": cos_rank + 1, "lex_rank": lex_rank + 1,
                         "answer": c.symbol, "answer_lines": c.end_line - c.start_line + 1,
                         "answer_over_256": vecs[(cp.corpus, p.chunk_ids[i])].windows is not None,
                         "top1": cp.chunks[p.chunk_ids[int(by_score(base[id(p)])[0])]].symbol,
                         "q": p.text})  # fmt: skip
    found = [r for r in rows if r["rank"] is not None]
    kinds = sorted({r["kind"] for r in rows})
    summary = {
        "missed": len(rows),
        "not_in_top_50": len(rows) - len(found),
        "rank_6_10": sum(r["rank"] <= 10 for r in found),
        "rank_11_50": sum(r["rank"] > 10 for r in found),
        "dense_ranks_it_higher": sum(r["dense_rank"] < r["lex_rank"] for r in found),
        "lexical_ranks_it_higher": sum(r["lex_rank"] < r["dense_rank"] for r in found),
        "dense_rank_median": float(np.median([r["dense_rank"] for r in found])),
        "lex_rank_median": float(np.median([r["lex_rank"] for r in found])),
        "answer_over_256_word_pieces": sum(r["answer_over_256"] for r in found),
        "by_kind": {k: sum(r["kind"] == k for r in rows) for k in kinds},
    }
    return {"summary": summary, "missed": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.retrieval.multivector", description=__doc__)
    ap.add_argument("--pools", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    cps = levers.load(args.pools)
    sets_in = eligible(cps)
    pools = [(cp, p) for cp in cps for p in cp.pools]
    from indexer.embedding.local import load_local_model

    tok = load_local_model().tokenizer
    count = lambda t: len(tok.tokenize(t))  # noqa: E731
    vecs = chunk_vectors(cps, VectorCache(), count)
    cand = {id(p): [vecs[(cp.corpus, c)] for c in p.chunk_ids] for cp, p in pools}
    allv = list(vecs.values())
    coverage = {
        "candidates": len(allv),
        "parts_recovered": sum(v.exact and v.name is not None for v in allv),
        "with_name_text": sum(v.name is not None for v in allv),
        "with_headdoc": sum(v.headdoc is not None for v in allv),
        "long_with_windows": sum(v.windows is not None for v in allv),
        "windows": sum(len(v.windows) for v in allv if v.windows is not None),
    }
    log(f"coverage: {coverage}")
    # the stored mean rebuilt from the parts gives today's cosine back (a check of the parts)
    drift = max(
        abs(float((v.full + v.name) @ p.qvec.astype(np.float32) / np.linalg.norm(v.full + v.name))
            - float(c))
        for cp, p in pools for v, c in zip(cand[id(p)], p.cos, strict=True)
        if v.exact and v.name is not None
    )  # fmt: skip
    log(f"cosine of the mean of the recovered parts vs the stored cosine: max diff {drift:.2e}")
    lex = {id(p): bm25f(cp, p, TUNED) for cp, p in pools}
    base = {id(p): fuse_cosine(cp, p, p.cos.astype(np.float32), lex[id(p)]) for cp, p in pools}
    same = max(float(np.abs(base[id(p)] - fused(cp, p, TUNED)).max()) for cp, p in pools)
    log(f"re-fused stored cosine vs the tuned fusion: max abs difference {same:.2e}")
    gold = {id(p): labels(cp, p) for cp, p in pools}
    names = [cp.corpus for cp in cps]

    def evaluate(scores: dict) -> dict:
        return evaluate_scores(cps, scores)

    def mrr(scores: dict) -> dict:
        return mrr_scores(cps, gold, scores)

    report: dict = {"coverage": coverage, "window_word_pieces": WINDOW}
    default = evaluate(base)
    report["default"] = {"per_corpus": default, "mean": table(default, sets_in)}
    for family, settings in FAMILIES.items():
        scores = {
            st: {
                id(p): fuse_cosine(cp, p, dense(p, cand[id(p)], family, st), lex[id(p)])
                for cp, p in pools
            }
            for st in settings
        }
        fast = {st: mrr(scores[st]) for st in settings}
        chosen = {
            c: max(settings, key=lambda st, c=c: objective(fast[st], [n for n in names if n != c]))
            for c in names
        }
        full = {st: evaluate(scores[st]) for st in set(chosen.values())}
        loco = {c: full[chosen[c]][c] for c in names}
        report[family] = {
            "chosen_per_fold": {c: f"{st[0]} {st[1]}" for c, st in chosen.items()},
            "objective_on_all": {f"{st[0]} {st[1]}": objective(fast[st], names) for st in settings},
            "mrr_on_all": {
                f"{st[0]} {st[1]}": {
                    s: float(np.mean([fast[st][c][s]["MRR@10"] for c in sets_in[s]])) for s in SETS
                }
                for st in settings
            },
            "loco": {"per_corpus": loco, "mean": table(loco, sets_in)},
        }
    report["failures"] = failures(cps, vecs, base)
    print_report(report, sets_in)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0


COLS = {"doc": ("R@5", "MRR@10"), "questions": ("answer@5", "any@5", "MRR@10")}


def print_report(report: dict, sets_in: dict) -> None:
    rows = {"default": report["default"]} | {f: report[f]["loco"] for f in FAMILIES}
    for s in SETS:
        print(f"\n{s}: " + " ".join(COLS[s]) + f"  (per corpus: {COLS[s][0]})")
        for name, r in rows.items():
            m, pc = r["mean"][s], r["per_corpus"]
            print(f"{name:<8} " + " ".join(f"{m[k]:.3f}" for k in COLS[s]) + "  "
                  + " ".join(f"{c}={pc[c][s][COLS[s][0]]:.3f}" for c in sets_in[s]))  # fmt: skip
    for f in FAMILIES:
        print(f"\n{f}: chosen per fold {report[f]['chosen_per_fold']}")
        print("  objective on all 8: " + ", ".join(
            f"{k}={v:.4f}" for k, v in report[f]["objective_on_all"].items()))  # fmt: skip
    summary = report["failures"]["summary"]
    print(f"\nquestions whose answer the default leaves out of the top 5: {summary}")
    for r in report["failures"]["missed"]:
        print(
            f"  {r['corpus']:<14} {r['kind']:<10} rank {r['rank']} dense {r.get('dense_rank')} "
            f"lex {r.get('lex_rank')} {r.get('answer')} <- top1 {r.get('top1')}: {r['q']}"
        )


if __name__ == "__main__":
    sys.exit(main())
