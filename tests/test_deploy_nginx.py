"""deploy/nginx/victor-webhook.conf in a real nginx (Debian's, installed by scripts/test-deploy),
on 127.0.0.1, in front of the real webhook app: what GitHub's deliveries meet on the way.

Skipped when nginx is not installed, unless VICTOR_DEPLOY_REQUIRE=1 (CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import httpx
import pytest
from pydantic import SecretStr

from tests.conftest import ROOT
from tests.support.github import Remote, encode, headers, ping_payload
from tests.support.pipelines import Proc, free_port
from tests.support.require import missing
from tests.support.webhook import SECRET, WebhookServer

pytestmark = pytest.mark.deploy

SNIPPET = ROOT / "deploy" / "nginx" / "victor-webhook.conf"
UPSTREAM = "http://192.168.1.50:8088"  # the Mac Mini, in the example
OPEN_WEBUI = 418  # what the stand-in for the site's `location /` (Open WebUI) answers


@pytest.fixture(scope="module")
def nginx_exe() -> str:
    exe = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if exe is None:
        message = "nginx is not installed: run ./scripts/test-deploy (apt-get install nginx-light)"
        missing("deploy", message)
    return exe


@pytest.fixture
def webhook(settings):
    """The webhook app with the settings it has in the container (GitHub's 25 MB cap)."""
    server = WebhookServer(settings.model_copy(update={"webhook_secret": SecretStr(SECRET)}))
    yield server.start()
    server.stop()


def site_config(folder, port: int, upstream: str) -> str:
    """The user's site, reduced to what matters: the snippet, and `location /` for the rest."""
    snippet = SNIPPET.read_text()
    assert snippet.count(f"proxy_pass {UPSTREAM};") == 1
    (folder / "victor-webhook.conf").write_text(snippet.replace(UPSTREAM, upstream))
    temp = " ".join(
        f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    return f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} info;
events {{ worker_connections 64; }}
http {{
    access_log {folder / "access.log"};
    {temp} uwsgi_temp_path {folder / "uwsgi"}; scgi_temp_path {folder / "scgi"};
    server {{
        listen 127.0.0.1:{port};
        server_name ai.victorromeosierra.com;
        include {folder / "victor-webhook.conf"};
        location = /nginx-is-up {{ return 200; }}
        location / {{ return {OPEN_WEBUI}; }}
    }}
}}
"""


@pytest.fixture
def nginx(nginx_exe, webhook, tmp_path):
    folder = tmp_path / "nginx"
    folder.mkdir()
    port = free_port()
    (folder / "nginx.conf").write_text(site_config(folder, port, webhook.url))
    args = [nginx_exe, "-p", str(folder), "-c", str(folder / "nginx.conf")]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert "syntax is ok" in check.stderr and "test is successful" in check.stderr
    proc = Proc("nginx", args, folder / "nginx.out", folder, dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_ready(url + "/nginx-is-up", timeout=20)
        yield url
    finally:
        proc.stop()


def post(url: str, body: bytes, event: str = "ping", secret: str | None = SECRET, **extra):
    sent = headers(event, body, secret=secret)
    return httpx.post(url + "/webhook/github", content=body, headers={**sent, **extra}, timeout=60)


def test_signed_delivery_passes_through_unchanged(nginx, tmp_path):
    body = encode(ping_payload(Remote(tmp_path / "gh")))
    answer = post(nginx, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == "pong: the webhook reaches Victor"


def test_bad_signature_is_refused_by_the_app(nginx, tmp_path):
    body = encode(ping_payload(Remote(tmp_path / "gh")))
    answer = post(nginx, body, secret="another secret")
    assert answer.status_code == 401
    assert "does not match" in answer.json()["message"]


def test_only_post_is_forwarded(nginx):
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        assert httpx.request(method, nginx + "/webhook/github", timeout=10).status_code == 403


def test_nothing_else_of_the_app_is_reachable(nginx):
    for path in ("/jobs", "/jobs/1", "/healthz", "/webhook/github/", "/webhook/github/x"):
        assert httpx.get(nginx + path, timeout=10).status_code == OPEN_WEBUI, path


def test_body_size_limit_is_githubs(nginx):
    # Up to 25 MB reaches the app (which checks the signature); above, nginx refuses it.
    big = b'{"zen": "' + b"x" * (24 * 1024 * 1024) + b'"}'
    assert post(nginx, big, secret="another secret").status_code == 401
    too_big = b'{"zen": "' + b"x" * (26 * 1024 * 1024) + b'"}'
    assert post(nginx, too_big).status_code == 413
