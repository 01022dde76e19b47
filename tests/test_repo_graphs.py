"""A big repository's own HNSW graph (indexer/store/repo_graphs.py) on the real PostgreSQL: built
after an index run, used by a search restricted to the repository in every plan mode (the
repository id is a literal in the statement), dropped with the repository, rebuilt after
`victor reembed` and after an interrupted build. The sample project is small, so the threshold
is lowered to a few chunks (`MIN_CHUNKS`, with the search's `EXACT_SCOPE`)."""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
import pytest

from indexer import store
from indexer.indexing.reembed import reembed
from indexer.search import dense
from indexer.service import open_victor
from indexer.store import postings, repo_graphs
from tests.conftest import SAMPLE
from tests.test_dense_scope import (
    DEPTH,
    EPS,
    QUERIES,
    check_ranked,
    index_twice,
    vectors_of,
)
from victor.doctor import searched_bytes

SMALL = 5  # searchable chunks a repository must exceed to get its own graph, here


@pytest.fixture
async def indexed(settings, ollama, tmp_path, monkeypatch):
    """The sample project indexed as `shop` and `store` (half of the index each), both above
    the lowered threshold."""
    monkeypatch.setattr(repo_graphs, "MIN_CHUNKS", SMALL)
    monkeypatch.setattr(dense, "EXACT_SCOPE", SMALL)
    async with open_victor(settings) as victor:
        await index_twice(victor, tmp_path)
        yield victor


async def repo_id(victor, name: str) -> int:
    return await victor.pool.fetchval("SELECT id FROM repos WHERE name = $1", name)


async def graph_oid(victor, repo: int) -> int | None:
    return await victor.pool.fetchval("SELECT to_regclass($1)::oid", repo_graphs.index_name(repo))


OFF = ("enable_seqscan", "enable_bitmapscan", "enable_sort")


def scans(node: dict) -> list[tuple[str, int]]:
    """(index, times the node ran) of every index scan of a plan."""
    found = [(node["Index Name"], node["Actual Loops"])] if "Index Name" in node else []
    for child in node.get("Plans", []):
        found += scans(child)
    return found


async def executed_indexes(conn, repos: list[int], vector, plans: str) -> set[str]:
    """The HNSW indexes the statement dense_ids runs actually scanned, prepared under `plans`
    (run six times first: from its sixth execution `auto` may switch to a generic plan).
    The sample's repositories are a few dozen chunks, which PostgreSQL would rather read and
    sort than look up in any graph: scans and sorts are priced out here, so the plan shows
    which graph it can use, as it does on a big repository."""
    sql = dense.scoped_statement(tuple(sorted(repos)))
    text = "'[" + ",".join(repr(float(x)) for x in vector) + "]'"
    args = f"{text}, {DEPTH}, '{{{','.join(map(str, repos))}}}', {dense.EXACT_SCOPE}"
    await conn.execute(f"SET plan_cache_mode = {plans}")
    for setting in OFF:
        await conn.execute(f"SET {setting} = off")
    await conn.execute(f"PREPARE nearest AS {sql}")
    try:
        for _ in range(6):
            await conn.execute(f"EXECUTE nearest({args})")
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE nearest({args})")
    finally:
        await conn.execute("DEALLOCATE nearest")
        await conn.execute("RESET plan_cache_mode")
        for setting in OFF:
            await conn.execute(f"RESET {setting}")
    root = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    return {n for n, loops in scans(root) if loops > 0 and n.startswith("chunks_embedding_")}


async def check_exact(victor, conn, repos: list[int]) -> None:
    """dense_ids over `repos` returns their true nearest chunks (a small graph: HNSW finds
    them all), computed here from the vectors."""
    ids, matrices = [], []
    for repo in repos:
        i, m = await vectors_of(conn, repo)
        ids += i
        matrices.append(m)
    matrix = np.concatenate(matrices)
    for query in QUERIES:
        (vector,) = await victor.embedder.embed_queries([query])
        found = await dense.dense_ids(conn, np.asarray(vector), DEPTH, repos)
        check_ranked(found, ids)
        truth = dict(zip(ids, matrix @ (np.asarray(vector) / np.linalg.norm(vector)), strict=True))
        for chunk, score in found.items():
            assert score == pytest.approx(truth[chunk], abs=EPS)
        weakest = min(found.values())
        assert all(c <= weakest + EPS for i, c in truth.items() if i not in found)


@pytest.mark.parametrize("plans", ["auto", "force_generic_plan", "force_custom_plan"])
async def test_a_big_repository_is_searched_in_its_own_graph(indexed, plans):
    victor = indexed
    shop, store = await repo_id(victor, "shop"), await repo_id(victor, "store")
    assert await repo_graphs.existing(victor.pool) == {shop: True, store: True}
    async with victor.pool.acquire() as conn:
        (vector,) = await victor.embedder.embed_queries([QUERIES[0]])
        used = await executed_indexes(conn, [shop], vector, plans)
        assert used == {repo_graphs.index_name(shop)}, "not its own graph alone"
        # two big repositories: each in its own graph, merged by cosine
        used = await executed_indexes(conn, [shop, store], vector, plans)
        assert used == {repo_graphs.index_name(shop), repo_graphs.index_name(store)}
        await conn.execute(f"SET plan_cache_mode = {plans}")
        await check_exact(victor, conn, [shop])
        await check_exact(victor, conn, [shop, store])
        await conn.execute("RESET plan_cache_mode")


async def test_a_small_repository_gets_no_graph(settings, ollama):
    """At the default threshold the sample project is scanned exactly: no graph is built."""
    async with open_victor(settings) as victor:
        await victor.index(str(SAMPLE), name="shop")
        assert await repo_graphs.existing(victor.pool) == {}


async def test_a_repository_holding_most_of_the_index_gets_no_graph(
    settings, ollama, tmp_path, monkeypatch
):
    """Its filter would throw little away, and its graph would duplicate the global one: the
    only repository gets none; once a second one as big is indexed, each holds half, and both
    get theirs."""
    monkeypatch.setattr(repo_graphs, "MIN_CHUNKS", SMALL)
    async with open_victor(settings) as victor:
        for name in ("shop", "store"):
            shutil.copytree(SAMPLE, tmp_path / name)
        await victor.index(str(tmp_path / "shop"), name="shop")
        assert await repo_graphs.existing(victor.pool) == {}
        await victor.index(str(tmp_path / "store"), name="store")
        shop, store = await repo_id(victor, "shop"), await repo_id(victor, "store")
        assert await repo_graphs.existing(victor.pool) == {shop: True, store: True}


async def graph_bytes(victor, repo: int) -> int:
    return await victor.pool.fetchval(
        "SELECT pg_relation_size($1::regclass)", repo_graphs.index_name(repo)
    )


async def test_removing_the_repository_drops_its_graph(indexed):
    victor = indexed
    shop, store = await repo_id(victor, "shop"), await repo_id(victor, "store")
    # `victor doctor` counts the graphs in what searches read
    async with victor.pool.acquire() as conn:
        _, searched = await searched_bytes(conn)
    shop_graph, store_graph = await graph_bytes(victor, shop), await graph_bytes(victor, store)
    assert shop_graph > 0 and await repo_graphs.size(victor.pool) == shop_graph + store_graph
    await victor.remove("shop")
    assert await repo_graphs.existing(victor.pool) == {store: True}
    assert await graph_oid(victor, shop) is None
    async with victor.pool.acquire() as conn:
        _, after = await searched_bytes(conn)
    assert after <= searched - shop_graph  # (tables shrink only when vacuumed)


async def test_reembed_rebuilds_the_graphs(indexed):
    victor = indexed
    shop, store = await repo_id(victor, "shop"), await repo_id(victor, "store")
    before = {r: await graph_oid(victor, r) for r in (shop, store)}
    await reembed(victor.pool, victor.embedder)
    assert await repo_graphs.existing(victor.pool) == {shop: True, store: True}
    for r in (shop, store):
        assert await graph_oid(victor, r) not in (None, before[r]), "not built again"
    async with victor.pool.acquire() as conn:
        await check_exact(victor, conn, [shop])


async def test_an_interrupted_build_is_never_used_and_is_rebuilt(indexed, tmp_path):
    """A build interrupted (CREATE INDEX CONCURRENTLY cancelled or crashed) leaves its index
    INVALID in the catalog: marked so here. The planner never uses it; the next index run,
    even one that changes nothing, builds it again."""
    victor = indexed
    shop = await repo_id(victor, "shop")
    left = await graph_oid(victor, shop)
    await victor.pool.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = $1", left)
    assert (await repo_graphs.existing(victor.pool))[shop] is False
    async with victor.pool.acquire() as conn:
        (vector,) = await victor.embedder.embed_queries([QUERIES[0]])
        for plans in ("force_generic_plan", "force_custom_plan"):
            used = await executed_indexes(conn, [shop], vector, plans)
            assert repo_graphs.index_name(shop) not in used
        await check_exact(victor, conn, [shop])  # the global graph, filtered, meanwhile
    report = await victor.index(str(tmp_path / "shop"), name="shop")
    assert report.files_unchanged and not report.chunks_written
    assert (await repo_graphs.existing(victor.pool))[shop] is True
    assert await graph_oid(victor, shop) != left
    async with victor.pool.acquire() as conn:
        used = await executed_indexes(conn, [shop], vector, "force_generic_plan")
        assert used == {repo_graphs.index_name(shop)}


async def test_building_needs_one_connection(indexed, settings):
    """The builder works on the connection holding its lock: a pool with no second connection
    free (bench.scale loads with two and holds one) builds instead of waiting forever."""
    victor = indexed
    shop = await repo_id(victor, "shop")
    await repo_graphs.drop(victor.pool, shop)
    pool = await store.create_pool(settings, max_size=1)
    try:
        built = await asyncio.wait_for(repo_graphs.reconcile(pool, SMALL), timeout=120)
    finally:
        await pool.close()
    assert built == [shop]
    assert (await repo_graphs.existing(victor.pool))[shop] is True


async def test_a_repository_removed_while_its_graph_builds(indexed):
    """CREATE INDEX CONCURRENTLY waits for every transaction older than its own snapshot before
    it ends: a transaction held open here keeps the shop graph's build under way (its index
    INVALID in the catalog). Removing shop meanwhile waits for the builder (dropping the index
    while its build ends made one of the two fail: "tuple concurrently updated"), then removes
    the repository and the graph: nothing is left behind, and the other repository keeps its
    graph."""
    victor = indexed
    shop, store = await repo_id(victor, "shop"), await repo_id(victor, "store")
    await repo_graphs.drop(victor.pool, shop)
    async with victor.pool.acquire() as holder:
        old = holder.transaction(isolation="repeatable_read")
        await old.start()
        await holder.fetchval("SELECT count(*) FROM chunks")  # its snapshot is taken here
        build = asyncio.create_task(repo_graphs.reconcile(victor.pool, SMALL))
        for _ in range(600):
            if shop in await repo_graphs.existing(victor.pool):
                break
            await asyncio.sleep(0.05)
        assert (await repo_graphs.existing(victor.pool)).get(shop) is False, "not under way"
        removal = asyncio.create_task(victor.remove("shop"))
        await asyncio.sleep(1.0)
        assert not build.done() and not removal.done()
        await old.rollback()
    assert await asyncio.wait_for(build, timeout=60) == [shop]
    await asyncio.wait_for(removal, timeout=60)
    assert await repo_graphs.existing(victor.pool) == {store: True}
    assert await graph_oid(victor, shop) is None
    assert await victor.pool.fetchval("SELECT count(*) FROM chunks WHERE repo_id = $1", shop) == 0
    async with victor.pool.acquire() as conn:
        assert await postings.check(conn) == {"postings": 0, "terms": 0, "stats": 0}


async def hold_snapshot(victor):
    """An open transaction with a snapshot: a graph build (CREATE INDEX CONCURRENTLY) waits
    for it before it ends. Returns (connection, transaction); roll back and release after."""
    conn = await victor.pool.acquire()
    old = conn.transaction(isolation="repeatable_read")
    await old.start()
    await conn.fetchval("SELECT count(*) FROM chunks")
    return conn, old


async def test_a_build_outlasts_the_per_statement_time_limit(indexed, settings):
    """A big repository's build takes minutes: the pool's per-statement limit
    (VICTOR_SQL_TIMEOUT, here 1 s) must not cut it, or it would fail on every run."""
    victor = indexed
    shop = await repo_id(victor, "shop")
    await repo_graphs.drop(victor.pool, shop)
    pool = await store.create_pool(settings.model_copy(update={"sql_timeout": 1.0}))
    conn, old = await hold_snapshot(victor)
    try:
        build = asyncio.create_task(repo_graphs.reconcile(pool, SMALL))
        await asyncio.sleep(2.5)
        assert not build.done()
        await old.rollback()
        assert await asyncio.wait_for(build, timeout=60) == [shop]
    finally:
        await victor.pool.release(conn)
        await pool.close()
    assert (await repo_graphs.existing(victor.pool))[shop] is True


async def test_a_failed_build_is_a_warning_and_the_next_run_builds(indexed, settings, caplog):
    """A build the server cancels (its statement_timeout, here 0.5 s) leaves an INVALID index:
    the run that asked for it goes on with a warning, and the next one builds the graph."""
    victor = indexed
    shop = await repo_id(victor, "shop")
    await repo_graphs.drop(victor.pool, shop)
    database = await victor.pool.fetchval("SELECT current_database()")
    await victor.pool.execute(f'ALTER DATABASE "{database}" SET statement_timeout = 500')
    pool = await store.create_pool(settings, max_size=1)  # new connections: the timeout
    conn, old = await hold_snapshot(victor)
    try:
        assert await repo_graphs.reconcile(pool, SMALL) == []
    finally:
        await old.rollback()
        await victor.pool.release(conn)
        await pool.close()
        await victor.pool.execute(f'ALTER DATABASE "{database}" RESET statement_timeout')
    assert "could not build the HNSW graph of repository" in caplog.text
    assert (await repo_graphs.existing(victor.pool))[shop] is False
    pool = await store.create_pool(settings, max_size=1)
    try:
        assert await repo_graphs.reconcile(pool, SMALL) == [shop]
    finally:
        await pool.close()
    assert (await repo_graphs.existing(victor.pool))[shop] is True


async def test_a_sync_waiting_for_the_lock_never_holds_back_a_graph_build(indexed):
    """A sync builds a big repository's graph (CREATE INDEX CONCURRENTLY) while it holds the
    repository's sync lock, and the build waits for every older snapshot to end. Another sync
    waiting for that lock must not keep one while it waits, or the build and both syncs wait
    for ever (PostgreSQL cannot see the cycle: the lock is held on another connection)."""
    victor = indexed
    shop = await repo_id(victor, "shop")
    await repo_graphs.drop(victor.pool, shop)

    async def second_sync():
        async with store.sync_lock(victor.pool, shop):
            pass

    async with store.sync_lock(victor.pool, shop):
        waiting = asyncio.create_task(second_sync())
        await asyncio.sleep(0.5)
        assert not waiting.done()
        built = await asyncio.wait_for(repo_graphs.reconcile(victor.pool, SMALL), timeout=30)
        assert built == [shop]
    await asyncio.wait_for(waiting, timeout=30)
    assert (await repo_graphs.existing(victor.pool)).get(shop) is True
