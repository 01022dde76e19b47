"""The CPU one chat turn costs, in the filter's Python and in PostgreSQL, statement by statement.

    python -m bench.inlet_cpu --data-dir DIR [--chunks 100000] [--requests 300]
                              [--profile FILE] [--settle S] [--out FILE]

The "Lua Codebase" filter runs in this process (its `Pipeline`, as the Pipelines server loads
it, without the server's HTTP), one chat body after another, on the synthetic index of
`bench.scale --data-dir DIR` and the questions of `bench.inlet_load`; the query embedding
comes from the stand-in answering at once with the synthetic word vectors, in a thread of
this process. Reported per request, after a warm-up of 30:
- the CPU time of the thread running the filter (the stand-in's thread left out);
- the CPU time of PostgreSQL (postmaster and backends);
- then, in a second pass over the same requests, how many statements of each kind one turn
  sends (asyncpg's reset of a connection given back to the pool included) and each one's
  backend CPU, read before and after it (from /proc: 10 ms ticks, so only the mean over many
  is meaningful; the reads cost CPU of their own, hence the separate pass).
Sequential, so the figures do not depend on the concurrency; on a loaded machine the wall
times do, the CPU times much less. `--profile FILE` writes a cProfile of the requests, on
the filter thread's CPU clock (the stand-in's thread left out).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import random
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg
import psutil

from bench import synthetic
from bench.inlet_latency import emit, machine
from bench.inlet_load import cpu_seconds, postmaster_pid, prepare
from bench.scale import load_average
from tests.plugins import inlet_request

ROOT = Path(__file__).resolve().parent.parent
FILTER = ROOT / "pipelines" / "lua_codebase.py"
WARM_UP = 30


class Statements:
    """Counts, wall time and backend CPU of every statement sent, by its first words."""

    def __init__(self):
        self.count: Counter = Counter()
        self.wall: Counter = Counter()
        self.cpu: Counter = Counter()
        self._backends: dict[int, psutil.Process] = {}

    def backend_cpu(self, conn) -> float:
        pid = conn.get_server_pid()
        if pid not in self._backends:
            self._backends[pid] = psutil.Process(pid)
        times = self._backends[pid].cpu_times()
        return times.user + times.system

    def wrap(self, method, prefix: str = ""):
        stats = self

        async def timed(conn, query, *args, **kwargs):
            key = prefix + " ".join(query.split())[:72]
            wall, cpu = time.perf_counter(), stats.backend_cpu(conn)
            try:
                return await method(conn, query, *args, **kwargs)
            finally:
                stats.count[key] += 1
                stats.wall[key] += time.perf_counter() - wall
                stats.cpu[key] += stats.backend_cpu(conn) - cpu

        return timed

    def install(self) -> None:
        connection = asyncpg.connection.Connection
        connection._execute = self.wrap(connection._execute)
        connection.execute = self.wrap(connection.execute, "execute: ")

    def clear(self) -> None:
        self.count.clear()
        self.wall.clear()
        self.cpu.clear()

    def report(self, n: int) -> list[dict]:
        return [
            {
                "statement": key,
                "per_request": round(count / n, 2),
                "backend_cpu_ms": round(self.cpu[key] * 1000 / count, 2),
                "wall_ms": round(self.wall[key] * 1000 / count, 2),
            }
            for key, count in self.count.most_common()
        ]


def load_filter():
    spec = importlib.util.spec_from_file_location("lua_codebase", FILTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Pipeline()


async def run(args, admin_url: str, pgdata: Path) -> dict:
    url, queries = await prepare(admin_url, args)
    embed = synthetic.WordVectorOllama(synthetic.WordVectors(synthetic.Codebase(), 384))
    pipeline = load_filter()
    pipeline.valves = pipeline.Valves(
        database_url=url, ollama_host=embed.url, embed_model=synthetic.MODEL
    )
    statements = Statements()
    await pipeline.on_startup()
    try:
        rng = random.Random(1)
        asked = [rng.choice(queries) for _ in range(args.requests + WARM_UP)]
        bodies = [inlet_request(q) for q in asked]  # the filter adds to them: one set per pass
        for request in bodies[:WARM_UP]:
            await pipeline.inlet(request["body"], request["user"])
        await asyncio.sleep(args.settle)  # the lexical index is loaded into memory meanwhile
        postgres = psutil.Process(postmaster_pid(pgdata))
        profile = cProfile.Profile(time.thread_time) if args.profile else None
        statuses: Counter = Counter()
        pg_start, cpu_start = cpu_seconds(postgres, children=True), time.thread_time()
        wall_start = time.perf_counter()
        if profile:
            profile.enable()
        for request in bodies[WARM_UP:]:
            body = await pipeline.inlet(request["body"], request["user"])
            statuses[body["metadata"]["lua_codebase"]["status"]] += 1
        if profile:
            profile.disable()
            profile.dump_stats(args.profile)
        wall = time.perf_counter() - wall_start
        cpu = time.thread_time() - cpu_start
        pg = cpu_seconds(postgres, children=True) - pg_start
        # the same requests again, each statement timed (reading /proc costs CPU of its own)
        statements.install()
        for request in map(inlet_request, asked[WARM_UP:]):
            await pipeline.inlet(request["body"], request["user"])
    finally:
        await pipeline.on_shutdown()
        embed.server.shutdown()
    n = args.requests
    in_statements = sum(statements.cpu.values())
    return {
        "requests": n,
        "statuses": dict(statuses),
        "filter_cpu_ms_per_request": round(cpu * 1000 / n, 2),
        "postgresql_cpu_ms_per_request": round(pg * 1000 / n, 2),
        "postgresql_cpu_in_statements_ms_per_request": round(in_statements * 1000 / n, 2),
        "wall_ms_per_request": round(wall * 1000 / n, 2),
        "statements_per_request": round(sum(statements.count.values()) / n, 2),
        "statements": statements.report(n),
        "embedding_stand_in_service_ms_p50": round(
            sorted(embed.service_ms)[len(embed.service_ms) // 2], 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the requests here")
    parser.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help="seconds to wait after the warm-up, for the filter to load the lexical index "
        "into memory (in the background, on this event loop)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    measure(args, lambda admin_url, pgdata: run(args, admin_url, pgdata))


def measure(args, work, **fields) -> None:
    """Run `work(admin_url, pgdata)` on the index of `args.data_dir` (its embedded server
    started for it, stopped after) and write its report, with the machine, the load average
    before and after, `args.chunks` and `fields`, to `args.out` (stdout without)."""
    import pgserver

    args.data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = args.data_dir / "pgdata"
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    before = load_average()
    try:
        result = asyncio.run(work(server.get_uri(), pgdata))
    finally:
        server.cleanup()
    emit(
        {
            "machine": machine(),
            "load_average_before": before,
            "load_average_after": load_average(),
            "chunks": args.chunks,
            **fields,
            **result,
        },
        args.out,
    )


if __name__ == "__main__":
    sys.exit(main())
