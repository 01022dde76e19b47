"""The worker killed again and again, two workers at once, the webhook app restarted.

Real `victor worker` processes (SIGKILLed at random points of a job), the webhook app under
gunicorn, real git remotes on file://, the session's PostgreSQL. Afterwards every job is done
exactly once and every index equals what a clean sync builds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter

import httpx
import pytest
from pydantic import SecretStr

from indexer import store
from indexer.embedding.probes import PROBES
from indexer.embedding.texts import text_hash
from indexer.service import open_victor
from indexer.sync import jobs
from indexer.sync.worker import Worker
from tests.conftest import VICTOR
from tests.faults.compare import assert_same, snapshot
from tests.faults.test_database_restart import penlight_files
from tests.support import pg
from tests.support.fault_seed import SEED
from tests.support.github import Remote, deliver
from tests.support.pipelines import free_port
from tests.support.webhook import (
    SECRET,
    WebhookServer,
    assert_index_is,
    start_gunicorn,
    wait_idle,
)

pytestmark = pytest.mark.hardening

PROBE = "dimension probe"  # what a starting worker embeds to learn the dimension
# what binding the index to its model embeds to learn its cosine scale (not cached)
SCALE_PROBES = {text for pair in PROBES for text in pair}
KILLS = 5


def worker_env(cli_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **cli_env,
        "VICTOR_JOB_LEASE": "1.5",
        "VICTOR_JOB_RETRY_DELAY": "0.2",
        "VICTOR_WORKER_POLL": "0.2",
        "VICTOR_EMBED_BATCH_SIZE": "4",
        "VICTOR_EMBED_CONCURRENCY": "1",
        **extra,
    }


def start_worker(env: dict[str, str], log_path) -> subprocess.Popen:
    with log_path.open("a") as log:
        return subprocess.Popen([*VICTOR, "worker"], env=env, stdout=log, stderr=log)


async def clean_sync(settings, admin_url: str, remote: Remote, name: str, tmp_path) -> str:
    """A database where `name` was synced once, without any fault; returns its URL."""
    url = await pg.create_database(admin_url, prefix="clean")
    clean = settings.model_copy(
        update={"database_url": SecretStr(url), "data_dir": tmp_path / f"clean-{name}"}
    )
    async with open_victor(clean) as victor:
        await store.track_repo(victor.pool, name, remote.url, "main", remote.html_url)
        await victor.sync(name)
    return url


async def test_worker_killed_at_random_points_of_a_job_then_one_completes_it_once(
    hook_settings, remote, ollama, cli_env, corpora, tmp_path, pg_admin_url, figures, fault_rng
):
    rng = fault_rng  # VICTOR_FAULT_SEED repeats the points; a failure shows the seed
    settings = hook_settings.model_copy(update={"job_max_attempts": KILLS + 3})
    remote.commit("penlight", penlight_files(corpora, 16))  # ~70 embedding requests
    url = settings.database_url.get_secret_value()
    async with open_victor(settings) as victor:
        await store.track_repo(victor.pool, "game", remote.url, "main", remote.html_url)
    app = WebhookServer(settings).start()
    env = worker_env(cli_env)
    log_path = tmp_path / "workers.log"
    ollama.delay = 0.1  # a job of several seconds: the kills land inside it
    kills, points = 0, []
    try:
        answer = await deliver(app.url, "push", remote.push(), secret=SECRET)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["jobs"][0]["id"]
        async with open_victor(settings) as victor:
            for attempt in range(1, KILLS + 1):
                job_requests = ollama.requests
                proc = start_worker(env, log_path)
                try:
                    deadline = time.monotonic() + 60
                    while (job := await jobs.get(victor.pool, job_id)).attempts < attempt:
                        assert proc.poll() is None, log_path.read_text()
                        assert time.monotonic() < deadline, f"attempt {attempt} never started"
                        await asyncio.sleep(0.02)
                    assert job.state == "running", job
                    # a random point: after 3-12 more embedding requests, plus up to 0.2 s
                    # (5 x 12 < the job's ~70: the kills all land before it can end)
                    target = ollama.requests + rng.randint(3, 12)
                    while ollama.requests < target:
                        assert proc.poll() is None, log_path.read_text()
                        assert time.monotonic() < deadline, f"attempt {attempt} embeds nothing"
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(rng.uniform(0, 0.2))
                    point = target - job_requests
                    files = await victor.pool.fetchval("SELECT count(*) FROM files")
                finally:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                kills += 1
                points.append((point, files))
                job = await jobs.get(victor.pool, job_id)
                assert job.state == "running", f"the job ended before kill {attempt}: {job}"
            assert (await victor.repos())[0].commit_sha is None  # never recorded half-done

            ollama.delay = 0
            killed_inputs = list(ollama.inputs)
            cached = {
                bytes(r["text_hash"])
                for r in await victor.pool.fetch("SELECT text_hash FROM embedding_cache")
            }
            survivor = start_worker(env, log_path)
            started = time.monotonic()
            try:
                (job,) = await wait_idle(victor.pool, timeout=180)
                recovery = time.monotonic() - started
                inputs = list(ollama.inputs)  # before the clean sync below embeds its own
            finally:
                survivor.terminate()
                survivor.wait(timeout=30)
            await assert_index_is(victor.pool, "game", remote.bare, remote.head())
            per_file = await victor.pool.fetch(
                "SELECT path, count(*) AS n FROM chunks GROUP BY path"
            )
    finally:
        app.stop()
    assert job.id == job_id and job.state == "done", job
    assert job.attempts == KILLS + 1, job
    assert "stopped renewing its lease" in job.error, job
    log = log_path.read_text()
    assert "Traceback" not in log, log
    assert log.count(f"job {job_id}: game at") == 1, log  # finished once
    clean_url = await clean_sync(settings, pg_admin_url, remote, "game", tmp_path)
    assert_same(await snapshot(url, "game"), await snapshot(clean_url, "game"))

    # Re-embedded: only texts whose flush was cut by a kill (embedded, not yet cached and
    # written). A flush holds fewer than 8 chunks plus one file's, each at most two texts.
    texts = [t for t in inputs if t != PROBE and t not in SCALE_PROBES]
    twice = sum(n - 1 for n in Counter(texts).values() if n > 1)
    per_flush = 2 * (8 - 1 + max(r["n"] for r in per_file))
    assert twice <= kills * per_flush, (twice, kills, per_flush)
    # what the killed workers had cached, the survivor took from the cache
    after_kills = [t for t in inputs[len(killed_inputs) :] if t != PROBE and t not in SCALE_PROBES]
    assert not [t for t in after_kills if text_hash(t) in cached]
    assert len(after_kills) + len(cached) == len(set(texts)), "embedded twice after the kills"
    figures(
        f"`victor worker` SIGKILLed {KILLS} times at random points of one job (seed {SEED})",
        kills,
        f"kills at (embedding request of the attempt, files in the index) {points}; each time "
        "the lease ran "
        f"out and the next worker took over; done once at attempt {job.attempts}, equals a "
        "clean sync",
        recovery,
        lost=f"{twice} of {len(set(texts))} texts embedded twice (cut flushes); "
        f"{len(cached)} cached by the killed workers were not embedded again",
    )


async def follow(settings, corpora, tmp_path, names, files_each: int) -> dict[str, Remote]:
    """A remote per name holding its own `files_each` Penlight modules, each followed."""
    files = list(penlight_files(corpora, files_each * len(names)).items())
    remotes = {}
    async with open_victor(settings) as victor:
        for i, name in enumerate(names):
            remote = Remote(tmp_path / name, f"acme/{name}")
            remote.commit("penlight", dict(files[i * files_each : (i + 1) * files_each]))
            await store.track_repo(victor.pool, name, remote.url, "main", remote.html_url)
            remotes[name] = remote
    return remotes


async def test_two_workers_on_three_repositories_do_each_job_once(
    hook_settings, ollama, cli_env, corpora, tmp_path, figures
):
    names = ("alpha", "beta", "gamma")
    remotes = await follow(hook_settings, corpora, tmp_path, names, files_each=4)
    app = WebhookServer(hook_settings).start()
    env = worker_env(cli_env)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    ollama.delay = 0.05
    procs = [start_worker(env, log) for log in logs]
    ids = set()
    try:
        for round_ in range(2):  # a second push to each while the first jobs run
            for name, remote in remotes.items():
                remote.commit(f"{name} {round_}", {f"src/{name}{round_}.lua": f"return {round_}\n"})
                answer = await deliver(app.url, "push", remote.push(), secret=SECRET)
                assert answer.status_code == 202, answer.text
                ids.update(j["id"] for j in answer.json()["jobs"])
        started = time.monotonic()
        async with open_victor(hook_settings) as victor:
            done = await wait_idle(victor.pool, timeout=180)
            took = time.monotonic() - started
            for name, remote in remotes.items():
                await assert_index_is(victor.pool, name, remote.bare, remote.head())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        app.stop()
    assert {j.id for j in done} == ids
    assert all(j.state == "done" for j in done), done
    texts = [log.read_text() for log in logs]
    for text in texts:
        assert "Traceback" not in text and "another worker had taken" not in text, text
    for j in done:
        finished = sum(t.count(f"job {j.id}: {j.repo} at") for t in texts)
        assert finished == 1, (j, texts)
    by_worker = Counter(j.worker for j in done)
    for name, remote in remotes.items():
        last = max((j for j in done if j.repo == name), key=lambda j: j.id)
        assert last.result["commit"] == remote.head()
    figures(
        "two `victor worker`s at once, 2 pushes to each of 3 repositories",
        len(done),
        f"{len(done)} jobs (pushes coalesced while pending), each done exactly once, "
        f"split {sorted(by_worker.values())} between the workers; every index at its head",
        took,
    )


async def test_webhook_app_restarted_with_jobs_pending_loses_none(
    hook_settings, ollama, cli_env, corpora, tmp_path, figures
):
    names = ("north", "south")
    remotes = await follow(hook_settings, corpora, tmp_path, names, files_each=3)
    env = {**worker_env(cli_env), "VICTOR_WEBHOOK_SECRET": SECRET}
    port, log_path = free_port(), tmp_path / "gunicorn.log"
    app = start_gunicorn(env, port, log_path, "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    queued = set()
    try:
        for remote in remotes.values():  # no worker runs: the jobs stay pending
            answer = await deliver(url, "push", remote.push(), secret=SECRET)
            assert answer.status_code == 202, answer.text
            queued.update(j["id"] for j in answer.json()["jobs"])
        os.killpg(app.pid, signal.SIGKILL)  # the app dies (host crash, OOM kill)
        app.wait()
        restarted = time.monotonic()
        app = start_gunicorn(env, port, log_path, "--workers", "2")
        listed = httpx.get(f"{url}/jobs", timeout=10).json()
        pending = {j["id"] for j in listed["jobs"] if j["state"] == "pending"}
        assert queued <= pending, listed
        # a push after the restart joins the pending job of its repository
        remote = remotes["north"]
        remote.commit("after the restart", {"src/late.lua": "local function late() end\n"})
        answer = await deliver(url, "push", remote.push(), secret=SECRET)
        assert answer.status_code == 202, answer.text
        assert {j["id"] for j in answer.json()["jobs"]} <= queued
        async with open_victor(hook_settings) as victor:
            await Worker(victor, drain=True).run()
            done = await wait_idle(victor.pool, timeout=60)
            recovery = time.monotonic() - restarted
            for name, remote in remotes.items():
                await assert_index_is(victor.pool, name, remote.bare, remote.head())
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGTERM)
            app.wait(timeout=30)
    assert {j.id for j in done} == queued
    assert all(j.state == "done" and j.attempts == 1 for j in done), done
    figures(
        "webhook app (gunicorn) SIGKILLed and restarted with jobs pending",
        1,
        f"the {len(queued)} pending jobs were listed by the restarted app, a new push joined "
        "its repository's pending job, a worker then did each once; indexes at the heads",
        recovery,
    )
