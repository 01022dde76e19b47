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
# It fails open: with the database down or slow, the body comes back within the timeout
# without context; with Ollama down or slow, with code found by keywords alone. Either way the
# hand-over carries the notice the user is shown.

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from indexer.chat.session import ChatSession
    from indexer.search.context import Context, Source

log = logging.getLogger("lua_codebase")

NAME = "Lua Codebase"
NAME_ID = "lua_codebase"  # the pipeline id: prefixes its log lines
HANDOVER_KEY = "lua_codebase"  # body["metadata"][HANDOVER_KEY]: read by the toggle Function

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


class Pipeline:
    class Valves(BaseModel):
        pipelines: list[str] = Field(
            default=["*"], description="Model ids this filter runs for; * for all models."
        )
        priority: int = Field(default=0, description="Order among filters: lower runs first.")
        # 12 under 3000 tokens: the answer reaches the model for 0.748 of the developer
        # questions of 14 codebases, 0.713 with 8 under 2000 (bench/README.md, "How much code")
        top_k: int = Field(default=12, ge=1, le=100, description="Chunks to retrieve.")
        context_tokens: int = Field(
            default=3000,
            ge=100,
            le=100_000,
            description="Budget of the code context, in tokens (about 3.5 characters each).",
        )
        min_score: float = Field(
            default=0.25,
            ge=0.0,
            le=1.0,
            description="Send code only when the best match scores at least this; then "
            "all top_k matches go, within the budget. Scores are 0-1; the right function "
            "usually scores 0.25-0.5, chat that is not about code below 0.18 (0: always "
            "send code; 0.2 lets more terse questions through, and more off-topic chats).",
        )
        repos: list[str] = Field(
            default=[], description="Search only these indexed repositories (empty: all)."
        )
        call_context: str = Field(
            default="both",
            pattern="^(off|callees|callers|both)$",
            description="When the code found leaves room in the budget, add the code around "
            "the best match: the code calling it and the functions it calls (both), one side "
            "(callers, callees), or nothing (off).",
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
            description="Longest a chat waits for code context, the query's embedding "
            "included; past it, it goes on without.",
        )
        keep_alive: str = Field(
            default="30m",
            description="How long Ollama keeps the embedding model loaded after a chat "
            "(30m, 2h, -1 for always; empty: Ollama's default, 5 minutes). A model that was "
            "unloaded makes the next chat wait for it, or get keyword search only.",
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
        self.session: ChatSession | None = None
        self._session_key: tuple | None = None
        self.warming: asyncio.Task | None = None  # the model warm-up started at startup

    # --- lifecycle (called by the Pipelines server) ---------------------------------------

    async def on_startup(self) -> None:
        session = self._session()
        self.warming = session.warm()  # loads the embedding model in the background
        await session.start()

    async def on_shutdown(self) -> None:
        await self._close()

    async def on_valves_updated(self) -> None:
        if self._session_key != self._connection_key():
            await self._close()
            session = self._session()
            self.warming = session.warm()
            await session.start()

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
        from indexer.chat import bodies

        if bodies.context_in_current_turn(messages):
            return body
        query = bodies.build_query(messages)
        if not query:
            return body
        v = self.valves
        found = await self._session().retrieve(
            query,
            top_k=v.top_k,
            context_tokens=v.context_tokens,
            min_score=v.min_score,
            repos=v.repos or None,
        )
        if found.context is not None and found.context.text:
            body["messages"] = bodies.with_context(messages, found.context.text)
        body["metadata"] = {
            **metadata,
            HANDOVER_KEY: handover(query, found.elapsed_ms, found.context, found.reason),
        }
        return body

    def _wanted(self, metadata: dict) -> bool:
        """Not for Open WebUI's task requests; only with the toggle on, when it is required."""
        if metadata.get("task"):
            return False
        if not self.valves.require_toggle:
            return True
        ids = metadata.get("filter_ids")
        return isinstance(ids, list) and self.valves.toggle_function_id in ids

    # --- the session ------------------------------------------------------------------------

    def _connection_key(self) -> tuple:
        v = self.valves
        return (
            v.database_url,
            v.ollama_host,
            v.embed_model,
            v.timeout_seconds,
            v.pool_size,
            v.keep_alive,
            v.call_context,
        )

    def _session(self) -> ChatSession:
        """The session for the current valves (made on first use: valves may change before)."""
        if self.session is None:
            from indexer.chat.session import ChatSession, chat_settings

            v = self.valves
            settings = chat_settings(
                v.timeout_seconds,
                database_url=v.database_url or None,
                ollama_host=v.ollama_host,
                embed_backend="ollama",
                embed_model=v.embed_model,
                ollama_keep_alive=v.keep_alive or None,
                call_context=v.call_context,
            )
            self.session = ChatSession(
                settings, timeout=v.timeout_seconds, pool_size=v.pool_size, log=log, name=NAME_ID
            )
            self._session_key = self._connection_key()
        return self.session

    async def _close(self) -> None:
        session, self.session, self._session_key = self.session, None, None
        if session is not None:
            await session.close()
