"""Run the retrieval benchmark over one or many corpora: every system on the same copies, one run,
figures per corpus and as the mean over corpora (each corpus counts once, whatever its size).

    python -m bench.retrieval.run --corpora /path/to/dev-corpora --shared ../shared/corpora \\
        --out bench/results/dev.json
    python -m bench.retrieval.run ../shared/corpora/penlight --systems bm25 victor-hybrid

Three query sets per corpus:
* doc   doc comment -> function (docs/retrieval-eval.md), on a held-out copy without the
        targets' doc comments;
* symbol  a function's name -> its definition (read R@1), on the same copy;
* questions  hand-written developer questions (questions/<corpus>.toml, questions.py), on the
        corpus as it is, scored on the answer function, any gold, and what the chat's context
        block would really contain (the filter's defaults: metrics.CONTEXT_TOP_K results,
        CONTEXT_MIN_SCORE, CONTEXT_TOKENS).

--corpora (or $VICTOR_DEV_CORPORA) is a folder of unpacked corpora; the ones listed in
dev-corpora.tsv (next to --shared, or --list) are used, each under its repository's name.
Embeddings are cached on disk (cache.py): a re-run embeds only texts it has not seen.
VICTOR_BENCH_COSINE_SCALE and VICTOR_BENCH_COSINE_MAP run Victor's systems with a model on
another cosine scale (victor.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from statistics import mean

from bench.retrieval import baselines, victor  # noqa: F401  (they register their systems)
from bench.retrieval.cache import VectorCache
from bench.retrieval.heldout import write_heldout
from bench.retrieval.metrics import (
    CONTEXT_MIN_SCORE,
    CONTEXT_TOKENS,
    CONTEXT_TOP_K,
    context_score,
    contexts_score,
    gold_ranks,
    question_score,
    score,
)
from bench.retrieval.queries import doc_candidates, lua_files, sample, symbol_candidates
from bench.retrieval.questions import load as load_questions
from bench.retrieval.systems import SYSTEMS, Context, Embedder

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
SETS = ("doc", "symbol", "questions")
# Systems whose scores are cosines or Victor's 0-1 scores: the filter's min_score applies.
# BM25 and RRF scores are on other scales, so their context gets no floor (kinder to them).
FLOORED = ("victor-", "owui-dense", "function-dense")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def floor_of(system: str) -> float | None:
    return CONTEXT_MIN_SCORE if system.startswith(FLOORED) else None


def evaluate(system: str, set_name: str, hits: list, queries: list) -> dict:
    """The figures of one system on one query set (hits: its results per query, at least
    the top K for the ranking figures and the filter's top_k for the context's)."""
    top = [h[:K] for h in hits]
    if set_name == "symbol":
        return score(top, queries)
    base = score(top, queries) if set_name == "doc" else question_score(top, queries)
    return base | context_score(hits, queries, floor_of(system))


def victor_contexts(
    system, queries: list, calls: list[str], tops: list[int] = (), budgets: list[int] = ()
) -> dict:
    """A Victor system's context figures from `Victor.assemble` itself (what the filter runs,
    VICTOR_CALL_CONTEXT's default), one set per `calls` variant (`MODE[/FIRST][:SEEDS]`,
    keys suffixed ` calls=MODE[/FIRST]:SEEDS`; FIRST: the side tried first with both), and
    one per top_k in `tops` and token budget in `budgets`, each with the other's default
    (keys suffixed ` top=N`, ` tokens=N`, ` top=N tokens=N`)."""
    out = contexts_score(system.contexts(), queries)
    for top in [CONTEXT_TOP_K, *tops]:
        for tokens in [CONTEXT_TOKENS, *budgets]:
            if (top, tokens) == (CONTEXT_TOP_K, CONTEXT_TOKENS):
                continue
            suffix = (f" top={top}" if top != CONTEXT_TOP_K else "") + (
                f" tokens={tokens}" if tokens != CONTEXT_TOKENS else ""
            )
            blocks = system.contexts(top_k=top, tokens=tokens)
            out |= contexts_score(blocks, queries, suffix)
    for variant in calls:
        mode, _, seeds = variant.partition(":")
        mode, _, first = mode.partition("/")  # both/callers: callers first
        n = int(seeds or 1)
        t0 = time.perf_counter()
        blocks = system.contexts(mode, n, first or "callees")
        ms = (time.perf_counter() - t0) * 1000 / max(len(queries), 1)
        name = variant.partition(":")[0]
        out |= contexts_score(blocks, queries, f" calls={name}:{n}")
        out[f"ctx_ms calls={name}:{n}"] = ms  # assembling one block (a busy, shared VM)
    return out


def run_corpus(
    corpus: Path,
    systems: list[str],
    max_queries: int,
    seed: int,
    make_context,
    questions_dir: Path | None = None,
    only_sets: tuple[str, ...] = SETS,
    calls: list[str] = (),
    tops: list[int] = (),
    budgets: list[int] = (),
) -> dict:
    """Build the query sets and the held-out copy, index and query every system, score.
    Sets not in `only_sets` are neither built into copies nor searched."""
    t_start = time.perf_counter()
    candidates = {"doc": doc_candidates(corpus), "symbol": symbol_candidates(corpus, seed)}
    sets = {name: sample(qs, max_queries, seed) for name, qs in candidates.items()}
    qfile = questions_dir / f"{corpus.name}.toml" if questions_dir else None
    sets["questions"] = load_questions(corpus, qfile)
    candidates["questions"] = len(sets["questions"])
    candidates = {k: v if isinstance(v, int) else len(v) for k, v in candidates.items()}
    sets = {k: (v if k in only_sets else []) for k, v in sets.items()}
    candidates = {k: v for k, v in candidates.items() if k in only_sets}
    log(
        f"{corpus.name}: {len(lua_files(corpus))} Lua files; "
        + ", ".join(f"{n} {len(sets[n])} (of {candidates[n]})" for n in candidates)
    )
    ctx = make_context()
    results: dict[str, dict] = {name: {} for name in systems}
    not_run: dict[str, str] = {}
    ranks: dict[str, dict[str, list]] = {name: {} for name in SETS}
    phases = [("heldout", ("doc", "symbol")), ("original", ("questions",))]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-heldout-") as tmp:
            heldout = write_heldout(corpus, sets["doc"], Path(tmp) / corpus.name)
            built = {name: SYSTEMS[name](ctx) for name in systems}
            for phase, set_names in phases:
                if not any(sets[s] for s in set_names):
                    continue
                for name, system in built.items():
                    if name in not_run:
                        continue
                    entry = results[name]
                    try:
                        t0 = time.perf_counter()
                        system.index(heldout if phase == "heldout" else corpus)
                        entry[f"index_seconds_{phase}"] = time.perf_counter() - t0
                        entry[f"embed_seconds_{phase}"] = system.embed_seconds
                        log(f"[{corpus.name} {name}] indexed {phase} in "
                            f"{entry[f'index_seconds_{phase}']:.1f}s "
                            f"(embedding {system.embed_seconds:.1f}s)")  # fmt: skip
                        for set_name in set_names:
                            queries = sets[set_name]
                            if not queries:
                                continue
                            t0 = time.perf_counter()
                            # deep enough for the filter's context and the top=N ones
                            depth = max([K, CONTEXT_TOP_K, *tops])
                            deep = system.search_batch([q.text for q in queries], depth)
                            hits = [h[:K] for h in deep]
                            entry[f"{set_name}_search_seconds"] = time.perf_counter() - t0
                            entry[set_name] = evaluate(name, set_name, deep, queries)
                            if set_name != "symbol" and hasattr(system, "contexts"):
                                entry[set_name] |= victor_contexts(
                                    system, queries, calls, tops, budgets
                                )
                            ranks[set_name][name] = [
                                gold_ranks(h, q) for h, q in zip(hits, queries, strict=True)
                            ]
                    except NotImplementedError as e:
                        not_run[name] = str(e)
                        log(f"[{name}] NOT RUN: {e}")
    finally:
        victor.release(ctx)
    return {
        "corpus": corpus.name,
        "path": str(corpus),
        "candidates": candidates,
        "results": {n: r for n, r in results.items() if n not in not_run},
        "not_run": not_run,
        "embedding_seconds_total": ctx.embedder.seconds,
        "wall_seconds": time.perf_counter() - t_start,
        "queries": {
            set_name: [
                {**asdict(q), "gold_ranks": {s: ranks[set_name][s][i] for s in ranks[set_name]}}
                for i, q in enumerate(queries)
            ]
            for set_name, queries in sets.items()
        },
    }


MIN_QUERIES = 10  # a corpus enters a set's mean with at least this many queries of it


def summarise(per_corpus: dict[str, dict], systems: list[str]) -> dict:
    """Per set and system: the mean of every metric over the corpora that have at least
    MIN_QUERIES queries of that set (fewer would swing the mean on one or two queries)."""
    out: dict[str, dict] = {}
    for set_name in SETS:
        have = [c for c, r in per_corpus.items() if r["candidates"].get(set_name, 0) >= MIN_QUERIES]
        if not have:
            out[set_name] = {"corpora": [], "systems": {}}
            continue
        table = {}
        for system in systems:
            rows = [per_corpus[c]["results"].get(system, {}).get(set_name) for c in have]
            rows = [r for r in rows if r and r.get("n")]
            if not rows or len(rows) < len(have):
                continue
            keys = dict.fromkeys(k for r in rows for k in r if k != "n" and not k.startswith("n "))
            # a per-kind figure is averaged over the corpora that have questions of that kind
            table[system] = {k: mean(r[k] for r in rows if k in r) for k in keys}
            table[system]["corpora"] = len(rows)
            table[system]["queries"] = sum(r["n"] for r in rows)
        out[set_name] = {"corpora": have, "systems": table}
    return out


COLUMNS = {
    "doc": ("R@1", "R@5", "R@10", "MRR@10", "ctx@answer", "ctx_chars"),
    "symbol": ("R@1", "R@5"),
    "questions": ("answer@5", "any@5", "any@10", "MRR@10", "ctx@answer", "ctx@any", "ctx_chars"),
}


def format_table(title: str, rows: dict[str, dict], columns: tuple[str, ...]) -> str:
    head = f"{'system':<16}" + "".join(f"{c:>11}" for c in columns)
    lines = [title, head, "-" * len(head)]
    for name, m in rows.items():
        cells = [
            f"{m.get(c, 0):>11.0f}" if c.endswith("chars") else f"{m.get(c, 0):>11.3f}"
            for c in columns
        ]
        lines.append(f"{name:<16}" + "".join(cells))
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """The README's tables: per set, the mean over corpora and then each corpus."""
    out = []
    for set_name in SETS:
        block = report["mean"][set_name]
        if not block["systems"]:
            continue
        cols = COLUMNS[set_name]
        head = "| system | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols)
        out.append(f"\n**{set_name}: mean over {len(block['corpora'])} corpora** "
                   f"({', '.join(block['corpora'])})\n\n{head}")  # fmt: skip
        for name, m in block["systems"].items():
            out.append(f"| {name} | " + " | ".join(_cell(c, m) for c in cols) + " |")
        key = cols[0] if set_name != "questions" else "answer@5"
        key = "R@5" if set_name == "doc" else key
        systems = list(block["systems"])
        out.append(f"\n{set_name}, {key} per corpus (n = queries)\n")
        out.append(
            "| corpus | n | " + " | ".join(systems) + " |\n|---|---|" + "---|" * len(systems)
        )
        for c in block["corpora"]:
            res = report["corpora"][c]["results"]
            n = res[systems[0]][set_name]["n"]
            out.append(f"| {c} | {n} | " + " | ".join(
                f"{res[s][set_name][key]:.3f}" for s in systems) + " |")  # fmt: skip
    return "\n".join(out)


def _cell(col: str, m: dict) -> str:
    return f"{m.get(col, 0):,.0f}" if col.endswith("chars") else f"{m.get(col, 0):.3f}"


def merge(files: list[Path]) -> dict:
    """Several runs' summaries as one (a later file's corpus replaces an earlier one's)."""
    per_corpus: dict[str, dict] = {}
    systems: list[str] = []
    first: dict = {}
    for f in files:
        r = json.loads(f.read_text())
        first = first or r
        for name, c in r["corpora"].items():  # set by set: a questions-only run adds its set
            have = per_corpus.setdefault(name, {**c, "results": {}, "candidates": {}})
            have["candidates"].update(c["candidates"])
            for system, res in c["results"].items():
                have["results"].setdefault(system, {}).update(res)
        systems += [s for s in r["systems"] if s not in systems]
    mean_ = summarise(per_corpus, systems)
    return {**first, "systems": systems, "corpora": per_corpus, "mean": mean_,
            "merged_from": [f.name for f in files]}  # fmt: skip


def dev_names(listing: Path) -> list[str]:
    """Repository names (`owner/name` -> `name`) of a dev-corpora.tsv."""
    names = []
    for line in listing.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            names.append(line.split("\t")[0].split("/")[-1])
    return names


def find_corpora(args, ap) -> list[Path]:
    found: list[Path] = [p.resolve() for p in args.corpus]
    corpora_dir = args.corpora or (
        Path(os.environ["VICTOR_DEV_CORPORA"]) if os.environ.get("VICTOR_DEV_CORPORA") else None
    )
    if corpora_dir:
        listing = args.list or (args.shared / "dev-corpora.tsv" if args.shared else None)
        if listing and listing.is_file():
            names = dev_names(listing)
            missing = [n for n in names if not (corpora_dir / n).is_dir()]
            if missing:
                log(f"not unpacked under {corpora_dir} (skipped): {', '.join(missing)}")
            found += [(corpora_dir / n).resolve() for n in names if n not in missing]
        else:
            found += sorted(p.resolve() for p in corpora_dir.iterdir() if p.is_dir())
    if args.shared:
        found += sorted(p.resolve() for p in args.shared.iterdir() if p.is_dir())
    if args.only:
        found = [p for p in found if p.name in args.only]
    found = [p for p in dict.fromkeys(found) if p.is_dir() and lua_files(p)]
    # smallest first: the first figures arrive early, and a stopped run has the most corpora
    found.sort(key=lambda p: sum((p / f).stat().st_size for f in lua_files(p)))
    if not found:
        ap.error("no corpus: give CORPUS directories, --corpora or --shared")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.retrieval.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("corpus", type=Path, nargs="*", help="corpus directories")
    ap.add_argument("--corpora", type=Path, help="folder of dev corpora ($VICTOR_DEV_CORPORA)")
    ap.add_argument("--shared", type=Path, help="folder of the shared corpora (penlight, ...)")
    ap.add_argument("--list", type=Path, help="dev-corpora.tsv (default: the one in --shared)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these corpora")
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
    ap.add_argument("--questions", type=Path, help="question files (default: questions/)")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS, help="query sets")
    ap.add_argument(
        "--calls",
        nargs="+",
        default=[],
        metavar="MODE[:SEEDS]",
        help="Victor systems: also score the context with the code around the best SEEDS hits "
        "(off, callees, callers, both, both/callers = callers first; e.g. both:1 callees:3)",
    )
    ap.add_argument(
        "--context-top-k",
        nargs="+",
        type=int,
        default=[],
        metavar="N",
        help="Victor systems: also score the context built from the top N results (the "
        f"filter's top_k valve; default {CONTEXT_TOP_K})",
    )
    ap.add_argument(
        "--context-tokens",
        nargs="+",
        type=int,
        default=[],
        metavar="N",
        help="Victor systems: also score the context under a budget of N tokens (the "
        f"filter's context_tokens valve; default {CONTEXT_TOKENS}), with each --context-top-k too",
    )
    ap.add_argument("--cache", type=Path, help="embedding cache folder ($VICTOR_BENCH_CACHE)")
    ap.add_argument("--no-cache", action="store_true", help="embed everything again")
    ap.add_argument("--out", type=Path, help="write the summary (per corpus and means) as JSON")
    ap.add_argument("--dump", type=Path, help="write every query's gold ranks to DIR/<corpus>.json")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                    help="combine earlier summaries (no run), print them as Markdown")  # fmt: skip
    args = ap.parse_args(argv)
    if args.merge:
        report = merge(args.merge)
        print(markdown(report))
        if args.out:
            args.out.write_text(json.dumps(report, indent=1))
        return 0
    if args.max_queries < 1:
        ap.error("--max-queries must be at least 1")
    for p in args.corpus:
        if not p.is_dir() or not lua_files(p):
            ap.error(f"{p}: not a directory with .lua files")
    corpora = find_corpora(args, ap)
    qdir = args.questions or Path(__file__).parent / "questions"
    disk = None if args.no_cache else VectorCache(args.cache)
    server = None
    admin_url = None
    if any(s.startswith("victor-") for s in args.systems):
        from tests.support import pg

        folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        server = pg.start_server(folder)  # one server; a fresh database per corpus
        admin_url = server.get_uri()

    def make_context() -> Context:
        return Context(embedder=Embedder(disk=disk), database_url=admin_url)

    t0 = time.perf_counter()
    per_corpus: dict[str, dict] = {}
    report: dict = {}
    for corpus in corpora:
        r = run_corpus(
            corpus,
            args.systems,
            args.max_queries,
            args.seed,
            make_context,
            qdir,
            args.sets,
            args.calls,
            args.context_top_k,
            args.context_tokens,
        )
        queries = r.pop("queries")
        per_corpus[corpus.name] = r
        for set_name in SETS:
            rows = {n: res[set_name] for n, res in r["results"].items() if set_name in res}
            if rows:
                print(format_table(f"\n{corpus.name}: {set_name}", rows, COLUMNS[set_name]))
        print(f"{corpus.name}: wall {r['wall_seconds']:.0f}s, embedding "
              f"{r['embedding_seconds_total']:.0f}s", flush=True)  # fmt: skip
        if args.dump:
            args.dump.mkdir(parents=True, exist_ok=True)
            (args.dump / f"{corpus.name}.json").write_text(json.dumps(queries, indent=0))
        report = {
            "model": "all-MiniLM-L6-v2",
            "cosine_scale": victor.COSINE_SCALE or None,  # VICTOR_BENCH_COSINE_SCALE
            "cosine_map": victor.COSINE_MAP,
            "seed": args.seed,
            "max_queries": args.max_queries,
            "k": K,
            "systems": args.systems,
            "mean": summarise(per_corpus, args.systems),
            "corpora": per_corpus,
            "wall_seconds": time.perf_counter() - t0,
        }
        if args.out:  # after every corpus: a long run that is stopped keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1))
    print("\n==== mean over corpora (each corpus counts once) ====")
    for set_name, block in report["mean"].items():
        if block["systems"]:
            title = f"\nMEAN {set_name} over {len(block['corpora'])}: {', '.join(block['corpora'])}"
            print(format_table(title, block["systems"], COLUMNS[set_name]))
    if disk is not None:
        log(f"embedding cache {disk.path}: {disk.hits} hits, {disk.misses} misses")
    if args.out:
        print(f"wrote {args.out}")
    not_run = any(r["not_run"] for r in per_corpus.values())
    return 2 if not_run else 0


if __name__ == "__main__":
    sys.exit(main())
