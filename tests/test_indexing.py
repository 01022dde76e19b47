"""Incremental indexing against a real PostgreSQL and the Ollama stand-in.

The stand-in counts every text it embeds, which is how these tests prove
what was and was not re-embedded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess

import psutil
import pytest

from indexer import store
from indexer.errors import EmbedderUnavailable, ModelMismatch, ModelMissing, NotFound
from indexer.parsing.pool import MIN_PARALLEL_CHARS
from indexer.service import open_victor
from indexer.store import migrations
from tests.conftest import SAMPLE, VICTOR, git, make_git_repo, victor_cli
from tests.faults.compare import assert_same, snapshot
from tests.support.lua_corpus import pool_corpus
from tests.support.search import results as search_one


@pytest.fixture
def project(tmp_path):
    dest = tmp_path / "shop"
    shutil.copytree(SAMPLE, dest)
    return dest


async def _chunks(victor, repo: str) -> list:
    return await victor.pool.fetch(
        """
        SELECT c.path, c.symbol, c.start_line, c.end_line, c.embed_hash FROM chunks c
        JOIN repos r ON r.id = c.repo_id WHERE r.name = $1 ORDER BY c.path, c.start_line
        """,
        repo,
    )


async def test_first_index_then_nothing_changed(settings, ollama, project):
    async with open_victor(settings) as victor:
        first = await victor.index(str(project), name="shop")
        assert first.files_new == 4 and first.skipped == []
        assert first.chunks_written > 0
        # nothing cached yet: every chunk worth searching is embedded, `end`-like ones are not
        assert first.chunks_reused == 0 and first.chunks_embedded > 0
        assert first.chunks_embedded + first.chunks_not_embedded == first.chunks_written
        requests_after_first = ollama.requests
        assert requests_after_first > 0

        again = await victor.index(str(project), name="shop")
        assert again.files_unchanged == 4
        assert again.files_new == again.files_changed == again.chunks_written == 0
        assert ollama.requests == requests_after_first  # zero embedding requests


async def test_editing_one_function_reembeds_only_that_function(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        before = {(r["path"], r["symbol"]): r["embed_hash"] for r in await _chunks(victor, "shop")}
        cart = project / "src" / "shop" / "cart.lua"
        cart.write_text(
            cart.read_text().replace(
                "sum = sum + prices.lookup(sku) * quantity",
                "sum = sum + quantity * prices.lookup(sku)",
            )
        )
        ollama.reset()
        report = await victor.index(str(project), name="shop")
        assert report.files_changed == 1 and report.files_unchanged == 3
        assert report.chunks_embedded == 1
        assert len(ollama.inputs) == 1
        assert "Cart:total" in ollama.inputs[0]
        after = {(r["path"], r["symbol"]): r["embed_hash"] for r in await _chunks(victor, "shop")}
        changed = {k for k in after if before.get(k) != after[k]}
        assert changed == {("src/shop/cart.lua", "Cart:total")}


async def test_moved_function_is_not_reembedded(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        shutil.move(project / "src" / "shop" / "picker.lua", project / "src" / "picker.lua")
        ollama.reset()
        report = await victor.index(str(project), name="shop")
        # the embedding text carries the path, so a moved file's chunks are new texts;
        # what must not happen is re-embedding the files that did not move
        assert report.files_new == 1 and report.files_deleted == 1
        # (full texts carry the path, name texts the module: both name the moved file)
        assert ollama.inputs, "the moved file's chunks were not embedded"
        assert all("src/picker.lua" in t or t.endswith(" in picker") for t in ollama.inputs)


async def test_deleted_file_disappears(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        (project / "src" / "shop" / "strings.lua").unlink()
        report = await victor.index(str(project), name="shop")
        assert report.files_deleted == 1
        paths = {r["path"] for r in await _chunks(victor, "shop")}
        assert "src/shop/strings.lua" not in paths
        files = await victor.pool.fetchval("SELECT count(*) FROM files")
        assert files == 3


async def test_search_finds_the_function_for_its_purpose(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        results = await search_one(victor, "apply the loyalty discount for members", top_k=3)
        assert results[0].path == "src/shop/prices.lua"
        assert results[0].start_line <= 27 <= results[0].end_line  # M.apply_discount


async def test_git_repository_records_commit_and_follows_history(settings, ollama, tmp_path):
    repo = make_git_repo(tmp_path / "g", {"a.lua": "local function a() return 1 end\n"})
    async with open_victor(settings) as victor:
        report = await victor.index(str(repo), name="g")
        assert report.commit == git(repo, "rev-parse", "HEAD")
        (repo / "b.lua").write_text("local function b() return 2 end\n")
        (repo / "uncommitted.lua").write_text("local function u() end\n")
        git(repo, "add", "b.lua")
        git(repo, "commit", "-q", "-m", "b")
        report = await victor.index(str(repo), name="g")
        assert report.files_new == 1 and report.files_unchanged == 1
        (stored,) = await victor.repos()
        assert stored.commit_sha == git(repo, "rev-parse", "HEAD")
        commits = {r["commit_sha"] for r in await victor.pool.fetch("SELECT commit_sha FROM files")}
        assert commits == {stored.commit_sha}


async def test_another_model_is_refused_with_advice(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
    other = settings.model_copy(update={"embed_backend": "local"})
    async with open_victor(other) as victor:
        with pytest.raises(ModelMismatch, match="victor reembed"):
            await victor.index(str(project), name="shop")
        with pytest.raises(ModelMismatch, match="VICTOR_EMBED_MODEL=all-minilm"):
            await search_one(victor, "discount")


async def test_missing_model_says_ollama_pull(settings, ollama, project):
    missing = settings.model_copy(update={"embed_model": "nomic-embed-text"})
    async with open_victor(missing) as victor:
        with pytest.raises(ModelMissing, match="ollama pull nomic-embed-text"):
            await victor.index(str(project), name="shop")


async def test_unreachable_ollama_is_a_clear_error(settings, project):
    down = settings.model_copy(update={"ollama_host": "http://127.0.0.1:9", "embed_retries": 1})
    async with open_victor(down) as victor:
        with pytest.raises(
            EmbedderUnavailable, match=r"Cannot reach Ollama at http://127\.0\.0\.1:9"
        ):
            await victor.index(str(project), name="shop")


async def test_transient_errors_are_retried(settings, ollama, project):
    async with open_victor(settings) as victor:
        ollama.fail_status = 503
        with pytest.raises(EmbedderUnavailable, match="503"):
            await victor.index(str(project), name="shop")
        assert ollama.requests == settings.embed_retries + 1
        assert await victor.pool.fetchval("SELECT count(*) FROM files") == 0


async def test_migrations_run_once(settings):
    url = settings.database_url.get_secret_value()
    conn = await store.connect_once(url)
    try:
        every = migrations.all_migrations()
        assert [m.id for m in await migrations.migrate(conn)] == [m.id for m in every]
        assert await migrations.migrate(conn) == []  # all applied: nothing to do
        assert await migrations.applied(conn) == {m.id for m in every}
    finally:
        await conn.close()


async def test_remove_repository(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        await victor.remove("shop")
        assert await victor.repos() == []
        assert await victor.pool.fetchval("SELECT count(*) FROM chunks") == 0
        with pytest.raises(NotFound, match="No repository named 'shop'"):
            await victor.remove("shop")


async def test_reembed_moves_the_index_to_another_model(settings, ollama, project):
    from indexer.indexing.reembed import reembed

    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        chunks = await victor.pool.fetchval("SELECT count(*) FROM chunks")
    local = settings.model_copy(update={"embed_backend": "local"})
    async with open_victor(local) as victor:
        count, embedded = await reembed(victor.pool, victor.embedder)
        assert count == chunks and embedded > 0
        space = await store.embedding_space(victor.pool)
        assert space.space == local.embedding_space and space.dims == 384
        results = await search_one(victor, "apply the loyalty discount for members", top_k=1)
        assert results[0].path == "src/shop/prices.lua"
        # index still incremental afterwards: nothing to do
        report = await victor.index(str(project), name="shop")
        assert report.files_unchanged == 4 and report.chunks_embedded == 0


async def test_reembed_outlasts_the_per_statement_time_limit(settings, ollama, project):
    """`victor reembed` swaps every chunk's vector and rebuilds the HNSW graph in one
    transaction: minutes at 100k+ chunks, longer than VICTOR_SQL_TIMEOUT. Here the limit is
    1 s and another transaction holds the table, so the swap waits 2.5 s, and succeeds."""
    from indexer.indexing.reembed import reembed

    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
    local = settings.model_copy(update={"embed_backend": "local", "sql_timeout": 1.0})
    async with open_victor(local) as victor:
        async with victor.pool.acquire() as holder:
            held = holder.transaction()
            await held.start()
            await holder.execute("LOCK TABLE chunks IN ROW EXCLUSIVE MODE")
            swap = asyncio.create_task(reembed(victor.pool, victor.embedder))
            waiting = (
                "SELECT count(*) FROM pg_locks WHERE relation = 'chunks'::regclass AND NOT granted"
            )
            for _ in range(1200):  # the texts are embedded first
                if await victor.pool.fetchval(waiting) or swap.done():
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(2.5)
            assert not swap.done(), "the swap did not wait for the table"
            await held.rollback()
        count, _ = await asyncio.wait_for(swap, timeout=120)
        assert count > 0
        space = await store.embedding_space(victor.pool)
        assert space.space == local.embedding_space


@pytest.mark.hardening  # 52 files, ~1,100 texts to embed: minutes on a busy 2-core machine
async def test_victor_index_with_two_parse_workers_writes_what_one_process_writes(
    settings, cli_env, ollama, tmp_path
):
    """The production path: `victor index` with its parser pool (VICTOR_PARSE_WORKERS=2) on
    a project large enough to start it, against the same run parsing in one process.
    (The chunker's pool tests in tests/test_chunker.py run in the quick tier.)"""
    items = pool_corpus(MIN_PARALLEL_CHARS)
    project = make_git_repo(tmp_path / "big", dict(items))
    args = ["index", str(project), "--json"]
    two = subprocess.Popen(
        [*VICTOR, *args, "--name", "two"],
        env={**cli_env, "VICTOR_PARSE_WORKERS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    workers = set()
    while two.poll() is None:  # the pool's workers are children of the `victor` process
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(two.pid).children():
                if "indexer.parsing.worker" in child.cmdline():
                    workers.add(child.pid)
        await asyncio.sleep(0.05)
    out, err = two.communicate()
    assert two.returncode == 0, err
    assert len(workers) == 2, workers
    report = json.loads(out)
    assert report["files_new"] == len(items) and report["parse_modes"].keys() == {"ast", "scanner"}

    one = victor_cli(*args, "--name", "one", env={**cli_env, "VICTOR_PARSE_WORKERS": "1"})
    assert json.loads(one.stdout)["parse_modes"] == report["parse_modes"]
    url = settings.database_url.get_secret_value()
    # the same files and chunks (the second run takes its vectors from the embedding cache)
    assert_same(await snapshot(url, "two"), await snapshot(url, "one"))
