"""The "Lua Codebase" filter under concurrent chats, in the real Pipelines server.

    python -m bench.inlet_load [--chunks 100000] [--concurrency 20] [--seconds 60]
                               [--think SECONDS] [--embedder words|minilm] [--data-dir DIR]
                               [--valve KEY=VALUE] [--out FILE]

`concurrency` clients post the body Open WebUI sends (toggle on) to the filter's inlet, each
as soon as its previous answer came, for `seconds` (with `--think`, after a pause of that
mean, as people chatting do: the answer streams, they read it and type). Questions vary:
prose questions made of the index's words and symbol lookups of functions that are in it
(bench/synthetic.py). The index: N synthetic chunks (lexical fields filled by Victor's code,
384-dim structured vectors) in a real PostgreSQL 18 + pgvector; with --data-dir it is kept and
reused (the same database as `bench.scale --data-dir` for the same N).

The query embedding comes from a stand-in Ollama: `words` answers at once with the synthetic
word vectors (so the figures are the filter, its pool and the database), `minilm` runs the
real all-MiniLM-L6-v2 on this CPU (tests/support/ollama_server.py), to show what embedding on
the same two cores costs. The stand-in's share is reported separately: its own service time
and its round trip as seen by a probe during the load.

Sampled during the run: the filter's asyncpg pool (size, connections in use; a probe
pipeline in the same server reads `pool.get_size()` / `get_idle_size()` every 0.2 s),
the connections PostgreSQL sees for the database (pg_stat_activity), and the RSS of the
Pipelines server every second (start, end, max and the slope of a least-squares line).

CPU per request: the CPU time (user + system) the Pipelines server, PostgreSQL (the postmaster,
its backends, live and exited) and this process (the clients and the embedding stand-in) used
during the measured window, divided by the requests answered. Less sensitive to what else
runs on the machine than latency: with 20 closed-loop clients on two cores, latency is about
20 / throughput, and throughput about the cores' share this work gets / its CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import psutil

from bench import synthetic
from bench.inlet_latency import emit, machine, pct
from bench.scale import database, load_average, mark_loaded
from tests.plugins import inlet_request

ROOT = Path(__file__).resolve().parent.parent
FILTER = ROOT / "pipelines" / "lua_codebase.py"

PROBE = '''"""
title: Pool probe (benchmark only)
"""

import sys

from pydantic import BaseModel


class Pipeline:
    class Valves(BaseModel):
        pipelines: list[str] = ["*"]
        priority: int = 0

    def __init__(self):
        self.type = "filter"
        self.name = "Pool probe"
        self.valves = self.Valves()

    async def inlet(self, body: dict, user: dict | None = None) -> dict:
        """The filter's pool, read in the Pipelines server's own process."""
        modules = sys.modules["main"].PIPELINE_MODULES
        victor = getattr(modules["lua_codebase"], "victor", None)
        if victor is None:
            return {"size": 0, "idle": 0, "max": 0}
        pool = victor.pool
        return {"size": pool.get_size(), "idle": pool.get_idle_size(), "max": pool.get_max_size()}
'''


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message} (load {load_average()})", file=sys.stderr)


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    t, y = np.array(points).T
    return float(np.polyfit(t, y, 1)[0] * 60)


def rss_by_minute(points: list[tuple[float, float]]) -> list[float]:
    """The RSS sampled nearest each whole minute of the run (the first sample first)."""
    marks = range(0, int(points[-1][0] // 60) + 1) if points else ()
    return [round(min(points, key=lambda p: abs(p[0] - 60 * m))[1], 1) for m in marks]


class Run:
    """What the clients and samplers collect during the load."""

    def __init__(self):
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.errors: list[str] = []
        self.sources: list[int] = []
        self.retrieval_ms: list[float] = []
        self.pool: list[dict] = []
        self.connections: list[int] = []
        self.rss: list[tuple[float, float]] = []
        self.embed_ms: list[float] = []
        self.cpu_s: dict[str, float] = {}  # CPU seconds used during the measured window


def cpu_seconds(process: psutil.Process, *, children: bool) -> float:
    """User + system CPU seconds of a process; with `children`, also of its children, live
    (read now) and exited (reaped, accounted to the parent)."""
    times = process.cpu_times()
    total = times.user + times.system
    if children:
        total += times.children_user + times.children_system
        for child in process.children(recursive=True):
            try:
                t = child.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


def cpu_now(server_pid: int, postmaster_pid: int | None) -> dict[str, float]:
    out = {
        "pipelines_server": cpu_seconds(psutil.Process(server_pid), children=True),
        "bench_process": cpu_seconds(psutil.Process(), children=False),
    }
    if postmaster_pid is not None:
        out["postgresql"] = cpu_seconds(psutil.Process(postmaster_pid), children=True)
    return out


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def client(http, url, queries, deadline, run: Run, seed: int, think: float = 0.0) -> None:
    """Post chat bodies until `deadline`: back to back, or after a pause drawn from an
    exponential distribution of mean `think` seconds (a person reading the answer, typing)."""
    rng = random.Random(seed)
    while time.perf_counter() < deadline:
        if think:
            await asyncio.sleep(min(rng.expovariate(1 / think), deadline - time.perf_counter()))
            if time.perf_counter() >= deadline:
                break
        request = inlet_request(rng.choice(queries))
        started = time.perf_counter()
        try:
            answer = await http.post(f"{url}/lua_codebase/filter/inlet", json=request)
            ms = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                run.errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
                continue
            info = answer.json().get("metadata", {}).get("lua_codebase") or {}
        except httpx.HTTPError as exc:
            run.errors.append(f"{exc.__class__.__name__}: {exc}")
            continue
        run.latencies.append(ms)
        run.statuses[info.get("status", "none")] += 1
        if info.get("status") in ("unavailable", "degraded"):
            run.errors.append(info.get("message", ""))
        run.sources.append(len(info.get("sources") or []))
        run.retrieval_ms.append(float(info.get("elapsed_ms", 0)))


async def sample_pool(http, url, deadline, run: Run) -> None:
    while time.perf_counter() < deadline:
        answer = await http.post(f"{url}/pool_probe/filter/inlet", json={"body": {}, "user": {}})
        stats = answer.json()
        run.pool.append({**stats, "in_use": stats["size"] - stats["idle"]})
        await asyncio.sleep(0.2)


async def sample_connections(db_url: str, deadline, run: Run) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        while time.perf_counter() < deadline:
            run.connections.append(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def sample_rss(pid: int, deadline, run: Run) -> None:
    process = psutil.Process(pid)
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        rss = process.memory_info().rss + sum(
            c.memory_info().rss for c in process.children(recursive=True)
        )
        run.rss.append((time.perf_counter() - started, rss / 2**20))
        await asyncio.sleep(1.0)


async def sample_embedding(http, embed_url: str, model: str, deadline, run: Run) -> None:
    """The stand-in's round trip during the load, as one more client sees it."""
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        answer = await http.post(
            f"{embed_url}/api/embed", json={"model": model, "input": ["how is the cart saved"]}
        )
        answer.raise_for_status()
        run.embed_ms.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.5)


async def load(server, db_url, embed_url, model, queries, args, pg_pid=None) -> Run:
    run = Run()
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        # warm up: the pool opens, plans are cached, the lexical index is loaded into memory
        warm = time.perf_counter() + args.warmup
        await asyncio.gather(
            *(client(http, server.url, queries, warm, Run(), n) for n in range(args.concurrency))
        )
        deadline = time.perf_counter() + args.seconds
        cpu_start = cpu_now(server.proc.popen.pid, pg_pid)
        await asyncio.gather(
            *(
                client(http, server.url, queries, deadline, run, n, args.think)
                for n in range(args.concurrency)
            ),
            sample_pool(http, server.url, deadline, run),
            sample_connections(db_url, deadline, run),
            sample_rss(server.proc.popen.pid, deadline, run),
            sample_embedding(http, embed_url, model, deadline, run),
        )
        cpu_end = cpu_now(server.proc.popen.pid, pg_pid)
        run.cpu_s = {k: cpu_end[k] - cpu_start[k] for k in cpu_start}
    return run


def report(run: Run, args, service_ms: list[float]) -> dict:
    ms = run.latencies
    in_use = [p["in_use"] for p in run.pool]
    pool_max = max((p["max"] for p in run.pool), default=0)
    rss = [r for _, r in run.rss]
    embed_p50 = pct(run.embed_ms, 50) if run.embed_ms else 0.0
    return {
        "requests": len(ms),
        "per_second": round(len(ms) / args.seconds, 1),
        "latency_ms": {
            "p50": round(pct(ms, 50), 1),
            "p95": round(pct(ms, 95), 1),
            "p99": round(pct(ms, 99), 1),
            "max": round(max(ms), 1),
        },
        "retrieval_in_filter_ms": {
            "p50": round(pct(run.retrieval_ms, 50), 1),
            "p95": round(pct(run.retrieval_ms, 95), 1),
        },
        "cpu_ms_per_request": {
            k: round(v * 1000 / max(len(ms), 1), 2) for k, v in run.cpu_s.items()
        },
        "cpu_share_of_all_cores": {
            k: round(v / args.seconds / (psutil.cpu_count() or 1), 3) for k, v in run.cpu_s.items()
        },
        "statuses": dict(run.statuses),
        "errors": len(run.errors),
        "error_examples": sorted(set(run.errors))[:5],
        "sources_p50": pct(run.sources, 50) if run.sources else 0,
        "pool": {
            "max_size": pool_max,
            "max_in_use": max(in_use, default=0),
            "mean_in_use": round(float(np.mean(in_use)), 2) if in_use else 0,
            "share_of_samples_all_in_use": round(
                sum(1 for n in in_use if n >= pool_max) / max(len(in_use), 1), 3
            ),
            "samples": len(in_use),
            "postgres_connections_max": max(run.connections, default=0),
        },
        "rss_mb": {
            "start": round(rss[0], 1),
            "end": round(rss[-1], 1),
            "max": round(max(rss), 1),
            "slope_mb_per_min": round(slope_per_minute(run.rss), 2),
            # a leak keeps its slope; a warming cache (pools, statement caches) flattens out
            "slope_mb_per_min_second_half": round(
                slope_per_minute([p for p in run.rss if p[0] >= run.rss[-1][0] / 2]), 2
            ),
            "at_each_minute": rss_by_minute(run.rss),
            "samples": len(rss),
        },
        "embedding_stand_in": {
            "service_ms_p50": round(pct(service_ms, 50), 2) if service_ms else None,
            "round_trip_under_load_ms_p50": round(embed_p50, 1),
            "round_trip_under_load_ms_p95": round(pct(run.embed_ms, 95), 1),
            "share_of_p50_latency": round(embed_p50 / pct(ms, 50), 3) if ms else None,
        },
    }


async def prepare(admin_url: str, args) -> tuple[str, list[str]]:
    url, loaded = await database(admin_url, args.chunks)
    if not loaded:
        log(f"loading {args.chunks} chunks")
        timings = await synthetic.load_index(url, args.chunks, 384, progress=log)
        await mark_loaded(url, args.chunks)
        log(f"loaded: {timings}")
    conn = await asyncpg.connect(url)
    try:
        symbols = await synthetic.sample_symbols(conn, 100)
    finally:
        await conn.close()
    codebase = synthetic.Codebase()
    queries = synthetic.questions(codebase, 200) + synthetic.symbol_queries(symbols)
    return url, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--warmup",
        type=float,
        default=20,
        help="seconds of chats before the measured ones (5 before the lexical index in memory)",
    )
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean pause in seconds between a chat's answer and its next message "
        "(exponential; default 0: back to back, the saturating load)",
    )
    parser.add_argument("--embedder", choices=["words", "minilm"], default="words")
    parser.add_argument("--data-dir", type=Path, help="keep the database here (reused later)")
    parser.add_argument("--valve", action="append", default=[], help="KEY=VALUE (JSON value)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import pgserver

    from tests.support.ollama_server import FakeOllama
    from tests.support.pipelines import start_pipelines

    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="victor-load-"))
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="victor-load-run-"))
    pg_server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
    embed = server = None
    try:
        db_url, queries = asyncio.run(prepare(pg_server.get_uri(), args))
        if args.embedder == "words":
            codebase = synthetic.Codebase()
            embed = synthetic.WordVectorOllama(synthetic.WordVectors(codebase, 384))
            model = synthetic.MODEL
        else:
            embed = FakeOllama(("bench-embed",)).start()
            model = "bench-embed"
        probe = run_dir / "pool_probe.py"
        probe.write_text(PROBE)
        valves = {"database_url": db_url, "ollama_host": embed.url, "embed_model": model}
        for item in args.valve:
            key, value = item.split("=", 1)
            valves[key] = json.loads(value)
        server = start_pipelines(run_dir, [FILTER, probe], valves={"lua_codebase": valves})
        before = load_average()
        log(
            f"{args.concurrency} clients for {args.seconds:g} s, think {args.think:g} s,"
            f" embedder {args.embedder}"
        )
        pg_pid = postmaster_pid(folder / "pgdata")
        run = asyncio.run(load(server, db_url, embed.url, model, queries, args, pg_pid))
        result = {
            "machine": machine(),
            "load_average_before": before,
            "load_average_after": load_average(),
            "chunks": args.chunks,
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "think_seconds": args.think,
            "embedder": args.embedder,
            "valves": {k: v for k, v in valves.items() if k != "database_url"},
            "queries": {"distinct": len(queries), "examples": queries[:3] + queries[-3:]},
            **report(run, args, getattr(embed, "service_ms", [])),
        }
    finally:
        if server is not None:
            server.stop()
        if embed is not None:
            embed.stop()
        pg_server.cleanup()
        shutil.rmtree(run_dir, ignore_errors=True)
        if args.data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
