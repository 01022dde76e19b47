"""What the lexical statement's two bounds cost and buy: postings read per query word (`REACH`)
and candidates scored exactly (`RESCORE`), on the synthetic index of `bench.scale`.

    python -m bench.lexical_reach --data-dir DIR [--chunks 100000] [--queries 60]
                                  [--configs 4000:200 2000:100 ...] [--exact 40] [--out FILE]

For each query (prose questions and symbol lookups, all repositories and the smallest one) the
dense side and the symbol lookup run once; then the lexical statement runs as a search runs it
(the other sides' candidates as `extra`) once per configuration, in an order that rotates from
query to query, so the machine's drift hits every configuration alike. Per configuration:

* the statement's time, p50 / p95 ms;
* the hybrid result: how many of the 8 results fused from it are those fused from exhaustive
  lexical scores (every chunk holding a query word scored: what the bounds approximate), and
  how often the first result is the same;
* for the first --exact prose questions over all repositories, the agreement of the lexical
  side's own top 10 with exhaustive BM25F (every chunk holding a query word scored).
"""

from __future__ import annotations

import time

from bench import synthetic
from bench.scale import index_parser, log, on_loaded_index, on_server, stats
from indexer.search import DEFAULT_TUNING, fetch_candidates
from indexer.search.dense import dense_ids
from indexer.search.fusion import fuse
from indexer.search.lexical import REACH, RESCORE, lexical_ids, lexical_side
from indexer.search.symbols import symbol_hits

DEPTH = DEFAULT_TUNING.depth
TOP_K = 8  # results a chat gets (the filter's default top_k)
# Every posting of every query word read, every chunk holding one scored exactly: the same
# statement with bounds no index reaches is exhaustive BM25F with today's scoring.
EXHAUSTIVE = {"reach": 10**9, "rescore": 10**9}


def parse_config(text: str) -> tuple[int, int]:
    reach, _, rescore = text.partition(":")
    return int(reach), int(rescore or RESCORE)


def top(scores: dict[int, float], k: int) -> list[int]:
    return sorted(scores, key=lambda i: (-scores[i], i))[:k]


async def fused_top(conn, query, vector, dense, symbols, lex, candidates) -> list[int]:
    ids = dense.keys() | lex.keys() | {h.id for h in symbols}
    if ids - candidates.keys():
        candidates |= await fetch_candidates(conn, list(ids - candidates.keys()), vector)
    return top(fuse(candidates, dense, lex, "hybrid", DEFAULT_TUNING), TOP_K)


async def one_query(conn, embedder, query: str, repos, configs, turn: int) -> dict:
    """For one query: the hybrid top 8 with exhaustive lexical scores (every chunk holding a
    query word scored), and per configuration the statement's ms and its hybrid top 8."""
    vector = (await embedder.embed_queries([query]))[0]
    dense = await dense_ids(conn, vector, DEPTH, repos)
    symbols = await symbol_hits(conn, query, repos)
    extra = sorted(dense.keys() | {h.id for h in symbols})
    side = dict(query=query, vector=vector, depth=DEPTH, repos=repos, tuning=DEFAULT_TUNING)
    out = {}
    order = configs[turn % len(configs) :] + configs[: turn % len(configs)]
    for reach, rescore in order:
        started = time.perf_counter()
        lex, candidates = await lexical_side(
            conn, **side, extra=extra, reach=reach, rescore=rescore
        )
        ms = (time.perf_counter() - started) * 1000
        out[(reach, rescore)] = (
            ms,
            await fused_top(conn, query, vector, dense, symbols, lex, candidates),
        )
    lex, candidates = await lexical_side(conn, **side, extra=extra, **EXHAUSTIVE)
    out["exhaustive"] = (0.0, await fused_top(conn, query, vector, dense, symbols, lex, candidates))
    return out


async def compare(conn, embedder, texts: list[str], repos, configs) -> dict:
    for q in texts[:3]:  # warm up: plans, caches
        await one_query(conn, embedder, q, repos, configs, 0)
    times = {c: [] for c in configs}
    same8 = {c: [] for c in configs}
    same1 = {c: [] for c in configs}
    for turn, q in enumerate(texts):
        got = await one_query(conn, embedder, q, repos, configs, turn)
        truth = got.pop("exhaustive")[1]
        for c, (ms, ids) in got.items():
            times[c].append(ms)
            same8[c].append(len(set(ids) & set(truth)) / max(1, len(truth)))
            same1[c].append(ids[:1] == truth[:1])
    return {
        _name(c): {
            "statement_ms": stats(times[c]),
            "hybrid_top8_as_exhaustive": round(sum(same8[c]) / len(same8[c]), 3),
            "hybrid_first_as_exhaustive": round(sum(same1[c]) / len(same1[c]), 3),
        }
        for c in configs
    }


async def agreement(conn, texts: list[str], configs) -> dict:
    """Top-10 agreement of the lexical side alone with exhaustive BM25F."""
    found = {c: [] for c in configs}
    for q in texts:
        exact = await lexical_ids(
            conn, query=q, depth=DEPTH, repos=None, tuning=DEFAULT_TUNING, **EXHAUSTIVE
        )
        truth = set(top(exact, 10))
        for reach, rescore in configs:
            got = await lexical_ids(
                conn,
                query=q,
                depth=DEPTH,
                repos=None,
                tuning=DEFAULT_TUNING,
                reach=reach,
                rescore=rescore,
            )
            found[(reach, rescore)].append(len(set(top(got, 10)) & truth) / max(1, len(truth)))
    return {_name(c): round(sum(v) / len(v), 3) for c, v in found.items()}


def _name(config: tuple[int, int]) -> str:
    return f"reach {config[0]}, rescore {config[1]}"


async def measure(url: str, n_queries: int, n_exact: int, configs) -> dict:
    bench = await synthetic.open_bench(url)
    codebase, embedder, pool = bench.codebase, bench.embedder, bench.pool
    result: dict = {"configs": [_name(c) for c in configs]}
    try:
        async with pool.acquire() as conn:
            symbols = await synthetic.sample_symbols(conn, n_queries)
            plugins = [await conn.fetchval("SELECT id FROM repos WHERE name = 'plugins'")]
            prose = synthetic.questions(codebase, n_queries)
            queries = {"prose": prose, "symbol": synthetic.symbol_queries(symbols)}
            for scope, repos in (("all_repositories", None), ("one_repository", plugins)):
                for kind, texts in queries.items():
                    key = f"{scope}/{kind}"
                    result[key] = await compare(conn, embedder, texts, repos, configs)
                    log(f"{key}: {result[key]}")
            result["agreement_with_exhaustive_bm25f"] = await agreement(
                conn, prose[:n_exact], configs
            )
            log(f"agreement: {result['agreement_with_exhaustive_bm25f']}")
    finally:
        await pool.close()
    return result


async def run(args, admin_url: str) -> dict:
    configs = [parse_config(c) for c in args.configs]
    return await on_loaded_index(
        args, admin_url, lambda url: measure(url, args.queries, args.exact, configs)
    )


def main() -> None:
    parser = index_parser(queries=60)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=[f"{REACH}:{RESCORE}", "2000:200", "2000:100", "1000:100", "500:100"],
        help="REACH:RESCORE pairs; the first is the reference",
    )
    parser.add_argument("--exact", type=int, default=40, help="questions scored exhaustively")
    on_server(run, parser.parse_args())


if __name__ == "__main__":
    main()
