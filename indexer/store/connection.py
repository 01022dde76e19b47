"""Connecting to PostgreSQL (a configured server, or the embedded one): one-off connections, the
pool every process uses, and one-line messages for connection failures."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from pgvector.asyncpg import register_vector

from indexer.config import Settings
from indexer.errors import DatabaseUnavailable, SchemaError
from indexer.redaction import redact_url
from indexer.store import migrations
from indexer.store.embedded import embedded_url

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_url(settings)


def describe(exc: BaseException, url: str) -> str:
    """Turn a connection failure into one line that says what to do."""
    where = redact_url(url)
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return f"PostgreSQL at {where} rejected the password. Check VICTOR_DATABASE_URL."
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"The database in {where} does not exist. Create it (createdb) or fix the URL."
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return f"PostgreSQL at {where} refused the role: {exc}. Check VICTOR_DATABASE_URL."
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return f"PostgreSQL at {where} is starting up or shutting down ({exc}). Try again soon."
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return (
            f"Cannot connect to PostgreSQL at {where} ({exc.__class__.__name__}: {exc}). "
            "Is the server running, and is the port in VICTOR_DATABASE_URL right "
            "(the Mac Mini's PostgreSQL listens on 5433)?"
        )
    return f"Cannot use PostgreSQL at {where}: {exc}"


# What asyncpg raises when a connection that was open breaks: the server stopped, restarted
# or ended the session, or the network dropped it.
CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,  # e.g. "connection was closed in the middle of operation"
    asyncpg.exceptions.OperatorInterventionError,  # e.g. the server is shutting down
    asyncpg.InterfaceError,  # e.g. the connection is closed
)


def lost(exc: BaseException) -> str:
    """One line for a connection that broke in the middle of the work."""
    return (
        f"Lost the connection to PostgreSQL ({exc.__class__.__name__}: {exc}). What was "
        "written is consistent (each file is entirely old or entirely new, and an index run "
        "is recorded only when it completes): run it again once the database is back."
    )


async def connect_once(url: str, timeout: float = 10.0) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(describe(exc, url)) from None


class _OneLineWhenDown(logging.Filter):
    """asyncpg's pool keeps reconnecting to its minimum size while PostgreSQL is down and logs
    each failed attempt with a full traceback (asyncpg >= 0.31): for a database that is down,
    a known condition whose message already says what to do, one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, DatabaseUnavailable):
            record.msg = f"{record.getMessage()}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class _OncePerOutage(logging.Filter):
    """While PostgreSQL is down, asyncpg's pool logs "Failed to restore the pool connection
    floor; retrying" at every retry (every 1-60 s, for as long as the outage lasts): the first
    says it all. Quiet until a pool connects again (`back`), then the next outage is logged."""

    FLOOR = "Failed to restore the pool connection floor"

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.FLOOR):
            return True
        if self.down:
            return False
        self.down = True
        return True

    def back(self) -> None:
        self.down = False


_floor = _OncePerOutage()
logging.getLogger("asyncpg.pool").addFilter(_OneLineWhenDown())
logging.getLogger("asyncpg.pool").addFilter(_floor)


def _pool_connect(url: str):
    """How the pool opens a connection: a failure says what to do (DatabaseUnavailable)
    instead of a bare OSError such as "No such file or directory" for a missing socket."""

    async def connect(*args, **kwargs) -> asyncpg.Connection:
        try:
            conn = await asyncpg.connect(*args, **kwargs)
        except (TimeoutError, OSError, asyncpg.CannotConnectNowError) as exc:
            raise DatabaseUnavailable(describe(exc, url)) from None
        _floor.back()  # the database is reachable: the next outage gets its line
        return conn

    return connect


async def _init_connection(conn: asyncpg.Connection) -> None:
    await register_vector(conn)


# Set once per connection rather than per search (`SET LOCAL` inside a transaction cost four
# extra round trips per dense search, which under load was most of its time). With a
# repository filter, HNSW keeps scanning until enough rows pass it; ef_search bounds how many
# candidates one scan returns (pgvector's default of 40 is below the fusion's depth).
HNSW_SETTINGS = {"hnsw.iterative_scan": "relaxed_order", "hnsw.ef_search": "100"}

# Every connection of the pool: the HNSW settings, and no JIT. PostgreSQL compiles a statement
# with LLVM when its estimated cost passes jit_above_cost, which takes tens of milliseconds,
# far more than a search's statements take to run (1-20 ms); the pgvector Docker image ships
# LLVM (pgserver's PostgreSQL has no llvmjit.so, so the tests and benchmarks never JIT).
POOL_SETTINGS = {**HNSW_SETTINGS, "jit": "off"}


async def _end_transaction(conn: asyncpg.Connection) -> None:
    """What a reading pool does to a connection given back: only end a transaction left open
    (a statement cancelled inside one; asyncpg's pool ends it too, before calling this).
    asyncpg's own reset (advisory locks, cursors, LISTEN, session settings) is one more round
    trip per connection given back, two per chat turn, and a reader holds none of that state:
    its only settings are `SET LOCAL`, inside a transaction. The indexer, which takes locks
    and sets session settings, keeps the reset."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(
    settings: Settings,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout: float = 10.0,
    apply: bool = True,
) -> asyncpg.Pool:
    """A pool with the pgvector codec on every connection.

    With `apply`, pending migrations run first. Without (a chat adapter reads the index and
    never changes its tables), a database with no Victor schema at all is refused, and a
    connection given back is not reset beyond ending an open transaction (`_end_transaction`).
    """
    url = await asyncio.to_thread(database_url, settings)
    conn = await connect_once(url, timeout)
    try:
        if apply:
            await migrations.migrate(conn)
        elif not await migrations.applied(conn):
            raise SchemaError(
                f"The database at {redact_url(url)} has no Victor schema. Run `victor init-db`."
            )
    finally:
        await conn.close()
    try:
        return await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            init=_init_connection,
            connect=_pool_connect(url),
            command_timeout=settings.sql_timeout,
            server_settings=POOL_SETTINGS,
            reset=None if apply else _end_transaction,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(describe(exc, url)) from None
