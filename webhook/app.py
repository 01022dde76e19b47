"""The GitHub webhook: verify a push delivery, queue a sync job, answer within milliseconds.

    gunicorn --bind 127.0.0.1:8088 --workers 2 --threads 4 'webhook.app:create_app()'

Nothing here indexes: the app queues a sync job for each followed repository the push
concerns (indexer/sync/jobs.py) and `victor worker` does the work, so GitHub's 10-second
limit is never at stake. Routes:

    POST /webhook/github   deliveries (push, ping; anything else is acknowledged)
    GET  /healthz          the app and its database
    GET  /jobs, /jobs/<id> job status: with `Authorization: Bearer $VICTOR_JOBS_TOKEN`,
                           or from localhost when no token is set
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

import asyncpg
from flask import Flask, abort, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from indexer import store
from indexer.config import Settings, load_settings
from indexer.errors import ConfigError, NotFound, VictorError
from indexer.logs import setup_logging
from indexer.sync import jobs

from . import github
from .bridge import Database

log = logging.getLogger("webhook")

LOOPBACK = {"127.0.0.1", "::1"}
PROXY_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")


@dataclass(frozen=True)
class State:
    settings: Settings
    secret: bytes | None  # None only with VICTOR_WEBHOOK_INSECURE_DEV
    jobs_token: str | None
    database: Database


def create_app(settings: Settings | None = None) -> Flask:
    """The WSGI app. Refuses to start without VICTOR_WEBHOOK_SECRET (unless in dev mode)."""
    settings = settings or load_settings()
    setup_logging(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_bytes
    token = settings.jobs_token.get_secret_value() if settings.jobs_token else None
    app.extensions["victor"] = State(settings, webhook_secret(settings), token, Database(settings))
    app.add_url_rule("/webhook/github", view_func=github_delivery, methods=["POST"])
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/jobs", view_func=recent_jobs)
    app.add_url_rule("/jobs/<int:job_id>", view_func=one_job)
    app.register_error_handler(HTTPException, http_error)
    for unavailable in (VictorError, asyncpg.PostgresError, OSError):
        app.register_error_handler(unavailable, database_error)
    return app


def webhook_secret(settings: Settings) -> bytes | None:
    if settings.webhook_secret is not None and settings.webhook_secret.get_secret_value():
        return settings.webhook_secret.get_secret_value().encode()
    if settings.webhook_insecure_dev:
        log.warning(
            "VICTOR_WEBHOOK_INSECURE_DEV is set: deliveries are NOT verified. "
            "Never expose this server to the internet."
        )
        return None
    raise ConfigError(
        "VICTOR_WEBHOOK_SECRET is not set. Make one (python -c 'import secrets; "
        "print(secrets.token_hex(32))'), put it in the GitHub webhook's Secret field and in "
        "VICTOR_WEBHOOK_SECRET. For local development only, VICTOR_WEBHOOK_INSECURE_DEV=1 "
        "runs without one."
    )


def _state() -> State:
    return current_app.extensions["victor"]


def reply(status: int, outcome: str, message: str, **extra: object):
    return jsonify({"status": outcome, "message": message, **extra}), status


def http_error(exc: HTTPException):
    if exc.code == 413:
        limit = _state().settings.webhook_max_bytes
        return reply(413, "rejected", f"The body is larger than {limit} bytes.")
    return reply(exc.code or 500, "error", exc.description or exc.name)


def database_error(exc: Exception):
    log.error("%s %s failed: %s", request.method, request.path, exc)
    return reply(503, "error", f"The database is unavailable: {exc}")


# --- POST /webhook/github -------------------------------------------------------------------


def github_delivery():
    state = _state()
    body = raw_body()
    event = request.headers.get("X-GitHub-Event", "")
    delivery = request.headers.get("X-GitHub-Delivery") or None
    try:
        if state.secret is not None:
            github.verify(state.secret, body, request.headers.get("X-Hub-Signature-256"))
        if not event:
            raise github.Rejected(400, "X-GitHub-Event is missing: this is not a GitHub delivery.")
        data = github.payload(request.content_type, body)
        if event == "ping":
            return reply(200, "ok", "pong: the webhook reaches Victor", zen=data.get("zen"))
        if event != "push":
            raise github.Ignored(f"{event} events are not used; the webhook needs only push")
        return queue_push(state, github.push(data), delivery)
    except github.Rejected as exc:
        log.warning("delivery %s (%s) rejected: %s", delivery, event or "-", exc)
        return reply(exc.status, "rejected", str(exc))
    except github.Ignored as exc:
        log.info("delivery %s (%s) ignored: %s", delivery, event, exc)
        return reply(200, "ignored", str(exc))
    except (VictorError, asyncpg.PostgresError, OSError) as exc:
        log.error("delivery %s (%s) not queued: %s", delivery, event, exc)
        return reply(
            503,
            "error",
            f"Cannot queue the sync: {exc}. Redeliver it from GitHub once the database is back.",
        )


def raw_body() -> bytes:
    """The body as sent (the signature covers these bytes); 413 when it is too large.

    werkzeug refuses a body whose Content-Length is over the limit, but stops a chunked
    one at the limit without a word: a body that reaches the limit is refused here.
    """
    body = request.get_data(cache=False)
    if len(body) >= current_app.config["MAX_CONTENT_LENGTH"]:
        abort(413)
    return body


def queue_push(state: State, push: github.Push, delivery: str | None):
    settings = state.settings

    async def work(pool: asyncpg.Pool) -> tuple[list[store.Repo], list[jobs.Job], bool]:
        repos = await store.repos_for_push(pool, push.github_url, push.branch)
        if not repos:
            return [], [], False
        ids, duplicate = await jobs.enqueue_delivery(
            pool,
            delivery,
            [r.id for r in repos],
            after=push.after,
            max_attempts=settings.job_max_attempts,
        )
        return repos, await jobs.get_many(pool, ids), duplicate

    repos, queued, duplicate = state.database.run(work)
    if not repos:
        raise github.Ignored(
            f"{push.full_name} branch {push.branch} is not followed "
            f"(victor repo add NAME URL --branch {push.branch} --github-url {push.github_url})"
        )
    listed = [{"id": j.id, "url": f"/jobs/{j.id}", "state": j.state} for j in queued]
    if duplicate:
        # A redelivery (GitHub's "Redeliver", or a retry): nothing new is queued; say what
        # became of the first delivery's jobs, which may have finished long ago.
        handled = "; ".join(jobs.describe(j) for j in queued) or "its jobs no longer exist"
        message = f"already handled: delivery {delivery} was received before: {handled}"
        log.info("delivery %s: %s", delivery, message)
        return reply(200, "duplicate", message, jobs=listed, duplicate=True)
    names = ", ".join(r.name for r in repos)
    message = f"queued: sync of {names} to {push.after[:12]}"
    log.info("delivery %s: %s (jobs %s)", delivery, message, [j.id for j in queued])
    return reply(202, "queued", message, jobs=listed, duplicate=False)


# --- GET /healthz, /jobs ----------------------------------------------------------------------


def healthz():
    _state().database.run(lambda pool: pool.fetchval("SELECT 1"))
    return reply(200, "ok", "webhook and database are up")


def _denied():
    """None when the caller may read jobs; else the answer to give."""
    state = _state()
    if state.jobs_token is not None:
        given = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if hmac.compare_digest(given, f"Bearer {state.jobs_token}".encode()):
            return None
        answer = reply(401, "rejected", "Send Authorization: Bearer $VICTOR_JOBS_TOKEN.")
        answer[0].headers["WWW-Authenticate"] = "Bearer"
        return answer
    proxied = any(h in request.headers for h in PROXY_HEADERS)
    if request.remote_addr in LOOPBACK and not proxied:
        return None
    return reply(
        403,
        "rejected",
        "Jobs are visible from localhost only; set VICTOR_JOBS_TOKEN to read them remotely.",
    )


def recent_jobs():
    if (denied := _denied()) is not None:
        return denied
    limit = max(1, min(request.args.get("limit", 50, type=int), 500))
    found = _state().database.run(lambda pool: jobs.recent(pool, limit))
    return jsonify({"jobs": [j.to_json() for j in found]})


def one_job(job_id: int):
    if (denied := _denied()) is not None:
        return denied
    try:
        job = _state().database.run(lambda pool: jobs.get(pool, job_id))
    except NotFound as exc:
        return reply(404, "error", str(exc))
    return jsonify(job.to_json())
