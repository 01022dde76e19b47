"""One chat session with the index, shared by every chat adapter (the Pipelines filter, the
LiteLLM hook, the MCP server): a lazily connected `Victor`, every piece of work bounded by one
timeout, a quiet window after a failed connection, and short, secret-free reasons.

A chat must never fail or hang because of Victor: the adapters fail open. So `call` never
waits past the timeout (`indexer.bounded.within`: `asyncio.wait_for` may wait for a hung query
to let go), and it turns every failure into `Unavailable`, whose text is safe to show to any
chat user. The details, redacted, go to the adapter's log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from indexer import errors
from indexer.bounded import within
from indexer.config import Settings, load_settings
from indexer.redaction import redact, settings_secrets
from indexer.search.context import Context, budget_chars
from indexer.service import Victor, connect

T = TypeVar("T")

RECONNECT_SECONDS = 5.0  # after a failed connection, answer at once for this long
EMBED_SHARE = 0.6  # share of the timeout the query embedding may take (rest: the SQL)

# A connection that broke, or a database that is not there.
_DATABASE_DOWN = (
    errors.DatabaseUnavailable,
    errors.SchemaError,
    OSError,
    asyncpg.InterfaceError,  # e.g. the connection was closed under us
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # e.g. the server is shutting down
)


class Unavailable(Exception):
    """The work could not be done; `str()` is a short reason safe to show in a chat."""


def chat_settings(timeout: float, **overrides: object) -> Settings:
    """Core settings for a chat: the query embedding and every SQL statement bounded by the
    chat's timeout, and no embedding retries (a chat has no time to retry)."""
    return load_settings(
        embed_timeout=timeout * EMBED_SHARE, embed_retries=0, sql_timeout=timeout, **overrides
    )


def reason_for(exc: BaseException) -> str:
    """A short, secret-free reason for the chat; the details go to the log."""
    if isinstance(exc, Unavailable):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, _DATABASE_DOWN):
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
    return "internal error (see the log)"


@dataclass(frozen=True, slots=True)
class Retrieval:
    """The code context for one chat turn, or why there is none."""

    context: Context | None  # None: retrieval could not run
    reason: str  # why there is no context ("" when there is one)
    elapsed_ms: int


class ChatSession:
    """A long-lived connection to Victor's index for one chat adapter.

    `settings` say where the index and the embedder are; `timeout` bounds each call, connecting
    included; `log` is the adapter's logger and `name` prefixes its lines.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float,
        pool_size: int = 4,
        log: logging.Logger | None = None,
        name: str = "victor",
    ):
        self.settings = settings
        self.timeout = timeout
        self.pool_size = pool_size
        self.log = log or logging.getLogger("victor.chat")
        self.name = name
        self.victor: Victor | None = None  # connected on first use
        self._lock: asyncio.Lock | None = None  # made inside the adapter's event loop
        self._retry_at = 0.0
        self._last_reason = ""

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect now if possible; on failure only log (the first chat tries again)."""
        try:
            await within(self._connected(), self.timeout)
            self.log.info("%s: connected to the index", self.name)
        except Exception as exc:
            self.log.warning(
                "%s: index not reachable yet (%s): %s",
                self.name,
                self._last_reason or reason_for(exc),
                self.redact(str(exc)),
            )

    async def close(self) -> None:
        victor, self.victor = self.victor, None
        if victor is None:
            return
        try:
            await within(victor.close(), self.timeout)
        except Exception:
            victor.pool.terminate()

    # --- work --------------------------------------------------------------------------------

    async def call(self, work: Callable[[Victor], Awaitable[T]]) -> T:
        """`work(victor)` within the timeout, connecting first when needed. Raises
        `Unavailable` (a user-safe reason) for any failure, after logging the details, except
        ConfigError and NotFound: bad input from the caller, whose message is for it."""
        try:
            return await within(self._run(work), self.timeout)
        except TimeoutError:
            self.log.warning("%s: no answer within %g s", self.name, self.timeout)
            raise Unavailable(f"no answer within {self.timeout:g} s") from None
        except (errors.ConfigError, errors.NotFound):
            raise  # the caller asked for something wrong: its message says what (a tool shows it)
        except Exception as exc:
            reason = reason_for(exc)
            self.log.warning(
                "%s: no code context (%s): %s",
                self.name,
                reason,
                self.redact(str(exc)),
                exc_info=reason.startswith("internal"),  # a bug: keep the traceback
            )
            raise Unavailable(reason) from None

    async def retrieve(
        self,
        query: str,
        *,
        top_k: int,
        context_tokens: int,
        min_score: float,
        repos: list[str] | None,
    ) -> Retrieval:
        """The code context for a chat turn; never raises, never waits past the timeout."""
        started = time.monotonic()
        try:
            context = await self.call(
                lambda victor: victor.retrieve(
                    query,
                    top_k=top_k,
                    budget=budget_chars(tokens=context_tokens),
                    min_score=min_score,
                    repos=repos,
                )
            )
            reason = ""
        except Unavailable as exc:
            context, reason = None, str(exc)
        return Retrieval(context, reason, round((time.monotonic() - started) * 1000))

    def redact(self, text: str) -> str:
        return redact(text, settings_secrets(self.settings))

    # --- the connection ----------------------------------------------------------------------

    async def _run(self, work: Callable[[Victor], Awaitable[T]]) -> T:
        return await work(await self._connected())

    async def _connected(self) -> Victor:
        """The open Victor; connects lazily, so a database down at startup is no problem. A
        failed connection is not tried again for RECONNECT_SECONDS: while the database is
        down, chats cost nothing."""
        if self.victor is not None:
            return self.victor
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.victor is not None:
                return self.victor
            if time.monotonic() < self._retry_at:
                raise Unavailable(self._last_reason)
            try:
                # apply=False: a chat reads the index; it never creates or migrates tables.
                self.victor = await connect(
                    self.settings,
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=self.timeout,
                    apply=False,
                )
            except BaseException as exc:  # a timeout cancels us: remember that as well
                self._retry_at = time.monotonic() + RECONNECT_SECONDS
                self._last_reason = (
                    "database did not answer in time"
                    if isinstance(exc, asyncio.CancelledError)
                    else reason_for(exc)
                )
                raise
            return self.victor
