"""Latency the "Lua Codebase" filter adds to a chat, over HTTP, in the real Pipelines server.

    python -m bench.inlet_latency [--sizes 10000 100000] [--dims 768] [--out FILE]

Both the filter and a do-nothing filter run in the same Pipelines server; the benchmark posts
the body Open WebUI sends (tests/fixtures/openwebui/pipeline_inlet_request.json, toggle on) to
each in turn, and reports p50/p95 of both and the difference: the latency the filter adds.

The index is synthetic (bench/synthetic.py): N chunks of Lua-like code with lexical fields and
structured unit vectors, loaded with COPY into a real PostgreSQL 18 + pgvector (pgserver),
indexes built after the load, exactly the schema Victor uses. The query embedding is left out
of the added latency: the filter's Ollama here is a stand-in that answers instantly with
precomputed random unit vectors (its HTTP round trip stays in, so the figure is an upper
bound). The embedding time is measured separately, with Victor's Ollama client against the
Ollama stand-in that runs all-MiniLM-L6-v2 on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import synthetic
from bench.synthetic import MODEL, VectorOllama
from indexer.config import Settings
from indexer.embedding.ollama import OllamaEmbedder

ROOT = Path(__file__).resolve().parent.parent
FILTER = ROOT / "pipelines" / "lua_codebase.py"
BODY = ROOT / "tests" / "fixtures" / "openwebui" / "pipeline_inlet_request.json"

NOOP_FILTER = '''"""
title: No-op filter (benchmark baseline)
"""

from pydantic import BaseModel


class Pipeline:
    class Valves(BaseModel):
        pipelines: list[str] = ["*"]
        priority: int = 0

    def __init__(self):
        self.type = "filter"
        self.name = "No-op"
        self.valves = self.Valves()

    async def inlet(self, body: dict, user: dict | None = None) -> dict:
        return body
'''

QUESTIONS = [
    "Where is the player's inventory saved to disk?",
    "How does the cart compute the total with discounts?",
    "Which function parses the config file?",
    "What happens when a network request times out?",
    "How are sprites loaded and cached?",
    "Where do we validate user input in the menu?",
    "How is the save file versioned and migrated?",
    "Which module handles keyboard shortcuts?",
]


async def load_index(url: str, n: int, dims: int) -> float:
    """Victor's schema, bound to the stand-in's vector space, with n synthetic chunks."""
    timings = await synthetic.load_index(url, n, dims)
    return timings["total_s"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(ms: list[float]) -> dict:
    return {"p50_ms": round(pct(ms, 50), 2), "p95_ms": round(pct(ms, 95), 2)}


def measure(client: httpx.Client, server_url: str, requests: int) -> dict:
    """Alternate no-op and filter requests (so drift hits both); p50/p95 of each."""
    template = json.loads(BODY.read_text())
    noop, lua, inside = [], [], []
    failures = 0
    for i in range(requests):
        request = json.loads(json.dumps(template))
        question = QUESTIONS[i % len(QUESTIONS)]
        request["body"]["messages"][-1]["content"] = question
        for name, times in (("noop_filter", noop), ("lua_codebase", lua)):
            started = time.perf_counter()
            response = client.post(f"{server_url}/{name}/filter/inlet", json=request)
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
        info = response.json()["metadata"].get("lua_codebase") or {}
        if info.get("status") != "ok" or not info.get("sources"):
            failures += 1
        inside.append(float(info.get("elapsed_ms", 0)))
    noop_s, lua_s = summary(noop), summary(lua)
    return {
        "requests": requests,
        "not_ok": failures,
        "noop_filter": noop_s,
        "lua_codebase": lua_s,
        "added": {k: round(lua_s[k] - noop_s[k], 2) for k in ("p50_ms", "p95_ms")},
        "retrieval_in_filter": summary(inside),  # as the filter measured it (ms, rounded)
    }


async def embedding_times(ollama_url: str, queries: int) -> dict:
    """The query embedding alone: Victor's Ollama client, all-MiniLM-L6-v2 on this CPU."""
    settings = Settings(ollama_host=ollama_url, embed_model="all-minilm", embed_retries=0)
    embedder = OllamaEmbedder(settings)
    try:
        await embedder.embed_query("warm up")
        times = []
        for i in range(queries):
            started = time.perf_counter()
            await embedder.embed_query(QUESTIONS[i % len(QUESTIONS)])
            times.append((time.perf_counter() - started) * 1000)
    finally:
        await embedder.close()
    return {"model": "all-MiniLM-L6-v2 (CPU, via the Ollama API stand-in)", **summary(times)}


def stand_in_round_trip(client: httpx.Client, url: str, n: int = 200) -> dict:
    """The instant embedding stand-in's own HTTP round trip (included in the added latency)."""
    times = []
    for q in QUESTIONS * (n // len(QUESTIONS)):
        started = time.perf_counter()
        client.post(f"{url}/api/embed", json={"model": MODEL, "input": [q]}).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return summary(times)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import psutil

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def emit(result: dict, out: Path | None) -> None:
    """Print a benchmark's result as JSON, and write it to `out` when given."""
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dims", type=int, default=768, help="768: nomic-embed-text")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from tests.support import pg
    from tests.support.ollama_server import FakeOllama
    from tests.support.pipelines import start_pipelines

    run_dir = Path(tempfile.mkdtemp(prefix="victor-inlet-bench-"))
    noop = run_dir / "noop_filter.py"
    noop.write_text(NOOP_FILTER)
    pg_server = pg.start_server(run_dir / "pg")
    vectors = VectorOllama(args.dims)
    server = None
    result: dict = {"machine": machine(), "dims": args.dims, "sizes": {}}
    try:
        admin = pg_server.get_uri()
        urls = {n: asyncio.run(pg.create_database(admin, prefix=f"bench{n}")) for n in args.sizes}
        for n, url in urls.items():
            seconds = asyncio.run(load_index(url, n, args.dims))
            print(f"{n} chunks loaded and indexed in {seconds:.0f} s", file=sys.stderr)
        valves = {"ollama_host": vectors.url, "embed_model": MODEL, "timeout_seconds": 10}
        first = urls[args.sizes[0]]
        server = start_pipelines(
            run_dir, [FILTER, noop], valves={"lua_codebase": {**valves, "database_url": first}}
        )
        with httpx.Client(timeout=30) as client:
            result["embedding_stand_in_round_trip"] = stand_in_round_trip(client, vectors.url)
            for n, url in urls.items():
                current = client.get(f"{server.url}/lua_codebase/valves").json()
                client.post(
                    f"{server.url}/lua_codebase/valves/update",
                    json={**current, "database_url": url},
                ).raise_for_status()
                measure(client, server.url, 30)  # warm up: pool, caches
                result["sizes"][str(n)] = measure(client, server.url, args.requests)
                print(f"{n}: {json.dumps(result['sizes'][str(n)])}", file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
        vectors.stop()
        pg_server.cleanup()

    fake = FakeOllama().start()
    try:
        result["query_embedding"] = asyncio.run(embedding_times(fake.url, 100))
    finally:
        fake.stop()

    report(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


def report(result: dict) -> None:
    print(f"machine: {result['machine']}")
    print(f"vectors: {result['dims']} dims, HNSW (pgvector defaults)")
    print(f"{'chunks':>8}  {'no-op p50/p95':>15}  {'filter p50/p95':>15}  {'added p50/p95':>15}")
    for n, r in result["sizes"].items():
        row = [r["noop_filter"], r["lua_codebase"], r["added"]]
        cells = [f"{x['p50_ms']:.1f} / {x['p95_ms']:.1f}" for x in row]
        print(f"{int(n):>8}  " + "  ".join(f"{c:>15}" for c in cells) + " ms")
    e = result["query_embedding"]
    print(f"query embedding, separately: p50 {e['p50_ms']:.1f} / p95 {e['p95_ms']:.1f} ms")
    print(f"  ({e['model']})")
    s = result["embedding_stand_in_round_trip"]
    print(
        f"(the instant embedding stand-in's round trip, inside 'added': p50 {s['p50_ms']:.1f} ms)"
    )


if __name__ == "__main__":
    main()
