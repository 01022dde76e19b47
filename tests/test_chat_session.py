"""ChatSession's log, as every chat adapter (the Pipelines filter, the LiteLLM hook) gets it:
a degraded or failed retrieval is logged at WARNING once per cause, redacted, and again when it
is over; asyncpg's pool says "Failed to restore the pool connection floor" once per real outage."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from pydantic import SecretStr

from indexer.chat.session import ChatSession, chat_settings
from indexer.config import Settings
from indexer.search.dense import KEYWORD_ONLY
from indexer.service import open_victor
from tests.conftest import SAMPLE
from tests.support import pg

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


OUTAGE = 8.0  # seconds down: asyncpg's pool retries its floor after 1, 2 and 4 s


async def test_the_pool_says_once_per_outage_that_it_cannot_restore_its_floor(
    ollama, tmp_path, caplog
):
    """A real outage: PostgreSQL stopped under a chat session, twice. asyncpg's
    pool retries its floor connection at 1, 2, 4... s and logs each failure with a traceback;
    the log gets one line per outage, without the traceback, and the chats get code again
    once it is back."""
    own = pg.RestartablePostgres(tmp_path / "own-pg")
    try:
        url = await pg.create_database(own.url, prefix="shop")
        settings = Settings(
            database_url=url,
            ollama_host=ollama.url,
            embed_model="all-minilm",
            data_dir=tmp_path / "victor",
            parse_workers=1,
        )
        async with open_victor(settings) as victor:
            await victor.index(str(SAMPLE), name="shop")
        caplog.set_level(logging.WARNING, logger="asyncpg.pool")
        session = session_for(settings)
        try:
            assert (await ask(session)).context
            for outage in (1, 2):
                own.stop("fast")
                assert (await ask(session)).context is None  # the pool's connection is gone
                await asyncio.sleep(OUTAGE)
                assert floor_lines(caplog) == outage, [r.getMessage() for r in caplog.records]
                own.start()
                deadline = time.monotonic() + 30
                while (await ask(session)).context is None:
                    assert time.monotonic() < deadline, "no context 30 s after the restart"
                    await asyncio.sleep(0.2)
        finally:
            await session.close()
    finally:
        own.close()
    floors = [r for r in caplog.records if "floor" in r.getMessage()]
    assert len(floors) == 2 and all(r.exc_info is None for r in floors)
    assert all("PostgreSQL" in r.getMessage() for r in floors), [r.getMessage() for r in floors]


async def test_a_long_lived_session_follows_the_index_through_reembed_and_removal(
    shop_settings, ollama
):
    """A chat adapter's session lives for days while the index changes under it: each chat
    checks the index's vector space and reads its repositories again (on the one connection
    it takes for the search), so after `victor reembed` to another model the next chat says
    so, after a re-embed back it finds code again, and a removed repository is gone."""
    from indexer.indexing.reembed import reembed

    session = session_for(shop_settings)

    async def ask_in(repos):
        return await session.retrieve(
            "Where is Cart:add?", top_k=4, context_tokens=1000, min_score=0, repos=repos
        )

    try:
        assert (await ask_in(["shop"])).context.sources
        local = shop_settings.model_copy(update={"embed_backend": "local"})
        async with open_victor(local) as victor:
            await reembed(victor.pool, victor.embedder)
        moved = await ask_in(None)
        assert moved.context is None
        assert moved.reason == "the index was built with another embedding model"
        async with open_victor(shop_settings) as victor:
            await reembed(victor.pool, victor.embedder)
        assert (await ask_in(None)).context.sources
        async with open_victor(shop_settings) as victor:
            await victor.remove("shop")
        for repos in (["shop"], None):
            gone = await ask_in(repos)
            assert gone.reason == "" and gone.context.text == "" and not gone.context.sources
    finally:
        await session.close()
