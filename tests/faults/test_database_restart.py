"""PostgreSQL stopped and started again under `victor index` and under a webhook job.

A PostgreSQL of the module's own is stopped for real (`pg_ctl stop`, fast: sessions are
terminated; immediate: a crash) while a real `victor index` process or a real `victor worker`
process is in the middle of its work, then started again. Afterwards the index must be
exactly what a clean run builds.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import asyncpg
import pytest
from pydantic import SecretStr

from indexer import store
from indexer.service import open_victor
from indexer.sync import jobs
from tests.conftest import VICTOR, git
from tests.faults.compare import assert_same, snapshot
from tests.support import pg
from tests.support.github import deliver
from tests.support.webhook import SECRET, WebhookServer, assert_index_is

pytestmark = pytest.mark.hardening


def penlight_files(corpora, count: int) -> dict[str, str]:
    """The `count` smallest modules of Penlight's lua/pl (real Lua, quick to parse)."""
    source = corpora / "penlight" / "lua" / "pl"
    files = sorted(source.glob("*.lua"), key=lambda f: (f.stat().st_size, f.name))[:count]
    return {f"lua/pl/{f.name}": f.read_text() for f in files}


def env_for(cli_env: dict[str, str], url: str, **extra: str) -> dict[str, str]:
    return {
        **cli_env,
        "VICTOR_DATABASE_URL": url,
        "VICTOR_EMBED_BATCH_SIZE": "4",  # small batches: files are written as the run goes
        "VICTOR_EMBED_CONCURRENCY": "1",
        **extra,
    }


async def count_files(url: str) -> int:
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError):
        return 0
    try:
        if not await conn.fetchval("SELECT to_regclass('files') IS NOT NULL"):
            return 0
        return await conn.fetchval("SELECT count(*) FROM files")
    finally:
        await conn.close()


async def wait_files(url: str, at_least: int, proc: subprocess.Popen, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while (written := await count_files(url)) < at_least:
        assert proc.poll() is None, f"the process ended first ({proc.returncode})"
        assert time.monotonic() < deadline, f"only {written} files written"
        await asyncio.sleep(0.05)
    return written


async def test_index_run_stopped_by_a_database_restart_fails_cleanly_and_the_next_completes(
    own_pg_up, cli_env, ollama, corpora, tmp_path, pg_admin_url, settings, figures
):
    project = tmp_path / "pl"
    project.mkdir()
    files = penlight_files(corpora, 16)
    for rel, text in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "penlight")
    url = await pg.create_database(own_pg_up.url)
    env = env_for(cli_env, url)
    ollama.delay = 0.2  # the run takes a while: the stop lands in its middle

    written, exits, restarts = 0, [], []
    for mode in ("fast", "immediate"):  # an operator's stop, then a crash
        proc = subprocess.Popen(
            [*VICTOR, "index", str(project), "--name", "pl"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            written = await wait_files(url, written + 2, proc)
            own_pg_up.stop(mode)
            stopped = time.monotonic()
            _, stderr = proc.communicate(timeout=120)
            exits.append(time.monotonic() - stopped)
        finally:
            proc.kill()
        lines = stderr.strip().splitlines()
        assert proc.returncode == 1, stderr
        assert "Traceback" not in stderr, stderr
        assert lines[-1].startswith("victor: error: "), stderr
        assert "PostgreSQL" in lines[-1], stderr
        assert not [line for line in lines[:-1] if "error" in line.lower()], stderr

        started = time.monotonic()
        own_pg_up.start()
        restarts.append(time.monotonic() - started)
        half = await snapshot(url, "pl")
        assert half["orphans"] == 0  # every file row has its chunks
        assert half["commit"] is None  # the run is not recorded as complete
        written = len(half["files"])
        assert 0 < written < len(files)

    ollama.delay = 0
    started = time.monotonic()
    done = subprocess.run(
        [*VICTOR, "index", str(project), "--name", "pl"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    rerun = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert f"{len(files) - written} new, 0 changed, {written} unchanged" in done.stderr

    clean_url = await pg.create_database(pg_admin_url, prefix="clean")
    clean = settings.model_copy(update={"database_url": SecretStr(clean_url)})
    async with open_victor(clean) as victor:
        await victor.index(str(project), name="pl")
    assert_same(await snapshot(url, "pl"), await snapshot(clean_url, "pl"))
    figures(
        "PostgreSQL stopped during `victor index` (fast stop, then crash)",
        2,
        f"the run exited 1 with one line `victor: error: ...PostgreSQL...` "
        f"{min(exits):.1f}-{max(exits):.1f} s after the stop; every file row had its chunks, "
        f"commit not recorded; the next run wrote the {len(files) - written} missing files "
        "and equals a clean index",
        max(restarts) + rerun,
    )


async def test_webhook_job_outlives_a_database_restart(
    own_pg_up, hook_settings, remote, ollama, cli_env, corpora, tmp_path, figures
):
    url = await pg.create_database(own_pg_up.url)
    ours = hook_settings.model_copy(update={"database_url": SecretStr(url)})
    remote.commit("penlight", penlight_files(corpora, 12))
    async with open_victor(ours) as victor:
        await store.track_repo(victor.pool, "game", remote.url, "main", remote.html_url)
    app = WebhookServer(ours).start()
    env = env_for(
        cli_env,
        url,
        VICTOR_JOB_LEASE="2",
        VICTOR_JOB_RETRY_DELAY="0.5",
        VICTOR_WORKER_POLL="0.2",
        VICTOR_DATA_DIR=str(tmp_path / "worker-data"),
    )
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen([*VICTOR, "worker"], env=env, stdout=log, stderr=log)
    ollama.delay = 0.2
    try:
        answer = await deliver(app.url, "push", remote.push(), secret=SECRET)
        assert answer.status_code == 202, answer.text
        first = answer.json()["jobs"][0]["id"]
        await wait_files(url, 2, worker)

        own_pg_up.stop("immediate")
        down = time.monotonic()
        remote.commit("during the outage", {"src/late.lua": "local function late() end\n"})
        payload = remote.push()
        answer = await deliver(app.url, "push", payload, secret=SECRET, delivery="d-outage")
        assert answer.status_code == 503 and "Redeliver" in answer.json()["message"]
        await asyncio.sleep(3)
        own_pg_up.start()
        outage = time.monotonic() - down
        back = time.monotonic()
        # GitHub's "Redeliver": the same delivery id, now accepted
        answer = await deliver(app.url, "push", payload, secret=SECRET, delivery="d-outage")
        assert answer.status_code == 202, answer.text
        second = answer.json()["jobs"][0]["id"]
        ollama.delay = 0

        async with open_victor(ours) as victor:
            deadline = time.monotonic() + 180
            while await jobs.open_jobs(victor.pool):
                assert time.monotonic() < deadline, await jobs.recent(victor.pool)
                await asyncio.sleep(0.1)
            recovered = time.monotonic() - back
            listed = {j.id: j for j in await jobs.recent(victor.pool)}
            await assert_index_is(victor.pool, "game", remote.bare, remote.head())
        assert worker.poll() is None, "the worker must outlive the outage"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        app.stop()
    assert set(listed) == {first, second}
    # attempt 1 either fails on the outage and is retried, or (its next write came after the
    # restart, while it waited on the embedder) goes on and finishes: both end done, once
    assert listed[first].state == "done", listed[first]
    assert listed[second].state == "done" and listed[second].attempts == 1, listed[second]
    text = log_path.read_text()
    assert "Traceback" not in text, text
    assert text.count(f"job {first}: game at") == 1  # finished once
    assert text.count(f"job {second}: game at") == 1
    figures(
        "PostgreSQL crashed during a webhook job (worker running)",
        1,
        f"the worker stayed up; the job went on after the restart and finished once "
        f"(attempt {listed[first].attempts}); a push during the {outage:.0f} s outage got 503, "
        "its redelivery 202, synced once",
        recovered,
    )
