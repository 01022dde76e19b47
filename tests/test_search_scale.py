"""The lexical side's bound for large indexes (indexer.search.lexical.MAX_LEXICAL_CANDIDATES),
exercised on the sample project with the bound made tiny: the same code path a 100k-chunk
index takes (docs/hardening.md, "Load and scale")."""

from __future__ import annotations

from indexer import search
from indexer.search import lexical
from indexer.service import open_victor
from tests.conftest import SAMPLE
from tests.support.search import results as search_one


async def test_bounded_lexical_search_finds_by_the_rarer_words(settings, ollama, monkeypatch):
    async with open_victor(settings) as victor:
        await victor.index(str(SAMPLE), name="shop")
        exact = {
            q: await search_one(victor, q, mode="lexical", top_k=3)
            for q in ("unknown product", "lookup price", "cart total")
        }
        monkeypatch.setattr(lexical, "MAX_LEXICAL_CANDIDATES", 2)
        await victor.pool.execute("ANALYZE chunks")  # the statistics a large index has
        for query, before in exact.items():
            bounded = await search_one(victor, query, mode="lexical", top_k=3)
            assert bounded, query
            assert bounded[0].symbol == before[0].symbol, query
        # every word common (in more chunks than the bound): chunks holding all of them
        async with victor.pool.acquire() as conn:
            lexemes = await lexical.query_lexemes(conn, "cart price")
            n = await conn.fetchval("SELECT count(*) FROM chunks WHERE searchable")
            df = await lexical.document_frequencies(conn, lexemes, None, n)
            assert len(lexemes) == 2 and min(df.values()) > 2, df
            found = await lexical.lexical_ids(conn, lexemes, 50, None, search.DEFAULT_TUNING)
        assert 0 < len(found) <= 2


async def test_document_frequencies_are_exact_in_a_small_index(settings, ollama):
    async with open_victor(settings) as victor:
        await victor.index(str(SAMPLE), name="shop")
        async with victor.pool.acquire() as conn:
            words = await lexical.query_lexemes(conn, "price cart unknown zebra")
            n = await conn.fetchval("SELECT count(*) FROM chunks WHERE searchable")
            df = await lexical.document_frequencies(conn, words, None, n)
            for word in words:
                count = await conn.fetchval(
                    "SELECT count(*) FROM chunks WHERE searchable "
                    "AND lex @@ quote_literal($1)::tsquery",
                    word,
                )
                assert df[word] == count, word
