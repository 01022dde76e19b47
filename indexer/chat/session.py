"""One chat session with the index, shared by every chat adapter (the Pipelines filter, the
LiteLLM hook, the MCP server): a lazily connected `Victor`, every piece of work bounded by one
timeout, a quiet window after a failed connection, and short, secret-free reasons.

A chat must never fail or hang because of Victor: the adapters fail open. So `call` never
waits past the timeout (`indexer.bounded.within`: `asyncio.wait_for` may wait for a hung query
to let go), and it turns every failure into `Unavailable`, whose text is safe to show to any
chat user. The timeout bounds the whole retrieval: the query embedding gets a share of what
is left of it after connecting (the rest is for the SQL), whatever VICTOR_QUERY_TIMEOUT says.

The details, redacted, go to the adapter's log at WARNING, once per cause: a database or an
embedder that stays down for an hour of chats makes one line when it goes and one when it
comes back, not one per chat.
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
        embed_timeout=timeout * EMBED_SHARE,
        query_timeout=timeout * EMBED_SHARE,
        embed_retries=0,
        sql_timeout=timeout,
        **overrides,
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
        self._trouble = ""  # the cause last logged at WARNING ("" while all is well)
        self._warming: asyncio.Task | None = None

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

    def warm(self) -> asyncio.Task:
        """Load the embedding model now, in the background: the first chat would otherwise
        pay the load (seconds to minutes) and get keyword results. Never blocks, never fails;
        the task is returned for whoever wants to wait for it."""
        if self._warming is None or self._warming.done():
            self._warming = asyncio.create_task(self._warm())
        return self._warming

    async def _warm(self) -> None:
        from indexer.embedding import make_embedder

        embedder = make_embedder(self.settings)
        started = time.monotonic()
        try:
            await embedder.embed_queries(["warm up"])  # bounded by the embedder's own timeout
            self.log.info(
                "%s: embedding model loaded (%.1f s)", self.name, time.monotonic() - started
            )
        except Exception as exc:
            detail = self.redact(str(exc))
            self.log.info("%s: could not warm the embedding model: %s", self.name, detail)
        finally:
            await embedder.close()

    async def close(self) -> None:
        warming, self._warming = self._warming, None
        if warming is not None and not warming.done():
            warming.cancel()
            await asyncio.gather(warming, return_exceptions=True)
        victor, self.victor = self.victor, None
        if victor is not None:
            try:
                await within(victor.close(), self.timeout)
            except Exception:
                victor.pool.terminate()
        if self.settings.database_url is None:  # the embedded PostgreSQL: stop it with us
            from indexer.store.embedded import release_embedded

            try:
                await asyncio.to_thread(release_embedded, self.settings)
            except Exception as exc:
                self.log.warning("%s: could not stop the embedded PostgreSQL: %s", self.name, exc)

    # --- work --------------------------------------------------------------------------------

    async def call(self, work: Callable[[Victor], Awaitable[T]]) -> T:
        """`work(victor)` within the timeout, connecting first when needed. Raises
        `Unavailable` (a user-safe reason) for any failure, after logging the details."""
        try:
            return await within(self._run(work), self.timeout)
        except TimeoutError:
            reason = f"no answer within {self.timeout:g} s"
            self.trouble(reason, f"no answer within {self.timeout:g} s")
            raise Unavailable(reason) from None
        except Exception as exc:
            reason = reason_for(exc)
            self.trouble(
                reason,
                f"no code context ({reason}): {exc}",
                exc_info=reason.startswith("internal"),  # a bug: keep the traceback
            )
            raise Unavailable(reason) from None

    def trouble(self, cause: str, detail: str, *, exc_info: bool = False) -> None:
        """Log `detail` (redacted) at WARNING when `cause` is new; the same cause again only
        at DEBUG, until `recovered`. A bug (exc_info) is logged every time."""
        level = logging.WARNING if exc_info or cause != self._trouble else logging.DEBUG
        self._trouble = cause
        self.log.log(level, "%s: %s", self.name, self.redact(detail), exc_info=exc_info)

    def recovered(self) -> None:
        """Retrieval works fully again: say so once, and the next trouble is logged again."""
        if self._trouble:
            self.log.warning("%s: code context complete again (was: %s)", self.name, self._trouble)
            self._trouble = ""

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
        deadline = started + self.timeout

        def work(victor: Victor) -> Awaitable[Context]:
            # the embedding may take its share of what connecting left; the rest is the SQL's
            left = max(deadline - time.monotonic(), 0.0)
            return victor.retrieve(
                query,
                top_k=top_k,
                budget=budget_chars(tokens=context_tokens),
                min_score=min_score,
                repos=repos,
                timeout=max(left * EMBED_SHARE, 0.01),
            )

        try:
            context = await self.call(work)
            reason = ""
            if context.notice:
                self.trouble(context.notice, context.detail or context.notice)
            else:
                self.recovered()
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
                    lexical_memory=True,
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
