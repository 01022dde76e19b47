"""Latency the "Lua Codebase" filter adds to a chat, before and after a change, in one run.

    python -m bench.filter_before_after --before REV --data-dir DIR [--chunks 100000]
                                        [--requests 200] [--embed-ms MS] [--settle S]
                                        [--out FILE]

Two real Pipelines servers on the same database (the synthetic index of `bench.scale
--data-dir DIR --chunks N`): one runs the filter of this checkout next to a do-nothing
filter, the other the filter of commit REV (`git archive`, imported through PYTHONPATH; it
reads the index with apply=False, so the newer schema does not bother it). Each request's
question goes to the do-nothing filter, then to both filters, in turn (each filter first on
every other question: the second one finds the pages the first read cached), so drift on
this shared machine hits all three alike. The questions have the realistic vocabulary of
`bench.scale` (prose made of the codebase's common and rare words, and symbol lookups); the
query embedding comes from a stand-in answering at once with the synthetic word vectors
(`bench.synthetic.WordVectorOllama`), so its cost is left out, its HTTP round trip stays in;
`--embed-ms` adds Ollama's own time back (the stand-in answers after it).
Reported for all repositories and for the smallest one (the `repos` valve): p50/p95 of each
and the latency each filter adds over the do-nothing one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from bench import synthetic
from bench.inlet_latency import BODY, FILTER, NOOP_FILTER, emit, machine, summary
from bench.scale import database, load_average, log

ROOT = Path(__file__).resolve().parent.parent


def checkout(rev: str, dest: Path) -> Path:
    """The tree of commit `rev` of this repository, extracted into dest."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


async def questions(url: str, n: int) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        symbols = await synthetic.sample_symbols(conn, n // 2)
    finally:
        await conn.close()
    return synthetic.questions(synthetic.Codebase(), n) + synthetic.symbol_queries(symbols)


def set_repos(client: httpx.Client, server_url: str, repos: list[str]) -> None:
    current = client.get(f"{server_url}/lua_codebase/valves").json()
    client.post(
        f"{server_url}/lua_codebase/valves/update", json={**current, "repos": repos}
    ).raise_for_status()


def measure(client: httpx.Client, urls: dict[str, str], texts: list[str]) -> dict:
    template = json.loads(BODY.read_text())
    times: dict[str, list[float]] = {name: [] for name in urls}
    not_ok = dict.fromkeys(urls, 0)
    filters = [name for name in urls if name != "noop"]
    for n, text in enumerate(texts):
        request = json.loads(json.dumps(template))
        request["body"]["messages"][-1]["content"] = text
        # the do-nothing filter first, then the two filters each first in turn: the second
        # to see a question finds the pages the first one read cached
        order = ["noop", *(filters if n % 2 == 0 else filters[::-1])]
        for name in order:
            url = urls[name]
            started = time.perf_counter()
            response = client.post(url, json=request)
            times[name].append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            if name != "noop":
                info = response.json()["metadata"].get("lua_codebase") or {}
                not_ok[name] += info.get("status") != "ok"
    out = {name: summary(ms) for name, ms in times.items()}
    for name in urls:
        if name != "noop":
            out[f"{name}_added"] = {
                k: round(out[name][k] - out["noop"][k], 2) for k in ("p50_ms", "p95_ms")
            }
            out[f"{name}_not_ok"] = not_ok[name]
    out["requests"] = len(texts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare with")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--embed-ms",
        type=float,
        default=0.0,
        help="the stand-in answers each embedding request after this long (Ollama's own time)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help="seconds to wait after the first warm-up requests: a filter that holds the "
        "lexical index in memory loads it in the background meanwhile (about 10 s at 100k "
        "chunks here)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import pgserver

    from tests.support.pipelines import start_pipelines

    run_dir = Path(tempfile.mkdtemp(prefix="victor-filter-ba-"))
    before_tree = checkout(args.before, run_dir / "before")
    (run_dir / "noop_filter.py").write_text(NOOP_FILTER)
    pg_server = pgserver.get_server(args.data_dir / "pgdata", cleanup_mode="stop")
    embed = synthetic.WordVectorOllama(
        synthetic.WordVectors(synthetic.Codebase(), 384), delay_ms=args.embed_ms
    )
    servers = []
    try:
        url, loaded = asyncio.run(database(pg_server.get_uri(), args.chunks))
        if not loaded:
            raise SystemExit(f"no loaded database for {args.chunks} chunks: run bench.scale")
        texts = asyncio.run(questions(url, args.requests))
        valves = {
            "lua_codebase": {
                "database_url": url,
                "ollama_host": embed.url,
                "embed_model": synthetic.MODEL,
                "timeout_seconds": 10,
            }
        }
        (run_dir / "a").mkdir()
        (run_dir / "b").mkdir()
        after = start_pipelines(run_dir / "a", [FILTER, run_dir / "noop_filter.py"], valves=valves)
        servers.append(after)
        before = start_pipelines(
            run_dir / "b",
            [before_tree / "pipelines" / "lua_codebase.py"],
            valves=valves,
            env={"PYTHONPATH": str(before_tree)},
        )
        servers.append(before)
        urls = {
            "noop": f"{after.url}/noop_filter/filter/inlet",
            "after": f"{after.url}/lua_codebase/filter/inlet",
            "before": f"{before.url}/lua_codebase/filter/inlet",
        }
        result: dict = {
            "machine": machine(),
            "chunks": args.chunks,
            "before": args.before,
            "after": subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
            ).stdout.strip(),
            "load_average_at_start": load_average(),
            "embed_ms": args.embed_ms,
            "examples": texts[:2] + texts[-2:],
        }
        with httpx.Client(timeout=60) as client:
            for scope, repos in (("all_repositories", []), ("one_repository", ["plugins"])):
                for server in (after, before):
                    set_repos(client, server.url, repos)
                measure(client, urls, texts[:20])  # warm up: pools, plans, caches
                if scope == "all_repositories":  # and the lexical index in memory, once
                    time.sleep(args.settle)
                    measure(client, urls, texts[20:40])
                result[scope] = measure(client, urls, texts)
                log(f"{scope}: {json.dumps(result[scope])}")
        result["load_average_at_end"] = load_average()
    finally:
        for server in servers:
            server.stop()
        embed.stop()
        pg_server.cleanup()
    emit(result, args.out)


if __name__ == "__main__":
    main()
