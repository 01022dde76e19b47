"""Victor's lexical index (indexer/store/postings.py, indexer/search/lexical.py) on the real
PostgreSQL.

It must stay exactly in step with the chunks through every write (index, re-index, delete,
removal, recomputed lexical fields, a schema upgrade), and its scores must be BM25F over the
chunks' tsvectors, computed here independently of the postings. Crashes are covered by the
fault tests: tests/faults/compare.py checks the lexical index of every index they compare.
"""

from __future__ import annotations

import math
import shutil

import pytest

from indexer import store
from indexer.search import DEFAULT_TUNING, Tuning, lexical
from indexer.service import open_victor
from indexer.store import migrations, postings
from tests.conftest import SAMPLE
from tests.support.search import results as search_one

IN_STEP = {"postings": 0, "terms": 0, "stats": 0}
QUERIES = ["unknown product", "lookup price", "cart total", "get the selection", "apply discount"]


@pytest.fixture
def project(tmp_path):
    dest = tmp_path / "shop"
    shutil.copytree(SAMPLE, dest)
    return dest


async def reference(conn, query: str, tuning: Tuning, repos: list[int] | None = None) -> dict:
    """BM25F of every chunk holding a query word, from `chunks.lex` alone (no postings)."""
    words = await lexical.query_lexemes(conn, query)
    rows = await conn.fetch(
        """
        SELECT c.id, c.kind, c.lex_len, c.lex_doc_len, u.lexeme, u.weights
        FROM chunks c CROSS JOIN LATERAL unnest(c.lex) AS u
        WHERE c.searchable AND u.lexeme = ANY($1) AND ($2::int[] IS NULL OR c.repo_id = ANY($2))
        """,
        words,
        repos,
    )
    scope = await conn.fetchrow(
        "SELECT count(*)::float8 AS n, avg(lex_len)::float8 AS body, avg(lex_doc_len)::float8 "
        "AS doc FROM chunks WHERE searchable AND ($1::int[] IS NULL OR repo_id = ANY($1))",
        repos,
    )
    n, body_avg, doc_avg = scope["n"], max(scope["body"], 1), max(scope["doc"], 1)
    df: dict[str, int] = {}
    for r in rows:
        df[r["lexeme"]] = df.get(r["lexeme"], 0) + 1
    wa, wb, wc, wd = tuning.weights
    scores: dict[int, float] = {}
    for r in rows:
        w = r["weights"]
        tf = wa * w.count("A") + wb * w.count("B")
        tf += wc * w.count("C") / (1 - tuning.b_doc + tuning.b_doc * r["lex_doc_len"] / doc_avg)
        if w.count("D"):
            tf += wd * w.count("D") / (1 - tuning.b_body + tuning.b_body * r["lex_len"] / body_avg)
        idf = math.log(1 + (n - df[r["lexeme"]] + 0.5) / (df[r["lexeme"]] + 0.5))
        factor = tuning.module_lexical if r["kind"] in ("module", "window") else 1.0
        part = idf * tf * (tuning.k1 + 1) / (tf + tuning.k1) * factor
        scores[r["id"]] = scores.get(r["id"], 0.0) + part
    return scores


def ranked(scores: dict[int, float]) -> list[int]:
    return sorted(scores, key=lambda i: (-scores[i], i))


# PostgreSQL plans a prepared statement for its values at first and may switch to a generic
# plan (made without them) from its sixth execution: every plan must give the same result.
PLANS = ("force_custom_plan", "force_generic_plan")


async def test_scores_are_bm25f_over_every_matching_chunk(settings, ollama, project):
    """Every list read to its end: each chunk's score from the postings read."""
    other = Tuning(b_doc=0.75, module_lexical=0.25, k1=1.2, weights=(3.0, 1.0, 1.0, 1.0))
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        async with victor.pool.acquire() as conn:
            for tuning, plans in [(t, p) for t in (DEFAULT_TUNING, other) for p in PLANS]:
                await conn.execute(f"SET plan_cache_mode = {plans}")
                for query in QUERIES:
                    want = await reference(conn, query, tuning)
                    got = await lexical.lexical_ids(
                        conn,
                        query=query,
                        depth=len(want) + 5,
                        repos=None,
                        tuning=tuning,
                    )
                    assert got.keys() == want.keys(), query
                    for i, score in got.items():
                        assert score == pytest.approx(want[i], rel=1e-9), (query, i)
                    assert ranked(got) == ranked(want), query


async def test_a_short_read_scores_what_it_returns_exactly(settings, ollama, project, monkeypatch):
    """With lists read only two postings deep, the search is approximate, but every score it
    returns is the chunk's exact BM25F (each chosen chunk's postings read by primary key) and
    the best chunk of a clear query is still found."""
    monkeypatch.setattr(lexical, "MIN_REACH", 1)
    monkeypatch.setattr(lexical, "EXACT", 0)
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        async with victor.pool.acquire() as conn:
            for query, plans in [(q, p) for q in QUERIES for p in PLANS]:
                await conn.execute(f"SET plan_cache_mode = {plans}")
                want = await reference(conn, query, DEFAULT_TUNING)
                got = await lexical.lexical_ids(
                    conn,
                    query=query,
                    depth=3,
                    repos=None,
                    tuning=DEFAULT_TUNING,
                    reach=2,
                    rescore=2,
                )
                assert got and len(got) <= 3, query
                for i, score in got.items():
                    assert score == pytest.approx(want[i], rel=1e-9), (query, i)
                assert ranked(got)[0] == ranked(want)[0], query


async def test_the_lexical_index_follows_every_write(settings, ollama, project):
    async with open_victor(settings) as victor:
        pool = victor.pool
        await victor.index(str(project), name="shop")
        await victor.index(str(SAMPLE), name="copy")  # a second repository, untouched below
        async with pool.acquire() as conn:
            assert await postings.check(conn) == IN_STEP
            assert await conn.fetchval("SELECT count(*) FROM lex_postings") > 0
            shop = await conn.fetchval("SELECT id FROM repos WHERE name = 'shop'")
            copy_before = await conn.fetch(
                "SELECT * FROM lex_postings WHERE repo_id <> $1 ORDER BY chunk_id, term", shop
            )

        # re-index: one file edited, one deleted, one added
        cart = project / "src" / "shop" / "cart.lua"
        cart.write_text(cart.read_text() + "\nlocal function zebra_total(x) return x end\n")
        victim = next(p for p in sorted(project.rglob("*.lua")) if p != cart)
        victim.unlink()
        (project / "src" / "extra.lua").write_text(
            "--- Count the unicorns in a stable.\nlocal function count_unicorns(stable)\n"
            "  return #stable.unicorns\nend\nreturn { count_unicorns = count_unicorns }\n"
        )
        report = await victor.index(str(project), name="shop")
        assert report.files_changed == 1 and report.files_deleted == 1 and report.files_new == 1
        async with pool.acquire() as conn:
            assert await postings.check(conn) == IN_STEP
            found = await lexical.lexical_ids(
                conn, query="unicorns", depth=5, repos=[shop], tuning=DEFAULT_TUNING
            )
            assert found
            # the same search over both repositories: df and N of both, the other repo unchanged
            assert (
                await conn.fetch(
                    "SELECT * FROM lex_postings WHERE repo_id <> $1 ORDER BY chunk_id, term", shop
                )
                == copy_before
            )
            assert await search_one(victor, "zebra total", mode="lexical", top_k=1)

            # recomputed lexical fields (a LEXICAL_VERSION bump) rebuild the index
            async with conn.transaction():
                await store.refresh_lexical(conn)
            assert await postings.check(conn) == IN_STEP

        # the repository removed: none of its postings, counts or statistics remain
        await victor.remove("shop")
        async with pool.acquire() as conn:
            assert await postings.check(conn) == IN_STEP
            for table in ("lex_postings", "lex_terms", "lex_stats"):
                left = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE repo_id = $1", shop)
                assert left == 0, table
            results = await search_one(victor, "cart total", mode="lexical", top_k=3)
            assert results and {r.repo for r in results} == {"copy"}


async def test_a_version_4_database_gets_its_lexical_index(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        want = await search_one(victor, "lookup price", mode="lexical", top_k=5)
        async with victor.pool.acquire() as conn:
            # what a database at migration 4 holds: no lexical index, nor its versions (0008)
            await conn.execute("DROP TABLE lex_postings, lex_terms, lex_stats")
            await conn.execute("DROP SEQUENCE lex_version")
            await conn.execute("DELETE FROM victor_migrations WHERE id IN (5, 8)")
            assert [m.id for m in await migrations.migrate(conn)] == [5, 8]
            assert await postings.check(conn) == IN_STEP
        assert await search_one(victor, "lookup price", mode="lexical", top_k=5) == want


@pytest.mark.parametrize("exact", [lexical.EXACT, 0])
async def test_extra_chunks_get_their_exact_score_beyond_the_depth(
    settings, ollama, project, monkeypatch, exact
):
    """The chunks a caller names (the dense side's candidates) are scored exactly even when
    they are not among the best `depth`; the best `depth` stay as they were. Both ways: every
    posting of the query's words read (a small index), or each chosen chunk's (EXACT 0)."""
    monkeypatch.setattr(lexical, "EXACT", exact)
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        async with victor.pool.acquire() as conn:
            checked = 0
            for query in QUERIES:
                want = await reference(conn, query, DEFAULT_TUNING)
                if len(want) < 3:
                    continue
                top = ranked(want)[:2]
                no_word = await conn.fetchval(
                    "SELECT min(id) FROM chunks WHERE searchable AND id <> ALL($1::int8[])",
                    list(want),
                )
                assert no_word is not None
                extra = [*ranked(want)[2:], no_word]  # every other match, and a chunk of none
                got = await lexical.lexical_ids(
                    conn, query=query, depth=2, repos=None, tuning=DEFAULT_TUNING, extra=extra
                )
                assert got.keys() == want.keys(), query
                for i, score in got.items():
                    assert score == pytest.approx(want[i], rel=1e-9), (query, i)
                alone = await lexical.lexical_ids(
                    conn, query=query, depth=2, repos=None, tuning=DEFAULT_TUNING
                )
                assert ranked(alone) == top, query
                # in a search, the same statement also reads every candidate's fusion fields
                vector = await conn.fetchval("SELECT embedding FROM chunks WHERE id = $1", top[0])
                scores, candidates = await lexical.lexical_side(
                    conn,
                    query=query,
                    vector=vector,
                    depth=2,
                    repos=None,
                    tuning=DEFAULT_TUNING,
                    extra=extra,
                )
                assert scores == got, query
                assert candidates.keys() == want.keys() | {no_word}, query
                rows = await conn.fetch(
                    "SELECT id, path, kind, 1 - (embedding <=> $2) AS cos FROM chunks"
                    " WHERE id = ANY($1::int8[])",
                    list(candidates),
                    vector,
                )
                for r in rows:
                    c = candidates[r["id"]]
                    assert (c.path, c.kind) == (r["path"], r["kind"])
                    assert c.cos == pytest.approx(r["cos"], abs=1e-9)
                assert candidates[top[0]].cos == pytest.approx(1.0, abs=1e-6)
                checked += 1
            assert checked >= 2


def test_the_ordering_key_is_frozen_apart_from_the_tuning():
    """The postings' impact is only an ordering key, computed at index time from constants of
    its own (the tuning of migration 0005): changing `Tuning`'s defaults must need neither a
    migration nor a rebuild. Changing these constants changes every stored impact (`check`
    then reports the index out of step): it needs a rebuild of the lexical index."""
    assert postings.REF_WEIGHTS == (6.0, 2.0, 0.5, 0.5) and postings.REF_K1 == 6.0
    assert (postings.REF_B_DOC, postings.REF_B_BODY, postings.REF_MODULE) == (0.0, 1.0, 0.0)
    assert not hasattr(postings, "DEFAULT_TUNING") and not hasattr(postings, "Tuning")


async def test_the_impact_gives_back_the_reference_frequency(settings, ollama, project):
    """The lexical statement ranks candidates by each posting's BM25F part saturated with the
    search's own k1, recovered from the stored impact (saturated with REF_K1): inverting the
    saturation must give back the posting's field-weighted frequency at reference lengths."""
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        rows = await victor.pool.fetch("SELECT * FROM lex_postings WHERE NOT module")
    wa, wb, wc, wd = postings.REF_WEIGHTS
    k = postings.REF_K1
    assert len(rows) > 50
    for r in rows:
        doc = r["nc"] / (
            1 - postings.REF_B_DOC + postings.REF_B_DOC * r["doc_len"] / postings.REF_DOC_LEN
        )
        body = r["nd"] / (
            1 - postings.REF_B_BODY + postings.REF_B_BODY * r["body_len"] / postings.REF_BODY_LEN
        )
        tf = wa * r["na"] + wb * r["nb"] + wc * doc + wd * body
        recovered = r["impact"] * k / (k + 1 - r["impact"])
        assert recovered == pytest.approx(tf, rel=1e-5), dict(r)


async def test_a_one_repository_search_is_bm25f_within_that_repository(settings, ollama, project):
    """N, document frequencies and mean lengths are the repository's own, as before."""
    (project / "src" / "more.lua").write_text(
        "--- Look up the price of every item in the cart.\n"
        "local function price_all(cart)\n  local total = 0\n"
        "  for _, item in ipairs(cart.items) do total = total + item.price end\n"
        "  return total\nend\nreturn { price_all = price_all }\n"
    )
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        await victor.index(str(SAMPLE), name="copy")
        async with victor.pool.acquire() as conn:
            shop = await conn.fetchval("SELECT id FROM repos WHERE name = 'shop'")
            for query in QUERIES:
                for repos in ([shop], None):
                    want = await reference(conn, query, DEFAULT_TUNING, repos)
                    got = await lexical.lexical_ids(
                        conn,
                        query=query,
                        depth=len(want) + 5,
                        repos=repos,
                        tuning=DEFAULT_TUNING,
                    )
                    assert ranked(got) == ranked(want), (query, repos)
                    for i, score in got.items():
                        assert score == pytest.approx(want[i], rel=1e-9), (query, i)
