"""Webhook latency: from a signed push delivery to the change being searchable.

    python -m bench.webhook_latency [--corpus ../shared/corpora/penlight] [--pushes 20]
                                    [--backend ollama|local] [--out results.json]

Everything runs for real on 127.0.0.1, as in production: PostgreSQL 18 + pgvector
(pgserver, temporary), the webhook under gunicorn, `victor worker`, and the embedding
model — the Ollama stand-in serving all-MiniLM-L6-v2 over Ollama's API (`ollama`), or
the in-process model (`local`). A bare git repository in a temporary folder plays GitHub,
holding a copy of the corpus' Lua files (nothing is committed to this repository).

After a first full sync, each round changes one function in one file, commits, pushes,
sends the push delivery GitHub would send (signed), then searches until a result holds
the new code. Reported: p50/p95/max of that time, and where it goes (HTTP answer, job
picked up, job done).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.inlet_latency import emit
from indexer.config import Settings
from indexer.service import open_victor
from indexer.sync import jobs
from tests.support import pg
from tests.support.github import Remote, deliver, run_git
from tests.support.ollama_server import FakeOllama

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret"


def default_corpus() -> Path:
    """shared/corpora/penlight next to the project, or under $VICTOR_CORPORA."""
    for base in (os.environ.get("VICTOR_CORPORA"), ROOT.parent / "shared" / "corpora"):
        if base and Path(base, "penlight").is_dir():
            return Path(base, "penlight")
    return Path("/work/shared/corpora/penlight")


def revision() -> str | None:
    try:
        return run_git(ROOT, "describe", "--always", "--dirty")
    except AssertionError:  # not a git checkout
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "os": platform.system()}


def copy_corpus(corpus: Path, remote: Remote) -> list[str]:
    """The corpus' Lua files into the working clone; returns their paths."""
    paths = []
    for src in sorted(corpus.rglob("*.lua")):
        if src.is_symlink() or not src.is_file():
            continue
        rel = src.relative_to(corpus).as_posix()
        dest = remote.work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        paths.append(rel)
    return paths


THINGS = [  # one distinct job per round, so earlier rounds never crowd the search results
    "reticulate the splines",
    "feed the goldfish",
    "polish the brass doorknobs",
    "count the sheep in the meadow",
    "water the tomato plants",
    "tune the grand piano",
    "sharpen the kitchen knives",
    "rotate the car tyres",
    "defrost the freezer",
    "fold the laundry",
    "calibrate the telescope",
    "bake sourdough bread",
    "paint the garden fence",
    "sort the postage stamps",
    "wind the grandfather clock",
    "descale the kettle",
    "prune the rose bushes",
    "oil the bicycle chain",
    "alphabetise the bookshelf",
    "inflate the party balloons",
]


def change(remote: Remote, path: str, n: int) -> tuple[str, str]:
    """Add a recognisable function to one file. Returns (marker, a query that finds it).

    The function is longer than a line window, so that it dominates the chunk it lands
    in whether the chunker cuts by symbol or (the fallback) by lines.
    """
    thing = THINGS[n % len(THINGS)]
    marker = f"{thing.replace(' ', '_')}_{n}"
    purpose = f"{thing} before the zeppelin lands"
    steps = "".join(f"  -- {marker}: {thing}, step {k}\n" for k in range(42))
    with (remote.work / path).open("a") as f:
        f.write(f"\n--- {purpose}\nlocal function {marker}(level)\n{steps}end\n")
    return marker, f"{marker}: {purpose}"


def env_for(url: str, ollama_url: str, data: Path, backend: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_"))}
    return env | {
        "VICTOR_DATABASE_URL": url,
        "OLLAMA_HOST": ollama_url,
        "VICTOR_EMBED_BACKEND": backend,
        "VICTOR_EMBED_MODEL": "all-minilm",
        "VICTOR_DATA_DIR": str(data),
        "VICTOR_WEBHOOK_SECRET": SECRET,
        "PYTHONPATH": str(ROOT),
    }


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)


async def wait_http(url: str, proc: subprocess.Popen) -> None:
    import httpx

    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            async with httpx.AsyncClient() as client:
                await client.get(f"{url}/healthz")
            return
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    raise SystemExit("gunicorn did not start")


async def wait_searchable(victor, marker: str, query: str, timeout: float = 60) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if any(marker in r.text for r in (await victor.search([query], top_k=10))[0].results):
            return time.perf_counter()
        await asyncio.sleep(0.05)
    stored = await victor.pool.fetchval(
        "SELECT count(*) FROM chunks WHERE text LIKE $1", f"%{marker}%"
    )
    recent = [(j.id, j.state, j.error) for j in await jobs.recent(victor.pool, 3)]
    raise SystemExit(
        f"{marker} was not searchable within {timeout} s ({stored} chunks hold it; jobs {recent})"
    )


async def one_push(victor, url: str, remote: Remote, path: str, n: int) -> dict:
    marker, query = change(remote, path, n)
    remote.commit(f"bench {n}")
    payload = remote.push()
    started = time.perf_counter()
    answer = await deliver(url, "push", payload, secret=SECRET)
    acked = time.perf_counter()
    if answer.status_code != 202:
        raise SystemExit(f"delivery refused: {answer.status_code} {answer.text}")
    found = await wait_searchable(victor, marker, query)
    job = await finished(victor, answer.json()["jobs"][0]["id"])  # searchable just before
    return {
        "n": n,
        "file": path,
        "searchable_s": round(found - started, 3),
        "http_s": round(acked - started, 3),
        "queued_s": round((job.started_at - job.created_at).total_seconds(), 3),
        "job_s": round((job.finished_at - job.started_at).total_seconds(), 3),
        "mode": job.result["mode"],
        "embedded": job.result["index"]["chunks_embedded"],
    }


async def finished(victor, job_id: int) -> jobs.Job:
    for _ in range(200):
        job = await jobs.get(victor.pool, job_id)
        if job.state == "done":
            return job
        await asyncio.sleep(0.05)
    raise SystemExit(f"job {job_id} did not finish: {job}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(corpus: Path, pushes: int, backend: str, work: Path) -> dict:
    server = pg.start_server(work / "pg")
    fake = FakeOllama().start()
    procs: list[subprocess.Popen] = []
    try:
        url = await pg.create_database(server.get_uri(), prefix="bench")
        env = env_for(url, fake.url, work / "data", backend)
        remote = Remote(work / "gh", "acme/penlight")
        files = copy_corpus(corpus, remote)
        remote.commit("corpus")
        remote.push()
        cli = [sys.executable, "-m", "victor.cli"]
        subprocess.run(
            [*cli, "repo", "add", "penlight", remote.url, "--github-url", remote.html_url],
            env=env,
            check=True,
            capture_output=True,
        )
        port = free_port()
        procs.append(
            start(
                [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                 "--workers", "2", "--threads", "4", "webhook.app:create_app()"],
                env,
                work / "gunicorn.log",
            )
        )  # fmt: skip
        procs.append(start([*cli, "worker"], env, work / "worker.log"))
        hook = f"http://127.0.0.1:{port}"
        await wait_http(hook, procs[0])
        settings = Settings(
            database_url=url,
            ollama_host=fake.url,
            embed_backend=backend,
            embed_model="all-minilm",
            data_dir=work / "data",
        )
        async with open_victor(settings) as victor:
            started = time.perf_counter()
            while await jobs.open_jobs(victor.pool):
                await asyncio.sleep(0.2)
            first = time.perf_counter() - started
            rng = random.Random(5)
            rounds = []
            for n in range(pushes):
                rounds.append(await one_push(victor, hook, remote, rng.choice(files), n))
                print(json.dumps(rounds[-1]), file=sys.stderr)
            head = remote.head()
            indexed = (await victor.repos())[0].commit_sha
            chunks = await victor.pool.fetchval("SELECT count(*) FROM chunks")
        times = [r["searchable_s"] for r in rounds]
        return {
            "machine": machine(),
            "backend": backend,
            "corpus": corpus.name,
            "lua_files": len(files),
            "chunks": chunks,
            "first_sync_s": round(first, 1),
            "pushes": pushes,
            "p50_s": round(statistics.median(times), 3),
            "p95_s": round(percentile(times, 0.95), 3),
            "max_s": round(max(times), 3),
            "http_p50_s": round(statistics.median(r["http_s"] for r in rounds), 3),
            "job_p50_s": round(statistics.median(r["job_s"] for r in rounds), 3),
            "index_at_head": indexed == head,
            "rounds": rounds,
            "git": revision(),
        }
    finally:
        stop_all(procs)
        fake.stop()
        server.cleanup()


def stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM (a worker hands its job back), then SIGKILL what is still up after 20 s."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--backend", choices=["ollama", "local"], default="ollama")
    parser.add_argument("--out", type=Path, help="Also write the JSON report here.")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        raise SystemExit(f"{args.corpus} is not a folder: pass --corpus PATH/TO/penlight")
    work = Path(tempfile.mkdtemp(prefix="victor-webhook-bench-"))
    try:
        report = asyncio.run(bench(args.corpus.resolve(), args.pushes, args.backend, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(report, args.out)


if __name__ == "__main__":
    main()
