"""The ranking stage in the core (indexer/search/ranking.py): what the lexical statement hands it,
how it re-orders a hybrid search, and the model Victor ships. Real PostgreSQL, the Ollama
stand-in's real vectors."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.search import Tuning, lexical, ranking
from indexer.service import open_victor
from tests.conftest import SAMPLE
from tests.support.search import results as search_one

QUERIES = [
    "look up the price of a product",
    "apply the loyalty discount for members",
    "remove a product from the cart",
    "trim the spaces around a string",
]


@pytest.fixture
def shop(tmp_path) -> Path:
    dest = tmp_path / "shop"
    shutil.copytree(SAMPLE, dest)
    return dest


def _model(folder: Path, **weights: float) -> Path:
    """A model file whose every weight is 0 but `weights`."""
    w = np.array([weights.get(f, 0.0) for f in ranking.FEATURES])
    path = folder / "model.json"
    ranking.Model(list(ranking.FEATURES), w, 0.0).save(path, "test model")
    return path


# Each chunk's occurrences of the query's words per field, from the chunk's own tsvector
# (not from the postings the statement reads), and each word's document frequency.
_COUNTS = """
SELECT c.id, u.lexeme, w::text AS field, count(*)::int AS n
FROM chunks c, unnest(c.lex) AS u, unnest(u.weights) AS w
WHERE c.id = ANY($1::int8[]) AND u.lexeme = ANY($2::text[])
GROUP BY 1, 2, 3
"""
_DF = """
SELECT t AS lexeme, (SELECT count(*) FROM chunks WHERE searchable AND lex @@ t::tsquery) AS df
FROM unnest($1::text[]) AS t
"""


async def _expected(conn, query: str, ids: list[int]) -> dict[int, tuple[list[float], list]]:
    """id -> (parts, cover) computed here the way the stage was trained (bench.retrieval.levers)."""
    lexemes = await lexical.query_lexemes(conn, query)
    n = await conn.fetchval("SELECT count(*) FROM chunks WHERE searchable")
    df = {r["lexeme"]: r["df"] for r in await conn.fetch(_DF, lexemes)}
    idf = {w: math.log(1 + (n - d + 0.5) / (d + 0.5)) if d else 0.0 for w, d in df.items()}
    total = sum(idf.values())
    counts: dict[int, dict[str, dict[str, int]]] = {}
    for r in await conn.fetch(_COUNTS, ids, lexemes):
        counts.setdefault(r["id"], {}).setdefault(r["lexeme"], {})[r["field"]] = r["n"]
    k1 = ranking.PART_K1
    out = {}
    for i in ids:
        parts = [0.0] * 4
        cover = [0.0, 0.0]
        for word, fields in counts.get(i, {}).items():
            for f, tf in fields.items():
                parts["ABCD".index(f)] += idf[word] * tf * (k1 + 1) / (tf + k1)
            cover[0] += idf[word] if fields.get("A") else 0.0
            cover[1] += idf[word]
        out[i] = (parts, [c / total for c in cover])
    return out


async def test_the_lexical_side_hands_the_stage_each_candidates_parts(settings, ollama, shop):
    """Per field, the query words' idf x saturated count, and the share of their idf in the
    name and in any field: for the lexical side's own candidates and for the extra ones."""
    checked = 0
    async with open_victor(settings) as victor:
        await victor.index(str(shop), name="shop")
        async with victor.pool.acquire() as conn:
            every = [r["id"] for r in await conn.fetch("SELECT id FROM chunks WHERE searchable")]
            for query in QUERIES:
                _, candidates = await lexical.lexical_side(
                    conn,
                    query=query,
                    vector=None,
                    depth=3,
                    repos=None,
                    tuning=Tuning(),
                    extra=every,
                )
                want = await _expected(conn, query, list(candidates))
                for i, c in candidates.items():
                    parts, cover = want[i]
                    assert c.parts == pytest.approx(parts, rel=1e-6), (query, c.symbol)
                    assert c.cover == pytest.approx(cover, rel=1e-6), (query, c.symbol)
                    checked += any(parts)
                    assert c.symbol and c.lines >= 1
    assert checked >= 8  # candidates with a match, not only zeros


async def test_the_stage_reorders_by_its_model_and_keeps_the_fused_scale(
    settings, ollama, shop, tmp_path
):
    """A model that only values calling one of the best candidates puts the caller of the
    function asked about first; the results are the same candidates, carrying the fused
    scores in the same descending order (min_score means what it did)."""
    model = _model(tmp_path, calls_top=5.0)
    query = "look up the price of a product"
    async with open_victor(settings) as victor:
        await victor.index(str(shop), name="shop")
        plain = await search_one(victor, query, top_k=50, tuning=Tuning(stage=False))
        staged = await search_one(victor, query, top_k=50, tuning=Tuning(stage_model=str(model)))
    assert plain[0].symbol == "M.lookup"
    assert staged[0].symbol == "Cart:total"  # calls prices.lookup and prices.apply_discount
    assert sorted((r.path, r.symbol) for r in staged) == sorted((r.path, r.symbol) for r in plain)
    assert [r.score for r in staged] == [r.score for r in plain]


async def test_a_named_definition_stays_first_and_other_modes_are_not_staged(
    settings, ollama, shop, tmp_path
):
    model = _model(tmp_path, test=9.0, module=9.0)  # would put any test or module chunk first
    tuning = Tuning(stage_model=str(model))
    async with open_victor(settings) as victor:
        await victor.index(str(shop), name="shop")
        named = await search_one(victor, "where is Cart:total defined", tuning=tuning)
        assert named[0].symbol == "Cart:total" and named[0].score == 1.0
        assert named[1].kind == "module"  # the model's order after the named definition
        for mode in ("dense", "lexical"):
            query = "total price of the cart"
            staged = await search_one(victor, query, mode=mode, tuning=tuning)
            plain = await search_one(victor, query, mode=mode, tuning=Tuning(stage=False))
            assert staged == plain, mode


def test_reorder_keeps_the_named_first_and_hands_out_the_fused_scores():
    c = ranking.Candidates(
        fused=np.array([0.9, 0.5, 0.4, 0.3], np.float32),
        cos=np.zeros(4, np.float32),
        parts=np.zeros((4, 4), np.float32),
        cover=np.zeros((4, 2), np.float32),
        module=np.zeros(4, bool),
        test=np.array([True, False, False, True]),
        lines=np.ones(4, np.float32),
        paths=["a.lua", "b.lua", "c.lua", "spec/d_spec.lua"],
        symbols=["a", "b", "c", "d"],
        texts=["", "", "", ""],
    )
    w = np.array([1.0 if f == "test" else 0.0 for f in ranking.FEATURES])
    order, values = ranking.reorder(c, 1, ranking.Model(list(ranking.FEATURES), w, 0.0))
    assert order == [0, 3, 1, 2]  # the named one first; then the test file, then in order
    assert values == pytest.approx([0.5, 0.4, 0.3])


def test_the_shipped_model_matches_the_features():
    model = ranking.model_at()
    assert model.names == list(ranking.FEATURES)
    assert np.isfinite(model.weights).all() and model.weights.any()
    assert "14 corpora" in model.about


async def test_victor_ranking_stage_false_turns_it_off(settings, ollama, shop, tmp_path):
    model = _model(tmp_path, calls_top=5.0)  # as above: would put Cart:total first
    query = "look up the price of a product"
    off = settings.model_copy(update={"ranking_stage": False})
    async with open_victor(off) as victor:
        await victor.index(str(shop), name="shop")
        found = await search_one(victor, query, tuning=Tuning(stage_model=str(model)))
        assert found[0].symbol == "M.lookup"
