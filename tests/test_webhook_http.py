"""The webhook's HTTP contract, against the real app served on 127.0.0.1 and a real database.

Deliveries are shaped and signed like GitHub's (tests/support/github.py). Every refusal
must leave the queue untouched; every accepted push must leave exactly one job.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from pydantic import SecretStr

from indexer import store
from indexer.errors import ConfigError
from indexer.sync import jobs
from tests.conftest import ROOT, victor_cli
from tests.support.github import deliver, encode, headers, ping_payload
from tests.support.webhook import SECRET, WebhookServer, start_gunicorn
from webhook.app import create_app


@pytest.fixture
async def followed(victor, remote):
    """acme/game's main branch is followed (no job queued: tests count jobs)."""
    remote.commit("initial", {"src/game.lua": "local function start() return 1 end\n"})
    await store.track_repo(victor.pool, "game", remote.url, "main", remote.html_url)
    return remote


async def queue(victor) -> tuple[list, list]:
    jobs = await victor.pool.fetch("SELECT * FROM sync_jobs ORDER BY id")
    deliveries = await victor.pool.fetch("SELECT * FROM webhook_deliveries")
    return jobs, deliveries


async def post(url: str, body: bytes, sent: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(f"{url}/webhook/github", content=body, headers=sent)


async def test_ping_is_answered(webhook_url, victor, remote):
    answer = await deliver(webhook_url, "ping", ping_payload(remote), secret=SECRET)
    assert answer.status_code == 200
    assert answer.json()["zen"] == "Keep it logically awesome."
    assert await queue(victor) == ([], [])


async def test_push_to_followed_branch_queues_a_job(webhook_url, victor, followed):
    """The delivery is answered once the job is queued, not once it is done (GitHub gives up
    after 10 s; how fast the answer comes is measured in bench/, not here)."""
    payload = followed.push()
    answer = await deliver(webhook_url, "push", payload, secret=SECRET, delivery="d-1")
    assert answer.status_code == 202, answer.text
    (listed,) = answer.json()["jobs"]
    jobs, deliveries = await queue(victor)
    assert [(j["id"], j["state"], j["after_sha"], j["reason"]) for j in jobs] == [
        (listed["id"], "pending", payload["after"], "push")
    ]
    assert [(d["delivery"], list(d["job_ids"])) for d in deliveries] == [("d-1", [listed["id"]])]

    async with httpx.AsyncClient() as client:  # no VICTOR_JOBS_TOKEN: localhost may look
        job = (await client.get(webhook_url + listed["url"])).json()
        assert job["state"] == "pending" and job["repo"] == "game"
        recent = (await client.get(f"{webhook_url}/jobs")).json()["jobs"]
        assert [j["id"] for j in recent] == [listed["id"]]
        assert (await client.get(f"{webhook_url}/jobs/999")).status_code == 404


async def test_redelivery_queues_nothing_more(webhook_url, victor, followed):
    payload = followed.push()
    first = await deliver(webhook_url, "push", payload, secret=SECRET, delivery="same")
    again = await deliver(webhook_url, "push", payload, secret=SECRET, delivery="same")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["duplicate"] is True and again.json()["status"] == "duplicate"
    assert again.json()["jobs"] == first.json()["jobs"]
    jobs, _ = await queue(victor)
    assert len(jobs) == 1 and jobs[0]["pushes"] == 1


async def test_pushes_coalesce_into_the_pending_job(webhook_url, victor, followed):
    ids = set()
    for n in range(3):
        followed.commit(f"change {n}", {"src/game.lua": f"local function start() return {n} end\n"})
        answer = await deliver(webhook_url, "push", followed.push(), secret=SECRET)
        ids |= {j["id"] for j in answer.json()["jobs"]}
    jobs, deliveries = await queue(victor)
    assert len(ids) == 1 and len(jobs) == 1 and len(deliveries) == 3
    assert jobs[0]["after_sha"] == followed.head() and jobs[0]["pushes"] == 3


def _resigned(event: str, body: bytes, **changes: str | bytes | None) -> dict:
    sent = headers(event, body, secret=SECRET)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            sent.pop(name)
        else:
            sent[name] = value
    return sent


@pytest.mark.parametrize(
    "case",
    ["missing", "wrong secret", "sha1 only", "other body", "not hex", "latin-1", "empty"],
)
async def test_bad_signature_is_401_and_stores_nothing(webhook_url, victor, followed, case):
    body = encode(followed.push())
    wrong = headers("push", body, secret="not the secret")
    changes = {
        "missing": {"X_Hub_Signature_256": None},
        "wrong secret": {"X_Hub_Signature_256": wrong["X-Hub-Signature-256"]},
        "sha1 only": {"X_Hub_Signature_256": None, "X_Hub_Signature": wrong["X-Hub-Signature"]},
        "other body": {
            "X_Hub_Signature_256": headers("push", b"{}", secret=SECRET)["X-Hub-Signature-256"]
        },
        "not hex": {"X_Hub_Signature_256": "sha256=" + "zz" * 32},
        "latin-1": {"X_Hub_Signature_256": "sha256=\u00e9\u00e9".encode("latin-1")},
        "empty": {"X_Hub_Signature_256": ""},
    }[case]
    answer = await post(webhook_url, body, _resigned("push", body, **changes))
    assert answer.status_code == 401
    assert "VICTOR_WEBHOOK_SECRET" in answer.json()["message"]
    assert SECRET not in answer.text
    assert await queue(victor) == ([], [])


async def test_bad_bodies_are_refused_cleanly(webhook_url, victor, followed):
    payload = followed.push()
    cases = [
        (b"not json at all", "application/json", 400),
        (b"[1, 2, 3]", "application/json", 400),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 413),  # over the test limit
        (b"[" * 20_000 + b"]" * 20_000, "application/json", 400),  # nested too deep to parse
        (b"\xff\xfe{}", "application/json", 400),
        (encode(payload), "text/plain", 415),
        (encode(payload), "", 415),
        (b"payload", "application/x-www-form-urlencoded", 400),
        (b"other=1", "application/x-www-form-urlencoded", 400),
        (b"payload=%7Bbroken", "application/x-www-form-urlencoded", 400),
    ]
    for body, content_type, status in cases:
        sent = headers("push", body, secret=SECRET, content_type=content_type)
        if not content_type:
            sent.pop("Content-Type")
        answer = await post(webhook_url, body, sent)
        assert answer.status_code == status, (body[:40], content_type, answer.text)
        assert answer.json()["status"] == "rejected"
    assert await queue(victor) == ([], [])


async def test_oversized_body_without_length_is_413(webhook_url, victor, followed):
    body = encode(followed.push()) + b" " * 100_000
    sent = headers("push", body, secret=SECRET)

    def chunks():
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    with httpx.Client(timeout=10) as client:  # chunked: no Content-Length to check up front
        answer = client.post(f"{webhook_url}/webhook/github", content=chunks(), headers=sent)
    assert answer.status_code == 413
    assert await queue(victor) == ([], [])


async def test_form_encoded_push_is_supported(webhook_url, victor, followed):
    form = "application/x-www-form-urlencoded"
    answer = await deliver(webhook_url, "push", followed.push(), secret=SECRET, content_type=form)
    assert answer.status_code == 202, answer.text
    jobs, _ = await queue(victor)
    assert len(jobs) == 1


async def test_deliveries_that_ask_for_nothing_are_acknowledged(webhook_url, victor, followed):
    followed.push()
    followed.checkout("feature", new=True)
    followed.commit("on a branch")
    other_branch = followed.push("feature")
    tag = followed.push_payload("refs/tags/v1.0", "0" * 40, followed.head())
    deleted = followed.delete_branch("feature")
    stranger = {**followed.push_payload("refs/heads/main", "0" * 40, followed.head("main"))}
    stranger["repository"] = {**stranger["repository"], "html_url": "https://github.com/x/y"}
    cases = [
        ("issues", {"action": "opened", "repository": followed.repository()}, "not used"),
        ("push", other_branch, "branch feature is not followed"),
        ("push", tag, "tags are not indexed"),
        ("push", deleted, "was deleted"),
        ("push", stranger, "is not followed"),
    ]
    for event, payload, reason in cases:
        answer = await deliver(webhook_url, event, payload, secret=SECRET)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "ignored" and reason in answer.json()["message"]

    body = encode(ping_payload(followed))
    no_event = _resigned("ping", body, X_GitHub_Event=None)
    assert (await post(webhook_url, body, no_event)).status_code == 400
    assert await queue(victor) == ([], [])


async def test_jobs_view_needs_the_token(hook_settings, victor, followed):
    token = "jobs-token-123"
    server = WebhookServer(
        hook_settings.model_copy(update={"jobs_token": SecretStr(token)})
    ).start()
    try:
        answer = await deliver(server.url, "push", followed.push(), secret=SECRET)
        url = server.url + answer.json()["jobs"][0]["url"]
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (await client.get(url, headers=wrong)).status_code == 401
            right = {"Authorization": f"Bearer {token}"}
            assert (await client.get(url, headers=right)).json()["state"] == "pending"
            assert (await client.get(f"{server.url}/jobs", headers=right)).status_code == 200
    finally:
        server.stop()


async def test_without_token_jobs_are_for_localhost_only(webhook_url, followed):
    async with httpx.AsyncClient() as client:
        proxied = {"X-Forwarded-For": "203.0.113.9"}  # came in through nginx
        answer = await client.get(f"{webhook_url}/jobs", headers=proxied)
    assert answer.status_code == 403
    assert "VICTOR_JOBS_TOKEN" in answer.json()["message"]


def test_no_secret_no_start(settings):
    with pytest.raises(ConfigError, match="VICTOR_WEBHOOK_SECRET is not set"):
        create_app(settings)


async def test_dev_flag_runs_without_secret(settings, victor, followed):
    server = WebhookServer(settings.model_copy(update={"webhook_insecure_dev": True})).start()
    try:
        answer = await deliver(server.url, "push", followed.push(), secret=None)
        assert answer.status_code == 202
    finally:
        server.stop()


async def test_healthz_reports_the_database(webhook_url, hook_settings, followed):
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{webhook_url}/healthz")).status_code == 200
    down = hook_settings.model_copy(
        update={"database_url": SecretStr("postgresql://victor:hunter2@127.0.0.1:9/victor")}
    )
    server = WebhookServer(down).start()
    try:
        async with httpx.AsyncClient(timeout=15) as client:
            answer = await client.get(f"{server.url}/healthz")
            assert answer.status_code == 503
            assert "Cannot connect to PostgreSQL" in answer.json()["message"]
            assert "hunter2" not in answer.text
            ping = await deliver(server.url, "ping", {"zen": "z"}, secret=SECRET)
            assert ping.status_code == 200  # ping needs no database
            push = await deliver(server.url, "push", followed.push(), secret=SECRET)
            assert push.status_code == 503 and "Redeliver" in push.json()["message"]
            assert "hunter2" not in push.text
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gunicorn(env: dict[str, str], port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "webhook.app:create_app()",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_gunicorn_serves_the_app(cli_env, victor, followed):
    port = _free_port()
    env = {**cli_env, "VICTOR_WEBHOOK_SECRET": SECRET}
    proc = _gunicorn(env, port)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = await deliver(url, "push", followed.push(), secret=SECRET)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert answer.status_code == 202, answer.text
        jobs, _ = await queue(victor)
        assert len(jobs) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0]
    assert SECRET not in output


async def test_redelivery_says_what_became_of_the_job(cli_env, victor, followed, tmp_path):
    """Under gunicorn as deployed: a redelivery is answered with the first delivery's job as
    it is now (pending, then done with its time and commit), never "queued" again."""
    port = _free_port()
    env = {**cli_env, "VICTOR_WEBHOOK_SECRET": SECRET}
    proc = start_gunicorn(env, port, tmp_path / "gunicorn.log", "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    payload = followed.push()
    try:
        first = await deliver(url, "push", payload, secret=SECRET, delivery="d-old")
        assert first.status_code == 202 and first.json()["status"] == "queued", first.text
        (job,) = first.json()["jobs"]
        waiting = await deliver(url, "push", payload, secret=SECRET, delivery="d-old")
        assert waiting.status_code == 200 and waiting.json()["status"] == "duplicate"
        assert f"job {job['id']} (game) pending" in waiting.json()["message"], waiting.text

        victor_cli("worker", "--drain", env=env)  # the job runs and finishes
        done = await jobs.get(victor.pool, job["id"])
        assert done.state == "done"
        again = await deliver(url, "push", payload, secret=SECRET, delivery="d-old")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    answer = again.json()
    assert again.status_code == 200 and answer["status"] == "duplicate", again.text
    assert answer["jobs"] == [{"id": job["id"], "url": job["url"], "state": "done"}]
    finished = done.finished_at.strftime("%Y-%m-%d %H:%M:%S")
    heading = f"already handled: delivery d-old was received before: job {job['id']} (game) done"
    assert answer["message"].startswith(heading), answer["message"]
    assert f"done at {finished}" in answer["message"], answer["message"]
    assert f"index at {followed.head()[:12]}" in answer["message"]
    assert "queued" not in answer["message"]
    all_jobs, _ = await queue(victor)
    assert len(all_jobs) == 1


def test_gunicorn_refuses_to_start_without_secret(cli_env):
    env = {k: v for k, v in cli_env.items() if k != "VICTOR_WEBHOOK_SECRET"}
    proc = _gunicorn(env, _free_port())
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode != 0
    assert "VICTOR_WEBHOOK_SECRET is not set" in output, output
