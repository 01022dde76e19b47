"""The webhook endpoint under random deliveries, over HTTP: only a correctly signed, well-formed
push for the followed repository and branch ever queues work, and nothing gets a 500.

hypothesis builds each request: a body (the real push GitHub sends, the same with fields
that must not matter changed, the same made invalid, random JSON, random bytes, a body over
the size limit, deeply nested JSON), a content type, headers (event, delivery id, random
extras) and a signature (right, for another body, with another secret, garbage, missing,
sha1 only), sent with a length or chunked. After each request the queue is read from
PostgreSQL: it grew by exactly one delivery when the request deserved it, else not at all.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import os
import signal
import uuid
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer import store
from tests.support import tally
from tests.support.github import Remote, encode
from tests.support.pipelines import free_port
from tests.support.webhook import SECRET, start_gunicorn

LIMIT = 64 * 1024  # hook_settings' webhook_max_bytes (the app's limit in these tests)


@dataclass
class Delivery:
    method: str
    body: bytes
    headers: dict[str, bytes | str]
    chunked: bool
    deserves_a_job: bool  # signed right, push event, well-formed push for main of acme/game


# --- bodies ----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
NEUTRAL = ["commits", "head_commit", "pusher", "sender", "compare", "base_ref", "created"]


@st.composite
def push_bodies(draw, payload: dict) -> tuple[dict | list | str | int | None, bool]:
    """The real push payload, changed: (JSON value, still a well-formed followed push)."""
    data = copy.deepcopy(payload)
    change = draw(
        st.sampled_from(
            [
                *("none", "extra", "drop-neutral", "drop-needed", "after", "ref", "repo"),
                *("deleted", "retype", "not-object"),
            ]
        )
    )
    if change == "extra":
        data.update(draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=3)))
        data.update(payload)  # extras never replace the real fields
        return data, True
    if change == "drop-neutral":
        for key in draw(st.lists(st.sampled_from(NEUTRAL), min_size=1, unique=True)):
            data.pop(key, None)
        return data, True
    if change == "drop-needed":
        data.pop(draw(st.sampled_from(["ref", "after", "repository"])))
    elif change == "after":
        data["after"] = draw(
            st.sampled_from(["0" * 40, payload["after"].upper(), payload["after"][:39], ""])
            | st.text(max_size=45)
        )
    elif change == "ref":
        data["ref"] = draw(
            st.sampled_from(["refs/tags/v1", "refs/heads/other", "main", "refs/heads/main/x"])
            | st.text(max_size=30)
        )
    elif change == "repo":
        repo = data["repository"]
        key = draw(st.sampled_from(["html_url", "whole"]))
        if key == "whole":
            data["repository"] = draw(JSON_VALUES)
        else:
            repo["html_url"] = draw(
                st.sampled_from(["https://github.com/acme/other", "", None, 42])
                | st.text(max_size=40)
            )
    elif change == "deleted":
        data["deleted"] = True
    elif change == "retype":
        key = draw(st.sampled_from(["ref", "after", "repository"]))
        data[key] = draw(st.integers() | st.lists(st.integers(), max_size=2) | st.none())
    elif change == "not-object":
        return draw(st.lists(JSON_VALUES, max_size=3) | st.text() | st.integers()), False
    return data, change == "none"


def json_bytes(value, compact: bool) -> bytes:
    return json.dumps(value, separators=(",", ":") if compact else None).encode()


@st.composite
def bodies(draw, payload: dict) -> tuple[bytes, str, bool]:
    """(body, content type, a well-formed followed push if signed right and sent as push)."""
    kind = draw(
        st.sampled_from(["push", "push", "push", "form", "json", "bytes", "huge", "nested"])
        | st.sampled_from(["truncated", "utf16", "latin1"])
    )
    content_type = "application/json"
    good = False
    if kind in ("push", "truncated", "utf16", "latin1"):
        value, good = draw(push_bodies(payload))
        body = json_bytes(value, draw(st.booleans()))
        if kind == "truncated":
            body, good = body[: draw(st.integers(0, max(len(body) - 1, 0)))], False
        elif kind == "utf16":  # JSON may be UTF-16 (RFC 8259 says UTF-8; Python reads both)
            body = body.decode().encode("utf-16")
        elif kind == "latin1":
            body, good = body + b"\xff\xfe", False
    elif kind == "form":
        value, good = draw(push_bodies(payload))
        body = encode(value, "application/x-www-form-urlencoded")
        content_type = "application/x-www-form-urlencoded"
    elif kind == "json":
        body = json_bytes(draw(JSON_VALUES), True)
    elif kind == "bytes":
        body = draw(st.binary(max_size=2048))
    elif kind == "huge":
        body = b'{"x": "' + b"a" * draw(st.integers(LIMIT - 16, LIMIT + 4096)) + b'"}'
    else:  # nested
        depth = draw(st.integers(100, 30_000))
        body = b'{"a":' * depth + b"1" + b"}" * depth
    if len(body) >= LIMIT:
        good = False
    # the content type as sent: usually the right one, sometimes another or none
    sent_type = draw(
        st.just(content_type)
        | st.sampled_from(
            [
                "application/json; charset=utf-8",
                "APPLICATION/JSON",
                "text/plain",
                "multipart/form-data; boundary=x",
                "application/x-www-form-urlencoded",
                "",
                "application/json; charset=utf-16",
            ]
        )
        | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
    )
    if sent_type.split(";")[0].strip().lower() != content_type:
        good = False
    return body, sent_type, good


# --- headers ---------------------------------------------------------------------------------

HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@st.composite
def deliveries(draw, payload: dict) -> Delivery:
    body, content_type, good = draw(bodies(payload))
    right = signature(SECRET, body)
    how = draw(
        st.sampled_from(["right", "right", "right", "padded", "other-body", "other-secret"])
        | st.sampled_from(["garbage", "missing", "sha1", "upper", "empty", "truncated"])
    )
    sig = {
        "right": right,
        "padded": f"  {right} ",  # surrounding whitespace is not part of the value
        "other-body": signature(SECRET, body + b" "),
        "other-secret": signature("not the secret", body),
        "garbage": draw(HEADER_TEXT),
        "missing": None,
        "sha1": None,
        "upper": right.upper(),
        "empty": "",
        "truncated": right[:-1],
    }[how]
    signed = how in ("right", "padded")
    event = draw(
        st.sampled_from(["push", "push", "push", "ping", "issues", "PUSH", ""]) | HEADER_TEXT
    )
    headers: dict[str, bytes | str] = {"User-Agent": "GitHub-Hookshot/fuzz"}
    if content_type:
        headers["Content-Type"] = content_type
    if event or draw(st.booleans()):
        headers["X-GitHub-Event"] = event
    delivery = draw(st.sampled_from(["uuid", "none", "text", "long"]))
    if delivery == "uuid":
        headers["X-GitHub-Delivery"] = str(uuid.uuid4())
    elif delivery == "text":
        headers["X-GitHub-Delivery"] = draw(HEADER_TEXT).encode("latin-1").strip() or b"x"
    elif delivery == "long":
        headers["X-GitHub-Delivery"] = "d" * draw(st.integers(100, 6000))
    if sig is not None:
        headers["X-Hub-Signature-256"] = sig
    if how == "sha1":
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(SECRET.encode(), body, "sha1").hexdigest()
    for name, value in draw(
        st.dictionaries(st.sampled_from(["X-Extra", "X-Forwarded-For", "Accept"]), HEADER_TEXT)
    ).items():
        headers[name] = value.encode("latin-1").strip() or b"x"
    method = draw(st.sampled_from(["POST"] * 12 + ["GET", "PUT", "DELETE", "PATCH"]))
    return Delivery(
        method=method,
        body=body,
        headers=headers,
        chunked=draw(st.booleans()),
        deserves_a_job=method == "POST" and signed and event == "push" and good,
    )


# --- the check ---------------------------------------------------------------------------------


def queue_size(url: str) -> tuple[int, int]:
    """(deliveries recorded, pushes counted in jobs), read in a loop of its own."""

    async def read() -> tuple[int, int]:
        conn = await asyncpg.connect(url)
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM webhook_deliveries) AS d, "
                "(SELECT coalesce(sum(pushes), 0) FROM sync_jobs) AS p"
            )
        finally:
            await conn.close()
        return row["d"], row["p"]

    return asyncio.run(read())


def send(client: httpx.Client, base: str, d: Delivery) -> httpx.Response:
    content = d.body
    if d.chunked and d.method == "POST":
        parts = [d.body[i : i + 4096] for i in range(0, len(d.body), 4096)]
        content = iter(parts)  # no Content-Length: werkzeug/gunicorn read it chunked
    # as bytes on the wire (HTTP allows Latin-1 in values; leading spaces are not the value's)
    headers = {
        name: (value.encode("latin-1") if isinstance(value, str) else value).strip()
        for name, value in d.headers.items()
    }
    return client.request(d.method, f"{base}/webhook/github", content=content, headers=headers)


def delivery_id(d: Delivery) -> bytes | None:
    """The X-GitHub-Delivery value as the server reads it (None: none, a new delivery each)."""
    value = d.headers.get("X-GitHub-Delivery")
    if value is None:
        return None
    return (value.encode("latin-1") if isinstance(value, str) else value).strip() or None


def fuzz(base: str, db_url: str, payload: dict, examples: int) -> dict[str, int]:
    seen = {"examples": 0, "queued": 0, "redelivered": 0, "refused": 0}
    queued: set[bytes] = set()  # delivery ids that made a job (the same id again: no job)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(deliveries(payload))
    def check(d: Delivery) -> None:
        before = queue_size(db_url)
        with httpx.Client(timeout=30) as client:
            answer = send(client, base, d)
        after = queue_size(db_url)
        assert answer.status_code < 500, (answer.status_code, answer.text[:300])
        did = delivery_id(d)
        if d.deserves_a_job and did is not None and did in queued:  # a redelivery: no new job
            assert answer.status_code == 200 and answer.json()["duplicate"], answer.text[:300]
            assert after == before
            seen["redelivered"] += 1
        elif d.deserves_a_job:
            assert answer.status_code == 202, answer.text[:300]
            assert after[1] == before[1] + 1
            queued.add(did)
            seen["queued"] += 1
        else:
            assert after == before, (answer.status_code, answer.text[:300])
            assert answer.status_code != 202
            seen["refused"] += 1
        if answer.headers.get("content-type", "").startswith("application/json"):
            assert SECRET not in answer.text
        seen["examples"] += 1

    check()
    return seen


@pytest.fixture
def followed(remote: Remote, database_url, hook_settings) -> dict:
    """acme/game main is followed; returns the push payload GitHub sent for its last push."""
    remote.commit("initial", {"src/game.lua": "local function start() return 1 end\n"})
    payload = remote.push()

    async def track() -> None:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        try:
            from indexer.store import migrations

            async with pool.acquire() as conn:
                await migrations.migrate(conn)
            await store.track_repo(pool, "game", remote.url, "main", remote.html_url)
        finally:
            await pool.close()

    asyncio.run(track())
    return payload


def test_random_deliveries_to_the_app(webhook_url, followed, database_url):
    seen = fuzz(webhook_url, database_url, followed, examples=150)
    assert seen["examples"] == 150 and seen["queued"] > 0


@pytest.mark.hardening
def test_random_deliveries_to_gunicorn(cli_env, followed, database_url, tmp_path):
    """The same through gunicorn, as deployed, at length."""
    port = free_port()
    log_path = tmp_path / "gunicorn.log"  # a file, not a pipe: an unread pipe fills and blocks it
    env = {**cli_env, "VICTOR_WEBHOOK_SECRET": SECRET, "VICTOR_WEBHOOK_MAX_BYTES": str(LIMIT)}
    proc = start_gunicorn(env, port, log_path, *("--workers", "2", "--threads", "4"))
    base = f"http://127.0.0.1:{port}"
    try:
        seen = fuzz(base, database_url, followed, examples=1500)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    log = log_path.read_text(errors="replace")
    assert seen["examples"] == 1500 and seen["queued"] > 0
    assert "Traceback" not in log and SECRET not in log
    tally.record(
        "webhook deliveries to gunicorn (hypothesis)",
        seen["examples"],
        seen["examples"],
        note=f"{seen['queued']} deserved a job and got one, {seen['redelivered']} "
        f"redeliveries acknowledged without one, {seen['refused']} refused",
    )
