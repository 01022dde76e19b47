"""The dense side of a search restricted to repositories (indexer/search/dense.py), on the real
PostgreSQL: a small scope is scanned exactly, so its result is the true nearest chunks of
those repositories, computed here from their vectors independently of the SQL."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from indexer import store
from indexer.search import dense
from indexer.service import open_victor
from tests.conftest import SAMPLE

QUERIES = ["unknown product", "lookup price", "cart total", "get the selection", "apply discount"]
DEPTH = 5
EPS = 1e-5  # float32 distances in pgvector, float64 here


@pytest.fixture
async def indexed(settings, ollama, tmp_path):
    """The sample project indexed twice, as `shop` and `store`: two repositories whose chunks
    are equally near every query, so a filter that leaks shows."""
    async with open_victor(settings) as victor:
        await index_twice(victor, tmp_path)
        yield victor


async def index_twice(victor, tmp_path) -> None:
    """The sample project copied and indexed as `shop` and as `store`."""
    for name in ("shop", "store"):
        dest = tmp_path / name
        shutil.copytree(SAMPLE, dest)
        await victor.index(str(dest), name=name)


async def vectors_of(conn, repo_id: int) -> tuple[list[int], np.ndarray]:
    rows = await conn.fetch(
        "SELECT id, embedding FROM chunks WHERE repo_id = $1 AND embedding IS NOT NULL", repo_id
    )
    matrix = np.stack([r["embedding"].to_numpy().astype(np.float64) for r in rows])
    return [r["id"] for r in rows], matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def check_ranked(found: dict[int, float], ids: list[int]) -> None:
    """DEPTH chunks of the repository searched, best first."""
    assert len(found) == min(DEPTH, len(ids))
    assert set(found) <= set(ids), "a chunk of another repository"
    assert list(found) == sorted(found, key=lambda i: (-found[i], i)), "not ranked by cosine"


@pytest.mark.parametrize("plans", ["auto", "force_generic_plan", "force_custom_plan"])
async def test_one_repository_search_is_the_exact_top_k(indexed, plans):
    """In every plan mode: PostgreSQL plans a prepared statement for its values at first, and
    may switch to a generic plan (made without them) from its sixth execution."""
    victor = indexed
    async with victor.pool.acquire() as conn:
        await conn.execute(f"SET plan_cache_mode = {plans}")
        shop = await conn.fetchval("SELECT id FROM repos WHERE name = 'shop'")
        ids, matrix = await vectors_of(conn, shop)
        assert await dense.scope_size(conn, [shop]) == len(ids)  # every searchable chunk
        for query in QUERIES:
            (vector,) = await victor.embedder.embed_queries([query])
            found = await dense.dense_ids(conn, np.asarray(vector), DEPTH, [shop])
            cos = matrix @ (np.asarray(vector, dtype=np.float64) / np.linalg.norm(vector))
            truth = dict(zip(ids, cos, strict=True))
            check_ranked(found, ids)
            for chunk, score in found.items():
                assert score == pytest.approx(truth[chunk], abs=EPS)
            # the true top DEPTH, up to float error at the boundary
            weakest = min(found.values())
            assert all(c <= weakest + EPS for i, c in truth.items() if i not in found)
        await conn.execute("RESET plan_cache_mode")


async def test_a_large_scope_is_searched_with_hnsw(indexed, monkeypatch):
    """Above EXACT_SCOPE the HNSW index serves the filtered search; it stays in scope."""
    victor = indexed
    monkeypatch.setattr(dense, "EXACT_SCOPE", 0)
    async with victor.pool.acquire() as conn:
        store_id = await conn.fetchval("SELECT id FROM repos WHERE name = 'store'")
        (vector,) = await victor.embedder.embed_queries([QUERIES[0]])
        found = await dense.dense_ids(conn, np.asarray(vector), DEPTH, [store_id])
        check_ranked(found, (await vectors_of(conn, store_id))[0])
        monkeypatch.setattr(dense, "EXACT_SCOPE", 10**9)
        exact = await dense.dense_ids(conn, np.asarray(vector), DEPTH, [store_id])
        # a few dozen vectors: HNSW finds the same nearest chunks
        assert set(found) == set(exact)


async def storage(conn) -> bytes:
    return await conn.fetchval(
        "SELECT attstorage FROM pg_attribute WHERE attrelid = 'chunks'::regclass "
        "AND attname = 'embedding'"
    )


async def test_vectors_stay_in_their_rows_through_a_change_of_model(indexed):
    """Changing the column's type (binding a model, `victor reembed`) resets its storage to
    the type's default (TOAST): Victor sets it back in the same statement."""
    async with indexed.pool.acquire() as conn:
        assert await storage(conn) == b"m"  # bound when the first model was recorded
        async with conn.transaction():
            await store.unbind_space(conn)
            assert await storage(conn) == b"m"
            await store.bind_space(conn, "test:other||", "other", 384)
            assert await storage(conn) == b"m"
