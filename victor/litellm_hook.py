"""Victor in the LiteLLM proxy: Lua code context for clients that call LiteLLM directly.

Open WebUI chats do not need this: the "Lua Codebase" Pipelines filter adds the code before
the body reaches LiteLLM. This hook is for every other OpenAI-compatible client (an editor, a
script): when it asks for a model alias configured here (e.g. `claude-lua`), the hook searches
the index for the last user message and puts the code in front of the model as a system
message, the way the filter does. Other aliases are left alone.

In LiteLLM's config.yaml (see deploy/litellm/config.yaml)::

    litellm_settings:
      callbacks: indexer.litellm_hook.victor_hook

Settings, from the proxy's environment:

    VICTOR_LITELLM_MODELS          aliases that get context: comma-separated globs (`*-lua`)
    VICTOR_LITELLM_TIMEOUT         seconds the hook may take (5); past it, no context
    VICTOR_LITELLM_TOP_K           chunks to retrieve (8)
    VICTOR_LITELLM_CONTEXT_TOKENS  size of the code context (2000)
    VICTOR_LITELLM_MIN_SCORE       leave out weaker matches (0)
    VICTOR_LITELLM_REPOS           only these indexed repositories (all)
    VICTOR_DATABASE_URL            required; its password in PGPASSWORD, not in the URL
    OLLAMA_HOST, VICTOR_EMBED_MODEL, ...  as for every Victor process

A request may narrow the repositories with the header `X-Victor-Repos: game,engine`.

The proxy does not fail open: an exception raised here would fail the request, and a slow
hook would hold it. So the hook bounds its own work (a timeout it does not overrun) and catches
everything: with the database or Ollama down or slow, the request goes on without context.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import time
from typing import Annotated, Any
from urllib.parse import urlsplit

from litellm.integrations.custom_logger import CustomLogger
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import chat
from .bounded import within
from .config import Settings, load_settings
from .context import budget_chars
from .errors import ConfigError
from .service import Victor, connect

log = logging.getLogger("victor.litellm")

REPOS_HEADER = "x-victor-repos"  # LiteLLM passes request headers lower-cased
CHAT_CALLS = ("acompletion", "completion")
RECONNECT_SECONDS = 5.0  # after a failed connection, skip retrieval for this long
EMBED_SHARE = 0.6  # share of the timeout the query embedding may take
POOL_SIZE = 4


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class HookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VICTOR_LITELLM_", extra="ignore", frozen=True)

    models: Annotated[tuple[str, ...], NoDecode] = ("*-lua",)
    timeout: float = Field(default=5.0, gt=0, le=120)
    top_k: int = Field(default=8, ge=1, le=100)
    context_tokens: int = Field(default=2000, ge=100, le=100_000)
    min_score: float = 0.0
    repos: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("models", "repos", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split(value)


class Unavailable(Exception):
    """Retrieval is not possible right now; the message says why."""


def requested_repos(data: dict, configured: tuple[str, ...]) -> list[str] | None:
    """The repositories to search: None for all. `X-Victor-Repos` narrows the search within
    VICTOR_LITELLM_REPOS; an empty list when nothing it asks for is allowed."""
    headers = (data.get("metadata") or {}).get("headers") or {}
    asked = _split(headers.get(REPOS_HEADER) or "")
    if not asked:
        return list(configured) or None
    return [r for r in asked if not configured or r in configured]


class VictorHook(CustomLogger):
    """LiteLLM pre-call hook. The proxy calls it on its event loop for every request."""

    def __init__(self) -> None:
        super().__init__()
        self.victor: Victor | None = None
        self._hook: HookSettings | None = None
        self._settings: Settings | None = None
        self._lock: asyncio.Lock | None = None  # made on first use, inside the proxy's loop
        self._retry_at = 0.0
        self._last_reason = ""

    # Defined on this class itself: the proxy only calls a hook the class defines.
    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str
    ) -> dict | None:
        """Add code context for configured aliases. Never raises, never waits past the bound."""
        try:
            return await self._pre_call(data, call_type)
        except Exception as exc:
            log.warning("victor: no code context: %s", self._redact(str(exc)))
            return None

    async def _pre_call(self, data: dict, call_type: str) -> dict | None:
        hook = self.hook_settings()
        model = str(data.get("model") or "")
        if call_type not in CHAT_CALLS or not any(
            fnmatch.fnmatchcase(model, glob) for glob in hook.models
        ):
            return None
        messages = data.get("messages")
        if not isinstance(messages, list):
            return None
        if chat.context_in_current_turn(messages):
            return None  # an Open WebUI chat whose filter already added it, or a re-run
        query = chat.build_query(messages)
        if not query:
            return None
        repos = requested_repos(data, hook.repos)
        if repos == []:
            return None
        started = time.monotonic()
        try:
            context = await within(self._retrieve(query, repos), hook.timeout)
        except TimeoutError:
            log.warning(
                "victor: no code context for %s: no answer within %g s", model, hook.timeout
            )
            return None
        elapsed_ms = round((time.monotonic() - started) * 1000)
        if not context.text:
            log.info("victor: no matching code for %s (%d ms)", model, elapsed_ms)
            return None
        data["messages"] = chat.with_context(messages, context.text)
        log.info(
            "victor: %d snippets from %d files for %s (%d ms)",
            len(context.sources),
            context.files,
            model,
            elapsed_ms,
        )
        return data

    async def _retrieve(self, query: str, repos: list[str] | None):
        hook = self.hook_settings()
        victor = await self._connected()
        return await victor.retrieve(
            query,
            top_k=hook.top_k,
            budget=budget_chars(tokens=hook.context_tokens),
            min_score=hook.min_score,
            repos=repos,
        )

    # --- settings and the shared pool -----------------------------------------------------

    def hook_settings(self) -> HookSettings:
        if self._hook is None:
            self._hook = HookSettings()
        return self._hook

    def core_settings(self) -> Settings:
        if self._settings is None:
            timeout = self.hook_settings().timeout
            settings = load_settings(
                embed_timeout=timeout * EMBED_SHARE, embed_retries=0, sql_timeout=timeout
            )
            if settings.database_url is None:
                raise ConfigError(
                    "VICTOR_DATABASE_URL is not set in LiteLLM's environment "
                    "(e.g. postgresql://victor@host.docker.internal:5433/victor, "
                    "the password in PGPASSWORD)"
                )
            self._settings = settings
        return self._settings

    async def _connected(self) -> Victor:
        """One pool for all requests, created on first use; a failure is not retried for
        RECONNECT_SECONDS, so a database that is down costs requests nothing."""
        if self.victor is not None:
            return self.victor
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.victor is not None:
                return self.victor
            if time.monotonic() < self._retry_at:
                raise Unavailable(f"{self._last_reason} (retrying in a few seconds)")
            timeout = self.hook_settings().timeout
            try:
                # apply=False: a chat reads the index; it never creates or migrates tables.
                self.victor = await connect(
                    self.core_settings(),
                    min_size=1,
                    max_size=POOL_SIZE,
                    timeout=timeout,
                    apply=False,
                )
            except BaseException as exc:  # a timeout cancels us: remember that as well
                self._retry_at = time.monotonic() + RECONNECT_SECONDS
                self._last_reason = (
                    "the database did not answer in time"
                    if isinstance(exc, asyncio.CancelledError)
                    else self._redact(str(exc))
                )
                raise
            return self.victor

    def _redact(self, text: str) -> str:
        """The text without the database password (from the URL or PGPASSWORD)."""
        secrets = [os.environ.get("PGPASSWORD") or ""]
        if self._settings is not None and self._settings.database_url is not None:
            with contextlib.suppress(ValueError):
                secrets.append(urlsplit(self._settings.database_url.get_secret_value()).password)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


victor_hook = VictorHook()
