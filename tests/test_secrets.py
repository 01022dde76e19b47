"""Secrets never leak: the database password, the webhook secret and the GitHub token are given
distinctive values, everything Victor runs with them is run for real, and every output it
leaves is searched for them (as given, percent-encoded, and the token as git's basic-auth
header value):

- `victor init-db` (right and wrong password), `index`, `search`, `doctor`, `repo add`,
  `sync` (a reachable remote, and a private HTTPS one that refuses the token), `jobs`;
- the webhook under gunicorn as deployed (access log on), with good, bad and missing
  signatures, and the answers it gives;
- `victor worker --drain` running the queued jobs: one succeeds, two fail (a remote that
  refuses the token, a remote that is not there); and a worker with a wrong database password;
- the rows of every table (jobs' errors, deliveries, repositories), every file under the data
  folder (the clones' `config`), PostgreSQL's own log, and the command line of every process
  Victor started (sampled from /proc while they ran: worker, gunicorn, git and its helpers).

The private remote is an HTTPS server of this test that records the Authorization header git
sends and answers 403: it proves the token really travelled (in a header, from the
environment) while appearing nowhere else.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import os
import ssl
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import asyncpg
import httpx
import psutil
import pytest

from tests.conftest import ROOT, SAMPLE, VICTOR
from tests.support import pg, tally
from tests.support.github import Remote, encode, headers, sign
from tests.support.pipelines import free_port
from tests.support.webhook import start_gunicorn

pytestmark = pytest.mark.hardening

DB_PASSWORD = "Pg+Pw/7q=Zx-db-1d4e"  # needs percent-encoding in a URL
WRONG_PASSWORD = "Wr0ng+Pw/db-8c2f"
WEBHOOK_SECRET = "whsec-9B3x+Kq/secret-55e1"
GITHUB_TOKEN = "ghp_SecrEtT0ken4c9e1f0a7b3d6e2"
ROLE = "victor_app"


def forms(secret: str) -> set[str]:
    """The ways a secret could show up: as is, percent-encoded (URL, form), and for the token
    the value of the basic-auth header git would send."""
    found = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}
    found.add(base64.b64encode(f"x-access-token:{secret}".encode()).decode())
    return found


SECRETS = {
    "database password": forms(DB_PASSWORD),
    "wrong database password": forms(WRONG_PASSWORD),
    "webhook secret": forms(WEBHOOK_SECRET),
    "GitHub token": forms(GITHUB_TOKEN),
}


def leaks(where: str, text: str) -> list[str]:
    return [
        f"{name} ({form!r}) in {where}"
        for name, variants in SECRETS.items()
        for form in variants
        if form in text
    ]


# --- a private GitHub that refuses the token, over HTTPS ---------------------------------------


class PrivateGitHub:
    """HTTPS on 127.0.0.1 with a self-signed certificate: records the Authorization header of
    each request, waits a little (so git's processes can be seen running) and answers 403."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            ],
            check=True,
            capture_output=True,
        )
        self.authorizations: list[str] = []
        seen = self.authorizations

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.headers.get("Authorization", ""))
                time.sleep(0.6)
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_port}/acme/private.git"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- process arguments, sampled while Victor runs ------------------------------------------------


class ArgvSampler:
    """Every few milliseconds, the command line of each process under the given roots."""

    def __init__(self):
        self.roots: list[int] = []
        self.argvs: set[tuple[str, ...]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ArgvSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, pid: int) -> None:
        self.roots.append(pid)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in list(self.roots):
                try:
                    root = psutil.Process(pid)
                    for proc in [root, *root.children(recursive=True)]:
                        argv = proc.cmdline()
                        if argv:
                            self.argvs.add(tuple(argv))
                except psutil.Error:
                    continue
            time.sleep(0.005)

    def run(self, argv: list[str], env: dict, **kw) -> subprocess.CompletedProcess:
        """subprocess.run, with the process and its children sampled."""
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
        )
        self.watch(proc.pid)
        out, err = proc.communicate(timeout=300)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# --- the test ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pw_server(tmp_path_factory):
    """A PostgreSQL of this module's own that checks victor_app's password."""
    server = pg.start_server(tmp_path_factory.mktemp("pg-secrets"))
    admin = server.get_uri()

    async def setup() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{DB_PASSWORD}'")
            await conn.execute(f"CREATE DATABASE victor OWNER {ROLE}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(pg.with_database(admin, "victor"))
        try:  # as a superuser, once (docs/mac-mini.md, step 2)
            await conn.execute("CREATE EXTENSION vector")
        finally:
            await conn.close()

    asyncio.run(setup())
    pg.require_passwords(server, [ROLE])
    yield server
    server.cleanup()


async def dump_database(url: str) -> str:
    """Every row of every table of Victor's database, as text."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS t FROM pg_tables WHERE schemaname = 'public'"
        )
        lines = []
        for row in tables:
            rows = await conn.fetch(f"SELECT t::text AS r FROM {row['t']} t")
            lines += [f"{row['t']}: {r['r']}" for r in rows]
        return "\n".join(lines)
    finally:
        await conn.close()


def files_text(folder: Path) -> dict[str, str]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            found[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return found


def test_no_secret_in_outputs_rows_files_or_arguments(pw_server, ollama, tmp_path):
    admin = pw_server.get_uri()
    url = pg.role_url(admin, ROLE, DB_PASSWORD, "victor")
    wrong_url = pg.role_url(admin, ROLE, WRONG_PASSWORD, "victor")
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_", "PG"))}
    env |= {
        "VICTOR_DATABASE_URL": url,
        "VICTOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "VICTOR_GITHUB_TOKEN": GITHUB_TOKEN,
        "VICTOR_DATA_DIR": str(data),
        "VICTOR_EMBED_MODEL": "all-minilm",
        "VICTOR_PARSE_WORKERS": "1",
        "VICTOR_JOB_MAX_ATTEMPTS": "1",  # a failing job fails at once
        "VICTOR_WORKER_POLL": "0.2",
        "OLLAMA_HOST": ollama.url,
        "GIT_SSL_NO_VERIFY": "1",  # the private remote's certificate is self-signed
        "PYTHONPATH": str(ROOT),
    }
    outputs: dict[str, str] = {}

    def victor(label: str, *args: str, ok: bool | None = True, use_env: dict | None = None):
        done = sampler.run([*VICTOR, *args], use_env or env, cwd=tmp_path)
        outputs[f"victor {label}"] = done.stdout + done.stderr
        assert ok is None or (done.returncode == 0) == ok, (
            f"victor {label}: exit {done.returncode}, expected {'0' if ok else 'an error'}:\n"
            f"{done.stdout}\n{done.stderr}"
        )
        return done

    game = Remote(tmp_path / "gh", "acme/game")
    game.commit("initial", {"src/game.lua": "local function start(level) return level end\n"})
    game_push = game.push()
    private = Remote(tmp_path / "gh-private", "acme/private")  # only for its push payload
    private.commit("initial", {"src/p.lua": "return {}\n"})
    private_push = private.push()
    github = PrivateGitHub(tmp_path / "tls")
    gone = f"https://127.0.0.1:{free_port()}/acme/gone.git"

    port = free_port()
    gunicorn_log = tmp_path / "gunicorn.log"
    with ArgvSampler() as sampler:
        # the CLI, with the wrong password first
        victor(
            "init-db (wrong password)",
            "init-db",
            ok=False,
            use_env={**env, "VICTOR_DATABASE_URL": wrong_url},
        )
        victor(
            "worker (wrong password)",
            "worker",
            "--drain",
            ok=False,
            use_env={**env, "VICTOR_DATABASE_URL": wrong_url},
        )
        victor("init-db", "init-db")
        victor("index", "-v", "index", str(SAMPLE), "--name", "shop")
        victor("search", "search", "where is the cart total computed", "--json")
        victor("doctor", "doctor", ok=None)  # its verdict is not the point here
        victor("repo add game", "repo", "add", "game", game.url, "--github-url", game.html_url)
        private_web = ("--github-url", private.html_url)
        add_private = ("repo", "add", "private", github.url, *private_web)
        refused = victor("repo add private (refused)", *add_private, ok=False)
        assert "403" in refused.stderr, refused.stderr
        victor("repo add private", *add_private, "--no-check")
        victor(
            "repo add gone",
            "repo",
            "add",
            "gone",
            gone,
            "--github-url",
            "https://github.com/acme/gone",
            "--no-check",
        )

        # the webhook as deployed, with good, bad and missing signatures
        proc = start_gunicorn(
            env, port, gunicorn_log, *("--workers", "2", "--threads", "4", "--access-logfile", "-")
        )
        sampler.watch(proc.pid)
        base = f"http://127.0.0.1:{port}"
        answers = []
        try:
            bad = 0
            for payload in (game_push, private_push):
                body = encode(payload)
                good = headers("push", body, secret=WEBHOOK_SECRET)
                for sent, expect in (
                    (good, 202),
                    (headers("push", body, secret="not-the-secret"), 401),
                    ({k: v for k, v in good.items() if "Signature" not in k}, 401),
                    ({**good, "X-Hub-Signature-256": good["X-Hub-Signature-256"][:-2]}, 401),
                ):
                    r = httpx.post(f"{base}/webhook/github", content=body, headers=sent, timeout=10)
                    assert r.status_code == expect, (r.status_code, r.text)
                    answers.append(r.text)
                    if expect == 401:
                        bad += 1
                        # the answer never holds what the signature should have been
                        right = sign(WEBHOOK_SECRET, body)
                        assert not any(v.split("=", 1)[1] in r.text for v in right.values())
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        outputs["gunicorn log"] = gunicorn_log.read_text(errors="replace")
        outputs["webhook answers"] = "\n".join(answers)

        # the worker runs the queued jobs: game succeeds, private and gone fail
        victor("worker", "worker", "--drain")
        victor("sync game", "sync", "game")
        victor("sync private (refused)", "sync", "private", ok=False)
        victor("jobs", "jobs", "--json")
    github.stop()

    # the private remote did get the token, in the header and only there
    sent = {base64.b64decode(a.split()[-1]).decode() for a in github.authorizations if a}
    assert f"x-access-token:{GITHUB_TOKEN}" in sent, (
        f"git never sent the token to the private remote (Authorization: {github.authorizations})"
    )
    # the runs did what they should (else the search below proves nothing)
    rows = asyncio.run(dump_database(url))
    states = asyncio.run(job_states(url))
    assert states.get("game") == "done" and states.get("private") == "failed", states
    assert states.get("gone") == "failed", states
    assert "403" in outputs["victor sync private (refused)"], outputs[
        "victor sync private (refused)"
    ]
    assert "rejected the password" in outputs["victor init-db (wrong password)"]
    assert any(a[0] == "git" or a[0].endswith("/git") for a in sampler.argvs), "no git seen"
    assert any("remote-https" in " ".join(a) for a in sampler.argvs), "no git-remote-https seen"
    assert any("gunicorn" in " ".join(a) for a in sampler.argvs), "gunicorn not seen"

    places = {**outputs, "database rows": rows}
    places |= {f"file {p}": t for p, t in files_text(data).items()}
    pg_log = Path(pw_server.get_postmaster_info().pgdata) / "log"
    if pg_log.exists():
        places |= {f"PostgreSQL log {p}": t for p, t in files_text(pg_log).items()}
    places |= {f"argv {' '.join(a)[:120]}": "\0".join(a) for a in sampler.argvs}
    assert any("config" in p for p in places if p.startswith("file ")), "no clone config read"

    found = [leak for where, text in places.items() for leak in leaks(where, text)]
    tally.record(
        "secrets searched for in outputs, rows, files and process arguments",
        len(places),
        len(places) - len({f.rsplit(" in ", 1)[1] for f in found}),
        note=f"{len(sampler.argvs)} command lines, {bad} bad signatures",
    )
    assert not found, "secrets leaked:\n" + "\n".join(found)


async def job_states(url: str) -> dict[str, str]:
    """The last job's state of each repository."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT ON (r.name) r.name, j.state FROM sync_jobs j "
            "JOIN repos r ON r.id = j.repo_id ORDER BY r.name, j.id DESC"
        )
        return {r["name"]: r["state"] for r in rows}
    finally:
        await conn.close()
