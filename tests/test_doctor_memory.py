"""`victor doctor`'s memory check: a note when PostgreSQL's buffer cache cannot hold what
searches read (bench/README.md: 38-56 vs 32-35 ms a search at 100k chunks)."""

from __future__ import annotations

from victor.doctor import SEARCHED, memory_check, searched_bytes


def test_a_note_says_how_much_when_the_buffers_are_too_small():
    small = memory_check(128 * 2**20, 1050 * 2**20)
    assert small.ok and small.note
    assert "128 MB" in small.detail and "1,050 MB" in small.detail
    assert "shared_buffers=2GB" in small.detail  # the searched size and a quarter more
    roomy = memory_check(2**30, 500 * 2**20)
    assert roomy.ok and not roomy.note and "holds" in roomy.detail


async def test_the_searched_relations_are_measured_on_a_real_index(victor):
    async with victor.pool.acquire() as conn:
        buffers, searched = await searched_bytes(conn)
        assert buffers == await conn.fetchval(
            "SELECT pg_size_bytes(current_setting('shared_buffers'))"
        )
        # every name is a relation of the schema (a renamed index would silently count 0);
        # the HNSW index exists once the index is bound to a model (store.bind_space)
        missing = await conn.fetch(
            "SELECT n FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NULL", list(SEARCHED)
        )
        assert [r["n"] for r in missing] == ["chunks_embedding_hnsw"]
        assert searched == await conn.fetchval(
            "SELECT sum(pg_relation_size(to_regclass(n))) FROM unnest($1::text[]) AS n",
            list(SEARCHED),
        )
        assert searched > 0
