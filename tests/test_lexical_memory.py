"""The lexical index held in a chat process's memory (indexer/search/lexical_memory.py), on the
real PostgreSQL: it ranks exactly as the lexical statement does, and a search never uses
postings the database no longer has.

The statement (`indexer.search.lexical.lexical_side`) is the reference: same chunks in the
same order with the same scores, to the bit; the ranking stage's parts to rounding (PostgreSQL
sums them in no fixed order).
"""

from __future__ import annotations

import asyncio
import random
import shutil
from dataclasses import replace

import pytest
from pydantic import SecretStr

from indexer import store
from indexer.config import Settings
from indexer.search import DEFAULT_TUNING, Tuning, lexical, lexical_memory
from indexer.search.lexical_memory import LexicalMemory, with_extra
from indexer.service import connect, open_victor
from tests.conftest import SAMPLE
from tests.support import pg

QUESTIONS = [
    "split a string into a list of substrings",
    "deep comparison of two tables",
    "copy a table",
    "what happens when I add an unknown product to the cart",
    "round a number to the nearest increment",
    "strip whitespace from a string",
    "lume.uuid",
    "how is the discount applied to the cart total",
    "serialize a value to a string and back",
    "where is the price looked up",
    "the the of and",  # stop words only: nothing to search for
    "",
]
# the tunings a search runs with: the hybrid's, the lexical fallback's, and one with every
# length normalisation and the module factor on
TUNINGS = [
    DEFAULT_TUNING,
    replace(DEFAULT_TUNING, weights=DEFAULT_TUNING.lexical_weights, k1=DEFAULT_TUNING.lexical_k1),
    replace(DEFAULT_TUNING, b_doc=0.75, b_body=0.5, module_lexical=0.4, k1=2.0),
]


@pytest.fixture(scope="module")
async def indexed(pg_admin_url, ollama_server, corpora, tmp_path_factory):
    """Three repositories indexed once for the module: the sample shop, lume, and two modules
    of Penlight. Each test gets a copy of the database (`codebases`)."""
    folder = tmp_path_factory.mktemp("memory")
    shop = folder / "shop"
    shutil.copytree(SAMPLE, shop)
    lume = folder / "lume"
    shutil.copytree(corpora / "lume", lume, ignore=shutil.ignore_patterns("test"))
    penlight = folder / "penlight"
    penlight.mkdir()
    for name in ("stringx", "utils"):
        shutil.copy(corpora / "penlight" / "lua" / "pl" / f"{name}.lua", penlight)
    settings = Settings(
        database_url=await pg.create_database(pg_admin_url, "memory"),
        ollama_host=ollama_server.url,
        embed_model="all-minilm",
        data_dir=folder / "victor-data",
        embed_timeout=300,
        parse_workers=1,
    )
    async with open_victor(settings) as victor:
        for source in (shop, lume, penlight):
            await victor.index(str(source), name=source.name)
    return settings, {"shop": shop, "lume": lume, "penlight": penlight}


@pytest.fixture
async def codebases(indexed, pg_admin_url, tmp_path):
    """A copy of the indexed database and of the folders indexed, for one test."""
    settings, folders = indexed
    template = settings.database_url.get_secret_value()
    url = await pg.create_database(pg_admin_url, "memory", template=template)
    copies = {}
    for name, folder in folders.items():
        copies[name] = tmp_path / name
        shutil.copytree(folder, copies[name])
    return settings.model_copy(update={"database_url": SecretStr(url)}), copies


async def held(url: str) -> LexicalMemory:
    memory = LexicalMemory(url, 1 << 30)
    await memory.load()
    return memory


def ranked(scores: dict[int, float]) -> list[int]:
    return sorted(scores, key=lambda i: (-scores[i], i))


async def assert_same(conn, memory, query, repos, tuning: Tuning, depth, extra, **bounds):
    scores, candidates = await lexical.lexical_side(
        conn, query=query, vector=None, depth=depth, repos=repos, tuning=tuning, extra=extra,
        **bounds,
    )  # fmt: skip
    scope = await memory.scope(conn, query, repos)
    assert scope is not None, "the memory holds every repository at its current version"
    mine = scope.rank(tuning, depth, extra, **bounds)
    assert ranked({i: s.score for i, s in mine.items()}) == ranked(scores), query
    # in two halves, as a chat ranks: its own top while the query is embedded, the extra
    # chunks (the dense side's) once they are known
    top = scope.rank(tuning, depth, **bounds)
    assert with_extra(top, scope.score(tuning, extra), depth) == mine, query
    assert {i: s.score for i, s in mine.items()} == scores, query  # to the bit
    for i, s in mine.items():
        assert s.parts + s.cover == pytest.approx(
            candidates[i].parts + candidates[i].cover, rel=1e-12, abs=1e-15
        )
    return len(scores)


@pytest.mark.parametrize("tuning", TUNINGS, ids=["hybrid", "lexical", "normalised"])
async def test_the_memory_ranks_as_the_statement_does(codebases, monkeypatch, tuning):
    """Every scope, with and without extra chunks (of the scope, as a search's are: the dense
    side's and the named function's), every list read to its end (exact over all chunks) and
    a few postings per list (the approximate stage of a large index)."""
    settings, _ = codebases
    url = store.database_url(settings)
    memory = await held(url)
    monkeypatch.setattr(lexical, "MIN_REACH", 1)
    rng = random.Random(3)
    compared = 0
    async with open_victor(settings) as victor, victor.pool.acquire() as conn:
        ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM repos")}
        for repos in (None, [ids["lume"]], [ids["shop"], ids["penlight"]]):
            chunks = await conn.fetch(
                "SELECT id FROM chunks WHERE $1::int[] IS NULL OR repo_id = ANY($1)", repos
            )
            for query in QUESTIONS:
                extra = sorted(rng.sample([r["id"] for r in chunks], 12))
                for bounds in ({}, {"reach": 2, "rescore": 3}):
                    for depth in (5, 50):
                        compared += await assert_same(
                            conn, memory, query, repos, tuning, depth, extra, **bounds
                        )
                        await assert_same(conn, memory, query, repos, tuning, depth, [], **bounds)
    await memory.close()
    assert compared > 500  # the comparisons compared results


async def test_a_chat_search_is_the_same_with_the_index_in_memory(codebases, monkeypatch):
    """Through `Victor`: a chat adapter's search (memory) and the CLI's (none) return the
    same results, hybrid and lexical, after the memory is loaded. A chat's turn ranks its
    lexical top while the query is embedded, and the dense side's candidates after."""
    settings, _ = codebases
    halves = []
    score = lexical_memory.Scope.score

    def spy(self, tuning, chunks):
        halves.append(len(chunks))
        return score(self, tuning, chunks)

    monkeypatch.setattr(lexical_memory.Scope, "score", spy)
    chat = await connect(settings, lexical_memory=True)
    try:
        assert chat.memory is not None
        await chat.memory.load()
        async with open_victor(settings) as cli:
            assert cli.memory is None
            for mode in ("hybrid", "lexical"):
                for repos in (None, ["lume"]):
                    got = await chat.search(QUESTIONS, mode=mode, repos=repos)
                    assert chat.memory.warm
                    want = await cli.search(QUESTIONS, mode=mode, repos=repos)
                    assert [f.results for f in got] == [f.results for f in want]
            assert not halves  # a search is ranked at once
            for query in QUESTIONS[:6]:
                assert await chat.retrieve(query) == await cli.retrieve(query)
                assert chat.memory.warm  # a chat's turn too ranked from the memory
            assert len(halves) == 6 and max(halves) > 0
            # chats at once: the first ranks its top ahead, the others in one go
            turns = await asyncio.gather(*(chat.retrieve(q) for q in QUESTIONS))
            assert turns == [await cli.retrieve(q) for q in QUESTIONS]
    finally:
        await chat.close()


async def test_a_changed_repository_is_searched_in_the_database_until_reloaded(
    codebases, monkeypatch
):
    """Re-index a changed file, delete one, remove a repository: right after each the memory
    is not used (the searches read the database and find the change); it is loaded again in
    the background once the version holds for SETTLE seconds, and ranks as the statement."""
    monkeypatch.setattr(lexical_memory, "SETTLE", 0.5)
    settings, folders = codebases
    url = store.database_url(settings)
    memory = await held(url)
    query = "apply a coupon code to the cart"
    async with open_victor(settings) as victor, victor.pool.acquire() as conn:
        shop = await conn.fetchval("SELECT id FROM repos WHERE name = 'shop'")
        assert await memory.scope(conn, query, None) is not None

        async def changed(make_change) -> None:
            await make_change()
            assert await memory.scope(conn, query, None) is None  # a version changed
            assert await memory.scope(conn, query, [shop]) is None
            assert memory.loading is None  # not until the version holds for SETTLE
            await asyncio.sleep(0.6)
            assert await memory.scope(conn, query, None) is None
            assert memory.loading is not None
            await memory.loading
            await assert_same(conn, memory, query, None, DEFAULT_TUNING, 8, [])

        cart = next(folders["shop"].rglob("cart.lua"))

        async def edit():
            cart.write_text(
                cart.read_text() + "\nfunction M.apply_coupon(cart, coupon_code)\n"
                "  return cart.total - coupon_code.amount\nend\n"
            )
            await victor.index(str(folders["shop"]), name="shop")

        await changed(edit)
        found = await victor.search([query], mode="lexical", repos=["shop"])
        assert found[0].results[0].symbol.endswith("apply_coupon")

        async def delete():
            cart.unlink()
            await victor.index(str(folders["shop"]), name="shop")

        await changed(delete)
        scope = await memory.scope(conn, query, None)
        assert "coupon" in scope.lexemes
        assert not any("coupon" in p.words for p in scope.lists)  # the file's words are gone

        await victor.remove("lume")
        scope = await memory.scope(conn, query, None)  # one repository fewer: nothing stale
        assert scope is not None and len(scope.lists) == 2
    await memory.close()


async def test_a_repository_changing_all_the_time_is_not_reloaded_each_time(codebases, monkeypatch):
    """An index run commits every few files: a version that keeps changing is not loaded
    again before it has held for SETTLE seconds."""
    monkeypatch.setattr(lexical_memory, "SETTLE", 30.0)
    settings, folders = codebases
    memory = await held(store.database_url(settings))
    util = folders["penlight"] / "utils.lua"
    async with open_victor(settings) as victor, victor.pool.acquire() as conn:
        for n in range(3):
            util.write_text(util.read_text() + f"\nlocal function extra_{n}() return {n} end\n")
            await victor.index(str(folders["penlight"]), name="penlight")
            assert await memory.scope(conn, "extra function", None) is None
            assert memory.loading is None
    await memory.close()


async def test_what_does_not_fit_is_searched_in_the_database(codebases):
    """A memory too small for a repository holds the others; a search over it reads the
    database, one over the others uses the memory."""
    settings, _ = codebases
    async with open_victor(settings) as victor, victor.pool.acquire() as conn:
        ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM repos")}
        sizes = {}
        memory = await held(store.database_url(settings))
        for name, i in ids.items():
            sizes[name] = (await memory.scope(conn, "table", [i])).lists[0].nbytes
        await memory.close()
        small = LexicalMemory(store.database_url(settings), sizes["shop"] + sizes["lume"])
        await small.load([ids["shop"], ids["lume"]])
        await small.load([ids["penlight"]])  # does not fit beside them
        assert await small.scope(conn, "table", [ids["shop"], ids["lume"]]) is not None
        assert await small.scope(conn, "table", None) is None
        assert await small.scope(conn, "table", [ids["penlight"]]) is None
        await small.close()


async def test_a_database_without_versions_is_searched_in_the_database(codebases):
    """A chat adapter newer than the database's schema (not migrated to versions yet): the
    searches read the database and nothing fails."""
    settings, _ = codebases
    async with open_victor(settings) as victor, victor.pool.acquire() as conn:
        before = await victor.search(QUESTIONS[:3], mode="lexical")
        await conn.execute("ALTER TABLE lex_stats DROP COLUMN version")
        chat = await connect(settings, lexical_memory=True, apply=False)
        try:
            assert await chat.search(QUESTIONS[:3], mode="lexical") == before
            assert not chat.memory.warm
        finally:
            await chat.close()
