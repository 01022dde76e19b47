"""Latency of `victor mcp`'s tools at 100k chunks, over Streamable HTTP, embedding excluded.

    python -m bench.mcp_latency [--chunks 100000] [--calls 100] [--data-dir DIR] [--out FILE]

A real `victor mcp` process serves a synthetic index (bench/synthetic.py: N chunks of Lua-like
code in four repositories, loaded with COPY into PostgreSQL 18 + pgvector from pgserver, the
indexes built after the load, exactly Victor's schema). The MCP SDK's own client (the one Open
WebUI uses: Streamable HTTP, `auto` mode) calls each tool `--calls` times, one call at a time,
with arguments drawn from the index: prose questions and symbol lookups for search_code, names
of indexed functions for find_definition and find_references, 100-line windows of indexed
files for read_code, a glob for list_files. Each figure is the whole call as the client sees
it: HTTP, the MCP session, SQL, formatting.

The query embedding is left out: the server's Ollama is a stand-in answering at once with
word vectors (`synthetic.WordVectorOllama`; its HTTP round trip stays in, so search_code's
figure is an upper bound). With --data-dir the database is kept and reused by a later run with
the same --chunks (bench/scale.py's databases are the same).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg

from bench import synthetic
from bench.inlet_latency import emit, machine, pct
from bench.scale import database, load_average, log, mark_loaded
from indexer.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stats(ms: list[float]) -> dict:
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 1),
        "p95_ms": round(pct(ms, 95), 1),
        "max_ms": round(max(ms), 1),
    }


async def arguments(url: str, n: int, seed: int = 5) -> dict[str, list[dict]]:
    """`n` argument sets per tool, drawn from what the index holds."""
    rng = random.Random(seed)
    conn = await asyncpg.connect(url)
    try:
        symbols = await synthetic.sample_symbols(conn, n)
        files = await conn.fetch(
            """
            SELECT r.name AS repo, f.path, (SELECT max(end_line) FROM chunks c
                   WHERE c.repo_id = f.repo_id AND c.path = f.path) AS last
            FROM files f JOIN repos r ON r.id = f.repo_id
            ORDER BY md5(f.path) LIMIT $1
            """,
            n,
        )
        repos = [r["name"] for r in await conn.fetch("SELECT name FROM repos ORDER BY name")]
    finally:
        await conn.close()
    codebase = synthetic.Codebase()
    prose = synthetic.questions(codebase, n)
    lookups = synthetic.symbol_queries(symbols)
    last = [s.split(":")[-1].split(".")[-1] for s in symbols]

    def window(f) -> dict:
        start = rng.randint(1, max(1, f["last"] - 99))
        return {"repo": f["repo"], "path": f["path"], "start_line": start, "end_line": start + 99}

    return {
        "search_code (prose)": [{"query": q} for q in prose],
        "search_code (symbol)": [{"query": q} for q in lookups],
        "find_definition": [{"name": s} for s in symbols],
        "find_references": [{"name": name} for name in last],
        "read_code (100 lines)": [window(f) for f in files],
        "list_files (glob)": [
            {"repo": rng.choice(repos), "pattern": f"*{codebase.noun(rng)}*"} for _ in range(n)
        ],
        "list_repos": [{} for _ in range(n)],
    }


async def measure(mcp_url: str, calls: dict[str, list[dict]], core: Settings) -> dict:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from indexer.service import open_victor

    result: dict = {}
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300)) as http,
        Client(streamable_http_client(mcp_url, http_client=http), read_timeout_seconds=120) as c,
        open_victor(core, max_size=2, apply=False) as victor,
    ):
        # The same prose questions, alternately as a tool call and through Victor's core in
        # this process (the same search and Ollama stand-in, no MCP, no text): what the
        # tool adds to a search, under the same load.
        prose = [a["query"] for a in calls["search_code (prose)"]]
        await victor.search(prose[:2], top_k=8)
        tool_ms, core_ms = [], []
        for q in prose:
            started = time.perf_counter()
            await c.call_tool("search_code", {"query": q})
            tool_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await victor.search([q], top_k=8)
            core_ms.append((time.perf_counter() - started) * 1000)
        result["search: tool vs core (alternating)"] = {
            "tool": stats(tool_ms),
            "core": stats(core_ms),
            "added_p50_ms": round(pct(tool_ms, 50) - pct(core_ms, 50), 1),
        }
        log(f"search, tool vs core: {result['search: tool vs core (alternating)']}")
        for label, args in calls.items():
            for a in args[:2]:  # warm up: the pool's connections, caches, first plans
                await c.call_tool(_tool(label), a)
            ms, chars, errors = [], [], 0
            for a in args:
                started = time.perf_counter()
                answer = await c.call_tool(_tool(label), a)
                ms.append((time.perf_counter() - started) * 1000)
                chars.append(sum(len(x.text) for x in answer.content if x.type == "text"))
                errors += bool(answer.is_error)
            result[label] = {**stats(ms), "mean_chars": round(sum(chars) / len(chars))}
            if errors:
                result[label]["errors"] = errors
            log(f"{label}: {result[label]}")
    return result


def _tool(label: str) -> str:
    return label.split(" ")[0]


def serve(url: str, ollama_url: str, log_file: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_"))}
    env |= {
        "VICTOR_DATABASE_URL": url,
        "OLLAMA_HOST": ollama_url,
        "VICTOR_EMBED_MODEL": synthetic.MODEL,
        "VICTOR_MCP_TIMEOUT": "60",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "victor.cli", "mcp", "--port", str(port)],
        env=env,
        stdout=log_file.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"victor mcp did not start: {log_file.read_text()[-2000:]}")


async def run(args, admin_url: str, folder: Path) -> dict:
    url, loaded = await database(admin_url, args.chunks)
    result: dict = {
        "machine": machine(),
        "chunks": args.chunks,
        "calls_per_tool": args.calls,
        "load_average_at_start": load_average(),
    }
    if loaded:
        log(f"{args.chunks} chunks already loaded: load skipped")
    else:
        log(f"loading {args.chunks} chunks")
        result["build"] = await synthetic.load_index(url, args.chunks, args.dims, progress=log)
        await mark_loaded(url, args.chunks)
    conn = await asyncpg.connect(url)
    try:
        dims = int(await conn.fetchval("SELECT value FROM victor_meta WHERE key = 'embed_dims'"))
    finally:
        await conn.close()
    ollama = synthetic.WordVectorOllama(synthetic.WordVectors(synthetic.Codebase(), dims))
    proc, mcp_url = serve(url, ollama.url, folder / "victor-mcp.log")
    try:
        calls = await arguments(url, args.calls)
        result["examples"] = {k: v[:2] for k, v in calls.items()}
        core = Settings(database_url=url, ollama_host=ollama.url, embed_model=synthetic.MODEL)
        result["latency"] = await measure(mcp_url, calls, core)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        ollama.stop()
    result["load_average_at_end"] = load_average()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384, help="384: all-MiniLM-L6-v2")
    parser.add_argument("--calls", type=int, default=100, help="calls per tool")
    parser.add_argument("--data-dir", type=Path, help="keep the database here (reused later)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import pgserver

    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="victor-mcp-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
    try:
        result = asyncio.run(run(args, server.get_uri(), folder))
    finally:
        server.cleanup()
        if args.data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    emit(result, args.out)


if __name__ == "__main__":
    main()
