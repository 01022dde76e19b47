"""
title: Lua Codebase
author: victor
version: 0.1.0
license: MIT
description: Code from your Lua codebase in front of the model, when the chat's toggle is on.
"""

# An Open WebUI Pipelines filter. It runs in the Pipelines server, which must be able to import
# Victor's core (`indexer`). Open WebUI calls `inlet` with every chat body before the model sees
# it; this filter then
#   - does nothing for Open WebUI's own task requests (title, tags, follow-ups...) and, when the
#     toggle is required, for chats where the "Lua Codebase" toggle is off;
#   - retrieves code for the user's question and inserts it as a system message just before the
#     last user message, with an instruction to cite `path:start-end`;
#   - leaves what it did in body["metadata"]["lua_codebase"] for the toggle Function, which shows
#     the sources and a status line (metadata never reaches the model).
# It fails open: with the database or Ollama down or slow, the body comes back within the
# timeout without context, and the hand-over carries the notice the user is shown.

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from indexer.context import Context, Source
    from indexer.service import Victor

log = logging.getLogger("lua_codebase")

NAME = "Lua Codebase"
HANDOVER_KEY = "lua_codebase"  # body["metadata"][HANDOVER_KEY]: read by the toggle Function
RECONNECT_SECONDS = 5.0  # after a failed connection, answer at once for this long
EMBED_SHARE = 0.6  # share of the timeout the query embedding may take (rest: lexical search)


class Unavailable(Exception):
    """Retrieval could not run; the message is a short reason safe to show in the chat."""


# --- the hand-over to the Function ---------------------------------------------------------


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def source_json(source: Source) -> dict:
    return {**source.to_json(), "label": source.label}


def handover(query: str, elapsed_ms: int, context: Context | None, reason: str = "") -> dict:
    """What the toggle Function shows: a status line and one source per snippet."""
    sources = list(context.sources) if context is not None else []
    notice = reason or (context.notice if context is not None else "")
    if context is None:
        status = "unavailable"
        message = f"{NAME}: index unavailable — answered without code context"
    elif not sources:
        status = "empty"
        message = f"{NAME}: no matching code found"
    else:
        status = "degraded" if notice else "ok"
        message = f"{NAME}: {plural(len(sources), 'snippet')} from {plural(context.files, 'file')}"
    if notice:
        message += f" ({notice})"
    return {
        "status": status,
        "message": message,
        "notice": notice,
        "query": query,
        "elapsed_ms": elapsed_ms,
        "sources": [source_json(s) for s in sources],
    }


# --- connecting and failing --------------------------------------------------------------


def redact(text: str, url: str) -> str:
    """The text without the URL's password (exception messages may quote a DSN)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text


def reason_for(exc: BaseException) -> str:
    """A short, secret-free reason for the chat; details go to the Pipelines log."""
    if isinstance(exc, Unavailable):
        return str(exc)
    if isinstance(exc, ImportError):
        return "Victor is not installed in the Pipelines server"
    import asyncpg

    from indexer import errors

    lost = (
        errors.DatabaseUnavailable,
        errors.SchemaError,
        OSError,
        asyncpg.InterfaceError,  # e.g. the connection was closed under us
        asyncpg.PostgresConnectionError,
        asyncpg.exceptions.OperatorInterventionError,  # e.g. the server is shutting down
    )
    if isinstance(exc, lost):
        return "database unavailable"
    if isinstance(exc, errors.ModelMissing):
        return "embedding model not available in Ollama"
    if isinstance(exc, errors.EmbedderUnavailable | errors.EmbeddingError):
        return "embedding service unavailable"
    if isinstance(exc, errors.ModelMismatch):
        return "the index was built with another embedding model"
    if isinstance(exc, errors.VictorError):
        return "the index is not ready"
    if isinstance(exc, asyncpg.PostgresError):
        return "database error"
    return "internal error (see the Pipelines log)"


class Pipeline:
    class Valves(BaseModel):
        pipelines: list[str] = Field(
            default=["*"], description="Model ids this filter runs for; * for all models."
        )
        priority: int = Field(default=0, description="Order among filters: lower runs first.")
        top_k: int = Field(default=8, ge=1, le=100, description="Chunks to retrieve.")
        context_tokens: int = Field(
            default=2000,
            ge=100,
            le=100_000,
            description="Budget of the code context, in tokens (about 3.5 characters each).",
        )
        min_score: float = Field(
            default=0.2,
            ge=0.0,
            le=1.0,
            description="Leave out chunks scoring below this. Scores are 0-1; the right "
            "function usually scores 0.35-0.65, chat that is not about code below 0.22 "
            "(0: keep all).",
        )
        repos: list[str] = Field(
            default=[], description="Search only these indexed repositories (empty: all)."
        )
        database_url: str = Field(
            default="postgresql://victor@host.docker.internal:5433/victor",
            description="Victor's PostgreSQL. Leave the password out and set PGPASSWORD in the "
            "Pipelines server's environment. Empty: Victor's embedded database.",
            json_schema_extra={"input": {"type": "password"}},
        )
        ollama_host: str = Field(
            default="http://host.docker.internal:11434", description="Ollama, for embeddings."
        )
        embed_model: str = Field(
            default="nomic-embed-text", description="The embedding model the index was built with."
        )
        timeout_seconds: float = Field(
            default=5.0,
            gt=0,
            le=120,
            description="Longest a chat waits for code context; past it, it goes on without.",
        )
        pool_size: int = Field(
            default=4,
            ge=1,
            le=100,
            description="Database connections for searches: chats searching at the same time "
            "beyond this wait for one (about the PostgreSQL server's CPU cores).",
        )
        require_toggle: bool = Field(
            default=True, description="Run only in chats where the toggle Function is on."
        )
        toggle_function_id: str = Field(
            default="lua_codebase", description="Id of the toggle Function in Open WebUI."
        )

    def __init__(self) -> None:
        self.type = "filter"
        self.name = NAME
        self.valves = self.Valves()
        self.victor: Victor | None = None
        self._victor_key: tuple | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self._last_reason = ""

    # --- lifecycle (called by the Pipelines server) ---------------------------------------

    async def on_startup(self) -> None:
        await self._try_connect()

    async def on_shutdown(self) -> None:
        await self._close()

    async def on_valves_updated(self) -> None:
        if self._victor_key != self._connection_key():
            await self._close()
            self._retry_at = 0.0
            await self._try_connect()

    # --- the filter ------------------------------------------------------------------------

    async def inlet(self, body: dict, user: dict | None = None) -> dict:
        """Add code context to a chat turn. Never raises: an error here would fail the chat."""
        try:
            return await self._inlet(body)
        except Exception:
            log.exception("lua_codebase: inlet failed; the chat goes on without code context")
            return body

    async def _inlet(self, body: dict) -> dict:
        if not isinstance(body, dict):
            return body
        metadata = body.get("metadata") or {}
        messages = body.get("messages") or []
        if not isinstance(metadata, dict) or not isinstance(messages, list):
            return body  # not a chat body Open WebUI sends: left as it is
        if not self._wanted(metadata):
            return body
        from indexer import chat

        if chat.context_in_current_turn(messages):
            return body
        query = chat.build_query(messages)
        if not query:
            return body
        started = time.monotonic()
        context, reason = await self._retrieve(query)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        if context is not None and context.text:
            body["messages"] = chat.with_context(messages, context.text)
        body["metadata"] = {**metadata, HANDOVER_KEY: handover(query, elapsed_ms, context, reason)}
        return body

    def _wanted(self, metadata: dict) -> bool:
        """Not for Open WebUI's task requests; only with the toggle on, when it is required."""
        if metadata.get("task"):
            return False
        if not self.valves.require_toggle:
            return True
        ids = metadata.get("filter_ids")
        return isinstance(ids, list) and self.valves.toggle_function_id in ids

    async def _retrieve(self, query: str) -> tuple[Context | None, str]:
        """The context, or None and a short reason; always within the timeout."""
        timeout = self.valves.timeout_seconds
        try:
            from indexer.bounded import within  # never waits past the timeout (wait_for may)

            return await within(self._search(query), timeout), ""
        except TimeoutError:
            reason = f"no answer within {timeout:g} s"
            log.warning("lua_codebase: retrieval timed out after %g s", timeout)
        except Exception as exc:
            reason = reason_for(exc)
            log.warning(
                "lua_codebase: no code context (%s): %s",
                reason,
                self._redact(f"{exc}"),
                exc_info=reason.startswith("internal"),  # a bug: keep the traceback
            )
        return None, reason

    async def _search(self, query: str) -> Context:
        from indexer.context import budget_chars

        victor = await self._connected()
        v = self.valves
        return await victor.retrieve(
            query,
            top_k=v.top_k,
            budget=budget_chars(tokens=v.context_tokens),
            min_score=v.min_score,
            repos=v.repos or None,
        )

    # --- the connection ---------------------------------------------------------------------

    def _connection_key(self) -> tuple:
        v = self.valves
        return (v.database_url, v.ollama_host, v.embed_model, v.timeout_seconds, v.pool_size)

    def _redact(self, text: str) -> str:
        return redact(text, self.valves.database_url)

    async def _connected(self) -> Victor:
        """The open Victor; connects lazily, so a database down at startup is no problem."""
        if self.victor is not None:
            return self.victor
        async with self._lock:
            if self.victor is not None:
                return self.victor
            if time.monotonic() < self._retry_at:
                raise Unavailable(self._last_reason)
            try:
                self.victor = await self._connect()
            except BaseException as exc:  # a timeout cancels us: remember that as well
                self._retry_at = time.monotonic() + RECONNECT_SECONDS
                if isinstance(exc, asyncio.CancelledError):
                    self._last_reason = "database did not answer in time"
                else:
                    self._last_reason = reason_for(exc)
                raise
            self._victor_key = self._connection_key()
            return self.victor

    async def _connect(self) -> Victor:
        from indexer.config import load_settings
        from indexer.service import connect

        v = self.valves
        settings = load_settings(
            database_url=v.database_url or None,
            ollama_host=v.ollama_host,
            embed_backend="ollama",
            embed_model=v.embed_model,
            embed_timeout=v.timeout_seconds * EMBED_SHARE,
            embed_retries=0,
            sql_timeout=v.timeout_seconds,
        )
        # apply=False: a chat filter reads the index; it never creates or migrates tables.
        return await connect(
            settings, min_size=1, max_size=v.pool_size, timeout=v.timeout_seconds, apply=False
        )

    async def _try_connect(self) -> None:
        """Connect now if possible; on failure only log (the first chat retries)."""
        try:
            from indexer.bounded import within

            await within(self._connected(), self.valves.timeout_seconds)
            log.info("lua_codebase: connected to the index")
        except Exception as exc:
            log.warning(
                "lua_codebase: index not reachable yet (%s): %s",
                self._last_reason or reason_for(exc),
                self._redact(f"{exc}"),
            )

    async def _close(self) -> None:
        victor, self.victor, self._victor_key = self.victor, None, None
        if victor is None:
            return
        try:
            from indexer.bounded import within

            await within(victor.close(), self.valves.timeout_seconds)
        except Exception:
            victor.pool.terminate()
