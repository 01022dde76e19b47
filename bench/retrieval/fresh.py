"""Settings named by earlier lever studies, scored unchanged on corpora added after them.

A leave-one-corpus-out study ends with a setting "to retest as corpora are added" (anchors.py:
the setting most folds picked on 9 and 11 corpora; study.py: the fusion knobs the folds drifted
to). Scoring exactly that setting on corpora whose questions were written after it was named is
a held-out test that no fold choice can fit. `--only` picks those corpora from the pools
folder (`study collect`); each candidate is re-scored as in the studies (`stage.fuse_cosine`
with the anchors' BM25F, `study.fused` for a fusion), and every figure is compared with the
tuned fusion (today's core) on the same pools:

    python -m bench.retrieval.fresh --pools P --corpora $VICTOR_DEV_CORPORA ../shared/corpora \\
        --only hump lume lua-resty-core --out bench/results/fresh-3.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from bench.retrieval import anchors, levers
from bench.retrieval.stage import TUNED, evaluate_scores
from bench.retrieval.study import SETS, eligible, fused, table

# Each named where its study's README section names it, before these corpora had questions.
ANCHORS_NAMED = anchors.Setting(
    tests=False, window=1, own=False, strict=True, w_names=2.0, w_lines=0.25, b=0.75, k1=1.2
)
FUSION_NAMED = replace(TUNED, weights=(4.0, 2.0, 1.0, 1.0), b_doc=0.75)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.retrieval.fresh", description=__doc__)
    ap.add_argument("--pools", type=Path, required=True)
    ap.add_argument("--corpora", type=Path, nargs="+", required=True, help="folders of corpora")
    ap.add_argument("--only", nargs="+", required=True, help="the corpora added after the studies")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    cps = [cp for cp in levers.load(args.pools) if cp.corpus in args.only]
    if {cp.corpus for cp in cps} != set(args.only):
        raise SystemExit(f"no pools for {set(args.only) - {cp.corpus for cp in cps}}")
    sets_in = eligible(cps)
    _, _, _, anchored = anchors.scorer(cps, args.corpora)
    pools = [(cp, p) for cp in cps for p in cp.pools]
    answer = {id(p): anchors.answer_labels(cp, p) for cp, p in pools}
    base = {id(p): fused(cp, p, TUNED) for cp, p in pools}
    named = {
        f"anchors {ANCHORS_NAMED.label()}": anchored(ANCHORS_NAMED),
        f"fusion {FUSION_NAMED.label()}": {id(p): fused(cp, p, FUSION_NAMED) for cp, p in pools},
    }
    report = {"corpora": [cp.corpus for cp in cps], "sets_in_mean": sets_in}
    for label, scores in {"tuned fusion (today)": base, **named}.items():
        per = evaluate_scores(cps, scores)
        report[label] = {"per_corpus": per, "mean": table(per, sets_in)}
        if scores is not base:
            report[label]["rank_changes"] = anchors.rank_changes(cps, answer, base, scores)
    print_report(report, sets_in)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0


def print_report(report: dict, sets_in: dict) -> None:
    cols = {"doc": ("R@5", "MRR@10"), "questions": ("answer@5", "any@5", "MRR@10", "ctx@answer")}
    for label, r in report.items():
        if not isinstance(r, dict) or "mean" not in r:
            continue
        print(label)
        for s in SETS:
            if s in r["mean"]:
                m = r["mean"][s]
                per = " ".join(
                    f"{c}={r['per_corpus'][c][s][cols[s][0]]:.3f}/{r['per_corpus'][c][s]['MRR@10']:.3f}"
                    for c in sets_in[s]
                )
                print(f"  {s}: " + " ".join(f"{k} {m[k]:.3f}" for k in cols[s]) + f"  ({per})")
        if "rank_changes" in r:
            for s, ch in r["rank_changes"].items():
                print(f"  {s}: " + " ".join(f"{k} {v}" for k, v in ch.items() if k != "crossings"))


if __name__ == "__main__":
    raise SystemExit(main())
