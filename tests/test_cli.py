"""The real `victor` command, run as a subprocess against real services."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

import asyncpg
import pytest

from indexer.embedding.probes import PROBES
from indexer.store.embedded import buffer_cache_mb
from tests.conftest import SAMPLE, VICTOR, victor_cli
from tests.support import pg


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

    as_json = json.loads(victor_cli("status", "--json", env=cli_env).stdout)
    assert as_json["model"]["dims"] == 384 and "all-minilm" in as_json["model"]["name"]
    (shop,) = as_json["repos"]
    assert (shop["name"], shop["files"]) == ("shop", 4) and shop["chunks"] > 4
    assert shop["indexed_at"] is not None

    unknown = victor_cli("search", "--repo", "nosuch", "trim", env=cli_env, check=False)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "No repository named 'nosuch'" in unknown.stderr and "Known: shop" in unknown.stderr

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

    doctor = victor_cli("doctor", env=env, check=False)
    assert doctor.returncode == 1
    lines = {line.split(":")[0].split()[-1]: line for line in doctor.stdout.splitlines()}
    assert "FAIL" in lines["database"]
    for check in ("pgvector", "schema", "index", "match"):  # depend on the database
        assert "skip" in lines[check] and "not checked" in lines[check], doctor.stdout
    assert "the user's server" not in doctor.stdout

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
    second = victor_cli("-v", "search", "--json", "trim whitespace", env=env)
    assert "embedded PostgreSQL" not in second.stderr
    # -v is Victor's own log: the embedded server's command lines need -vv
    assert "pg_ctl" not in second.stderr and "INFO pgserver" not in second.stderr, second.stderr
    assert json.loads(second.stdout)[0]["path"] == "src/shop/strings.lua"
    # a new embedded server gets its buffer cache (PostgreSQL's default is 128 MB)
    doctor = victor_cli("doctor", env=env)
    assert f"shared_buffers {buffer_cache_mb():,} MB" in doctor.stdout, doctor.stdout


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


def _read_line(stream, seconds: float) -> str:
    """One line from a pipe, or AssertionError when none comes within `seconds`."""
    ready, _, _ = select.select([stream], [], [], seconds)
    assert ready, f"no line within {seconds} s"
    return stream.readline()


def test_batch_on_stdin_answers_each_line_as_it_arrives(cli_env, ollama, tmp_path):
    """A long-lived `victor search --batch -`: the answer to a line comes before the next
    line is written, a bad line gets an error row and the process goes on."""
    project = tmp_path / "shop"
    shutil.copytree(SAMPLE, project)
    victor_cli("index", str(project), "--name", "shop", env=cli_env)
    proc = subprocess.Popen(
        [*VICTOR, "search", "--batch", "-", "-k", "2"],
        env=cli_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stdin.write(json.dumps({"id": 1, "query": "Cart:total"}) + "\n")
        proc.stdin.flush()
        first = json.loads(_read_line(proc.stdout, 60))
        assert first["id"] == 1 and first["results"][0]["symbol"] == "Cart:total"
        assert first["mode"] == "hybrid"
        proc.stdin.write('{"id": 2}\n')
        proc.stdin.flush()
        bad = json.loads(_read_line(proc.stdout, 30))
        assert bad["line"] == 2 and "expected" in bad["error"]
        proc.stdin.write(json.dumps({"id": 3, "query": "where is trim defined"}) + "\n")
        proc.stdin.flush()
        third = json.loads(_read_line(proc.stdout, 30))
        assert third["id"] == 3 and third["results"][0]["symbol"] == "trim"
        assert proc.poll() is None  # still serving
        proc.stdin.close()
        assert proc.wait(timeout=30) == 1  # a bad line makes the run's status 1
        assert "--batch line 2" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_batch_has_its_own_timeout_and_reports_a_slow_embedder(cli_env, ollama, tmp_path):
    """A batch waits --timeout (not the chat's VICTOR_QUERY_TIMEOUT) for its embeddings; when
    the embedder is slower still, stderr says so and --strict makes it an error."""
    project = tmp_path / "shop"
    shutil.copytree(SAMPLE, project)
    victor_cli("index", str(project), "--name", "shop", env=cli_env)
    batch = tmp_path / "queries.jsonl"
    batch.write_text(
        json.dumps({"id": "a", "query": "where is trim defined"})
        + "\n"
        + json.dumps({"id": "b", "query": "apply the loyalty discount for members"})
        + "\n"
    )
    env = {**cli_env, "VICTOR_QUERY_TIMEOUT": "0.5", "VICTOR_EMBED_RETRIES": "0"}
    ollama.delay = 1.5  # slower than the chat's budget, well within the batch's
    done = victor_cli("search", "--batch", str(batch), "--strict", env=env)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["mode"] for r in rows] == ["hybrid", "hybrid"]
    assert "warning" not in done.stderr, done.stderr

    ollama.delay = 3.0  # slower than --timeout: lexical answers, said on stderr
    done = victor_cli("search", "--batch", str(batch), "--timeout", "1", env=env)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["mode"] for r in rows] == ["lexical", "lexical"]
    assert all("no answer within 1 s" in r["notice"] for r in rows)
    assert "2 of 2 queries were answered by lexical search alone" in done.stderr
    done = victor_cli(
        "search", "--batch", str(batch), "--timeout", "1", "--strict", env=env, check=False
    )
    assert done.returncode == 3, done.stderr
    assert len(done.stdout.splitlines()) == 2  # every query is still answered


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
    indexed = victor_cli("index", str(SAMPLE), "--name", "sample", env=env)
    assert "loaded the embedding model all-MiniLM-L6-v2 in" in indexed.stderr  # not a stuck bar
    done = victor_cli("search", "--json", "how are discounts applied to the total", env=env)
    assert "lexical search only" not in done.stderr, done.stderr
    assert json.loads(done.stdout)[0]["symbol"] == "M.apply_discount"


def test_a_folder_without_lua_is_not_kept(cli_env, ollama, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "docs"
    other.mkdir()
    (other / "README.md").write_text("# not Lua\n")
    for folder in (empty, other):
        done = victor_cli("index", str(folder), env=cli_env)
        assert "no Lua file to index" in done.stderr and "nothing was kept" in done.stderr
    assert json.loads(victor_cli("status", "--json", env=cli_env).stdout)["repos"] == []


def test_model_mismatch_is_said_plainly(cli_env, ollama, tmp_path):
    """An index built through Ollama, searched with the local backend: the message names the
    model and backend (no internal space string) and says Ollama could serve the index."""
    victor_cli("index", str(SAMPLE), "--name", "shop", env=cli_env)
    doctor = victor_cli("doctor", env={**cli_env, "VICTOR_EMBED_BACKEND": "local"}, check=False)
    assert doctor.returncode == 1
    (line,) = [x for x in doctor.stdout.splitlines() if "model match" in x]
    assert "FAIL" in line and "|" not in line, line
    assert "VICTOR_EMBED_BACKEND=ollama VICTOR_EMBED_MODEL=all-minilm" in line
    assert f"Ollama at {ollama.url} is reachable and has all-minilm" in line


def test_piped_output_whole_lines_no_zero_scores_and_a_closed_pipe(cli_env, ollama, tmp_path):
    project = tmp_path / "shop"
    deep = project / "src" / "a_rather_long_folder_name_for_the_store" / "checkout_and_payment"
    shutil.copytree(SAMPLE / "src" / "shop", deep)
    victor_cli("index", str(project), "--name", "shop", env=cli_env)

    done = victor_cli(
        "search", "-l", "--mode", "lexical", "-k", "50", "loyalty discount", env=cli_env
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines and all(len(line) > 0 for line in lines)
    located = [line for line in lines if "checkout_and_payment/" in line]
    assert any(line.rstrip().endswith("(function)") for line in located), done.stdout
    scores = [float(line.split()[0]) for line in located]
    assert all(score > 0 for score in scores), done.stdout  # no 0.000 padding

    proc = subprocess.Popen(
        [*VICTOR, "search", "--mode", "lexical", "-k", "50", "discount"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader is gone before anything is written
    stderr = proc.stderr.read()
    proc.wait(timeout=120)
    assert "BrokenPipe" not in stderr and "Traceback" not in stderr, stderr
    assert "error" not in stderr, stderr


def test_a_latin1_file_keeps_its_accented_names(cli_env, ollama, tmp_path):
    project = tmp_path / "old"
    project.mkdir()
    (project / "menu.lua").write_bytes(
        "-- Le menu du café\nlocal function café(prix)\n  return prix * 2\nend\n"
        "return { café = café }\n".encode("latin-1")
    )
    victor_cli("index", str(project), "--name", "old", env=cli_env)
    found = json.loads(
        victor_cli("search", "--json", "--mode", "lexical", "café", env=cli_env).stdout
    )
    assert found[0]["symbol"] == "café", found[0]
    assert "café" in found[0]["text"]


def test_search_shows_the_code_of_each_hit(cli_env, ollama, tmp_path):
    project = tmp_path / "shop"
    shutil.copytree(SAMPLE, project)
    victor_cli("index", str(project), "--name", "shop", env=cli_env)
    source = (project / "src" / "shop" / "cart.lua").read_text().splitlines()
    found = json.loads(victor_cli("search", "--json", "-k", "1", "Cart:total", env=cli_env).stdout)
    hit = found[0]
    shown = victor_cli("search", "-k", "1", "-C", "3", "Cart:total", env=cli_env).stdout
    lines = shown.splitlines()
    assert f"shop:{hit['path']}:{hit['start_line']}-{hit['end_line']}" in lines[0]
    for n in range(3):  # the file's lines, numbered as in the file
        number = hit["start_line"] + n
        assert any(
            line.split(None, 1)[0] == str(number)
            and line.rstrip().endswith(source[number - 1].strip())
            for line in lines[1:4]
        ), shown
    only = victor_cli("search", "-k", "1", "-l", "Cart:total", env=cli_env).stdout
    assert only.strip() == lines[0].strip()


async def test_model_prompts_are_sent_and_an_unknown_model_is_noted_once(
    cli_env, ollama, pg_admin_url, tmp_path
):
    """qwen3-embedding's code-search instruction goes before every query and nothing before
    the code; a model with no known prompt is indexed as it is, with one note per run (not
    one per embedding batch) and a `note` line in `victor doctor`."""
    added = {"qwen3-embedding:0.6b", "acme-code-embed:latest"}
    ollama.models |= added
    try:
        qwen = {**cli_env, "VICTOR_EMBED_MODEL": "qwen3-embedding:0.6b"}
        done = victor_cli("index", str(SAMPLE), "--name", "shop", env=qwen)
        assert "note:" not in done.stderr
        # the code goes as it is; only the questions of the scale's probes are queries
        asked = [t for t in ollama.inputs if t.startswith("Instruct:")]
        assert ollama.inputs and len(asked) < len(ollama.inputs)
        assert {t.partition("\nQuery: ")[2] for t in asked} == {q for q, _ in PROBES}
        ollama.reset()
        victor_cli("search", "--json", "selected entries of the picker", env=qwen)
        assert ollama.inputs == [
            "Instruct: Given a code search query, retrieve relevant code\n"
            "Query: selected entries of the picker"
        ]

        acme = {
            **cli_env,
            "VICTOR_EMBED_MODEL": "acme-code-embed",
            "VICTOR_DATABASE_URL": await pg.create_database(pg_admin_url),
            "VICTOR_EMBED_BATCH_SIZE": "2",  # many batches, one note
        }
        ollama.reset()
        done = victor_cli("index", str(SAMPLE), "--name", "shop", env=acme)
        assert ollama.requests > 2
        notes = [x for x in done.stderr.splitlines() if "No query/document prompt" in x]
        assert len(notes) == 1, done.stderr
        assert "'acme-code-embed'" in notes[0] and "VICTOR_QUERY_PREFIX" in notes[0]
        doctor = victor_cli("doctor", env=acme)
        (line,) = [x for x in doctor.stdout.splitlines() if " prompts:" in x]
        assert "note" in line and "with no prompt" in line, line
        assert "FAIL" not in doctor.stdout
        doctor = victor_cli("doctor", env=qwen).stdout
        (line,) = [x for x in doctor.splitlines() if " prompts:" in x]
        assert "ok" in line and "Instruct: Given a code search query" in line, line
    finally:
        ollama.models -= added
