"""What scoring the dense side's candidates lexically costs, in one run on the same
database.

    python -m bench.rank_latency --chunks 100000 --data-dir DIR [--queries 100] [--out FILE]

On the synthetic index of `bench.scale` (the same --data-dir and --chunks reuse its database),
one query at a time, *without* (the lexical side's own top `depth` only, as before) and
*with* the dense side's candidates scored in the same statement (`lexical_ids(extra=...)`)
alternate query by query (which one runs first alternates too), so the machine's drift and
the caches warmed by the first run of a query hit both alike:

* the lexical statement alone, prose questions and symbol lookups, all repositories, with the
  query's 50 dense candidates as `extra`;
* the whole hybrid search (`indexer.search.search`, query embedded in process).
"""

from __future__ import annotations

from bench import synthetic
from bench.lexical import timed
from bench.scale import index_parser, log, on_loaded_index, on_server, stats
from indexer import search
from indexer.search import DEFAULT_TUNING, dense, lexical

DEPTH = DEFAULT_TUNING.depth
# which side runs first alternates: the second run of a query finds its postings cached
ORDER = (("without", "with"), ("with", "without"))


async def _without_extra(conn, *, extra=(), **kw) -> tuple[dict, dict]:
    """Stands in for `lexical_side` inside a search: the lexical side's own top alone (the
    search then reads the dense candidates' fusion fields in one more statement)."""
    return await lexical.lexical_side(conn, **kw)


async def sides(pool, embedder, queries: dict[str, list[str]]) -> dict:
    out: dict = {}
    async with pool.acquire() as conn:
        for kind, texts in queries.items():
            vectors = await embedder.embed_queries(texts)
            times: dict[str, list[float]] = {"without": [], "with": []}
            for n, (q, v) in enumerate(zip(texts, vectors, strict=True)):
                ids = sorted(await dense.dense_ids(conn, v, DEPTH, None))
                for side in ORDER[n % 2]:
                    extra = ids if side == "with" else ()
                    ms = await timed(_lexical, conn, q, extra)
                    if n >= 5:  # the first five warm up: plans, caches
                        times[side].append(ms)
            out[kind] = summary(times)
            log(f"lexical statement, {kind}: {out[kind]}")
    return out


async def _lexical(conn, query: str, extra) -> None:
    await lexical.lexical_ids(
        conn, query=query, depth=DEPTH, repos=None, tuning=DEFAULT_TUNING, extra=extra
    )


def summary(times: dict[str, list[float]]) -> dict:
    """p50/p95 of each side, and of the per-query difference (with - without): the paired
    figure is steadier than the difference of two percentiles on a loaded machine."""
    added = [w - o for w, o in zip(times["with"], times["without"], strict=True)]
    return {k: stats(v) for k, v in times.items()} | {"added": stats(added)}


async def hybrid(pool, embedder, queries: dict[str, list[str]]) -> dict:
    async def one(q: str) -> None:
        await search.search(pool, embedder, [q], mode="hybrid")

    out: dict = {}
    for kind, texts in queries.items():
        times: dict[str, list[float]] = {"without": [], "with": []}
        for n, q in enumerate(texts):
            for side in ORDER[n % 2]:
                search.lexical_side = _without_extra if side == "without" else lexical.lexical_side
                try:
                    ms = await timed(one, q)
                finally:
                    search.lexical_side = lexical.lexical_side
                if n >= 5:
                    times[side].append(ms)
        out[kind] = summary(times)
        log(f"hybrid search, {kind}: {out[kind]}")
    return out


async def measure(url: str, n_queries: int) -> dict:
    bench = await synthetic.open_bench(url)
    codebase, embedder, pool = bench.codebase, bench.embedder, bench.pool
    try:
        async with pool.acquire() as conn:
            symbols = await synthetic.sample_symbols(conn, n_queries)
            result: dict = {"chunks": await conn.fetchval("SELECT count(*) FROM chunks")}
        queries = {
            "prose": synthetic.questions(codebase, n_queries),
            "symbol": synthetic.symbol_queries(symbols),
        }
        result["lexical_statement"] = await sides(pool, embedder, queries)
        result["hybrid_search"] = await hybrid(pool, embedder, queries)
    finally:
        await pool.close()
    return result


async def run(args, admin_url: str) -> dict:
    return await on_loaded_index(
        args, admin_url, lambda url: measure(url, args.queries), depth=DEPTH
    )


def main() -> None:
    parser = index_parser(queries=100)
    on_server(run, parser.parse_args())


if __name__ == "__main__":
    main()
