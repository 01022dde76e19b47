"""LLM-written summaries (indexer/summaries, docs/summaries.md) on the real PostgreSQL, real
indexing, and a real HTTP stand-in for the summary model (tests/support/summary_model.py) that
answers each request with a deterministic summary.

What they must do: nothing at all while off; say what a run costs before it asks anything; ask
only about functions without a summary (a changed function: one request); make a function
findable by a word only its summary holds, with the lexical index exactly in step; keep every
finished summary when a run stops half-way; fail with a clear message, never the key, and leave
the index as it was when the model is down or answers garbage.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time

import asyncpg
import pytest
from pydantic import SecretStr

from indexer import store
from indexer.config import Settings
from indexer.errors import ConfigError, SummariserError, SummariserUnavailable
from indexer.redaction import settings_secrets
from indexer.service import open_victor
from indexer.store import postings
from indexer.summaries import run as summaries
from indexer.summaries.prompt import summariser_key
from indexer.sync import repo_sync
from tests.conftest import SAMPLE, VICTOR, git, make_git_repo, victor_cli
from tests.support.search import results as search_one
from tests.support.summary_model import SummaryModel

IN_STEP = {"postings": 0, "terms": 0, "stats": 0}
KEY = "sk-test-summary-key-0123456789"


@pytest.fixture
def project(tmp_path):
    dest = tmp_path / "shop"
    shutil.copytree(SAMPLE, dest)
    return dest


@pytest.fixture
def model():
    with SummaryModel(api_key=KEY) as server:
        yield server


def on(settings: Settings, url: str, **more) -> Settings:
    """The test settings with summaries written by the stand-in (OpenAI-compatible, a key)."""
    values = {
        "summary_backend": "openai",
        "summary_model": "stand-in",
        "summary_url": url + "/v1",
        "summary_api_key": KEY,
        "summary_timeout": 10,
        **more,
    }
    values["summary_api_key"] = SecretStr(values["summary_api_key"])
    return settings.model_copy(update=values)


async def functions(pool) -> int:
    """Distinct texts of the functions indexed: what a full run asks about."""
    return await pool.fetchval(
        "SELECT count(DISTINCT embed_hash) FROM chunks WHERE kind IN ('function', 'method')"
    )


async def summaries_of(pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT symbol, summary FROM chunks WHERE summary <> ''")
    return {r["symbol"]: r["summary"] for r in rows}


async def in_step(pool) -> bool:
    async with pool.acquire() as conn:
        return await postings.check(conn) == IN_STEP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_off_by_default_nothing_is_summarised_or_attached(settings, ollama, project, model):
    assert Settings().summary_backend == "off" and not settings.summaries_on
    async with open_victor(on(settings, model.url)) as victor:
        await victor.index(str(project), name="shop")
        await summaries.summarize(victor.pool, victor.settings, None)
        kept = await victor.pool.fetchval("SELECT count(*) FROM chunk_summaries")
        assert kept == await functions(victor.pool) > 0
    # summaries off: an index run attaches none of the kept summaries to what it writes
    cart = project / "src" / "shop" / "cart.lua"
    cart.write_text(cart.read_text() + "\n-- touched\n")
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        rows = await victor.pool.fetch("SELECT summary FROM chunks WHERE path LIKE '%cart.lua'")
        assert rows and all(r["summary"] == "" for r in rows)
        assert await in_step(victor.pool)
        with pytest.raises(ConfigError, match="VICTOR_SUMMARY_BACKEND"):
            await summaries.summarize(victor.pool, victor.settings, None)
    assert len(model.requests) == kept  # the off run asked nothing


async def test_the_estimate_says_what_a_run_sends_and_asks_nothing(
    settings, ollama, project, model
):
    async with open_victor(on(settings, model.url)) as victor:
        await victor.index(str(project), name="shop")
        n = await functions(victor.pool)
        chars = await victor.pool.fetchval(
            "SELECT sum(length(text) + length(path) + length(symbol)) FROM (SELECT DISTINCT ON "
            "(embed_hash) text, path, symbol FROM chunks WHERE kind IN ('function', 'method') "
            "ORDER BY embed_hash, id) f"
        )
        cost = await summaries.estimate(victor.pool, victor.settings, None)
        assert cost.to_summarise == n and cost.already == 0
        assert cost.input_tokens > chars / 4  # the code itself, and the prompt per request
        assert cost.output_tokens_max == n * victor.settings.summary_max_tokens
        assert cost.summariser == summariser_key(victor.settings)
        assert model.requests == []

        report = await summaries.summarize(victor.pool, victor.settings, None)
        assert report.summarised == n == len(model.requests)
        assert (report.input_tokens, report.output_tokens) == (100 * n, 12 * n)
        after = await summaries.estimate(victor.pool, victor.settings, None)
        assert (after.to_summarise, after.already, after.input_tokens) == (0, n, 0)


async def test_a_word_only_in_the_summary_finds_the_function(settings, ollama, project, model):
    model.extra["Picker:toggle"] = "flips whether a zeppelin entry is chosen"
    async with open_victor(on(settings, model.url)) as victor:
        await victor.index(str(project), name="shop")
        assert await search_one(victor, "zeppelin", mode="lexical") == []
        await summaries.summarize(victor.pool, victor.settings, None)
        found = await search_one(victor, "zeppelin", mode="lexical", top_k=3)
        assert [r.symbol for r in found] == ["Picker:toggle"]
        assert await in_step(victor.pool)
        # the code is still searched as before: the summary is an extra field
        assert (await search_one(victor, "get_selection", mode="lexical", top_k=1))[
            0
        ].symbol == "Picker:get_selection"
        # a recomputation of every lexical field keeps the summaries' words
        async with victor.pool.acquire() as conn, conn.transaction():
            await store.refresh_lexical(conn)
        assert await in_step(victor.pool)
        assert [r.symbol for r in await search_one(victor, "zeppelin", mode="lexical")] == [
            "Picker:toggle"
        ]
        # cleared: the word is gone, the kept summary stays (turning back on asks nothing)
        assert await summaries.clear(victor.pool, None) == await functions(victor.pool)
        assert await search_one(victor, "zeppelin", mode="lexical") == []
        assert await in_step(victor.pool)
        asked = len(model.requests)
        await summaries.summarize(victor.pool, victor.settings, None)
        assert len(model.requests) == asked
        assert [r.symbol for r in await search_one(victor, "zeppelin", mode="lexical")] == [
            "Picker:toggle"
        ]


async def test_a_changed_function_is_the_only_one_summarised_again(
    settings, ollama, project, model
):
    settings = on(settings, model.url)
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        await summaries.summarize(victor.pool, settings, None)
        before = await summaries_of(victor.pool)
        model.requests.clear()

        picker = project / "src" / "shop" / "picker.lua"
        source = picker.read_text()
        start = source.index("function Picker:toggle")
        end = source.index("\nend", start)
        picker.write_text(source[:end] + "\n  self.toggled = true" + source[end:])
        await victor.index(str(project), name="shop")
        # the file's other functions kept their summaries through the re-index
        now = await summaries_of(victor.pool)
        assert set(before) - set(now) == {"Picker:toggle"}
        assert await in_step(victor.pool)

        cost = await summaries.estimate(victor.pool, settings, None)
        assert cost.to_summarise == 1
        await summaries.summarize(victor.pool, settings, None)
        assert model.symbols() == ["Picker:toggle"]
        assert await summaries_of(victor.pool) == before
        assert await in_step(victor.pool)


async def test_a_run_that_stops_half_way_keeps_what_it_finished(settings, ollama, project, model):
    settings = on(settings, model.url, summary_concurrency=1)
    model.garbage_after = 3
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        n = await functions(victor.pool)
        with pytest.raises(SummariserError, match="did not answer with a chat completion"):
            await summaries.summarize(victor.pool, settings, None)
        assert await victor.pool.fetchval("SELECT count(*) FROM chunk_summaries") == 3
        assert len(await summaries_of(victor.pool)) >= 3  # searchable at once
        assert await in_step(victor.pool)
        first = model.symbols()

        model.garbage_after = None
        report = await summaries.summarize(victor.pool, settings, None)
        assert report.summarised == n - 3
        assert not set(first) & set(model.symbols()[3:])  # nothing asked twice
        assert await victor.pool.fetchval("SELECT count(*) FROM chunk_summaries") == n
        assert await in_step(victor.pool)


async def test_a_model_that_is_down_fails_clearly_and_leaves_the_index_alone(
    settings, ollama, project, model
):
    down = f"http://127.0.0.1:{free_port()}"
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        await summaries.summarize(victor.pool, on(settings, model.url), None)
        kept = await victor.pool.fetchval("SELECT count(*) FROM chunk_summaries")
        lex = await victor.pool.fetch("SELECT id, summary, lex FROM chunks ORDER BY id")
        assert any(r["summary"] for r in lex)

        for url, error, words in [
            (down, SummariserUnavailable, "cannot reach the summary model"),
            (model.url, SummariserUnavailable, "refused the request .HTTP 401"),
        ]:
            # another model (whose run first sets what it kept: nothing) behind a bad endpoint
            wrong = on(
                settings, url, summary_model="other", summary_api_key="sk-wrong-key-never-shown"
            )
            with pytest.raises(error, match=words) as caught:
                await summaries.summarize(victor.pool, wrong, None)
            assert "sk-wrong-key" not in str(caught.value) and KEY not in str(caught.value)
            assert url in str(caught.value)

        assert await victor.pool.fetchval("SELECT count(*) FROM chunk_summaries") == kept
        assert await victor.pool.fetch("SELECT id, summary, lex FROM chunks ORDER BY id") == lex
        assert await in_step(victor.pool)


async def test_passing_failures_are_retried_and_ollama_chat_works(settings, ollama, project):
    with SummaryModel() as model:
        model.fail_first = 1  # one 503, then answers
        ollama_settings = settings.model_copy(
            update={
                "summary_backend": "ollama",
                "summary_model": "qwen2.5-coder",
                "summary_url": model.url,
                "summary_concurrency": 1,
            }
        )
        async with open_victor(ollama_settings) as victor:
            await victor.index(str(project), name="shop")
            report = await summaries.summarize(victor.pool, ollama_settings, None)
            assert report.summarised == await functions(victor.pool)
            assert report.output_tokens == 12 * report.summarised
            assert (await summaries_of(victor.pool))["Picker:toggle"] == (
                "Summary of Picker:toggle: handles its arguments."
            )


def test_the_command_shows_the_cost_then_runs(cli_env, project, model):
    env = cli_env | {
        "VICTOR_SUMMARY_BACKEND": "openai",
        "VICTOR_SUMMARY_MODEL": "stand-in",
        "VICTOR_SUMMARY_URL": model.url + "/v1",
        "VICTOR_SUMMARY_API_KEY": KEY,
    }
    off = victor_cli("summarize", env=cli_env, check=False)
    assert off.returncode == 1 and "summaries are off" in off.stderr
    victor_cli("index", str(project), "--name", "shop", env=env)
    estimate = victor_cli("summarize", "--estimate", env=env)
    assert "functions to summarise" in estimate.stderr and model.requests == []
    no = victor_cli("summarize", "shop", env=env, check=False)  # no --yes, no terminal: asks
    assert model.requests == [] and "Summarise them now?" in no.stderr
    done = victor_cli("summarize", "shop", "--yes", env=env)
    assert "summaries written" in done.stderr and model.requests
    assert KEY not in done.stdout + done.stderr + estimate.stderr


async def consistent(pool) -> bool:
    """Every function carries exactly the kept summary of its text ('' when none is kept)."""
    wrong = await pool.fetchval(
        """
        SELECT count(*) FROM chunks c
        LEFT JOIN chunk_summaries s ON s.text_hash = c.embed_hash
        WHERE c.kind IN ('function', 'method') AND c.summary <> coalesce(s.summary, '')
        """
    )
    return wrong == 0


async def test_a_run_and_index_runs_at_the_same_time_stay_consistent(
    settings, ollama, project, model
):
    model.delay = 0.2
    settings = on(settings, model.url)
    picker = project / "src" / "shop" / "picker.lua"
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        run = asyncio.create_task(summaries.summarize(victor.pool, settings, None))
        for n in range(3):
            await asyncio.sleep(0.3)
            picker.write_text(picker.read_text() + f"\nlocal function added_{n}() end\n")
            await victor.index(str(project), name="shop")
        await run
        assert await in_step(victor.pool) and await consistent(victor.pool)
        await summaries.summarize(victor.pool, settings, None)  # what the edits added
        assert await in_step(victor.pool) and await consistent(victor.pool)
        assert (await summaries.estimate(victor.pool, settings, None)).to_summarise == 0
        kept = await victor.pool.fetchval("SELECT count(*) FROM chunk_summaries")
        assert len(model.requests) == kept  # no text was asked about twice


def settled(model) -> int:
    """The stand-in's request count once it stops moving: a request the stopped process sent
    just before it exited may reach the stand-in's handler after the process is gone."""
    count, deadline = len(model.requests), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if len(model.requests) == count:
            break
        count = len(model.requests)
    return count


def test_ctrl_c_stops_the_command_and_keeps_what_it_finished(cli_env, project, model):
    model.delay = 0.5  # a batch of 8 takes 4 s: the signal lands inside the second
    env = cli_env | {
        "VICTOR_SUMMARY_BACKEND": "openai",
        "VICTOR_SUMMARY_MODEL": "stand-in",
        "VICTOR_SUMMARY_URL": model.url + "/v1",
        "VICTOR_SUMMARY_API_KEY": KEY,
        "VICTOR_SUMMARY_CONCURRENCY": "1",  # batches of 8 requests
    }
    victor_cli("index", str(project), "--name", "shop", env=env)
    url = env["VICTOR_DATABASE_URL"]

    async def count(sql: str) -> int:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    def kept() -> int:
        return asyncio.run(count("SELECT count(*) FROM chunk_summaries"))

    total = asyncio.run(
        count("SELECT count(DISTINCT embed_hash) FROM chunks WHERE kind IN ('function', 'method')")
    )
    assert total > 8
    proc = subprocess.Popen(
        [*VICTOR, "summarize", "--yes"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while kept() < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    done = kept()
    assert 8 <= done < total
    asked = settled(model)

    async def check() -> dict:
        conn = await asyncpg.connect(url)
        try:
            return await postings.check(conn)
        finally:
            await conn.close()

    assert asyncio.run(check()) == IN_STEP
    model.delay = 0
    victor_cli("summarize", "--yes", env=env)
    assert kept() == total
    # the next run asked only about what the stopped one had not finished
    assert len(model.requests) - asked == total - done


async def test_a_sync_summarises_what_the_push_changed(settings, ollama, tmp_path, model):
    repo = make_git_repo(
        tmp_path / "game",
        {"src/a.lua": "local function alpha(x)\n  return x + 1\nend\nreturn alpha\n"},
    )
    settings = on(settings, model.url, summary_on_sync=True, summary_sync_limit=1)
    async with open_victor(settings) as victor:
        await store.track_repo(victor.pool, "game", str(repo), "main", None)
        first = await victor.sync("game")
        assert first.summaries["summarised"] == 1 and model.symbols() == ["alpha"]

        (repo / "src" / "b.lua").write_text(
            "local function beta(y)\n  return y * 2\nend\nreturn beta\n"
        )
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "beta")
        second = await victor.sync("game")
        assert second.summaries["summarised"] == 1 and model.symbols() == ["alpha", "beta"]

        # more than the limit is left to `victor summarize`; the sync still succeeds
        (repo / "src" / "c.lua").write_text(
            "local function gamma() return 1 end\nlocal function delta() return 2 end\n"
        )
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "two more")
        third = await victor.sync("game")
        assert "VICTOR_SUMMARY_SYNC_LIMIT" in third.summaries["skipped"]
        assert third.index["files_new"] == 1 and len(model.requests) == 2

        # a model that is down: logged in the report, the sync done
        down = f"http://127.0.0.1:{free_port()}"
        down = on(settings, down, summary_on_sync=True, summary_sync_limit=10)
        (repo / "src" / "a.lua").write_text("local function alpha(x)\n  return x\nend\n")
        git(repo, "commit", "-qam", "alpha changed")
        report = await repo_sync.sync_repo(victor.pool, victor.embedder, down, "game")
        assert "cannot reach the summary model" in report.summaries["error"]
        assert KEY not in report.summaries["error"]
        assert report.index["files_changed"] == 1 and await in_step(victor.pool)


def test_the_key_is_redacted_wherever_victor_redacts_secrets():
    keyed = Settings(
        summary_api_key=SecretStr("sk-summary-abc"), summary_url="http://user:pw-in-url@h/v1"
    )
    assert {"sk-summary-abc", "pw-in-url"} <= set(settings_secrets(keyed))
    assert "sk-summary-abc" not in repr(keyed)
