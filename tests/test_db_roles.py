"""The least-privilege roles of docs/database-role.md, proven on a real PostgreSQL.

The roles are created with exactly the SQL of the document (read from it), on a server of this
module's own that checks their passwords. `victor_owner` runs `init-db` and the first index;
`victor_app` indexes, searches, follows a repository, runs the worker and the webhook and reads
the jobs; `victor_reader` serves the Pipelines filter's retrieval. Then: `victor_reader` cannot
write, and `victor_app` cannot create, alter or drop tables.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from indexer.config import Settings
from tests.conftest import ROOT, SAMPLE, VICTOR
from tests.plugins import FILTER_FILE, inlet_request, load
from tests.support import pg
from tests.support.github import Remote, encode, headers
from tests.support.webhook import SECRET, WebhookServer

pytestmark = pytest.mark.hardening

DOC = ROOT / "docs" / "database-role.md"
ROLES = ("victor_owner", "victor_app", "victor_reader")
PASSWORDS = {role: f"{role}-pw-{i}x" for i, role in enumerate(ROLES)}


def documented_sql() -> tuple[list[str], list[str]]:
    """The statements of the document's roles.sql block: (on the server, after `\\c victor`)."""
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"BEGIN roles\.sql.*?```sql\n(.*?)```", text, re.S)
    assert block, f"no roles.sql block in {DOC}"
    before, _, after = block[1].partition("\\c victor\n")
    assert after, "the block must switch to the database with \\c victor"

    def statements(sql: str) -> list[str]:
        lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
        return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]

    return statements(before), statements(after)


@pytest.fixture(scope="module")
def roles_server(tmp_path_factory):
    server = pg.start_server(tmp_path_factory.mktemp("pg-roles"))
    admin = server.get_uri()
    on_server, in_database = documented_sql()

    async def setup() -> None:
        conn = await asyncpg.connect(admin)
        try:
            for statement in on_server:  # one at a time: CREATE DATABASE refuses a transaction
                await conn.execute(statement)
            for role, password in PASSWORDS.items():  # what `\password ROLE` does
                await conn.execute(f"ALTER ROLE {role} PASSWORD '{password}'")
        finally:
            await conn.close()
        conn = await asyncpg.connect(pg.with_database(admin, "victor"))
        try:
            for statement in in_database:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(setup())
    pg.require_passwords(server, list(ROLES))
    yield server
    server.cleanup()


def url_of(server, role: str) -> str:
    return pg.role_url(server.get_uri(), role, PASSWORDS[role], "victor")


def run_victor(env: dict, *args: str):
    import subprocess

    done = subprocess.run([*VICTOR, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"victor {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


async def refused(url: str, statement: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as caught:
            await conn.execute(statement)
        return str(caught.value)
    finally:
        await conn.close()


def test_documented_roles_are_enough_and_no_more(roles_server, ollama, tmp_path):
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_"))}
    base_env |= {
        "OLLAMA_HOST": ollama.url,
        "VICTOR_EMBED_MODEL": "all-minilm",
        "VICTOR_DATA_DIR": str(tmp_path / "data"),
        "VICTOR_PARSE_WORKERS": "1",
        "VICTOR_WORKER_POLL": "0.2",
        "PYTHONPATH": str(ROOT),
    }
    owner = {**base_env, "VICTOR_DATABASE_URL": url_of(roles_server, "victor_owner")}
    app_url = url_of(roles_server, "victor_app")
    app = {**base_env, "VICTOR_DATABASE_URL": app_url}
    reader_url = url_of(roles_server, "victor_reader")

    # victor_owner: the schema and the first index (which fixes the vector column)
    run_victor(owner, "init-db")
    run_victor(owner, "index", str(SAMPLE), "--name", "shop")

    # victor_app: everything the indexer, the worker and the webhook do
    lua = tmp_path / "more"
    lua.mkdir()
    (lua / "util.lua").write_text("local M = {}\nfunction M.clamp(x, lo, hi) return x end\n")
    run_victor(app, "index", str(lua), "--name", "more")
    run_victor(app, "index", str(lua), "--name", "more")  # again: unchanged
    found = run_victor(app, "search", "clamp a value", "--json")
    assert "util.lua" in found.stdout
    remote = Remote(tmp_path / "gh")
    remote.commit("initial", {"src/game.lua": "local function start(level) return level end\n"})
    remote.push()
    run_victor(app, "repo", "add", "game", remote.url, "--github-url", remote.html_url)
    run_victor(app, "worker", "--drain")
    settings = Settings(
        database_url=SecretStr(app_url),
        ollama_host=ollama.url,
        embed_model="all-minilm",
        data_dir=tmp_path / "data",
        webhook_secret=SecretStr(SECRET),
    )
    server = WebhookServer(settings).start()
    try:
        remote.commit("more", {"src/more.lua": "local function boost(x) return x end\n"})
        push = remote.push()
        body = encode(push)
        answer = httpx.post(
            f"{server.url}/webhook/github",
            content=body,
            headers=headers("push", body, secret=SECRET),
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        jobs = httpx.get(f"{server.url}/jobs", timeout=10)
        assert jobs.status_code == 200, jobs.text
    finally:
        server.stop()
    run_victor(app, "worker", "--drain")
    listed = run_victor(app, "jobs", "--json").stdout
    assert '"state": "failed"' not in listed, listed
    assert listed.count('"state": "done"') == 2, listed
    run_victor(app, "sync", "game")
    run_victor(app, "repo", "remove", "more")
    run_victor(app, "doctor")

    # victor_reader: the Pipelines filter's retrieval
    lc = load(FILTER_FILE, "lua_codebase_pipeline_roles")
    pipeline = lc.Pipeline()
    pipeline.valves = pipeline.Valves(
        database_url=reader_url,
        ollama_host=ollama.url,
        embed_model="all-minilm",
        timeout_seconds=10,
        require_toggle=False,
    )

    async def chat() -> dict:
        try:
            body = inlet_request("Where is Cart:add defined?")["body"]
            return await pipeline.inlet(copy.deepcopy(body), None)
        finally:
            await pipeline.on_shutdown()

    out = asyncio.run(chat())
    info = out["metadata"]["lua_codebase"]
    assert info["status"] == "ok", info
    assert any(s["path"].endswith("cart.lua") for s in info["sources"]), info["sources"]

    # ... and no more than that
    for statement in (
        "INSERT INTO repos (name, source) VALUES ('x', 'y')",
        "UPDATE chunks SET text = 'owned'",
        "DELETE FROM sync_jobs",
        "INSERT INTO victor_meta (key, value) VALUES ('k', 'v')",
    ):
        assert "permission denied" in asyncio.run(refused(reader_url, statement))
    for url in (reader_url, app_url):
        for statement in (
            "CREATE TABLE intruder (x int)",
            "DROP TABLE chunks",
            "ALTER TABLE repos ADD COLUMN x int",
            "TRUNCATE sync_jobs",
        ):
            assert asyncio.run(refused(url, statement))
