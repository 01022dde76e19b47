"""Where one search's time goes, phase by phase, on the synthetic index of `bench.scale`.

    python -m bench.search_phases --data-dir DIR [--chunks 100000] [--queries 100] [--out FILE]

Each phase of `indexer.search.search` is timed on its own, one query at a time, on one
connection, for prose questions and symbol lookups, over all repositories and over the
smallest one (5% of the chunks): the vector-space check, the dense side (HNSW), the symbol
lookup, the lexical side (Victor's lexical index; the same statement scores the other sides'
candidates and reads what fusion needs of them), fusing in Python, and fetching the texts of
the 8 results returned. The query embedding is excluded (it is Ollama's time, not the
index's). Until 676ee24 the lexical phase was the lexical statement alone and "fetch" read
every candidate's row, text included.
"""

from __future__ import annotations

import time

from bench import synthetic
from bench.scale import index_parser, log, on_loaded_index, on_server, stats
from indexer.search import DEFAULT_TUNING, fetch_candidates, fetch_results
from indexer.search.dense import check_space, dense_ids
from indexer.search.fusion import fuse
from indexer.search.lexical import lexical_side
from indexer.search.symbols import symbol_hits

PHASES = ("check_space", "dense", "lexical", "symbols", "fetch", "fuse", "total")
TOP_K = 8  # results returned (the filter's default top_k)


async def phases(conn, embedder, query: str, repos) -> dict[str, float]:
    """Milliseconds per phase of one hybrid search, in the order `search` runs them."""
    times: dict[str, float] = {}
    started = last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        times[name] = (now - last) * 1000
        last = now

    vector = (await embedder.embed_queries([query]))[0]
    last = started = time.perf_counter()  # the embedding is not the index's time
    await check_space(conn, embedder)
    lap("check_space")
    dense = await dense_ids(conn, vector, DEFAULT_TUNING.depth, repos)
    lap("dense")
    symbols = await symbol_hits(conn, query, repos)
    lap("symbols")
    # the lexical statement also scores the other candidates and reads their fusion fields
    lex, candidates = await lexical_side(
        conn,
        query=query,
        vector=vector,
        depth=DEFAULT_TUNING.depth,
        repos=repos,
        tuning=DEFAULT_TUNING,
        extra=sorted(dense.keys() | {h.id for h in symbols}),
    )
    lap("lexical")
    ids = dense.keys() | lex.keys() | {h.id for h in symbols}
    if ids - candidates.keys():  # a query with no word to search for
        candidates |= await fetch_candidates(conn, list(ids - candidates.keys()), vector)
    scores = fuse(candidates, dense, lex, "hybrid", DEFAULT_TUNING)
    lap("fuse")
    await fetch_results(conn, sorted(scores, key=lambda i: -scores[i])[:TOP_K])
    lap("fetch")  # the texts of the results returned
    times["total"] = (time.perf_counter() - started) * 1000
    return times


async def measure(url: str, n_queries: int) -> dict:
    bench = await synthetic.open_bench(url)
    codebase, embedder, pool = bench.codebase, bench.embedder, bench.pool
    result: dict = {}
    try:
        async with pool.acquire() as conn:
            symbols = await synthetic.sample_symbols(conn, n_queries)
            plugins = [await conn.fetchval("SELECT id FROM repos WHERE name = 'plugins'")]
            queries = {"prose": synthetic.questions(codebase, n_queries), "symbol": symbols}
            for scope, repos in (("all_repositories", None), ("one_repository", plugins)):
                for kind, texts in queries.items():
                    for q in texts[:5]:  # warm up: plans, caches
                        await phases(conn, embedder, q, repos)
                    laps: dict[str, list[float]] = {p: [] for p in PHASES}
                    for q in texts:
                        for name, ms in (await phases(conn, embedder, q, repos)).items():
                            laps[name].append(ms)
                    result[f"{scope}/{kind}"] = {p: stats(v) for p, v in laps.items()}
                    log(f"{scope}, {kind}: {result[f'{scope}/{kind}']}")
    finally:
        await pool.close()
    return result


async def run(args, admin_url: str) -> dict:
    return await on_loaded_index(args, admin_url, lambda url: measure(url, args.queries))


def main() -> None:
    parser = index_parser(queries=100)
    on_server(run, parser.parse_args())


if __name__ == "__main__":
    main()
