"""Webhook under a burst: N signed push deliveries in S seconds, nothing lost.

    python -m bench.webhook_burst [--deliveries 200] [--seconds 10] [--repos 4] [--workers 2]
                                  [--out FILE]

Everything real on 127.0.0.1: PostgreSQL 18 + pgvector (pgserver), the webhook app under
gunicorn (2 processes x 4 threads, as docs/webhook.md runs it), `victor worker` processes, and
one bare git repository per followed repository playing GitHub. The embedding stand-in
answers at once (the burst is about the webhook and the queue, not the model).

Before the burst, each repository gets a chain of commits (each adds a function to one of
its Lua files) and the push payload GitHub would send for each. During the burst, delivery i
goes out at i * S / N seconds, round-robin over the repositories: the branch is moved to the
commit (the push lands on "GitHub"), then the signed delivery is POSTed without waiting for
earlier answers. The workers run all along, so pushes arriving while a repository's job
runs coalesce into its one pending job.

Checked afterwards (`invariants`): every delivery acknowledged 2xx; one delivery row per
delivery; the `pushes` of the jobs add up to N, per repository too; no job failed; every
repository's index is exactly the Lua files at its branch head, at that commit. Reported:
acknowledgement latency p50/p95/max (GitHub gives up at 10 s), jobs per repository, and the
time the queue took to drain after the last delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.inlet_latency import emit, machine, pct
from bench.scale import load_average
from bench.synthetic import VectorOllama
from bench.webhook_latency import env_for, free_port, start, stop_all, wait_http
from indexer.config import Settings
from indexer.service import open_victor
from tests.support import pg
from tests.support.github import Remote, encode, headers, run_git
from tests.support.webhook import assert_index_is, wait_idle

SECRET = "bench-secret"
FILES = ("src/inventory.lua", "src/combat.lua", "src/ui/menu.lua")


def first_files(n: int) -> dict[str, str]:
    return {
        path: f"local M = {{}}\n\nfunction M.start_{i}_{n}(x)\n  return x + {i}\nend\n\nreturn M\n"
        for i, path in enumerate(FILES)
    }


def add_function(remote: Remote, k: int) -> str:
    """Commit k: a new function in one of the files. Returns the commit."""
    path = remote.work / FILES[k % len(FILES)]
    text = path.read_text().removesuffix("return M\n")
    text += f"--- Step {k} of the burst.\nfunction M.burst_step_{k}(player, item)\n"
    text += f"  player.items[{k}] = item\n  return player\nend\n\nreturn M\n"
    path.write_text(text)
    return remote.commit(f"burst {k}")


def prepare(remote: Remote, commits: int) -> list[dict]:
    """`commits` commits on top of the branch head, in GitHub's object store but not on the
    branch yet; returns the push payload of each (before = the previous commit)."""
    before = remote.head()
    shas = [add_function(remote, k) for k in range(commits)]
    run_git(remote.work, "push", "--quiet", "origin", "HEAD:refs/bench/staging")
    payloads = []
    for after in shas:
        payloads.append(remote.push_payload("refs/heads/main", before, after))
        before = after
    return payloads


async def land(remote: Remote, sha: str) -> None:
    """The push lands on "GitHub": its branch now points at sha."""
    await asyncio.to_thread(run_git, remote.bare, "update-ref", "refs/heads/main", sha)


async def send(client: httpx.AsyncClient, url: str, payload: dict, delivery: str) -> dict:
    body = encode(payload)
    sent = headers("push", body, secret=SECRET, delivery=delivery)
    started = time.perf_counter()
    try:
        answer = await client.post(f"{url}/webhook/github", content=body, headers=sent)
        status, text = answer.status_code, answer.text
    except httpx.HTTPError as exc:
        status, text = 0, f"{exc.__class__.__name__}: {exc}"
    return {
        "delivery": delivery,
        "status": status,
        "ms": (time.perf_counter() - started) * 1000,
        "body": text[:300],
    }


async def fire(url, remotes, payloads, deliveries: int, seconds: float) -> list[dict]:
    """The burst: delivery i at i * seconds / deliveries, round-robin over the repositories.
    Each repository's pushes land in order; answers are not waited for before the next."""
    answers: list[asyncio.Task] = []
    limits = httpx.Limits(max_connections=deliveries, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        start_at = time.perf_counter()

        async def repo_pushes(r: int) -> None:
            for k, payload in enumerate(payloads[r]):
                i = k * len(remotes) + r
                due = start_at + i * seconds / deliveries
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                await land(remotes[r], payload["after"])
                delivery = f"burst-{r}-{k}"
                answers.append(asyncio.create_task(send(client, url, payload, delivery)))

        await asyncio.gather(*(repo_pushes(r) for r in range(len(remotes))))
        sent_in = time.perf_counter() - start_at
        results = await asyncio.gather(*answers)
    for result in results:
        result["sent_in_s"] = round(sent_in, 2)
    return results


async def invariants(pool, remotes, names, per_repo: list[int], answers: list[dict]) -> dict:
    """What must hold after the burst, each as a named boolean (and the counts behind it)."""
    jobs = await pool.fetch(
        "SELECT j.*, r.name FROM sync_jobs j JOIN repos r ON r.id = j.repo_id "
        "WHERE j.reason = 'push' ORDER BY j.id"
    )
    deliveries = await pool.fetchval("SELECT count(*) FROM webhook_deliveries")
    empty = await pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE cardinality(job_ids) = 0"
    )
    repos: dict[str, dict] = {}
    at_head = True
    for remote, name, expected in zip(remotes, names, per_repo, strict=True):
        mine = [j for j in jobs if j["name"] == name]
        head = remote.head()
        try:
            await assert_index_is(pool, name, remote.bare, head)
            indexed = True
        except AssertionError:
            indexed = False
        at_head &= indexed
        last = mine[-1] if mine else None
        repos[name] = {
            "deliveries": expected,
            "jobs": len(mine),
            "pushes_counted": sum(j["pushes"] for j in mine),
            "states": sorted({j["state"] for j in mine}),
            "index_at_head": indexed,
            "last_job_after_is_head": last is not None and last["after_sha"] == head,
        }
    total = len(answers)
    return {
        "all_acknowledged_2xx": all(200 <= a["status"] < 300 for a in answers),
        "statuses": sorted({a["status"] for a in answers}),
        "delivery_rows_match": deliveries == total and empty == 0,
        "pushes_add_up": sum(j["pushes"] for j in jobs) == total
        and all(r["pushes_counted"] == r["deliveries"] for r in repos.values()),
        "coalesced": len(jobs) < total,  # happens when pushes come while a job is pending
        "no_more_jobs_than_pushes": len(jobs) <= total,
        "no_job_failed": all(j["state"] in ("done", "superseded") for j in jobs),
        "every_index_at_head": at_head,
        "jobs": len(jobs),
        "repos": repos,
    }


async def burst(
    work: Path, *, deliveries: int = 200, seconds: float = 10.0, repos: int = 4, workers: int = 2
) -> dict:
    """Run the whole burst in `work`; returns the report (see the module docstring)."""
    before = load_average()
    server = pg.start_server(work / "pg")
    embed = VectorOllama(384)
    procs: list[subprocess.Popen] = []
    try:
        url = await pg.create_database(server.get_uri(), prefix="burst")
        env = env_for(url, embed.url, work / "data", "ollama") | {"VICTOR_WEBHOOK_SECRET": SECRET}
        env["VICTOR_WORKER_POLL"] = "0.5"
        settings = Settings(
            database_url=url,
            ollama_host=embed.url,
            embed_model="all-minilm",
            data_dir=work / "data",
        )
        remotes, names = [], []
        for r in range(repos):
            remote = Remote(work / f"gh{r}", f"acme/game{r}")
            remote.commit("first", first_files(r))
            remote.push()
            remotes.append(remote)
            names.append(f"game{r}")
        per_repo = [len(range(r, deliveries, repos)) for r in range(repos)]
        payloads = [prepare(remote, n) for remote, n in zip(remotes, per_repo, strict=True)]
        async with open_victor(settings) as victor:
            for remote, name in zip(remotes, names, strict=True):
                await victor.track(
                    name, remote.url, branch="main", github_url=remote.html_url, check=False
                )
            port = free_port()
            gunicorn = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                        "--workers", "2", "--threads", "4", "webhook.app:create_app()"]  # fmt: skip
            procs.append(start(gunicorn, env, work / "gunicorn.log"))
            for w in range(workers):
                worker = [sys.executable, "-m", "victor.cli", "worker"]
                procs.append(start(worker, env, work / f"worker{w}.log"))
            hook = f"http://127.0.0.1:{port}"
            await wait_http(hook, procs[0])
            await wait_idle(victor.pool, timeout=120)  # the first syncs
            answers = await fire(hook, remotes, payloads, deliveries, seconds)
            last_sent = time.perf_counter()
            await wait_idle(victor.pool, timeout=300)
            drained = time.perf_counter() - last_sent
            checks = await invariants(victor.pool, remotes, names, per_repo, answers)
        ms = [a["ms"] for a in answers]
        return {
            "machine": machine(),
            "load_average_before": before,
            "load_average_after": load_average(),
            "deliveries": deliveries,
            "seconds": seconds,
            "sent_in_s": answers[0]["sent_in_s"] if answers else 0,
            "repos": repos,
            "workers": workers,
            "gunicorn": "2 processes x 4 threads",
            "ack_ms": {
                "p50": round(pct(ms, 50), 1),
                "p95": round(pct(ms, 95), 1),
                "max": round(max(ms), 1),
            },
            "drained_after_last_delivery_s": round(drained, 2),
            "invariants": checks,
            "failures": [a for a in answers if not 200 <= a["status"] < 300][:5],
        }
    finally:
        stop_all(procs)
        embed.stop()
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repos", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="victor-burst-"))
    try:
        report = asyncio.run(
            burst(
                work,
                deliveries=args.deliveries,
                seconds=args.seconds,
                repos=args.repos,
                workers=args.workers,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(report, args.out)


if __name__ == "__main__":
    main()
