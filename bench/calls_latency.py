"""What the code around the best hit costs (indexer/search/calls.py) at scale: N synthetic
chunks (bench/synthetic.py, as bench/scale.py loads them), prose questions searched in hybrid
mode, then the neighbours of the best hit looked up in each VICTOR_CALL_CONTEXT mode.

    python -m bench.calls_latency --chunks 100000 [--queries 100] [--data-dir DIR] [--out FILE]

Reports p50/p95 of the lookup alone (one query at a time, after the search, on one
connection) and how many chunks it added. With --data-dir the database is kept and reused,
also by `bench.scale` with the same --chunks.
"""

from __future__ import annotations

import time

from bench import synthetic
from bench.inlet_latency import machine
from bench.scale import (
    database,
    dims_of,
    index_parser,
    load_average,
    log,
    mark_loaded,
    on_server,
    stats,
)
from indexer import search, store
from indexer.config import Settings
from indexer.search.calls import CALL_CONTEXTS, neighbours


async def measure(url: str, n_queries: int) -> dict:
    settings = Settings(database_url=url, embed_model=synthetic.MODEL)
    codebase = synthetic.Codebase()
    embedder = synthetic.InProcessEmbedder(
        synthetic.WordVectors(codebase, await dims_of(url)), settings.embedding_space
    )
    pool = await store.create_pool(settings, max_size=2, apply=False)
    out: dict = {}
    try:
        prose = synthetic.questions(codebase, n_queries)
        found = await search.search(pool, embedder, prose, top_k=8, timeout=60)
        async with pool.acquire() as conn:
            for mode in CALL_CONTEXTS:
                ms, added = [], 0
                for f in found:
                    t0 = time.perf_counter()
                    got = await neighbours(conn, f.results, mode)
                    ms.append((time.perf_counter() - t0) * 1000)
                    added += len(got)
                out[mode] = stats(ms) | {"added_per_query": round(added / len(found), 2)}
                log(f"{mode}: {out[mode]}")
    finally:
        await pool.close()
    return out


async def run(args, admin_url: str) -> dict:
    url, loaded = await database(admin_url, args.chunks)
    result: dict = {"machine": machine(), "chunks": args.chunks, "load": load_average()}
    if not loaded:
        log(f"loading {args.chunks} chunks")
        result["build"] = await synthetic.load_index(url, args.chunks, 384, progress=log)
        await mark_loaded(url, args.chunks)
    result["call_context"] = await measure(url, args.queries)
    result["load_at_end"] = load_average()
    return result


def main() -> None:
    parser = index_parser(queries=100)
    on_server(run, parser.parse_args())


if __name__ == "__main__":
    main()
