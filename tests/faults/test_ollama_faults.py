"""Ollama unreachable, slow, failing, or answering vectors of the wrong dimension.

Indexing (a real `victor index` process) must fail with one clear line, no traceback, and
leave the index exactly as it was: nothing half-written, no wrong vector in the index or in
the embedding cache; run again once Ollama is right, it must equal a clean build. Chats
(the filter, in process) must degrade to lexical search with the notice, within the
filter's timeout, and get dense search back as soon as Ollama is right again.

The Ollama stand-in (tests/support/ollama_server.py) is a real HTTP server told to
misbehave; "unreachable" is a port nothing listens on.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time

import asyncpg
import pytest
from pydantic import SecretStr

from indexer.service import open_victor
from tests.conftest import VICTOR, git
from tests.faults.compare import assert_same, snapshot
from tests.faults.test_database_restart import env_for, penlight_files
from tests.plugins import FILTER_FILE, inlet_request, load
from tests.support import pg

pytestmark = pytest.mark.hardening

lc = load(FILTER_FILE, "lua_codebase_ollama_faults")

EMBED_TIMEOUT = 1.5  # VICTOR_EMBED_TIMEOUT of the slow run (others: the default)
FILTER_TIMEOUT = 2.0
SLACK = 1.5  # HTTP and scheduling on a busy 2-core machine; a hung Ollama would take far longer
DIMS = 384  # all-MiniLM-L6-v2


def dead_url() -> str:
    """An Ollama URL where nothing listens (a port just taken and given back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# fault -> (how to set it on the stand-in, words the one-line error must hold)
FAULTS = {
    "unreachable": (None, "Cannot reach Ollama at"),
    "slow": (("delay", 3 * EMBED_TIMEOUT), f"did not answer within {EMBED_TIMEOUT:g} s"),
    "HTTP 500": (("fail_status", 500), "simulated failure 500"),
    "wrong dimension": (("wrong_dims", 100), "returned 100-dimension vectors"),
}


async def cache_state(url: str) -> tuple[int, int]:
    """(rows in the embedding cache, rows whose vector is not 384-dimensional)."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE vector_dims(embedding) <> $1) "
            "FROM embedding_cache",
            DIMS,
        )
    finally:
        await conn.close()


def run_index(project, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*VICTOR, "index", str(project), "--name", "pl"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_indexing_stops_with_one_line_and_leaves_the_index_as_it_was(
    ollama, cli_env, corpora, tmp_path, pg_admin_url, settings, figures
):
    files = penlight_files(corpora, 9)
    first = dict(list(files.items())[:6])
    project = tmp_path / "pl"
    for rel, text in first.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "v1")
    url = await pg.create_database(pg_admin_url)
    env = env_for(cli_env, url, VICTOR_EMBED_RETRIES="1")
    done = run_index(project, env)
    assert done.returncode == 0, done.stderr
    before = await snapshot(url, "pl")
    cached_before = await cache_state(url)

    # v2: three new modules and a changed one, all needing new embeddings
    for rel, text in list(files.items())[6:]:
        (project / rel).write_text(text)
    changed = project / "lua/pl/url.lua"
    changed.write_text(
        changed.read_text() + "\nfunction url.halve(n)\n  -- half of n\n  return n / 2\nend\n"
    )
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "v2")

    seen = {}
    for fault, (knob, words) in FAULTS.items():
        ollama.reset()
        run_env = env
        if knob is None:
            run_env = {**env, "OLLAMA_HOST": dead_url()}
        else:
            setattr(ollama, *knob)
        if fault == "slow":
            run_env = {**env, "VICTOR_EMBED_TIMEOUT": f"{EMBED_TIMEOUT:g}"}
        started = time.monotonic()
        failed = run_index(project, run_env)
        took = time.monotonic() - started
        lines = failed.stderr.strip().splitlines()
        assert failed.returncode == 1, (fault, failed.stderr)
        assert "Traceback" not in failed.stderr, failed.stderr
        assert lines[-1].startswith("victor: error: "), failed.stderr
        assert words in lines[-1], (fault, failed.stderr)
        assert not [line for line in lines[:-1] if "error" in line.lower()], failed.stderr
        if knob is not None:
            assert ollama.requests >= 1, fault  # the fault was met, not skipped
        assert_same(await snapshot(url, "pl"), before)  # nothing half-written
        assert await cache_state(url) == cached_before, fault  # nothing cached either
        seen[fault] = (lines[-1].removeprefix("victor: error: "), took)
    ollama.reset()

    started = time.monotonic()
    done = run_index(project, env)
    rerun = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "3 new, 1 changed, 5 unchanged" in done.stderr, done.stderr
    count, wrong = await cache_state(url)
    assert wrong == 0 and count > cached_before[0]

    clean_url = await pg.create_database(pg_admin_url, prefix="clean")
    clean = settings.model_copy(update={"database_url": SecretStr(clean_url)})
    async with open_victor(clean) as victor:
        await victor.index(str(project), name="pl")
    assert_same(await snapshot(url, "pl"), await snapshot(clean_url, "pl"))
    for fault, (line, took) in seen.items():
        figures(
            f"Ollama {fault} during `victor index`",
            1,
            f"exit 1 after {took:.1f} s with one line: {line[:90]}...; index and cache "
            "untouched; the re-run equals a clean build",
            rerun,
        )


async def test_chats_fall_back_to_lexical_search_and_recover(
    settings, ollama, corpora, figures, caplog
):
    caplog.set_level(logging.DEBUG, logger="lua_codebase")  # repeated causes log at DEBUG
    async with open_victor(settings) as victor:
        project = settings.data_dir.parent / "chat-pl"
        for rel, text in penlight_files(corpora, 6).items():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            (project / rel).write_text(text)
        await victor.index(str(project), name="pl")
    url = settings.database_url.get_secret_value()
    before = await snapshot(url, "pl")
    cached = await cache_state(url)

    def pipeline(ollama_host: str):
        made = lc.Pipeline()
        made.valves = made.Valves(
            database_url=url,
            ollama_host=ollama_host,
            embed_model=settings.embed_model,
            timeout_seconds=FILTER_TIMEOUT,
            require_toggle=False,
        )
        return made

    async def chat(made) -> tuple[dict, float]:
        started = time.monotonic()
        body = await made.inlet(inlet_request("Where is url.quote defined?")["body"], None)
        return body, time.monotonic() - started

    served, dead = pipeline(ollama.url), pipeline(dead_url())
    try:
        body, _ = await chat(served)
        info = body["metadata"]["lua_codebase"]
        assert info["status"] == "ok" and info["notice"] == "", info
        times, notices = [], {}
        for fault, (knob, _) in FAULTS.items():
            ollama.reset()
            if knob is not None:
                setattr(ollama, *knob)
            body, elapsed = await chat(dead if knob is None else served)
            info = body["metadata"]["lua_codebase"]
            assert info["status"] == "degraded", (fault, info)
            # users see one short phrase; what failed is in the log (test_chat_session.py)
            assert info["notice"] == "keyword search only: embeddings unavailable", (fault, info)
            assert info["sources"][0]["symbol"].startswith("url.quote"), (fault, info)
            assert any(m["role"] == "system" for m in body["messages"])  # context, lexical
            if knob is not None:
                assert ollama.requests >= 1, fault
            times.append(elapsed)
            notices[fault] = info["notice"]
        ollama.reset()
        fixed = time.monotonic()
        body, _ = await chat(served)  # the very next chat: dense search again
        recovery = time.monotonic() - fixed
        info = body["metadata"]["lua_codebase"]
        assert info["status"] == "ok" and info["notice"] == "", info
    finally:
        await served.on_shutdown()
        await dead.on_shutdown()
    assert max(times) < FILTER_TIMEOUT + SLACK, times
    assert "100-dimension" in caplog.text, caplog.text  # the details, in the filter's log
    assert_same(await snapshot(url, "pl"), before)
    assert await cache_state(url) == cached  # a query vector is never cached
    figures(
        "Ollama unreachable / slow / HTTP 500 / wrong dimension while chats are served",
        len(FAULTS),
        f"each chat answered in {min(times):.2f}-{max(times):.2f} s "
        f"(timeout {FILTER_TIMEOUT:g} s) with lexical context and the notice "
        "`keyword search only: embeddings unavailable`; dense again at the next chat",
        recovery,
    )
