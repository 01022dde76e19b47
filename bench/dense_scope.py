"""The dense side of a search restricted to repositories, before and after the exact scan of
small scopes, in one run on the same database.

    python -m bench.dense_scope --chunks 100000 --data-dir DIR [--queries 100] [--out FILE]

On the synthetic index of `bench.scale` (same --data-dir and --chunks; its four repositories
hold 55, 25, 15 and 5% of the chunks), one query at a time, *before* (HNSW with the
repository filter and pgvector's iterative scan: `indexer.search.dense.hnsw_ids`) and *after*
(`indexer.search.dense.dense_ids`: an exact scan when the scope holds at most EXACT_SCOPE
chunks) alternate query by query, so the machine's drift hits both:

* the dense side alone for each repository and for all of them, with recall@10 of each side
  against the true nearest chunks (every vector of the scope read into NumPy here, so the
  truth does not depend on either SQL path); each side goes first on every other query (the
  second search of a query finds the pages the first one read cached);
* the whole hybrid search (`indexer.search.search`) restricted to the smallest repository,
  with either dense side.
"""

from __future__ import annotations

import time

import numpy as np

from bench import synthetic
from bench.scale import index_parser, load_average, log, on_loaded_index, on_server, stats
from indexer import search
from indexer.search import DEFAULT_TUNING, dense

DEPTH = DEFAULT_TUNING.depth
K = 10


async def truth(conn, repos: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Ids and vectors of every searchable chunk in scope."""
    rows = await conn.fetch(
        "SELECT id, embedding FROM chunks WHERE embedding IS NOT NULL "
        "AND ($1::int[] IS NULL OR repo_id = ANY($1)) ORDER BY id",
        repos,
    )
    ids = np.array([r["id"] for r in rows])
    vectors = np.stack([r["embedding"].to_numpy() for r in rows])
    return ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def nearest(ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    cos = vectors @ (query / np.linalg.norm(query))
    return {int(i) for i in ids[np.argsort(-cos, kind="stable")[:k]]}


def top(found: dict[int, float], k: int) -> set[int]:
    return set(sorted(found, key=lambda i: (-found[i], i))[:k])


async def side(pool, vectors: list[np.ndarray], repos: list[int] | None) -> dict:
    times: dict[str, list[float]] = {"before": [], "after": []}
    recall: dict[str, list[float]] = {"before": [], "after": []}
    async with pool.acquire() as conn:
        scope = int(await dense.scope_size(conn, repos)) if repos else None
        ids, matrix = await truth(conn, repos)
        for n, v in enumerate(vectors):
            want = nearest(ids, matrix, v, K)
            sides = [("before", dense.hnsw_ids), ("after", dense.dense_ids)]
            # the second search of a query finds its pages cached: each side goes first in turn
            for name, fn in sides if n % 2 == 0 else sides[::-1]:
                started = time.perf_counter()
                found = await fn(conn, v, DEPTH, repos)
                ms = (time.perf_counter() - started) * 1000
                if n >= 5:  # the first five warm up
                    times[name].append(ms)
                recall[name].append(len(top(found, K) & want) / K)
    return {
        "scope_chunks": scope if scope is not None else len(ids),
        "exact_scan": scope is not None and scope <= dense.EXACT_SCOPE,
        **{k: stats(v) for k, v in times.items()},
        **{f"{k}_recall_at_{K}": round(float(np.mean(v)), 4) for k, v in recall.items()},
        "load_average": load_average(),
    }


async def hybrid(pool, embedder, texts: list[str], repos: list[str]) -> dict:
    async def one(q: str) -> None:
        await search.search(pool, embedder, [q], mode="hybrid", repos=repos)

    times: dict[str, list[float]] = {"before": [], "after": []}
    for n, q in enumerate(texts):
        for name in ("before", "after") if n % 2 == 0 else ("after", "before"):
            search.dense_ids = dense.hnsw_ids if name == "before" else dense.dense_ids
            try:
                started = time.perf_counter()
                await one(q)
                ms = (time.perf_counter() - started) * 1000
            finally:
                search.dense_ids = dense.dense_ids
            if n >= 5:
                times[name].append(ms)
    return {**{k: stats(v) for k, v in times.items()}, "load_average": load_average()}


async def measure(url: str, n_queries: int) -> dict:
    bench = await synthetic.open_bench(url)
    codebase, embedder, pool = bench.codebase, bench.embedder, bench.pool
    prose = synthetic.questions(codebase, n_queries)
    vectors = [np.asarray(bench.words.embed(q), dtype=np.float32) for q in prose]
    result: dict = {"exact_scope": dense.EXACT_SCOPE, "depth": DEPTH}
    try:
        async with pool.acquire() as conn:
            repos = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM repos")}
        result["dense_side"] = {}
        for name, _ in reversed(synthetic.REPOS):
            result["dense_side"][name] = await side(pool, vectors, [repos[name]])
            log(f"dense side, {name}: {result['dense_side'][name]}")
        result["dense_side"]["all"] = await side(pool, vectors, None)
        log(f"dense side, all: {result['dense_side']['all']}")
        result["hybrid_search_one_repo"] = await hybrid(pool, embedder, prose, ["plugins"])
        log(f"hybrid search, plugins: {result['hybrid_search_one_repo']}")
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
