"""Search against a real PostgreSQL and the Ollama stand-in: modes, symbol lookup, the
lexical fallback when the embedder is down, min_score, and upgrading a v1 database."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from indexer import store
from indexer.embedding.texts import embedding_text, text_hash
from indexer.parsing.chunker import chunk_source
from indexer.search import Tuning, lexical
from indexer.search.fusion import is_test_path
from indexer.service import open_victor
from indexer.store import migrations
from tests.conftest import FIXTURES, SAMPLE
from tests.support.search import results as search_one

# A small project of our own: a camelCase API, a factory with helpers defined inside it,
# and a spec file that defines a function of the same name as the code it tests.
WIDGET = """\
--- Widgets drawn on a screen.
local Widget = {}
Widget.__index = Widget

--- Change the text shown in the title bar.
function Widget:setTitleText(text)
  self.title = text
  self:redraw()
end

--- Make a counter object.
local function makeCounter(start)
  local count = start or 0
  local function bump(by)
    count = count + (by or 1)
    return count
  end
  return { bump = bump }
end

return Widget
"""

WIDGET_SPEC = """\
local function setTitleText(widget, text)
  widget:setTitleText(text)
end

return function()
  it("sets the title", function()
    setTitleText({}, "x")
  end)
end
"""


@pytest.fixture
def project(tmp_path) -> Path:
    dest = tmp_path / "shop"
    shutil.copytree(SAMPLE, dest)
    (dest / "src" / "ui").mkdir()
    (dest / "src" / "ui" / "widget.lua").write_text(WIDGET)
    (dest / "spec").mkdir()
    (dest / "spec" / "widget_spec.lua").write_text(WIDGET_SPEC)
    return dest


def where(results) -> list[tuple[str, str]]:
    return [(r.path, r.symbol) for r in results]


async def test_a_named_symbol_ranks_first(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        for query in (
            "Picker:get_selection",
            "get_selection",
            "where is get_selection defined",
            "how does get_selection work",
        ):
            for mode in ("hybrid", "dense", "lexical"):
                results = await search_one(victor, query, mode=mode, top_k=3)
                assert where(results)[0] == ("src/shop/picker.lua", "Picker:get_selection"), (
                    query,
                    mode,
                )
                assert results[0].score == 1.0
        # a field of a returned table, and a helper defined inside another function
        (trim,) = await search_one(victor, "where is format_price defined", top_k=1)
        assert (trim.path, trim.symbol) == ("src/shop/strings.lua", "strings.format_price")
        (bump,) = await search_one(victor, "where is bump defined", top_k=1)
        assert bump.symbol == "makeCounter" and bump.start_line <= 14 <= bump.end_line
        # the code ranks above the spec that defines the same name
        found = await search_one(victor, "setTitleText", top_k=2)
        assert where(found) == [
            ("src/ui/widget.lua", "Widget:setTitleText"),
            ("spec/widget_spec.lua", "setTitleText"),
        ]
        # qualified by the module path (`shop.prices` for `M.apply_discount` in prices.lua)
        (discount,) = await search_one(victor, "shop.prices.apply_discount", top_k=1)
        assert discount.symbol == "M.apply_discount"


async def test_a_module_path_names_the_definition_on_the_module_table(settings, ollama, project):
    """`shop.prices.apply_discount` means `M.apply_discount` in shop/prices.lua, not a bare
    `apply_discount` elsewhere whose name the term merely ends with (as APISIX's many
    `check_schema`s: bench/README.md, "Symbol lookup on 14 corpora")."""
    (project / "src" / "shop" / "legacy.lua").write_text(
        "local function apply_discount(total)\n  return total * 0.9\nend\n\n"
        "return { old = apply_discount }\n"
    )
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        for query in ("shop.prices.apply_discount", "where is shop.prices.apply_discount defined"):
            (found,) = await search_one(victor, query, top_k=1)
            assert (found.path, found.symbol) == ("src/shop/prices.lua", "M.apply_discount")
        (bare,) = await search_one(victor, "shop.legacy.apply_discount", top_k=1)
        assert bare.path == "src/shop/legacy.lua"


async def test_lexical_search_understands_identifiers(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        # words of a camelCase name, in another order, plural
        results = await search_one(victor, "title texts setting", mode="lexical", top_k=3)
        assert where(results)[0] == ("src/ui/widget.lua", "Widget:setTitleText")
        # the name outweighs a body that only uses the words
        results = await search_one(victor, "lookup price", mode="lexical", top_k=3)
        assert results[0].symbol == "M.lookup"
        # a word found only in an error message of the body
        results = await search_one(victor, "unknown product", mode="lexical", top_k=1)
        assert results[0].symbol == "M.lookup"


async def test_modes_differ(settings, ollama, project):
    query = "apply the loyalty discount for members"
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        found = {
            mode: (await victor.search([query], mode=mode, top_k=5))[0]
            for mode in ("hybrid", "dense", "lexical")
        }
        assert {mode: f.mode for mode, f in found.items()} == {
            "hybrid": "hybrid",
            "dense": "dense",
            "lexical": "lexical",
        }
        for f in found.values():
            assert f.notice == ""
            assert f.results[0].symbol == "M.apply_discount"
            assert all(0.0 <= r.score <= 1.0 for r in f.results)
        scores = {mode: f.results[0].score for mode, f in found.items()}
        assert len(set(scores.values())) == 3  # each mode scores its own way
        # a query with no word in the code: lexical finds nothing, dense still answers
        nothing = "zebra giraffe"
        assert await search_one(victor, nothing, mode="lexical") == []
        assert len(await search_one(victor, nothing, mode="dense", top_k=2)) == 2


async def test_a_candidate_only_the_dense_side_found_gets_its_lexical_share(
    settings, ollama, project
):
    """Score fusion gives every candidate its real BM25F share, also one the lexical side's
    own top `depth` left out (it used to count as no lexical match at all)."""
    queries = [
        "total price of the cart",
        "add a product to the cart",
        "look up the price of a product",
        "apply the loyalty discount for members",
        "return the selected entries",
        "remove a product from the cart",
    ]
    checked = []
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        for query in queries:
            for depth in (1, 2, 3):
                tuning = Tuning(depth=depth, symbols=False, stage=False)
                (dense,) = await victor.search([query], mode="dense", top_k=depth, tuning=tuning)
                (hybrid,) = await victor.search([query], mode="hybrid", top_k=depth, tuning=tuning)
                async with victor.pool.acquire() as conn:
                    every = await lexical.lexical_ids(
                        conn, query=query, depth=10_000, repos=None, tuning=tuning
                    )
                    own = sorted(every, key=lambda i: (-every[i], i))[:depth]
                    for r in hybrid.results:
                        cos = next((d.score for d in dense.results if where([d]) == where([r])), 0)
                        chunk = await conn.fetchval(
                            "SELECT id FROM chunks WHERE path = $1 AND start_line = $2",
                            r.path,
                            r.start_line,
                        )
                        if not cos or chunk in own or not every.get(chunk) or r.kind != "function":
                            continue
                        if is_test_path(r.path):
                            continue
                        s = every[chunk]
                        share = s / (s + tuning.lexical_half)
                        want = (cos + tuning.alpha * share) / (1 + tuning.alpha)
                        assert r.score == pytest.approx(want, rel=1e-6), (query, depth, r.symbol)
                        assert r.score > cos / (1 + tuning.alpha)
                        checked.append((query, depth))
    assert len(checked) >= 2, checked


async def test_trivial_chunks_are_stored_but_never_returned(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        rows = await victor.pool.fetch(
            "SELECT text, embedding IS NULL AS bare FROM chunks WHERE NOT searchable"
        )
        assert rows and all(r["bare"] for r in rows)
        assert {"return Picker", "return M"} <= {r["text"].strip() for r in rows}
        for mode in ("hybrid", "dense", "lexical"):
            results = await search_one(victor, "return the module", mode=mode, top_k=50)
            assert not {r.text.strip() for r in results} & {r["text"].strip() for r in rows}


async def test_embedder_down_falls_back_to_lexical(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
    down = settings.model_copy(update={"embed_retries": 0})
    async with open_victor(down) as victor:
        ollama.fail_status = 503
        (found,) = await victor.search(["Cart:total sum of prices"], top_k=3)
        assert found.mode == "lexical"
        assert "embedder unavailable" in found.notice and "lexical search only" in found.notice
        assert found.results[0].symbol == "Cart:total"
        context = await victor.retrieve("Cart:total sum of prices", budget=2000)
        # the operator's detail (terminal, log) and the short phrase any chat user may see
        assert found.summary == "keyword search only: embeddings unavailable"
        assert "Cart:total" in context.text
        assert (context.notice, context.detail) == (found.summary, found.notice)
        # the lexical mode never needs the embedder, so it is not degraded
        (lexical,) = await victor.search(["Cart:total"], mode="lexical")
        assert lexical.notice == "" and lexical.results


async def test_slow_embedder_is_not_waited_for(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
    slow = settings.model_copy(update={"query_timeout": 0.5})
    async with open_victor(slow) as victor:
        ollama.delay = 5.0
        started = time.monotonic()
        context = await victor.retrieve("remove whitespace from both ends of a string")
        assert time.monotonic() - started < 3.0
        assert "no answer within 0.5 s" in context.detail
        assert "trim" in context.text


async def test_unreachable_embedder_falls_back_to_lexical(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
    gone = settings.model_copy(update={"ollama_host": "http://127.0.0.1:9", "embed_retries": 0})
    async with open_victor(gone) as victor:
        (found,) = await victor.search(["where is trim defined"])
        assert found.mode == "lexical" and "Cannot reach Ollama" in found.notice
        assert found.results[0].symbol == "trim"


async def test_min_score_asks_whether_the_best_result_passes(settings, ollama, project):
    question = "total price of the cart"
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        (found,) = await victor.search([question], top_k=8)
        best, weakest = found.results[0].score, found.results[-1].score
        assert best == max(r.score for r in found.results) and weakest < best - 0.05
        above = await victor.retrieve(question, top_k=8, min_score=best + 0.001)
        assert above.text == "" and above.sources == []
        # the best passes: every result goes, those scoring far below the floor too
        at = await victor.retrieve(question, top_k=8, min_score=best)
        assert at.text == (await victor.retrieve(question, top_k=8, min_score=0.0)).text
        weak = found.results[-1]
        assert any(
            s.path == weak.path and s.start_line <= weak.start_line <= s.end_line
            for s in at.sources
        )
        named = await victor.retrieve("Picker:get_selection", min_score=0.99)
        assert named.sources[0].symbol == "Picker:get_selection" and len(named.sources) > 1


# --- upgrading a database written by schema v1 ----------------------------------------------


async def write_v1_index(url: str, ollama, project: Path) -> None:
    """What Victor v1 left in a database: its schema, and chunks embedded with v1's text."""
    import asyncpg
    from pgvector.asyncpg import register_vector

    conn = await asyncpg.connect(url)
    try:
        await conn.execute((FIXTURES / "schema_v1.sql").read_text())
        await register_vector(conn)
        await store.bind_space(conn, "ollama:all-minilm:latest||", "all-minilm", 384)
        repo_id = await conn.fetchval(
            "INSERT INTO repos (name, source) VALUES ('shop', $1) RETURNING id", str(project)
        )
        for path in sorted(project.rglob("*.lua")):
            rel = path.relative_to(project).as_posix()
            data = path.read_bytes()
            await conn.execute(
                "INSERT INTO files (repo_id, path, content_hash, parse_mode, chunker_version, "
                "size_bytes) VALUES ($1, $2, 'v1', 'ast', 1001, $3)",
                repo_id,
                rel,
                len(data),
            )
            chunks = chunk_source(rel, data.decode()).chunks
            texts = [embedding_text(rel, c) for c in chunks]
            vectors = [np.asarray(v, dtype=np.float32) for v in ollama.embed(texts)]
            for c, t, v in zip(chunks, texts, vectors, strict=True):
                await conn.execute(
                    "INSERT INTO embedding_cache (space, text_hash, embedding) VALUES "
                    "('ollama:all-minilm:latest||', $1, $2) ON CONFLICT DO NOTHING",
                    text_hash(t),
                    v,
                )
                await conn.execute(
                    "INSERT INTO chunks (repo_id, path, symbol, kind, signature, doc, "
                    "start_line, end_line, part, text, embed_hash, embedding) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    repo_id,
                    rel,
                    c.symbol,
                    c.kind.value,
                    c.signature,
                    c.doc,
                    c.start_line,
                    c.end_line,
                    c.part,
                    c.text,
                    text_hash(t),
                    v,
                )
    finally:
        await conn.close()


async def test_a_v1_database_upgrades_in_place(settings, ollama, tmp_path):
    project = tmp_path / "shop"
    shutil.copytree(SAMPLE, project)
    await write_v1_index(settings.database_url.get_secret_value(), ollama, project)
    ollama.reset()
    async with open_victor(settings) as victor:
        # every later migration applied, lexical fields computed from the stored chunks: all
        # modes work
        applied = await victor.pool.fetch("SELECT id FROM victor_migrations ORDER BY id")
        assert [r["id"] for r in applied] == [m.id for m in migrations.all_migrations()]
        for mode in ("hybrid", "lexical", "dense"):
            results = await search_one(victor, "where is get_selection defined", mode=mode)
            assert results[0].symbol == "Picker:get_selection", mode
        assert await victor.pool.fetchval("SELECT count(*) FROM chunks WHERE NOT searchable") > 0
        assert ollama.requests == 2  # hybrid and dense embedded their query, lexical did not

        # the next run re-chunks every file (the index version changed) and embeds only the
        # new name texts: the full texts did not change, their v1 embeddings are reused
        ollama.reset()
        report = await victor.index(str(project), name="shop")
        assert report.files_changed == 4
        assert report.chunks_embedded > 0 and ollama.inputs
        assert not [t for t in ollama.inputs if " :: " in t]
        named = await victor.pool.fetchval(
            "SELECT count(*) FROM chunks WHERE name_hash IS NOT NULL AND embedding IS NOT NULL"
        )
        assert named > 0
        results = await search_one(victor, "apply the loyalty discount for members", top_k=1)
        assert results[0].symbol == "M.apply_discount"


async def test_every_pool_connection_carries_the_hnsw_settings(settings):
    """A dense search is one statement: the pool's connections hold the HNSW settings it
    needs (a repository filter keeps the scan going; enough candidates for the fusion), and
    no statement of theirs is JIT-compiled (store.POOL_SETTINGS)."""
    pool = await store.create_pool(settings, min_size=2, max_size=2)
    try:
        for _ in range(2):  # and still after a release (the pool resets connections)
            async with pool.acquire() as a, pool.acquire() as b:
                for conn in (a, b):
                    await conn.execute("SELECT NULL::vector")  # loads pgvector here
                    assert await conn.fetchval("SHOW hnsw.iterative_scan") == "relaxed_order"
                    assert await conn.fetchval("SHOW hnsw.ef_search") == "100"
                    assert await conn.fetchval("SHOW jit") == "off"
                    await conn.execute("SET hnsw.ef_search = 7")
                    await conn.execute("SET jit = on")
    finally:
        await pool.close()


async def test_a_reading_pool_gives_connections_back_without_a_reset_round_trip(settings):
    """The chat adapters' pool (apply=False) skips asyncpg's reset statement on every
    connection given back, but still ends a transaction left open; the indexer's pool keeps
    the reset: its advisory locks and session settings must not outlive a block."""
    writer = await store.create_pool(settings, min_size=1, max_size=1)  # migrates
    reader = await store.create_pool(settings, min_size=1, max_size=1, apply=False)
    try:
        async with reader.acquire() as conn:
            pid = conn.get_server_pid()
            await conn.execute("SET application_name = 'left by a reader'")
            await conn.execute("BEGIN")
            await conn.execute("SELECT 1 FROM chunks LIMIT 1")
        async with reader.acquire() as conn:
            assert conn.get_server_pid() == pid  # the same connection, no reset statement
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW application_name") == "left by a reader"
        async with writer.acquire() as conn:
            await conn.execute("SET application_name = 'left by the indexer'")
            await conn.execute("SELECT pg_advisory_lock(1, 2)")
        async with writer.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") != "left by the indexer"
            assert not await conn.fetchval(
                "SELECT count(*) FROM pg_locks "
                "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )
    finally:
        await reader.close()
        await writer.close()
