"""The real `victor` command, run as a subprocess against real services."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import asyncpg
import pytest

from tests.conftest import SAMPLE, victor_cli


def test_index_search_status_remove(cli_env, ollama, tmp_path):
    project = tmp_path / "shop"
    shutil.copytree(SAMPLE, project)
    done = victor_cli("index", str(project), "--name", "shop", env=cli_env)
    assert "4 new" in done.stderr
    assert "Traceback" not in done.stderr

    found = json.loads(
        victor_cli(
            "search", "--json", "-k", "3", "selected entries of the picker", env=cli_env
        ).stdout
    )
    assert {"repo", "path", "start_line", "end_line", "symbol", "kind", "score", "text"} <= set(
        found[0]
    )
    assert found[0]["path"] == "src/shop/picker.lua"

    status = victor_cli("status", env=cli_env).stdout
    assert "shop" in status and "all-minilm" in status

    doctor = victor_cli("doctor", env=cli_env)
    assert "FAIL" not in doctor.stdout, doctor.stdout

    victor_cli("remove", "shop", env=cli_env)
    assert "shop" not in victor_cli("status", env=cli_env).stdout


def test_errors_are_one_clear_line(cli_env, ollama, tmp_path):
    env = {**cli_env, "VICTOR_DATABASE_URL": "postgresql://victor:hunter2@127.0.0.1:9/victor"}
    done = victor_cli("search", "anything", env=env, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("victor: error: Cannot connect to PostgreSQL")
    assert "5433" in done.stderr  # hints at the usual port
    assert "hunter2" not in done.stderr
    assert "Traceback" not in done.stderr

    done = victor_cli("index", str(tmp_path / "missing"), env=cli_env, check=False)
    assert done.returncode == 1 and "does not exist" in done.stderr

    done = victor_cli("search", "  ", env=cli_env, check=False)
    assert done.returncode == 1 and "query is empty" in done.stderr

    doctor = victor_cli(
        "doctor", env={**cli_env, "VICTOR_EMBED_MODEL": "nomic-embed-text"}, check=False
    )
    assert doctor.returncode == 1
    assert "ollama pull nomic-embed-text" in doctor.stdout


def test_init_db_twice(cli_env):
    first = victor_cli("init-db", env=cli_env)
    second = victor_cli("init-db", env=cli_env)
    assert "pgvector 0.8" in first.stderr and "pgvector 0.8" in second.stderr


def test_embedded_database_is_the_default(ollama, tmp_path):
    """No VICTOR_DATABASE_URL: an embedded PostgreSQL in the data folder, announced once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_"))}
    env |= {
        "VICTOR_DATA_DIR": str(tmp_path / "data"),
        "OLLAMA_HOST": ollama.url,
        "VICTOR_EMBED_MODEL": "all-minilm",
    }
    first = victor_cli("index", str(SAMPLE), "--name", "sample", env=env)
    assert f"embedded PostgreSQL in {tmp_path / 'data' / 'pgdata'}" in first.stderr
    second = victor_cli("search", "--json", "trim whitespace", env=env)
    assert "embedded PostgreSQL" not in second.stderr
    assert json.loads(second.stdout)[0]["path"] == "src/shop/strings.lua"


@pytest.mark.hardening  # a fault test, with a deliberately slow embedder
async def test_killed_run_leaves_consistent_index_and_next_run_completes(
    cli_env, ollama, corpora, tmp_path, settings
):
    project = tmp_path / "pl"
    (project / "pl").mkdir(parents=True)
    for path in sorted((corpora / "penlight" / "lua" / "pl").glob("*.lua"))[:24]:
        shutil.copy(path, project / "pl" / path.name)
    total = len(list(project.rglob("*.lua")))
    ollama.delay = 0.2  # slow the embedder so the kill lands mid-run
    env = {**cli_env, "VICTOR_EMBED_BATCH_SIZE": "8", "VICTOR_EMBED_CONCURRENCY": "1"}
    exe = shutil.which("victor", path=os.path.dirname(sys.executable))
    proc = subprocess.Popen(
        [exe, "index", str(project), "--name", "pl"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = settings.database_url.get_secret_value()
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + 120
        written = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if await conn.fetchval("SELECT to_regclass('files') IS NOT NULL"):
                written = await conn.fetchval("SELECT count(*) FROM files")
                if written >= 3:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 0 < written < total, "the kill must land in the middle of the run"
        # every file row that exists has its chunks; the run was not recorded as complete
        orphans = await conn.fetchval(
            "SELECT count(*) FROM files f WHERE NOT EXISTS "
            "(SELECT 1 FROM chunks c WHERE c.repo_id = f.repo_id AND c.path = f.path)"
        )
        assert orphans == 0
        assert await conn.fetchval("SELECT indexed_at FROM repos WHERE name = 'pl'") is None
        half = await conn.fetchval("SELECT count(*) FROM files")
    finally:
        await conn.close()

    ollama.delay = 0
    done = victor_cli("index", str(project), "--name", "pl", "--json", env=cli_env)
    summary = json.loads(done.stdout)
    assert summary["files_unchanged"] == half
    assert summary["files_new"] == total - half
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM files") == total
        assert await conn.fetchval("SELECT indexed_at FROM repos WHERE name = 'pl'") is not None
    finally:
        await conn.close()


def test_search_modes_and_batch(cli_env, ollama, tmp_path):
    project = tmp_path / "shop"
    shutil.copytree(SAMPLE, project)
    victor_cli("index", str(project), "--name", "shop", env=cli_env)

    as_json = {}
    for mode in ("hybrid", "dense", "lexical"):
        done = victor_cli("search", "--json", "--mode", mode, "where is trim defined", env=cli_env)
        as_json[mode] = json.loads(done.stdout)
        assert as_json[mode][0]["symbol"] == "trim"
        assert "warning" not in done.stderr
    assert as_json["lexical"] != as_json["dense"]

    batch = tmp_path / "queries.jsonl"
    batch.write_text(
        json.dumps({"id": "a", "query": "where is trim defined"})
        + "\n\n"
        + json.dumps({"id": 7, "query": "apply the loyalty discount for members"})
        + "\n"
    )
    ollama.reset()
    done = victor_cli("search", "--batch", str(batch), "-k", "3", env=cli_env)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["id"] for line in lines] == ["a", 7]
    assert lines[0]["results"] == as_json["hybrid"][:3]  # shaped (and ranked) like --json
    assert lines[1]["results"][0]["symbol"] == "M.apply_discount"
    assert ollama.requests == 1  # both queries embedded in one request

    stdin = subprocess.run(
        [shutil.which("victor", path=os.path.dirname(sys.executable)), "search", "--batch", "-"],
        input=json.dumps({"id": "x", "query": "Cart:total"}) + "\n",
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stdin.returncode == 0, stdin.stderr
    assert json.loads(stdin.stdout)["results"][0]["symbol"] == "Cart:total"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "query": "ok"}\n{"id": 2}\n')
    done = victor_cli("search", "--batch", str(bad), env=cli_env, check=False)
    assert done.returncode == 1 and "--batch line 2" in done.stderr and done.stdout == ""


def test_search_warns_and_answers_when_the_embedder_is_down(cli_env, ollama, tmp_path):
    project = tmp_path / "shop"
    shutil.copytree(SAMPLE, project)
    victor_cli("index", str(project), "--name", "shop", env=cli_env)
    env = {**cli_env, "OLLAMA_HOST": "http://127.0.0.1:9", "VICTOR_EMBED_RETRIES": "0"}
    done = victor_cli("search", "--json", "Cart:total", env=env)
    assert json.loads(done.stdout)[0]["symbol"] == "Cart:total"
    assert done.stderr.startswith("victor: warning: embedder unavailable (Cannot reach Ollama")
    assert "lexical search only" in done.stderr


def test_search_json_finds_a_penlight_function_by_its_purpose(cli_env, ollama, corpora, tmp_path):
    project = tmp_path / "penlight"
    (project / "pl").mkdir(parents=True)
    for name in ("path.lua", "tablex.lua"):
        shutil.copy(corpora / "penlight" / "lua" / "pl" / name, project / "pl" / name)
    victor_cli("index", str(project), "--name", "penlight", env=cli_env)
    query = "deep comparison of two values, recursing into the fields of tables"
    found = json.loads(victor_cli("search", "--json", "-k", "3", query, env=cli_env).stdout)
    assert (found[0]["symbol"], found[0]["path"]) == ("tablex.deepcompare", "pl/tablex.lua")


def test_local_model_loading_is_not_counted_against_the_query_timeout(cli_env, tmp_path):
    """A cold `victor search` with the in-process model loads it first (seconds), then
    embeds the query well within a short query timeout: no lexical-only fallback."""
    env = {**cli_env, "VICTOR_EMBED_BACKEND": "local", "VICTOR_QUERY_TIMEOUT": "1"}
    victor_cli("index", str(SAMPLE), "--name", "sample", env=env)
    done = victor_cli("search", "--json", "how are discounts applied to the total", env=env)
    assert "lexical search only" not in done.stderr, done.stderr
    assert json.loads(done.stdout)[0]["symbol"] == "M.apply_discount"
