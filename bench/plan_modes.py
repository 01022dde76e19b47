"""Every statement a search and its call context run, under a custom and a generic plan.

    python -m bench.plan_modes --data-dir DIR [--chunks 100000] [--queries 20] [--out FILE]

PostgreSQL plans a prepared statement (asyncpg prepares each one, per connection) for the
values of its first five executions, then may keep a generic plan made without them. A
statement whose shape lets either plan go wrong is slow in some chats and not others. Each
statement a search runs (prose questions and symbol lookups, over all repositories and over
the smallest one, then the call context of the best function found) is recorded, then run
with `EXPLAIN (ANALYZE, BUFFERS)` as a prepared statement under `plan_cache_mode`
force_custom_plan and force_generic_plan, the two alternating which goes first. Reported per
statement and plan: execution time p50/p95/max (ms) and the mean of shared buffers touched,
which does not depend on the machine's load: the same buffers, the same plan's work.
"""

from __future__ import annotations

import itertools
import json

import numpy as np

from bench import synthetic
from bench.scale import index_parser, log, on_loaded_index, on_server, pct
from indexer import store
from indexer.search import DEFAULT_TUNING, calls, fetch_results, repo_ids
from indexer.search.dense import dense_ids
from indexer.search.lexical import lexical_side
from indexer.search.symbols import symbol_hits

PLANS = ("force_custom_plan", "force_generic_plan")


class Recorder:
    """A connection that notes each statement it runs, under the current label."""

    def __init__(self, conn) -> None:
        self.conn, self.label, self.seen = conn, "", []

    def __getattr__(self, name):
        return getattr(self.conn, name)

    async def fetch(self, sql, *args, **kw):
        self.seen.append((self.label, sql, args))
        return await self.conn.fetch(sql, *args, **kw)

    async def fetchval(self, sql, *args, **kw):
        self.seen.append((self.label, sql, args))
        return await self.conn.fetchval(sql, *args, **kw)


def literal(value) -> str:
    """A statement argument as SQL text for EXECUTE (its type comes from the statement)."""
    if value is None:
        return "NULL"
    if isinstance(value, np.ndarray):
        return "'[" + ",".join(repr(float(x)) for x in value) + "]'"
    if isinstance(value, list | tuple):
        inner = ",".join(
            '"' + str(x).replace("\\", "\\\\").replace('"', '\\"') + '"' for x in value
        )
        return "'{" + inner.replace("'", "''") + "}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


async def explained(conn, sql: str, args: tuple, plans: str, name: str) -> tuple[float, int]:
    """(execution ms, shared buffers) of one run of `sql` as a prepared statement."""
    await conn.execute(f"SET plan_cache_mode = {plans}")
    await conn.execute(f"PREPARE {name} AS {sql}")
    call = f"{name}({', '.join(literal(a) for a in args)})" if args else name
    try:
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {call}")
    finally:
        await conn.execute(f"DEALLOCATE {name}")
        await conn.execute("RESET plan_cache_mode")
    top = (plan if isinstance(plan, list) else json.loads(plan))[0]
    node = top["Plan"]
    return top["Execution Time"], node.get("Shared Hit Blocks", 0) + node.get(
        "Shared Read Blocks", 0
    )


async def record(rec: Recorder, embedder, query: str, repos: list[int] | None, scope: str):
    """One hybrid search as `indexer.search` runs it, then the best function's call context."""
    vector = (await embedder.embed_queries([query]))[0]
    rec.label = "embedding_space"
    await store.embedding_space(rec)
    rec.label = "repo_ids"
    await repo_ids(rec, ["plugins"] if repos else None)
    rec.label = f"dense, {scope}"
    dense = await dense_ids(rec, vector, DEFAULT_TUNING.depth, repos)
    rec.label = f"symbols, {scope}"
    hits = await symbol_hits(rec, query, repos)
    rec.label = f"lexical, {scope}"
    extra = sorted(dense.keys() | {h.id for h in hits})
    await lexical_side(
        rec, query=query, vector=vector, depth=DEFAULT_TUNING.depth, repos=repos,
        tuning=DEFAULT_TUNING, extra=extra,
    )  # fmt: skip
    top = sorted(dense, key=lambda i: -dense[i])[:8]
    rec.label = "fetch_results"
    rows = await fetch_results(rec, top)
    hit = next((rows[i] for i in top if i in rows and rows[i].kind in ("function", "method")), None)
    if hit is not None:
        rec.label = "callers"
        await calls.callers(rec, hit)
        rec.label = "callees"
        await calls.callees(rec, hit, 6)


async def measure(url: str, n_queries: int) -> dict:
    bench = await synthetic.open_bench(url)
    result: dict = {}
    try:
        async with bench.pool.acquire() as conn:
            symbols = synthetic.symbol_queries(await synthetic.sample_symbols(conn, n_queries))
            queries = synthetic.questions(bench.codebase, n_queries) + symbols
            plugins = [await conn.fetchval("SELECT id FROM repos WHERE name = 'plugins'")]
            rec = Recorder(conn)
            for scope, repos in (("all repositories", None), ("one repository", plugins)):
                for query in queries:
                    await record(rec, bench.embedder, query, repos, scope)
            runs: dict[tuple[str, str], list[tuple[float, int]]] = {}
            names = (f"plan_modes_{n}" for n in itertools.count())
            for n, (label, sql, args) in enumerate(rec.seen):
                if label == "callees" and "symbol_keys" not in sql:
                    label = "callees, their texts"
                for plans in PLANS if n % 2 == 0 else PLANS[::-1]:
                    runs.setdefault((label, plans), []).append(
                        await explained(conn, sql, args, plans, next(names))
                    )
            for (label, plans), got in sorted(runs.items()):
                ms, buffers = [g[0] for g in got], [g[1] for g in got]
                result.setdefault(label, {})[plans] = {
                    "n": len(got),
                    "p50_ms": round(pct(ms, 50), 2),
                    "p95_ms": round(pct(ms, 95), 2),
                    "max_ms": round(max(ms), 2),
                    "buffers_mean": round(sum(buffers) / len(buffers)),
                }
                log(f"{label}, {plans}: {result[label][plans]}")
    finally:
        await bench.pool.close()
    return result


async def run(args, admin_url: str) -> dict:
    return await on_loaded_index(args, admin_url, lambda url: measure(url, args.queries))


def main() -> None:
    on_server(run, index_parser(queries=20).parse_args())


if __name__ == "__main__":
    main()
