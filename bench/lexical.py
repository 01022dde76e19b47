"""The lexical side before and after Victor's own lexical index, in one run on the same database.

    python -m bench.lexical --chunks 100000 --data-dir DIR [--queries 200] [--exact 40]
                            [--out FILE]

On the synthetic index of `bench.scale` (the same --data-dir and --chunks reuse its database;
a database loaded by an older version gets the lexical index on its schema upgrade), one
query at a time, *before* (`bench.lexical_before`: BM25F by unnesting candidates' tsvectors)
and *after* (`indexer.search.lexical`: Victor's lexical index) alternate query by query, so the
machine's drift hits both:

* the lexical side alone, as a search calls it (before: stem the query, then
  score; after: one statement), prose questions and symbol lookups, all repositories and the
  smallest one (5% of the chunks);
* the whole hybrid search (`indexer.search.search`, query embedded in process), with either
  lexical side;
* agreement of each side's top 10 with exhaustive BM25F (every chunk holding a query word
  scored, exact document frequencies) on the first --exact prose questions.
"""

from __future__ import annotations

import time

from bench import lexical_before, synthetic
from bench.scale import index_parser, log, on_loaded_index, on_server, stats
from indexer import search
from indexer.search import DEFAULT_TUNING, lexical

DEPTH = DEFAULT_TUNING.depth


async def before(conn, query: str, repos) -> dict[int, float]:
    lexemes = await lexical.query_lexemes(conn, query)
    return await lexical_before.lexical_ids(conn, lexemes, DEPTH, repos, DEFAULT_TUNING)


async def after(conn, query: str, repos) -> dict[int, float]:
    return await lexical.lexical_ids(
        conn, query=query, depth=DEPTH, repos=repos, tuning=DEFAULT_TUNING
    )


async def _before_side(conn, *, query, depth, repos, tuning, **_) -> tuple[dict, dict]:
    """Stands in for `indexer.search.lexical.lexical_side` inside a search: the old lexical
    side (the search then reads the candidates' fusion fields itself)."""
    lexemes = await lexical.query_lexemes(conn, query)
    return await lexical_before.lexical_ids(conn, lexemes, depth, repos, tuning), {}


async def timed(fn, *args) -> float:
    started = time.perf_counter()
    await fn(*args)
    return (time.perf_counter() - started) * 1000


async def sides(pool, queries: dict[str, list[str]], repos) -> dict:
    out: dict = {}
    async with pool.acquire() as conn:
        for kind, texts in queries.items():
            for q in texts[:5]:  # warm up: plans, caches
                await before(conn, q, repos)
                await after(conn, q, repos)
            times: dict[str, list[float]] = {"before": [], "after": []}
            for q in texts:
                times["before"].append(await timed(before, conn, q, repos))
                times["after"].append(await timed(after, conn, q, repos))
            out[kind] = {k: stats(v) for k, v in times.items()}
            log(f"lexical side, {kind}, repos {repos}: {out[kind]}")
    return out


async def hybrid(pool, embedder, queries: dict[str, list[str]], repos) -> dict:
    async def one(q: str) -> None:
        await search.search(pool, embedder, [q], mode="hybrid", repos=repos)

    out: dict = {}
    for kind, texts in queries.items():
        times: dict[str, list[float]] = {"before": [], "after": []}
        for n, q in enumerate(texts):
            for side in ("before", "after"):
                search.lexical_side = _before_side if side == "before" else lexical.lexical_side
                try:
                    ms = await timed(one, q)
                finally:
                    search.lexical_side = lexical.lexical_side
                if n >= 5:  # the first five warm up
                    times[side].append(ms)
        out[kind] = {k: stats(v) for k, v in times.items()}
        log(f"hybrid search, {kind}, repos {repos}: {out[kind]}")
    return out


def top10(scores: dict[int, float]) -> set[int]:
    return set(sorted(scores, key=lambda i: (-scores[i], i))[:10])


async def agreement(pool, texts: list[str]) -> dict:
    found = {"before": [], "after": []}
    exact_ms = []
    async with pool.acquire() as conn:
        for q in texts:
            lexemes = await lexical.query_lexemes(conn, q)
            t = time.perf_counter()
            exact = await lexical_before.lexical_ids(
                conn, lexemes, DEPTH, None, DEFAULT_TUNING, bound=None
            )
            exact_ms.append((time.perf_counter() - t) * 1000)
            truth = top10(exact)
            for side, fn in (("before", before), ("after", after)):
                got = top10(await fn(conn, q, None))
                found[side].append(len(got & truth) / max(1, len(truth)))
    return {
        "queries": len(texts),
        **{f"{k}_top10_agreement": round(sum(v) / len(v), 3) for k, v in found.items()},
        "exhaustive_ms": stats(exact_ms),
    }


async def measure(url: str, n_queries: int, n_exact: int) -> dict:
    bench = await synthetic.open_bench(url)
    codebase, embedder, pool = bench.codebase, bench.embedder, bench.pool
    try:
        async with pool.acquire() as conn:
            symbols = await synthetic.sample_symbols(conn, n_queries)
            plugins = [await conn.fetchval("SELECT id FROM repos WHERE name = 'plugins'")]
            result: dict = {"chunks": await conn.fetchval("SELECT count(*) FROM chunks")}
            result["postings"] = await conn.fetchval("SELECT count(*) FROM lex_postings")
            result["lexical_index_mb"] = round(
                await conn.fetchval(
                    "SELECT sum(pg_total_relation_size(t)) FROM unnest("
                    "'{lex_postings,lex_terms,lex_stats}'::regclass[]) t"
                )
                / 2**20
            )
        prose = synthetic.questions(codebase, n_queries)
        queries = {"prose": prose, "symbol": synthetic.symbol_queries(symbols)}
        half = {"prose": prose[: n_queries // 2]}
        result["lexical_side"] = await sides(pool, queries, None)
        result["lexical_side_one_repo"] = await sides(pool, half, plugins)
        result["hybrid_search"] = await hybrid(pool, embedder, queries, None)
        result["hybrid_search_one_repo"] = await hybrid(pool, embedder, half, ["plugins"])
        result["agreement_with_exhaustive_bm25f"] = await agreement(pool, prose[:n_exact])
        log(f"agreement: {result['agreement_with_exhaustive_bm25f']}")
    finally:
        await pool.close()
    return result


async def run(args, admin_url: str) -> dict:
    return await on_loaded_index(
        args,
        admin_url,
        lambda url: measure(url, args.queries, args.exact),
        reach=lexical.REACH,
        rescore=lexical.RESCORE,
    )


def main() -> None:
    parser = index_parser(queries=200)
    parser.add_argument("--exact", type=int, default=40, help="questions scored exhaustively")
    on_server(run, parser.parse_args())


if __name__ == "__main__":
    main()
