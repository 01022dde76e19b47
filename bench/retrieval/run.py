"""Run the retrieval benchmark on one corpus: every system on the same held-out copy, one run.

    python -m bench.retrieval.run ../shared/corpora/penlight --out results.json
    python -m bench.retrieval.run CORPUS --systems owui-dense bm25 rrf victor-hybrid

Two query sets (bench/retrieval/queries.py): doc-comment -> function (the method of
docs/retrieval-eval.md) and symbol lookup (a function's name -> its definition, read R@1).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.retrieval import baselines, victor  # noqa: F401  (they register their systems)
from bench.retrieval.heldout import write_heldout
from bench.retrieval.metrics import first_hit_rank, score
from bench.retrieval.queries import doc_candidates, lua_files, sample, symbol_candidates
from bench.retrieval.systems import SYSTEMS, Context

DEFAULT_SYSTEMS = [
    "owui-dense",
    "bm25",
    "rrf",
    "function-dense",
    "victor-dense",
    "victor-lexical",
    "victor-hybrid",
]
K = 10
COLUMNS = ("n", "R@1", "R@5", "R@10", "MRR@10", "ctx_chars@5")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def format_table(title: str, rows: dict[str, dict]) -> str:
    """Plain-text table: one row per system, metrics as in COLUMNS plus timings."""
    head = f"{'system':<20}" + "".join(f"{c:>12}" for c in COLUMNS) + f"{'index s':>10}"
    lines = [title, head, "-" * len(head)]
    for name, r in rows.items():
        m = r["metrics"]
        cells = [f"{m.get(c, 0):>12.3f}" if c != "n" else f"{m['n']:>12d}" for c in COLUMNS[:-1]]
        cells.append(f"{m.get('ctx_chars@5', 0):>12.0f}")
        lines.append(f"{name:<20}" + "".join(cells) + f"{r['index_seconds']:>10.1f}")
    return "\n".join(lines)


def run(corpus: Path, systems: list[str], max_queries: int, seed: int) -> dict:
    """Build the query sets and the held-out copy, index and query every system, score."""
    t_start = time.perf_counter()
    candidates = {"doc": doc_candidates(corpus), "symbol": symbol_candidates(corpus, seed)}
    sets = {name: sample(qs, max_queries, seed) for name, qs in candidates.items()}
    log(
        f"{corpus}: {len(lua_files(corpus))} Lua files; "
        + ", ".join(f"{n} queries {len(sets[n])} (of {len(c)})" for n, c in candidates.items())
    )
    ctx = Context()
    results: dict[str, dict] = {}
    not_run: dict[str, str] = {}
    ranks: dict[str, dict[str, list]] = {name: {} for name in sets}
    with tempfile.TemporaryDirectory(prefix="bench-heldout-") as tmp:
        heldout = write_heldout(corpus, sets["doc"], Path(tmp) / corpus.name)
        for name in systems:
            system = SYSTEMS[name](ctx)
            try:
                log(f"[{name}] indexing ...")
                t0 = time.perf_counter()
                system.index(heldout)
                index_s = time.perf_counter() - t0
                entry = {"index_seconds": index_s, "embed_seconds": system.embed_seconds}
                log(f"[{name}] indexed in {index_s:.1f}s (embedding {system.embed_seconds:.1f}s)")
                for set_name, queries in sets.items():
                    t0 = time.perf_counter()
                    hits = system.search_batch([q.text for q in queries], K) if queries else []
                    entry[f"{set_name}_search_seconds"] = time.perf_counter() - t0
                    entry[set_name] = score(hits, queries)
                    ranks[set_name][name] = [
                        first_hit_rank(h, q) for h, q in zip(hits, queries, strict=True)
                    ]
            except NotImplementedError as e:
                not_run[name] = str(e)
                log(f"[{name}] NOT RUN: {e}")
                continue
            results[name] = entry
    return {
        "corpus": str(corpus),
        "seed": seed,
        "max_queries": max_queries,
        "k": K,
        "model": "all-MiniLM-L6-v2",
        "candidates": {name: len(qs) for name, qs in candidates.items()},
        "results": results,
        "not_run": not_run,
        # Systems share one embedding cache: a system whose chunks were already embedded by an
        # earlier one (rrf after owui-dense) reports ~0 embed_seconds.
        "embedding_seconds_total": ctx.embedder.seconds,
        "wall_seconds": time.perf_counter() - t_start,
        "queries": {
            set_name: [
                {**asdict(q), "first_hit_rank": {s: ranks[set_name][s][i] for s in ranks[set_name]}}
                for i, q in enumerate(queries)
            ]
            for set_name, queries in sets.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.retrieval.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("corpus", type=Path, help="corpus directory (e.g. ../shared/corpora/penlight)")
    ap.add_argument("--max-queries", type=int, default=300, help="per query set (default 300)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    ap.add_argument(
        "--systems",
        nargs="+",
        default=DEFAULT_SYSTEMS,
        choices=sorted(SYSTEMS),
        metavar="NAME",
        help=f"default: {' '.join(DEFAULT_SYSTEMS)}; available: {', '.join(sorted(SYSTEMS))}",
    )
    ap.add_argument("--out", type=Path, help="write the full results (per query) as JSON")
    args = ap.parse_args(argv)
    corpus = args.corpus.resolve()
    if not corpus.is_dir() or not lua_files(corpus):
        ap.error(f"{args.corpus}: not a directory with .lua files")
    if args.max_queries < 1:
        ap.error("--max-queries must be at least 1")

    report = run(corpus, args.systems, args.max_queries, args.seed)
    for set_name, title in (("doc", "doc comment -> function"), ("symbol", "symbol lookup")):
        if not report["queries"][set_name]:
            print(f"\n{corpus.name}: {title}: no queries (nothing qualifies in this corpus)")
            continue
        rows = {
            name: {"metrics": r[set_name], "index_seconds": r["index_seconds"]}
            for name, r in report["results"].items()
        }
        print(format_table(f"\n{corpus.name}: {title}", rows))
    for name, msg in report["not_run"].items():
        print(f"NOT RUN {name}: {msg}")
    print(
        f"\nembedding {report['embedding_seconds_total']:.1f}s, wall {report['wall_seconds']:.1f}s"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")
    return 2 if report["not_run"] else 0


if __name__ == "__main__":
    sys.exit(main())
