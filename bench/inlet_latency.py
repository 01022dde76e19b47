"""Latency the "Lua Codebase" filter adds to a chat, over HTTP, in the real Pipelines server.

    python -m bench.inlet_latency [--sizes 10000 100000] [--dims 768] [--out FILE]

Both the filter and a do-nothing filter run in the same Pipelines server; the benchmark posts
the body Open WebUI sends (tests/fixtures/openwebui/pipeline_inlet_request.json, toggle on) to
each in turn, and reports p50/p95 of both and the difference: the latency the filter adds.

The index is synthetic: N chunks of Lua-like text with random unit vectors, loaded with COPY
into a real PostgreSQL 18 + pgvector (pgserver), HNSW index built after the load, exactly the
schema Victor uses. The query embedding is left out of the added latency: the filter's Ollama
here is a stand-in that answers instantly with precomputed random unit vectors (its HTTP round
trip stays in, so the figure is an upper bound). The embedding time is measured separately,
with Victor's Ollama client against the Ollama stand-in that runs all-MiniLM-L6-v2 on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np

from indexer import db, store
from indexer.config import Settings
from indexer.embedder import OllamaEmbedder

ROOT = Path(__file__).resolve().parent.parent
FILTER = ROOT / "pipelines" / "lua_codebase.py"
BODY = ROOT / "tests" / "fixtures" / "openwebui" / "pipeline_inlet_request.json"
MODEL = "bench-embed"  # the stand-in's model name: no query/document prefixes

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
VOCABULARY = """
    player inventory save load config parse network request timeout sprite cache menu input
    validate version migrate keyboard shortcut cart total discount price item entity update
    draw render sound event queue timer state scene camera physics collision path tile map
"""
WORDS = VOCABULARY.split()


class VectorOllama:
    """Ollama's /api/embed answering at once with precomputed random unit vectors."""

    def __init__(self, dims: int, seed: int = 7):
        rng = np.random.default_rng(seed)
        pool = rng.standard_normal((256, dims)).astype(np.float32)
        self.vectors = (pool / np.linalg.norm(pool, axis=1, keepdims=True)).tolist()
        self.count = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # or delayed ACKs add 40 ms to every answer

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                texts = json.loads(self.rfile.read(length) or b"{}").get("input") or [""]
                texts = [texts] if isinstance(texts, str) else texts
                with fake.lock:
                    start, fake.count = fake.count, fake.count + len(texts)
                vectors = [fake.vectors[(start + i) % len(fake.vectors)] for i in range(len(texts))]
                body = json.dumps({"model": MODEL, "embeddings": vectors}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def lua_text(rng: random.Random, i: int) -> str:
    name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{i}"
    lines = []
    for _ in range(rng.randint(4, 14)):
        a, b, c = rng.choices(WORDS, k=3)
        lines.append(f"  local {a} = {b}.{c}({rng.randint(0, 99)})")
    body = "\n".join(lines)
    return f"--- {' '.join(rng.choices(WORDS, k=8))}\nfunction M.{name}(a, b)\n{body}\nend"


async def load_index(url: str, n: int, dims: int) -> float:
    """Victor's schema, bound to the stand-in's vector space, with n synthetic chunks."""
    started = time.perf_counter()
    settings = Settings(database_url=url, embed_model=MODEL)
    pool = await db.create_pool(settings)  # applies the schema
    try:
        async with pool.acquire() as conn:
            await store.bind_space(conn, settings.embedding_space, settings.model, dims)
            repo = await conn.fetchval(
                "INSERT INTO repos (name, source, indexed_at) VALUES ('synthetic', '-', now()) "
                "RETURNING id"
            )
            files = [f"src/mod{i // 200}/file{i // 20}.lua" for i in range(0, n, 20)]
            await conn.copy_records_to_table(
                "files",
                records=[(repo, p, "0" * 64, "ast", 1, 1000) for p in files],
                columns=[
                    "repo_id",
                    "path",
                    "content_hash",
                    "parse_mode",
                    "chunker_version",
                    "size_bytes",
                ],
            )
            await conn.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")
            rng = random.Random(1)
            vectors = np.random.default_rng(2).standard_normal((n, dims)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            batch = 10_000
            for lo in range(0, n, batch):
                records = []
                for i in range(lo, min(n, lo + batch)):
                    text = lua_text(rng, i)
                    line = (i % 20) * 20 + 1
                    records.append(
                        (
                            repo,
                            files[i // 20],
                            f"M.f{i}",
                            "function",
                            "",
                            "",
                            line,
                            line + 15,
                            0,
                            text,
                            hashlib.sha256(text.encode()).digest(),
                            vectors[i],
                        )
                    )
                await conn.copy_records_to_table(
                    "chunks",
                    records=records,
                    columns=[
                        "repo_id",
                        "path",
                        "symbol",
                        "kind",
                        "signature",
                        "doc",
                        "start_line",
                        "end_line",
                        "part",
                        "text",
                        "embed_hash",
                        "embedding",
                    ],
                )
            await conn.execute("SET maintenance_work_mem = '1GB'")
            await conn.execute(
                "CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks "
                "USING hnsw (embedding vector_cosine_ops)"
            )
            await conn.execute("ANALYZE")
    finally:
        await pool.close()
    return time.perf_counter() - started


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
