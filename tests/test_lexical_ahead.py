"""A chat's lexical side read while its query is embedded (`indexer.search.lexical_ahead`):
the same results as one statement, and no deadlock when the pool is full. Real PostgreSQL,
the Ollama stand-in's real vectors."""

from __future__ import annotations

import asyncio
import random
import shutil
from dataclasses import replace

import pytest

from indexer import search
from indexer.search import DEFAULT_TUNING, lexical
from indexer.service import open_victor
from tests.conftest import SAMPLE

QUERIES = [
    "look up the price of a product",
    "apply the loyalty discount for members",
    "remove a product from the cart",
    "trim the spaces around a string",
    "Cart:add",
    "what happens when the cart is empty",
    "zebra xylophone",  # no word the index holds
]


@pytest.fixture
async def shop(settings, ollama, tmp_path):
    dest = tmp_path / "shop"
    shutil.copytree(SAMPLE, dest)
    async with open_victor(settings, min_size=3) as victor:  # connections idle for ahead reads
        await victor.index(str(dest), name="shop")
        yield victor


@pytest.mark.parametrize("depth, reach", [(2, 1), (50, lexical.REACH)])
async def test_the_two_halves_give_what_one_statement_gives(shop, monkeypatch, depth, reach):
    """`merge_sides` of the own top and the extra chunks scored later equals `lexical_side`
    with those extra chunks: every score to the bit, every candidate's fields and cosine.
    Reading one posting per word (the approximate stage of a large index), ordered by the
    stored impacts (the name weighs most) while the search weighs the body most, the best
    chunks are missed by the own top and push some of it out of the best `depth` when they
    come as extra chunks, as they do in the one statement."""
    monkeypatch.setattr(lexical, "MIN_REACH", 1)
    tuning = replace(DEFAULT_TUNING, depth=depth)
    if reach == 1:
        tuning = replace(tuning, weights=(0.1, 0.1, 0.1, 6.0))
    rng = random.Random(7)
    pushed_out = 0
    async with shop.pool.acquire() as conn:
        all_ids = [r["id"] for r in await conn.fetch("SELECT id FROM chunks ORDER BY id")]
        for query in QUERIES:
            (vector,) = await shop.embedder.embed_queries([query])
            exact = await lexical.lexical_ids(conn, query=query, depth=5, repos=None, tuning=tuning)
            side = dict(query=query, repos=None, tuning=tuning)
            bounds = dict(reach=reach, rescore=1 if reach == 1 else lexical.RESCORE)
            own = await lexical.lexical_side(conn, vector=None, depth=depth, **side, **bounds)
            strong = exact.keys() - own[0].keys()  # the best chunks the own top missed
            for extra in (set(), set(rng.sample(all_ids, 3)), set(rng.sample(all_ids, 3)) | strong):
                whole = await lexical.lexical_side(
                    conn, vector=vector, depth=depth, extra=sorted(extra), **side, **bounds
                )
                more = await lexical.lexical_extra(
                    conn, vector=vector, extra=sorted(extra), also=sorted(own[1].keys() - extra),
                    **side,
                )  # fmt: skip
                assert lexical.merge_sides(own, more, depth, extra) == whole, (query, extra)
                pushed_out += bool(own[0].keys() - whole[0].keys())
    assert pushed_out or depth == 50  # the best `depth` of both halves was exercised


async def test_a_chat_gets_the_results_of_a_search_that_reads_everything_itself(shop):
    async with shop.pool.acquire() as conn:
        for query in QUERIES:
            for top_k in (2, 8):
                asked = await search.embedded(shop.embedder, [query], mode="hybrid", timeout=30)
                (alone,) = await search.search_with(
                    conn, shop.embedder, [query], asked, top_k=top_k
                )
                async with search.lexical_ahead(shop.pool, query, top_k=top_k) as ahead:
                    assert ahead is not None
                    (early,) = await search.search_with(
                        conn, shop.embedder, [query], asked, top_k=top_k, ahead=ahead
                    )
                    assert ahead.task.done()
                assert early == alone, query


async def test_an_ahead_read_for_another_search_is_not_used(shop):
    query = "remove a product from the cart"
    async with shop.pool.acquire() as conn:
        asked = await search.embedded(shop.embedder, [query], mode="hybrid", timeout=30)
        (alone,) = await search.search_with(conn, shop.embedder, [query], asked, top_k=4)
        async with search.lexical_ahead(shop.pool, "trim a string", top_k=4) as ahead:
            (other,) = await search.search_with(
                conn, shop.embedder, [query], asked, top_k=4, ahead=ahead
            )
        assert other == alone
        assert not ahead.serves([query], 4, None, DEFAULT_TUNING)
        assert ahead.serves(["trim a string"], 4, (), DEFAULT_TUNING)


async def test_with_no_connection_idle_nothing_is_read_ahead(shop):
    """Every connection busy: the cores are too, a second connection per chat would queue;
    the search then reads its own lexical top (`search_with` without `ahead`)."""
    query = "remove a product from the cart"
    held = [await shop.pool.acquire() for _ in range(shop.pool.get_idle_size())]
    try:
        async with search.lexical_ahead(shop.pool, query, top_k=4) as ahead:
            assert ahead is None
    finally:
        for conn in held:
            await shop.pool.release(conn)


async def test_chats_on_a_pool_of_one_connection_finish(settings, ollama, tmp_path):
    """The ahead statement's connection is taken before the search's own: with one
    connection for four chats at once, each waits its turn instead of holding the only
    connection while it waits for a second one."""
    dest = tmp_path / "shop"
    shutil.copytree(SAMPLE, dest)
    async with open_victor(settings) as victor:
        await victor.index(str(dest), name="shop")
    async with open_victor(settings, min_size=1, max_size=1) as victor:
        chats = [victor.retrieve(q, top_k=4) for q in QUERIES[:4]]
        contexts = await asyncio.wait_for(asyncio.gather(*chats), timeout=60)
    assert all(c.sources for c in contexts)


async def test_a_chat_with_the_embedder_down_answers_from_the_lexical_side(settings, shop):
    gone = settings.model_copy(update={"ollama_host": "http://127.0.0.1:9", "embed_retries": 0})
    async with open_victor(gone) as victor:
        context = await victor.retrieve("trim the spaces around a string", top_k=4)
        (found,) = await victor.search(["trim the spaces around a string"], top_k=4)
    assert found.mode == "lexical" and context.notice and context.sources
    assert found.results[0].symbol in context.sources[0].symbol


async def test_only_a_lone_chat_reads_ahead(shop, monkeypatch):
    """With other chats in flight the cores are busy: a chat then runs on one connection."""
    started = []
    real = search.lexical_ahead

    def spy(pool, query, **options):
        started.append(query)
        return real(pool, query, **options)

    monkeypatch.setattr(search, "lexical_ahead", spy)
    await shop.retrieve(QUERIES[0], top_k=4)
    assert started == [QUERIES[0]]
    await asyncio.gather(*(shop.retrieve(q, top_k=4) for q in QUERIES[1:4]))
    assert started[1:] == [QUERIES[1]]  # the first to start was alone; the others were not
