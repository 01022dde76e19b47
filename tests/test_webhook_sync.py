"""Push → webhook → worker → index, end to end: real git, the app on 127.0.0.1, a real worker.

A bare repository plays GitHub; a working clone commits and pushes; the delivery GitHub
would send is signed and POSTed to the running app; a worker (in this process, or a
`victor worker` process where it gets killed) does the sync. The Ollama stand-in counts
every text it embeds, which proves what was and was not re-embedded.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time

import asyncpg
import pytest

from indexer import store, words
from indexer.errors import ConfigError, SourceError
from indexer.indexing.run import Changes, index_source
from indexer.indexing.sources import GitSource
from indexer.sync import git, jobs
from tests.conftest import VICTOR, victor_cli
from tests.support.github import Remote, deliver, run_git
from tests.support.search import results as search_one
from tests.support.webhook import SECRET, assert_index_is, wait_idle, wait_job


def belongs(text: str, *paths: str) -> bool:
    """Whether an embedded text is about one of these files: a chunk's full text starts with
    its path, a function's name text ends with its module's words (indexer.embedtext)."""
    modules = tuple(" in " + " ".join(words.module_words(p)) for p in paths)
    return text.startswith(paths) or text.endswith(modules)


def lua_module(name: str, functions: dict[str, str]) -> str:
    """A Lua module whose functions each do something recognisable."""
    parts = [f"local {name} = {{}}\n"]
    for fn, body in functions.items():
        parts.append(f"\n--- {body}\nfunction {name}.{fn}(...)\n  -- {body}\n  return ...\nend\n")
    parts.append(f"\nreturn {name}\n")
    return "".join(parts)


INVENTORY = {
    "add_item": "put an item into the player's bag",
    "remove_item": "take an item out of the player's bag",
    "count_items": "how many items the bag holds",
}
GAME = {
    "src/inventory.lua": lua_module("Inventory", INVENTORY),
    "src/combat.lua": lua_module(
        "Combat",
        {
            "roll_damage": "roll dice for the damage of an attack",
            "apply_armor": "reduce damage by the armor rating",
        },
    ),
    "src/legacy.lua": lua_module(
        "Legacy", {"old_save_format": "write the save game in the obsolete binary format"}
    ),
    "src/util/strings.lua": lua_module(
        "Strings",
        {
            "trim_whitespace": "trim whitespace from both ends of a string",
            "split_on": "split a string on a separator",
        },
    ),
    "README.md": "# game\n",
}


async def follow(victor, remote: Remote, name: str = "game") -> None:
    await store.track_repo(victor.pool, name, remote.url, "main", remote.html_url)


async def push_and_deliver(webhook_url: str, remote: Remote, **push_args) -> int:
    answer = await deliver(webhook_url, "push", remote.push(**push_args), secret=SECRET)
    assert answer.status_code == 202, answer.text
    return answer.json()["jobs"][0]["id"]


async def chunk_texts(victor, needle: str) -> list[str]:
    rows = await victor.pool.fetch("SELECT path FROM chunks WHERE text LIKE $1", f"%{needle}%")
    return [r["path"] for r in rows]


async def test_push_indexes_what_changed_and_nothing_else(
    webhook_url, victor, worker, remote, ollama
):
    remote.commit("initial", GAME)
    await follow(victor, remote)
    first = await wait_job(victor.pool, await push_and_deliver(webhook_url, remote))
    assert first.state == "done" and first.result["mode"] == "full", first
    assert await chunk_texts(victor, "old_save_format") == ["src/legacy.lua"]

    # two commits in one push: add a function, delete a file, rename a file, touch non-Lua
    inventory = dict(INVENTORY, sort_by_weight="sort the items in the bag by their weight")
    remote.commit(
        "sort and cleanup",
        {"src/inventory.lua": lua_module("Inventory", inventory), "src/legacy.lua": None},
    )
    shutil.move(remote.work / "src/util", remote.work / "src/text")
    remote.commit("move strings", {"README.md": "# game\n\nnow with sorting\n"})
    ollama.reset()
    job = await wait_job(victor.pool, await push_and_deliver(webhook_url, remote))
    embedded = list(ollama.inputs)

    assert job.state == "done", job.error
    assert job.result["mode"] == "incremental" and job.result["commit"] == remote.head()
    changes = {(c["status"], c["path"], c["old_path"]) for c in job.result["changes"]}
    assert changes == {
        ("M", "src/inventory.lua", None),
        ("D", "src/legacy.lua", None),
        ("R", "src/text/strings.lua", "src/util/strings.lua"),
    }
    await assert_index_is(victor.pool, "game", remote.bare, remote.head())

    # what changed was embedded; the untouched file was not, nor (with symbol-level chunks)
    # the unchanged functions of the changed file
    changed = ("src/inventory.lua", "src/text/strings.lua")
    assert all(belongs(t, *changed) for t in embedded)
    assert any("sort_by_weight" in t for t in embedded)
    assert not any("roll_damage" in t or "apply_armor" in t for t in embedded)
    full_texts = [t for t in embedded if t.startswith(changed)]
    assert job.result["index"]["chunks_embedded"] == len(full_texts)
    symbol_level = await victor.pool.fetchval("SELECT bool_or(kind <> 'window') FROM chunks")
    if symbol_level:
        assert not any("count_items" in t for t in embedded)

    found = await search_one(victor, "sort the items in the bag by their weight", top_k=3)
    assert any("sort_by_weight" in r.text for r in found)
    assert all(r.commit == remote.head() for r in found if "sort_by_weight" in r.text)
    assert await chunk_texts(victor, "old_save_format") == []
    found = await search_one(victor, "write the save game in the obsolete binary format", top_k=5)
    assert not any(r.path == "src/legacy.lua" for r in found)
    found = await search_one(victor, "trim whitespace from both ends of a string", top_k=3)
    assert found[0].path == "src/text/strings.lua"
    assert await chunk_texts(victor, "trim_whitespace") == ["src/text/strings.lua"]


async def test_ten_quick_pushes_end_at_the_last_commit(webhook_url, victor, worker, remote):
    remote.commit("initial", GAME)
    await follow(victor, remote)
    await push_and_deliver(webhook_url, remote)
    for n in range(10):
        remote.commit(
            f"step {n}",
            {f"src/step{n % 3}.lua": lua_module(f"Step{n % 3}", {f"step_{n}": f"step number {n}"})},
        )
        await push_and_deliver(webhook_url, remote)
    ran = await wait_idle(victor.pool)
    assert all(j.state == "done" for j in ran), [(j.id, j.state, j.error) for j in ran]
    # the worker claims the first push's job while the other ten commits are made and
    # delivered, so later pushes coalesce into at least one more job; no job without a push
    assert len(ran) > 1
    assert all(j.pushes >= 1 for j in ran), [(j.id, j.pushes) for j in ran]
    assert sum(j.pushes for j in ran) == 11  # every delivery counted, coalesced or not
    await assert_index_is(victor.pool, "game", remote.bare, remote.head())
    assert await chunk_texts(victor, "step_9") == ["src/step0.lua"]
    assert await chunk_texts(victor, "step_6") == []  # overwritten by step 9


async def test_force_push_ends_consistent(webhook_url, victor, worker, remote, ollama):
    base = remote.commit("initial", GAME)
    await follow(victor, remote)
    await wait_job(victor.pool, await push_and_deliver(webhook_url, remote))
    remote.commit(
        "doomed",
        {
            "src/doomed.lua": lua_module("Doomed", {"doomed_feature": "an idea that was undone"}),
            "src/combat.lua": lua_module("Combat", {"roll_damage": "damage, rewritten"}),
        },
    )
    await wait_job(victor.pool, await push_and_deliver(webhook_url, remote))
    assert await chunk_texts(victor, "doomed_feature") == ["src/doomed.lua"]

    subprocess.run(["git", "-C", str(remote.work), "reset", "--quiet", "--hard", base], check=True)
    remote.commit(
        "the other way",
        {"src/magic.lua": lua_module("Magic", {"cast_spell": "cast a spell at a target"})},
    )
    ollama.reset()
    job = await wait_job(victor.pool, await push_and_deliver(webhook_url, remote, force=True))
    assert job.state == "done", job.error
    assert job.result["mode"] == "full" and "force-push" in job.result["why"]
    await assert_index_is(victor.pool, "game", remote.bare, remote.head())
    assert await chunk_texts(victor, "doomed_feature") == []
    assert await chunk_texts(victor, "cast_spell") == ["src/magic.lua"]
    # combat.lua is back to its first version, whose chunks are still in the cache
    assert not any("src/combat.lua" in t for t in ollama.inputs)
    assert all(belongs(t, "src/magic.lua") for t in ollama.inputs)


async def test_worker_survives_its_connections_being_dropped(
    webhook_url, victor, worker, remote, hook_settings
):
    remote.commit("initial", GAME)
    await follow(victor, remote)
    await wait_job(victor.pool, await push_and_deliver(webhook_url, remote))
    url = hook_settings.database_url.get_secret_value()
    admin = await asyncpg.connect(url)
    try:  # what a database restart does to the worker: every connection cut
        dropped = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert dropped > 0
    await asyncio.sleep(0.5)
    remote.commit("after the outage", {"src/new.lua": "local function resilient() end\n"})
    job = await wait_job(victor.pool, await push_and_deliver(webhook_url, remote))
    assert job.state == "done", job.error
    await assert_index_is(victor.pool, "game", remote.bare, remote.head())


async def test_pushed_commit_rewritten_before_the_sync_indexes_the_branch(
    webhook_url, victor, worker, remote
):
    remote.commit("initial", GAME)
    await follow(victor, remote)
    await wait_job(victor.pool, await push_and_deliver(webhook_url, remote))
    remote.commit("short-lived", {"src/a.lua": "local function short_lived() end\n"})
    payload = remote.push()
    subprocess.run(["git", "-C", str(remote.work), "reset", "--quiet", "--hard", "HEAD~1"])
    remote.commit("replacement", {"src/b.lua": "local function replacement() end\n"})
    remote.push(force=True)  # its delivery is lost: only the first one arrives
    answer = await deliver(webhook_url, "push", payload, secret=SECRET)
    job = await wait_job(victor.pool, answer.json()["jobs"][0]["id"])
    assert job.state == "done" and "no longer on the branch" in job.result["note"]
    await assert_index_is(victor.pool, "game", remote.bare, remote.head())


def _start_worker(cli_env: dict[str, str], log_path, **extra: str) -> subprocess.Popen:
    """`victor worker` in its own process; small embedding batches, so it writes as it goes."""
    env = {
        **cli_env,
        "VICTOR_JOB_LEASE": "2",
        "VICTOR_WORKER_POLL": "0.2",
        "VICTOR_EMBED_BATCH_SIZE": "4",
        "VICTOR_EMBED_CONCURRENCY": "1",
        **extra,
    }
    log = log_path.open("w")
    return subprocess.Popen([*VICTOR, "worker"], env=env, stdout=log, stderr=log)


async def _wait_mid_job(victor, proc: subprocess.Popen, job_id: int) -> int:
    """Wait until the worker has written some files of the job but not finished it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        written = await victor.pool.fetchval("SELECT count(*) FROM files")
        if written >= 2 and (await jobs.get(victor.pool, job_id)).state == "running":
            return written
        await asyncio.sleep(0.05)
    raise AssertionError(f"the worker never got into the job (exit {proc.poll()})")


def _big_repo(remote: Remote, corpora) -> None:
    """Ten real Lua files (Penlight's smallest): a sync takes a while with a slow embedder."""
    source = corpora / "penlight" / "lua" / "pl"
    files = sorted(source.glob("*.lua"), key=lambda f: (f.stat().st_size, f.name))[:10]
    remote.commit("penlight", {f"lua/pl/{f.name}": f.read_text() for f in files})


@pytest.mark.hardening  # a fault test, with a deliberately slow embedder
async def test_killed_worker_job_is_taken_over_and_completes_once(
    webhook_url, victor, remote, ollama, cli_env, corpora, tmp_path, hook_settings
):
    _big_repo(remote, corpora)
    await follow(victor, remote)
    ollama.delay = 0.3  # slow embedding: the kill lands mid-job
    proc = _start_worker(cli_env, tmp_path / "worker.log")
    job_id = await push_and_deliver(webhook_url, remote)
    try:
        written = await _wait_mid_job(victor, proc, job_id)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 0 < written < 10
    assert (await victor.repos())[0].commit_sha is None  # not recorded: the job did not end

    ollama.delay = 0
    from indexer.sync.worker import Worker

    survivor = Worker(victor)
    task = asyncio.create_task(survivor.run())
    try:
        job = await wait_job(victor.pool, job_id, timeout=60)
    finally:
        survivor.stop()
        await task
    assert job.state == "done" and job.attempts == 2, job
    assert "stopped renewing its lease" in job.error
    assert await victor.pool.fetchval("SELECT count(*) FROM sync_jobs") == 1
    assert survivor.jobs_run == 1
    await assert_index_is(victor.pool, "game", remote.bare, remote.head())
    # files written before the kill were kept: the second attempt did not redo them
    assert job.result["index"]["files_new"] == 10 - written
    assert hook_settings.webhook_secret.get_secret_value() not in json.dumps(job.to_json())


@pytest.mark.hardening  # a fault test, with a deliberately slow embedder
async def test_sigterm_hands_the_job_back(webhook_url, victor, remote, ollama, cli_env, corpora):
    _big_repo(remote, corpora)
    await follow(victor, remote)
    ollama.delay = 0.3
    log_path = remote.work.parent / "worker.log"
    proc = _start_worker(cli_env, log_path, VICTOR_WORKER_GRACE="0.5")
    job_id = await push_and_deliver(webhook_url, remote)
    try:
        await _wait_mid_job(victor, proc, job_id)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert "handed back" in log_path.read_text()
    job = await jobs.get(victor.pool, job_id)
    assert (job.state, job.attempts, job.worker) == ("pending", 0, None)

    ollama.delay = 0
    from indexer.sync.worker import Worker

    drained = Worker(victor, drain=True)
    await drained.run()
    job = await jobs.get(victor.pool, job_id)
    assert (job.state, job.attempts) == ("done", 1)
    await assert_index_is(victor.pool, "game", remote.bare, remote.head())


async def test_repo_and_sync_commands(cli_env, remote, ollama):
    remote.commit("initial", GAME)
    remote.push()
    added = victor_cli(
        "repo", "add", "game", remote.url, "--github-url", remote.html_url + "/", env=cli_env
    )
    assert "following game" in added.stderr and "queued job" in added.stderr
    (listed,) = json.loads(victor_cli("repo", "list", "--json", env=cli_env).stdout)
    assert listed["branch"] == "main" and listed["github_url"] == remote.html_url

    first = json.loads(victor_cli("sync", "game", "--json", env=cli_env).stdout)
    assert first["mode"] == "full" and first["commit"] == remote.head()
    remote.commit("more", {"src/new.lua": "local function brand_new() end\n"})
    remote.push()
    second = json.loads(victor_cli("sync", "game", "--json", env=cli_env).stdout)
    assert second["mode"] == "incremental"
    assert second["changes"] == [{"status": "A", "path": "src/new.lua", "old_path": None}]

    # the job `repo add` queued: a worker finds the index already at the head
    victor_cli("worker", "--drain", env=cli_env)
    (job,) = json.loads(victor_cli("jobs", "--json", env=cli_env).stdout)
    assert job["state"] == "done" and job["result"]["index"]["chunks_embedded"] == 0


async def test_repo_add_refuses_what_cannot_work(cli_env, remote, ollama):
    remote.commit("initial", GAME)
    remote.push()
    cases = [
        (["https://x-access-token:ghp_s3cret@github.com/o/r.git"], "carries credentials"),
        (["no-such-folder"], "neither a git URL nor a folder"),
        ([str(remote.work / "src")], "is not a git repository"),
        ([remote.url + "-missing", "--github-url", remote.html_url], "Cannot read"),
        ([remote.url, "--branch", "nope", "--github-url", remote.html_url], "no branch 'nope'"),
    ]
    for args, message in cases:
        done = victor_cli("repo", "add", "r", *args, env=cli_env, check=False)
        assert done.returncode == 1 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
    done = victor_cli("sync", "ghost", env=cli_env, check=False)
    assert done.returncode == 1 and "No repository named 'ghost'" in done.stderr


async def test_repo_add_follows_any_git_url_or_path(cli_env, victor, remote, ollama):
    """A local path (relative: resolved), a file:// URL, a work tree, another host: followed;
    without a GitHub page, `victor sync` keeps them current and GitHub pushes do not match."""
    remote.commit("initial", GAME)
    remote.push()
    here = remote.bare.parent  # `victor repo add game game.git` from the folder that holds it
    added = victor_cli("repo", "add", "game", remote.bare.name, env=cli_env, cwd=here)
    assert "following game: " + str(remote.bare) in added.stderr, added.stderr
    assert "no GitHub page: pushes from GitHub will not match it" in added.stderr
    assert "victor sync game" in added.stderr
    for name, url in [("viafile", remote.url), ("worktree", str(remote.work))]:
        done = victor_cli("repo", "add", name, url, env=cli_env)
        assert "no GitHub page" in done.stderr, done.stderr
    elsewhere = ["https://git.example.com/o/r.git", "git@git.example.com:o/r.git"]
    for n, url in enumerate(elsewhere):  # unreachable here: --no-check
        done = victor_cli("repo", "add", f"other{n}", url, "--no-check", env=cli_env)
        assert f"following other{n}: {url} branch main (no GitHub page" in done.stderr
    listed = json.loads(victor_cli("repo", "list", "--json", env=cli_env).stdout)
    assert {r["name"]: (r["url"], r["github_url"]) for r in listed} == {
        "game": (str(remote.bare), None),
        "viafile": (remote.url, None),
        "worktree": (str(remote.work), None),
        "other0": (elsewhere[0], None),
        "other1": (elsewhere[1], None),
    }

    first = json.loads(victor_cli("sync", "game", "--json", env=cli_env).stdout)
    assert first["mode"] == "full" and first["commit"] == remote.head()
    remote.commit("more", {"src/new.lua": "local function brand_new() end\n"})
    payload = remote.push()
    second = json.loads(victor_cli("sync", "game", "--json", env=cli_env).stdout)
    assert second["changes"] == [{"status": "A", "path": "src/new.lua", "old_path": None}]
    await assert_index_is(victor.pool, "game", remote.bare, remote.head())
    assert (await store.get_repo(victor.pool, "game")).github_url is None  # kept by the sync

    # a GitHub delivery for acme/game matches none of them: no page, no match
    from tests.support.webhook import WebhookServer

    server = WebhookServer(victor.settings).start()
    try:
        answer = await deliver(server.url, "push", payload, secret=SECRET)
    finally:
        server.stop()
    assert answer.status_code == 200 and answer.json()["status"] == "ignored", answer.text


async def test_deleted_branch_fails_with_advice(victor, remote):
    remote.commit("initial", GAME)
    remote.push()
    await follow(victor, remote)
    await victor.sync("game")
    remote.checkout("other", new=True)
    remote.push("other")
    run_git(remote.bare, "symbolic-ref", "HEAD", "refs/heads/other")  # the new default branch
    remote.delete_branch("main")
    with pytest.raises(SourceError, match=r"branch 'main' is not in .* --branch OTHER"):
        await victor.sync("game")


async def test_stale_change_list_compares_every_file(victor, remote, ollama):
    remote.commit("initial", GAME)
    remote.push()
    await follow(victor, remote)
    await victor.sync("game")
    (remote.work / "src/combat.lua").write_text("local function surprise() end\n")
    remote.commit("changed behind the change list's back")
    remote.push()
    clone = victor.settings.clones_dir / "game"
    git.clone_or_fetch(remote.url, clone)
    source = GitSource(clone, remote.head(), ("*.lua",), 10**6)
    wrong = Changes(base="f" * 40, paths=frozenset({"src/inventory.lua"}))
    report = await index_source(
        victor.pool, victor.embedder, victor.settings, source, "game", changes=wrong
    )
    assert not report.incremental and "the index moved" in report.scope
    assert report.files_changed == 1  # combat.lua, found although not in the list
    await assert_index_is(victor.pool, "game", remote.bare, remote.head())


async def test_index_refuses_a_followed_repository(victor, remote, tmp_path):
    await follow(victor, remote)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ConfigError, match="victor sync game"):
        await victor.index(str(tmp_path / "elsewhere"), name="game")
