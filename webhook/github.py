"""What a GitHub delivery says, and whether to believe it. Pure functions, no I/O.

See shared/docs/github-webhook.md: the signature is an HMAC-SHA256 of the raw body keyed
with the webhook's secret, sent as `X-Hub-Signature-256: sha256=<hex>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

ZERO_SHA = "0" * 40
_SHA = re.compile(r"[0-9a-f]{40}")


class Rejected(Exception):
    """A delivery refused: an HTTP status and a message for the sender."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Ignored(Exception):
    """A genuine delivery that asks for nothing: acknowledged with the reason."""


@dataclass(frozen=True, slots=True)
class Push:
    github_url: str  # repository.html_url
    full_name: str
    branch: str
    before: str
    after: str
    forced: bool


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> None:
    """Raise Rejected(401) unless `header` is the signature of `body` (constant time)."""
    if not header:
        raise Rejected(
            401,
            "X-Hub-Signature-256 is missing: give the webhook a secret, the same as "
            "VICTOR_WEBHOOK_SECRET.",
        )
    expected = signature(secret, body).encode()
    if not hmac.compare_digest(expected, header.strip().encode("utf-8", "replace")):
        raise Rejected(
            401,
            "X-Hub-Signature-256 does not match: the webhook's secret differs from "
            "VICTOR_WEBHOOK_SECRET.",
        )


def payload(content_type: str | None, body: bytes) -> dict:
    """The JSON object of a delivery sent as application/json or form-encoded (`payload=`)."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime == "application/json":
        raw: bytes | str = body
    elif mime == "application/x-www-form-urlencoded":
        raw = _form_payload(body)
    else:
        raise Rejected(
            415,
            f"Content type {mime or '(none)'!r} is not supported: set the webhook's content "
            "type to application/json.",
        )
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise Rejected(400, "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise Rejected(400, "The payload is not a JSON object.")
    return data


def _form_payload(body: bytes) -> str:
    try:
        form = parse_qs(body.decode("utf-8"), max_num_fields=20, strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "The form-encoded body cannot be parsed.") from None
    values = form.get("payload")
    if not values:
        raise Rejected(400, "The form-encoded body has no `payload` field.")
    return values[0]


def push(data: dict) -> Push:
    """The branch push a payload describes; Ignored for tags and deletions."""
    ref, before, after = data.get("ref"), data.get("before"), data.get("after")
    repo = data.get("repository")
    if not (isinstance(ref, str) and isinstance(after, str) and isinstance(repo, dict)):
        raise Rejected(400, "This push payload has no ref, after or repository.")
    name = repo.get("full_name") or "?"
    if ref.startswith("refs/tags/"):
        raise Ignored(f"{name}: tag {ref.removeprefix('refs/tags/')} (tags are not indexed)")
    if not ref.startswith("refs/heads/"):
        raise Ignored(f"{name}: {ref} is not a branch")
    branch = ref.removeprefix("refs/heads/")
    if data.get("deleted") is True or after == ZERO_SHA:
        raise Ignored(f"{name}: branch {branch} was deleted (the index keeps its last commit)")
    html_url = repo.get("html_url")
    if not _SHA.fullmatch(after) or not isinstance(html_url, str):
        raise Rejected(400, "This push payload has no valid after or repository.html_url.")
    return Push(
        github_url=html_url.rstrip("/"),
        full_name=str(name),
        branch=branch,
        before=before if isinstance(before, str) else ZERO_SHA,
        after=after,
        forced=data.get("forced") is True,
    )
