"""The dense side of a one-repository search: the global HNSW with the repository filter
against a partial HNSW index of that repository alone, statement by statement.

    python -m bench.repo_hnsw_probe --data-dir DIR --chunks 1000000 [--queries 30] [--repo plugins]

On the synthetic index of `bench.scale`, prose questions restricted to one repository that
has a partial index `chunks_embedding_hnsw_repo<id>` (`WHERE repo_id = <id>`, built
beforehand), three ways:

* `global_filtered`: the statement a search ran before (`BEFORE`: `dense._SCOPED` then; a
  scope above EXACT_SCOPE walks the global graph with pgvector's iterative scan), the
  partial index dropped in a transaction rolled back after;
* `scoped_statement_with_partial`: the same statement, the partial index there;
* `partial_index_literal_id`: the nearest chunks with the repository id as a literal, from
  which the planner can prove the partial index's predicate;
* `dense_ids_statement`: the statement `dense_ids` runs now for that repository.

Each runs as a prepared statement under `plan_cache_mode` force_custom_plan and
force_generic_plan (EXPLAIN ANALYZE, BUFFERS): execution ms, planning ms (a custom plan is
made at each execution), shared buffers touched, the
indexes the plan names; and recall@10 / recall@50 against the true nearest chunks (every
vector of the repository read into NumPy).

With `--wall`: the wall time of the statement before and of `dense_ids`'s, each run as a search
runs it (asyncpg prepares it), alternating query by query, under each `plan_cache_mode`
(nothing dropped: a dropped index would make every cached plan of the connection be made
again).

With `--insert N`: the write side instead, N chunks written into the repository with and
without its own graph (every other index of `chunks` as it is), each write rolled back.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import asyncpg
import numpy as np

from bench import synthetic
from bench.dense_scope import nearest, top, truth
from bench.plan_modes import PLANS, literal
from bench.scale import index_parser, load_average, log, on_loaded_index, on_server, stats
from indexer.search import DEFAULT_TUNING, dense

DEPTH = DEFAULT_TUNING.depth

# `indexer.search.dense._SCOPED` before the per-repository graphs (one repository above
# EXACT_SCOPE: the global graph, `repo_id = ANY($3)`)
BEFORE = """
WITH scope AS MATERIALIZED (
    SELECT coalesce(sum(chunks), 0) <= $4 AS small FROM lex_stats WHERE repo_id = ANY($3)
)
(SELECT c.id, 1 - (c.embedding <=> $1) AS cos
 FROM (SELECT DISTINCT unnest($3::int[])) AS r(repo_id)
 CROSS JOIN LATERAL (
    SELECT id, embedding FROM chunks
    WHERE repo_id = r.repo_id AND embedding IS NOT NULL
    ORDER BY path
    LIMIT 2 * $4
 ) c
 WHERE (SELECT small FROM scope)
 ORDER BY cos DESC, c.id
 LIMIT $2)
UNION ALL
(SELECT id, 1 - (embedding <=> $1) AS cos FROM chunks
 WHERE repo_id = ANY($3) AND embedding IS NOT NULL AND NOT (SELECT small FROM scope)
 ORDER BY embedding <=> $1
 LIMIT $2)
"""


def one_repo(repo_id: int) -> str:
    """The nearest chunks of one repository, its id a literal (an int: safe)."""
    return (
        "SELECT id, 1 - (embedding <=> $1) AS cos FROM chunks "
        f"WHERE repo_id = {int(repo_id)} AND embedding IS NOT NULL "
        "ORDER BY embedding <=> $1 LIMIT $2"
    )


class _Rollback(Exception):
    def __init__(self, result):
        self.result = result


async def hidden(conn, index: str, run):
    """`await run()` with `index` dropped in a transaction rolled back after (what a statement
    did before the index existed)."""
    try:
        async with conn.transaction():
            await conn.execute(f"DROP INDEX IF EXISTS {index}")
            raise _Rollback(await run())
    except _Rollback as done:
        return done.result


async def fetch(conn, sql: str, args: tuple, hide: str | None) -> dict[int, float]:
    if hide:
        return await hidden(conn, hide, lambda: fetch(conn, sql, args, None))
    return {r["id"]: r["cos"] for r in await conn.fetch(sql, *args)}


def indexes(node: dict) -> set[str]:
    found = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans", []):
        found |= indexes(child)
    return found


async def explain(
    conn, sql: str, args: tuple, plans: str, hide: str | None = None
) -> tuple[float, float, int, set[str]]:
    """One EXECUTE of `sql` prepared under `plans`; with `hide`, that index is dropped in a
    transaction rolled back after (the plan as it was before the index existed)."""
    if hide:
        return await hidden(conn, hide, lambda: explain(conn, sql, args, plans))
    await conn.execute(f"SET plan_cache_mode = {plans}")
    await conn.execute(f"PREPARE probe AS {sql}")
    try:
        call = f"probe({', '.join(literal(a) for a in args)})"
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {call}")
    finally:
        await conn.execute("DEALLOCATE probe")
        await conn.execute("RESET plan_cache_mode")
    top_ = (plan if isinstance(plan, list) else json.loads(plan))[0]
    node = top_["Plan"]
    buffers = node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)
    return top_["Execution Time"], top_.get("Planning Time", 0.0), buffers, indexes(node)


async def measure(url: str, n_queries: int, repo: str) -> dict:
    bench = await synthetic.open_bench(url)
    vectors = [
        np.asarray(bench.words.embed(q), dtype=np.float32)
        for q in synthetic.questions(bench.codebase, n_queries)
    ]
    result: dict = {"depth": DEPTH, "repo": repo}
    try:
        async with bench.pool.acquire() as conn:
            repo_id = await conn.fetchval("SELECT id FROM repos WHERE name = $1", repo)
            result["scope_chunks"] = await dense.scope_size(conn, [repo_id])
            ids, matrix = await truth(conn, [repo_id])
            partial = f"chunks_embedding_hnsw_repo{int(repo_id)}"

            def scoped(v):
                return (v, DEPTH, [repo_id], dense.EXACT_SCOPE)

            sides = {  # name: statement, its arguments, the index hidden from it
                "global_filtered": (BEFORE, scoped, partial),
                "scoped_statement_with_partial": (BEFORE, scoped, None),
                "partial_index_literal_id": (one_repo(repo_id), lambda v: (v, DEPTH), None),
                "dense_ids_statement": (dense.scoped_statement((repo_id,)), scoped, None),
            }
            times = {f"{s}/{p}": [] for s in sides for p in PLANS}
            buffers = {k: [] for k in times}
            planning = {k: [] for k in times}
            used = {k: set() for k in times}
            recall = {f"{s}/{k}": [] for s in sides for k in (10, DEPTH)}
            for n, v in enumerate(vectors):
                order = list(sides.items()) if n % 2 == 0 else list(sides.items())[::-1]
                for name, (sql, args, hide) in order:
                    found = await fetch(conn, sql, args(v), hide)
                    for k in (10, DEPTH):
                        want = nearest(ids, matrix, v, k)
                        recall[f"{name}/{k}"].append(len(top(found, k) & want) / k)
                    for plans in PLANS if n % 2 == 0 else PLANS[::-1]:
                        ms, plan_ms, touched, names = await explain(conn, sql, args(v), plans, hide)
                        times[f"{name}/{plans}"].append(ms)
                        planning[f"{name}/{plans}"].append(plan_ms)
                        buffers[f"{name}/{plans}"].append(touched)
                        used[f"{name}/{plans}"] |= names
            result["execution"] = {
                k: {
                    **stats(v),
                    "mean_buffers": round(float(np.mean(buffers[k]))),
                    "planning_p50_ms": round(float(np.median(planning[k])), 3),
                    "indexes": sorted(used[k]),
                }
                for k, v in times.items()
            }
            result["recall"] = {k: round(float(np.mean(v)), 4) for k, v in recall.items()}
            result["load_average"] = load_average()
            log(json.dumps(result, indent=1))
    finally:
        await bench.pool.close()
    return result


# a copy of existing chunks of the repository (same files: the foreign key holds), every
# index of `chunks` updated as an index run's write would
_INSERT = """
INSERT INTO chunks (repo_id, path, symbol, kind, signature, doc, start_line, end_line, part,
                    text, embed_hash, embedding, lex_name, lex_context, lex_doc, lex_body,
                    lex_len, lex_doc_len, defines, symbol_keys, searchable, name_hash)
SELECT repo_id, path, symbol, kind, signature, doc, start_line, end_line, part + 1000,
       text, embed_hash, embedding, lex_name, lex_context, lex_doc, lex_body,
       lex_len, lex_doc_len, defines, symbol_keys, searchable, name_hash
FROM chunks WHERE repo_id = $1 AND embedding IS NOT NULL ORDER BY id LIMIT $2
"""


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) a PostgreSQL backend has used: less noisy than wall time
    on a shared machine (the server runs on this machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def insert_cost(url: str, repo: str, rows: int, rounds: int = 3) -> dict:
    """Seconds (wall, and the backend's CPU) to write `rows` chunks into the repository with
    its own graph and without it (dropped in the same transaction), alternating, each rolled
    back."""
    conn = await asyncpg.connect(url)
    times: dict[str, list[float]] = {"with_own_graph": [], "without": []}
    cpu: dict[str, list[float]] = {"with_own_graph": [], "without": []}
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")  # on this machine: its CPU
        repo_id = await conn.fetchval("SELECT id FROM repos WHERE name = $1", repo)
        partial = f"chunks_embedding_hnsw_repo{int(repo_id)}"
        for n in range(rounds * 2):
            name = ("with_own_graph", "without")[(n + n // 2) % 2]
            tx = conn.transaction()
            await tx.start()
            try:
                if name == "without":
                    await conn.execute(f"DROP INDEX IF EXISTS {partial}")
                started, cpu_before = time.perf_counter(), backend_cpu(backend)
                await conn.execute(_INSERT, repo_id, rows)
                times[name].append(time.perf_counter() - started)
                cpu[name].append(backend_cpu(backend) - cpu_before)
            finally:
                await tx.rollback()
    finally:
        await conn.close()
    result = {"rows": rows, **{k: [round(t, 2) for t in v] for k, v in times.items()}}
    result |= {f"{k}_backend_cpu_s": [round(t, 2) for t in v] for k, v in cpu.items()}
    result["load_average"] = load_average()
    log(json.dumps(result))
    return result


async def wall(url: str, n_queries: int, repo: str) -> dict:
    bench = await synthetic.open_bench(url)
    vectors = [
        np.asarray(bench.words.embed(q), dtype=np.float32)
        for q in synthetic.questions(bench.codebase, n_queries)
    ]
    result: dict = {"repo": repo}
    try:
        async with bench.pool.acquire() as conn:
            repo_id = await conn.fetchval("SELECT id FROM repos WHERE name = $1", repo)
            sides = [("before", BEFORE), ("dense_ids", dense.scoped_statement((repo_id,)))]
            for plans in ("auto", *PLANS):
                await conn.execute(f"SET plan_cache_mode = {plans}")
                times: dict[str, list[float]] = {name: [] for name, _ in sides}
                for n, v in enumerate(vectors):
                    for name, sql in sides if n % 2 == 0 else sides[::-1]:
                        started = time.perf_counter()
                        await conn.fetch(sql, v, DEPTH, [repo_id], dense.EXACT_SCOPE)
                        if n >= 5:
                            times[name].append((time.perf_counter() - started) * 1000)
                result[plans] = {k: stats(t) for k, t in times.items()}
            await conn.execute("RESET plan_cache_mode")
        result["load_average"] = load_average()
        log(json.dumps(result))
    finally:
        await bench.pool.close()
    return result


async def run(args, admin_url: str) -> dict:
    if args.wall:
        return await on_loaded_index(
            args, admin_url, lambda url: wall(url, args.queries, args.repo)
        )
    if args.insert:
        return await on_loaded_index(
            args, admin_url, lambda url: insert_cost(url, args.repo, args.insert)
        )
    return await on_loaded_index(args, admin_url, lambda url: measure(url, args.queries, args.repo))


def main() -> None:
    parser = index_parser(queries=30)
    parser.add_argument("--repo", default="plugins")
    parser.add_argument("--wall", action="store_true", help="instead: wall time, each plan mode")
    parser.add_argument("--insert", type=int, help="instead: time writing this many chunks")
    on_server(run, parser.parse_args())


if __name__ == "__main__":
    main()
