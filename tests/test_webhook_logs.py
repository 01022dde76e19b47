"""What the webhook (gunicorn as deployed) and `victor worker` write to their logs.

Both run here on the embedded PostgreSQL (VICTOR_DATABASE_URL unset), whose pgserver logs
its pg_ctl command lines and postmaster details at INFO in every process that joins it:
those stay out unless asked for (VICTOR_LIBRARY_LOG_LEVEL), Victor's own INFO lines stay in.
"""

from __future__ import annotations

import os
import re
import signal
import socket

import httpx
import pytest

from tests.conftest import victor_cli
from tests.support.github import deliver
from tests.support.webhook import SECRET, start_gunicorn

OURS = ("indexer", "webhook", "victor")
LINE = re.compile(r"^(DEBUG|INFO) ([\w.]+): .*$", re.MULTILINE)


def library_lines(log: str) -> list[str]:
    """DEBUG and INFO lines of loggers that are not Victor's."""
    return [m[0] for m in LINE.finditer(log) if not m[2].startswith(OURS)]


def our_lines(log: str) -> list[str]:
    return [m[0] for m in LINE.finditer(log) if m[2].startswith(OURS)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def embedded_env(cli_env: dict[str, str], tmp_path):
    """Victor's environment with the embedded PostgreSQL in tmp_path, stopped afterwards
    (gunicorn's killed workers may leave it running)."""
    env = {k: v for k, v in cli_env.items() if k != "VICTOR_DATABASE_URL"}
    yield env | {"VICTOR_DATA_DIR": str(tmp_path / "data"), "VICTOR_WEBHOOK_SECRET": SECRET}
    pgdata = tmp_path / "data" / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        from pgserver._commands import pg_ctl  # runs it as pgserver's system user under root

        user = "pgserver" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)


async def _run_webhook(env: dict[str, str], log_path, remote) -> str:
    port = _free_port()
    proc = start_gunicorn(env, port, log_path, "--workers", "2", timeout=120)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(4):  # reach both workers: each joins the embedded server
            answer = await deliver(url, "issues", {"action": "opened"}, secret=SECRET)
            assert answer.status_code == 200 and answer.json()["status"] == "ignored"
            assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    return log_path.read_text(errors="replace")


async def test_webhook_log_has_victor_lines_not_the_embedded_servers(
    embedded_env, ollama, remote, tmp_path
):
    env = embedded_env
    victor_cli("init-db", env=env)
    log = await _run_webhook(env, tmp_path / "quiet.log", remote)
    assert library_lines(log) == [], log
    assert "pg_ctl" not in log and "postmaster" not in log, log
    assert any("INFO webhook: delivery" in line for line in our_lines(log)), log

    # asked for: the same run shows the library lines (so the assertions above can fail)
    loud = await _run_webhook(
        env | {"VICTOR_LIBRARY_LOG_LEVEL": "INFO"}, tmp_path / "loud.log", remote
    )
    assert library_lines(loud), loud
    assert any("INFO webhook: delivery" in line for line in our_lines(loud)), loud


async def test_worker_log_has_victor_lines_not_the_embedded_servers(
    embedded_env, ollama, remote, tmp_path
):
    remote.commit("initial", {"src/game.lua": "local function start() return 1 end\n"})
    remote.push()
    env = embedded_env
    victor_cli("init-db", env=env)
    victor_cli("repo", "add", "game", str(remote.bare), env=env)
    done = victor_cli("worker", "--drain", env=env)
    log = done.stderr
    assert library_lines(log) == [], log
    assert "pg_ctl" not in log and "postmaster" not in log, log
    assert any(line.startswith("INFO indexer.sync.worker: ") for line in our_lines(log)), log
