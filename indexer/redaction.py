"""Keeping secrets out of what Victor prints, logs or stores: one redactor for every place.

Exception messages can quote a DSN (with its password) or a token; every message that leaves
a process (a log line, a job's error, a chat notice) goes through `redact`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from indexer.config import Settings

MASK = "***"


def redact_url(url: str) -> str:
    """The URL with its password replaced, safe to print."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:{MASK}@{host}"))


def url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret a Victor process may hold: the database passwords (in the URLs or in
    PGPASSWORD), a password in Ollama's URL (a proxy in front of it), the GitHub token, the
    webhook secret, the jobs and MCP tokens, the summary model's key."""
    values: list[str | SecretStr | None] = [
        os.environ.get("PGPASSWORD"),
        url_password(settings.ollama_host),
        settings.github_token,
        settings.webhook_secret,
        settings.jobs_token,
        settings.mcp_token,
        settings.summary_api_key,
        url_password(settings.summary_url),
    ]
    for url in (settings.database_url, settings.mcp_database_url):
        if url is not None:
            values.append(url_password(url.get_secret_value()))
    return [s for s in (_plain(v) for v in values) if s]


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """The text with every occurrence of each secret replaced by ***."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _plain(value: str | SecretStr | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value
