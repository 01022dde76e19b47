"""Indexing benchmark: parse+chunk rate, embedding rate, full and no-change index runs.

    python -m bench.index_bench ../shared/corpora/penlight [--out bench/results/index-penlight.json]
    python -m bench.index_bench CORPORA/kong --fast-embed [--out FILE]
    python -m bench.index_bench CORPORA/kong --parse-only --rounds 3 [--out FILE]
    python -m bench.index_bench CORPORA/kong --parse-only --part 4 --rounds 2
    python -m bench.index_bench CORPORA/kong --no-change DATA_DIR  (an up-to-date index)

Reports
- parse+chunk throughput (KB/s of Lua source) with 1 worker and with N workers;
- embedding throughput on the same batches: the model's own rate (in-process
  encode), Victor's Ollama client against an Ollama-compatible server on
  127.0.0.1 serving that same model, and Victor's local backend;
- a full `victor index` (a real subprocess, embedded PostgreSQL, Ollama
  backend), its peak RSS (the process tree, parse workers included), and the
  time of a second run with nothing changed.

With --parse-only only the parse figures are measured: 1 worker and N workers alternate for
--rounds rounds (so the drift of a shared machine hits both alike), each run in a fresh Python
process (a cold parser, as in one `victor index`), with the load average and the CPU seconds of
that process and of its workers. --part N parses 1/N of the files (the same ones every time).

With --fast-embed the embedding benchmark is skipped and the index runs embed with a stand-in
answering at once with random vectors (`bench.synthetic.VectorOllama`): for a codebase too
large to embed on this CPU in a benchmark (Kong, 13 MB), the parse and no-change re-index
figures are what count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from indexer.config import Settings
from indexer.embedding.local import LocalEmbedder, load_local_model
from indexer.embedding.ollama import OllamaEmbedder
from indexer.embedding.texts import embedding_text
from indexer.indexing.sources import decode_lua
from indexer.parsing.luaparser_defs import TIME_LIMIT
from indexer.parsing.pool import chunk_files


def load_corpus(root: Path, part: int = 1) -> list[tuple[str, str]]:
    """The corpus's Lua files; with part=N, 1/N of them drawn at random (always the same)."""
    files = sorted(p for p in root.rglob("*.lua") if p.is_file() and not p.is_symlink())
    items = [(str(p.relative_to(root)), decode_lua(p.read_bytes())) for p in files]
    if part > 1:
        random.Random(5).shuffle(items)
        items = items[: len(items) // part]
    return items


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children."""
    own, kids = os.times(), os.times()
    return own.user + own.system, kids.children_user + kids.children_system


def bench_parse(
    items: list[tuple[str, str]], workers: int, time_limit: float = TIME_LIMIT
) -> tuple[dict, list]:
    size = sum(len(text.encode()) for _, text in items)
    load = os.getloadavg()[0]
    cpu = _cpu()
    started = time.perf_counter()
    results = list(chunk_files(iter(items), workers=workers, time_limit=time_limit))
    seconds = time.perf_counter() - started
    own, kids = (after - before for after, before in zip(_cpu(), cpu, strict=True))
    modes: dict[str, int] = {}
    for r in results:
        modes[r.mode.value] = modes.get(r.mode.value, 0) + 1
    return {
        "workers": workers,
        "time_limit": time_limit,
        "files": len(results),
        "kb": round(size / 1024, 1),
        "seconds": round(seconds, 2),
        "kb_per_s": round(size / 1024 / seconds, 1),
        "chunks": sum(len(r.chunks) for r in results),
        "modes": modes,
        "cpu_s_parent": round(own, 2),
        "cpu_s_workers": round(kids, 2),
        "load_average_1m": round(load, 2),
    }, results


def parse_run(corpus: Path, workers: int, part: int, time_limit: float = TIME_LIMIT) -> dict:
    """One parse of the corpus in a fresh Python process, as one `victor index` parses: its
    parser starts cold (ANTLR learns its prediction DFA as it parses; a warm parser is ~1.7x
    faster), whichever run came before it."""
    command = [sys.executable, "-m", "bench.index_bench", str(corpus), "--parse-run", str(workers)]
    run = subprocess.run(
        [*command, "--part", str(part), "--time-limit", str(time_limit)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(run.stdout)


def parse_rounds(
    corpus: Path, workers: int, rounds: int, part: int = 1, time_limit: float = TIME_LIMIT
) -> dict:
    """1 worker and `workers` workers, alternating; the speed-up of each pair and their median."""
    pairs = []
    for n in range(rounds):
        order = (1, workers) if n % 2 == 0 else (workers, 1)
        runs = {w: parse_run(corpus, w, part, time_limit) for w in order}
        speedup = runs[1]["seconds"] / runs[workers]["seconds"]
        # what the CPU time allows with `workers` idle cores: on a shared machine the
        # wall-clock ratio says as much about the other processes
        many_cpu = runs[workers]["cpu_s_workers"] + runs[workers]["cpu_s_parent"]
        cpu_bound = runs[1]["cpu_s_parent"] / max(many_cpu / workers, runs[workers]["cpu_s_parent"])
        pairs.append(
            {
                "one": runs[1],
                "many": runs[workers],
                "speedup": round(speedup, 2),
                "cpu_bound_speedup": round(cpu_bound, 2),
            }
        )
        print(
            f"round {n + 1}: 1 worker {runs[1]['seconds']} s (CPU {runs[1]['cpu_s_parent']} s, "
            f"load {runs[1]['load_average_1m']}), {workers} workers {runs[workers]['seconds']} s "
            f"(CPU {runs[workers]['cpu_s_parent']} + {runs[workers]['cpu_s_workers']} s, load "
            f"{runs[workers]['load_average_1m']}): {speedup:.2f}x, CPU allows {cpu_bound:.2f}x",
            flush=True,
        )
    speedups = sorted(p["speedup"] for p in pairs)
    return {"workers": workers, "rounds": pairs, "median_speedup": speedups[len(speedups) // 2]}


async def bench_embed(texts: list[str], batch: int, ollama_url: str) -> dict:
    model = load_local_model()
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    model.encode(batches[0][:2])  # warm up
    started = time.perf_counter()
    for b in batches:
        model.encode(b, batch_size=batch, normalize_embeddings=True)
    raw = time.perf_counter() - started

    settings = Settings(
        ollama_host=ollama_url,
        embed_model="all-minilm",
        embed_batch_size=batch,
        embed_concurrency=1,
    )
    client = OllamaEmbedder(settings)
    await client.embed_documents(texts[:2])
    started = time.perf_counter()
    await client.embed_documents(texts)
    via_ollama = time.perf_counter() - started
    await client.close()

    local = LocalEmbedder(settings.model_copy(update={"embed_backend": "local"}))
    started = time.perf_counter()
    await local.embed_documents(texts)
    via_local = time.perf_counter() - started
    n = len(texts)
    return {
        "chunks": n,
        "batch": batch,
        "model_chunks_per_s": round(n / raw, 1),
        "victor_ollama_chunks_per_s": round(n / via_ollama, 1),
        "victor_local_chunks_per_s": round(n / via_local, 1),
        "victor_ollama_overhead_pct": round((via_ollama / raw - 1) * 100, 1),
    }


def run_tree(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run a command; return (seconds, peak RSS of its process tree in bytes, stdout)."""
    started = time.perf_counter()
    proc = psutil.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with {proc.returncode}")
    return time.perf_counter() - started, peak, out


def bench_index(corpus: Path, ollama_url: str, model: str = "all-minilm") -> dict:
    data = Path(tempfile.mkdtemp(prefix="victor-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_"))}
    env |= {
        "VICTOR_DATA_DIR": str(data),
        "OLLAMA_HOST": ollama_url,
        "VICTOR_EMBED_MODEL": model,
    }
    victor = [
        sys.executable,
        "-m",
        "victor.cli",
        "index",
        str(corpus),
        "--name",
        "bench",
        "--json",
    ]
    try:
        first, peak, out = run_tree(victor, env)
        summary = json.loads(out)
        again, _, out2 = run_tree(victor, env)
        summary2 = json.loads(out2)
    finally:
        stop = [
            sys.executable,
            "-c",
            "import sys; from pgserver import get_server; "
            "get_server(sys.argv[1], cleanup_mode='stop').cleanup()",
            str(data / "pgdata"),
        ]
        subprocess.run(stop, env=env, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
    return {
        "full_index_seconds": round(first, 2),
        "full_index_peak_rss_mb": round(peak / 2**20, 1),
        "chunks_written": summary["chunks_written"],
        "parse_modes": summary["parse_modes"],
        "no_change_reindex_seconds": round(again, 2),
        "no_change_files_unchanged": summary2["files_unchanged"],
        "no_change_chunks_embedded": summary2["chunks_embedded"],
    }


def no_change_runs(corpus: Path, data: Path, runs: int) -> dict:
    """`victor index CORPUS` against an index of it that is up to date (data dir `data`, made
    by an earlier full run): wall and CPU seconds of each run, with the load average. Nothing
    is parsed or embedded, so no embedder is needed (OLLAMA_HOST points nowhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_"))}
    env |= {
        "VICTOR_DATA_DIR": str(data),
        "OLLAMA_HOST": "http://127.0.0.1:9",
        "VICTOR_EMBED_MODEL": "bench-embed",
        "VICTOR_QUERY_PREFIX": "",
        "VICTOR_DOCUMENT_PREFIX": "",
    }
    command = [sys.executable, "-m", "victor.cli", "index", str(corpus), "--json"]
    results = []
    for _ in range(runs):
        load = os.getloadavg()[0]
        cpu = os.times()
        started = time.perf_counter()
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - started
        after = os.times()
        summary = json.loads(run.stdout)
        results.append(
            {
                "seconds": round(seconds, 2),
                "cpu_s": round(
                    after.children_user
                    + after.children_system
                    - cpu.children_user
                    - cpu.children_system,
                    2,
                ),
                "load_average_1m": round(load, 2),
                "files_unchanged": summary["files_unchanged"],
                "files_parsed": summary["files_new"] + summary["files_changed"],
            }
        )
        print(f"no-change re-index: {results[-1]}", flush=True)
    return {"runs": results, "best_seconds": min(r["seconds"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Victor indexing benchmark")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--embed-sample", type=int, default=640, help="chunks to embed in the embedding benchmark"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--fast-embed", action="store_true", help="instant stand-in embedder")
    parser.add_argument("--parse-only", action="store_true", help="parse figures only")
    parser.add_argument("--rounds", type=int, default=3, help="--parse-only: 1-vs-N pairs")
    parser.add_argument("--part", type=int, default=1, help="--parse-only: 1/N of the files")
    parser.add_argument(
        "--time-limit", type=float, default=TIME_LIMIT, help="--parse-only: per-file parse limit"
    )
    parser.add_argument("--parse-run", type=int, help=argparse.SUPPRESS)  # one run, JSON out
    parser.add_argument(
        "--no-change",
        type=Path,
        metavar="DATA_DIR",
        help="only time re-indexing an up-to-date index",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.no_change:
        report = {
            "corpus": str(args.corpus),
            "no_change": no_change_runs(args.corpus, args.no_change, 3),
        }
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))
        return
    if args.parse_run:
        items = load_corpus(args.corpus, args.part)
        print(json.dumps(bench_parse(items, args.parse_run, args.time_limit)[0]))
        return
    if args.parse_only:
        report = {
            "corpus": str(args.corpus),
            "part": args.part,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "parse": parse_rounds(
                args.corpus, args.workers, args.rounds, args.part, args.time_limit
            ),
        }
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))
        return

    from tests.support.ollama_server import FakeOllama

    items = load_corpus(args.corpus)
    one, results = bench_parse(items, 1)
    many, _ = bench_parse(items, args.workers)
    print(f"parse+chunk, 1 worker:  {one['kb_per_s']} KB/s ({one['kb']} KB in {one['seconds']} s)")
    print(f"parse+chunk, {args.workers} workers: {many['kb_per_s']} KB/s ({many['seconds']} s)")
    print(f"  {one['chunks']} chunks; modes {one['modes']}")

    print(f"  parse speed-up with {args.workers} workers: {one['seconds'] / many['seconds']:.2f}x")

    texts = [embedding_text(r.path, c) for r in results for c in r.chunks][: args.embed_sample]
    if args.fast_embed:
        from bench.synthetic import MODEL, VectorOllama

        fake, embed = VectorOllama(384), None
    else:
        fake = FakeOllama().start()
    try:
        if not args.fast_embed:
            embed = asyncio.run(bench_embed(texts, args.batch, fake.url))
            print(
                f"embedding {embed['chunks']} chunks, batch {args.batch}: model "
                f"{embed['model_chunks_per_s']}/s, Victor via Ollama API "
                f"{embed['victor_ollama_chunks_per_s']}/s, Victor local "
                f"{embed['victor_local_chunks_per_s']}/s"
            )
        index = bench_index(args.corpus, fake.url, MODEL if args.fast_embed else "all-minilm")
    finally:
        fake.stop()
    print(
        f"full index: {index['full_index_seconds']} s, {index['chunks_written']} chunks, "
        f"peak RSS {index['full_index_peak_rss_mb']} MB (victor + parse workers)"
    )
    print(
        f"no-change re-index: {index['no_change_reindex_seconds']} s, "
        f"{index['no_change_chunks_embedded']} chunks embedded"
    )
    report = {
        "corpus": str(args.corpus),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "parse_1": one,
        "parse_n": many,
        "parse_speedup": round(one["seconds"] / many["seconds"], 2),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "embedding": embed,
        "index": index,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
