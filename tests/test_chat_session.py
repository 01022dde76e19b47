"""ChatSession's log, as every chat adapter (the Pipelines filter, the LiteLLM hook) gets it:
a degraded or failed retrieval is logged at WARNING once per cause, redacted, and again when it
is over; asyncpg's pool says "Failed to restore the pool connection floor" once per outage."""

from __future__ import annotations

import logging
import socket

import pytest
from pydantic import SecretStr

from indexer.chat.session import ChatSession, chat_settings
from indexer.errors import DatabaseUnavailable
from indexer.search.dense import KEYWORD_ONLY
from indexer.service import open_victor
from indexer.store.connection import _pool_connect
from tests.conftest import SAMPLE

HOOK_LOG = "victor.litellm"  # the LiteLLM hook's logger: the proxy shows WARNING and above


@pytest.fixture
async def shop_settings(settings):
    async with open_victor(settings) as victor:
        await victor.index(str(SAMPLE), name="shop")
    return settings


def session_for(settings, **overrides) -> ChatSession:
    chat = chat_settings(
        5,
        database_url=settings.database_url.get_secret_value(),
        ollama_host=settings.ollama_host,
        embed_model=settings.embed_model,
        **overrides,
    )
    return ChatSession(chat, timeout=5, log=logging.getLogger(HOOK_LOG), name="victor")


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def ask(session: ChatSession):
    return await session.retrieve(
        "Where is Cart:add?", top_k=4, context_tokens=1000, min_score=0, repos=None
    )


async def test_a_degraded_retrieval_is_logged_once_per_cause_until_it_recovers(
    shop_settings, ollama, caplog
):
    caplog.set_level(logging.INFO, logger=HOOK_LOG)
    session = session_for(shop_settings)
    try:
        assert (await ask(session)).context.notice == ""
        assert warnings(caplog) == []
        ollama.fail_status = 500
        for _ in range(4):
            found = await ask(session)
            assert found.context.notice == KEYWORD_ONLY and found.context.text
        (down,) = warnings(caplog)
        assert down.startswith("victor: embedder unavailable (Ollama at http://127.0.0.1:")
        assert "simulated failure 500" in down
        ollama.fail_status = None
        await ask(session)
        await ask(session)
        back = f"victor: code context complete again (was: {KEYWORD_ONLY})"
        assert warnings(caplog)[1:] == [back]
        ollama.fail_status = 500  # a second outage gets its own line
        await ask(session)
        assert len(warnings(caplog)) == 3
    finally:
        await session.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_database_that_stays_down_is_logged_once_without_its_password(
    shop_settings, caplog
):
    caplog.set_level(logging.INFO, logger=HOOK_LOG)
    down = shop_settings.model_copy(
        update={
            "database_url": SecretStr(
                f"postgresql://victor:s3cret@127.0.0.1:{closed_port()}/victor"
            )
        }
    )
    session = session_for(down)
    try:
        for _ in range(3):
            found = await ask(session)
            assert found.context is None and found.reason == "database unavailable"
    finally:
        await session.close()
    (line,) = warnings(caplog)
    assert "database unavailable" in line and "s3cret" not in line and "victor:***@" in line


def floor_lines(caplog) -> int:
    return sum(
        "Failed to restore the pool connection floor" in r.getMessage() for r in caplog.records
    )


async def test_the_pool_says_once_per_outage_that_it_cannot_restore_its_floor(database_url, caplog):
    """asyncpg's pool logs this line (with a traceback) at every retry while the database is
    down. Logged here the way asyncpg logs it; the outage ends when a pool connects again
    (a real connection through the pool's connect function)."""
    caplog.set_level(logging.WARNING, logger="asyncpg.pool")
    pool_log = logging.getLogger("asyncpg.pool")

    def retry() -> None:
        try:
            raise DatabaseUnavailable("Cannot connect to PostgreSQL at 127.0.0.1:1")
        except DatabaseUnavailable:
            pool_log.warning("Failed to restore the pool connection floor; retrying", exc_info=True)

    for outage in (1, 2):
        for _ in range(5):
            retry()
        assert floor_lines(caplog) == outage
        conn = await _pool_connect(database_url)(database_url)  # the database is back
        await conn.close()
    (first, *_) = [r for r in caplog.records if "floor" in r.getMessage()]
    assert first.exc_info is None and "Cannot connect to PostgreSQL" in first.getMessage()
