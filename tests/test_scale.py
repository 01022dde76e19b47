"""An embedding model's cosine scale (`indexer.embedding.scale`): measured on the probes when
an index is bound to the model, recorded with it, and mapped onto all-MiniLM-L6-v2's at
search time, against a real PostgreSQL and the Ollama stand-in. The stand-in's scaled model
answers all-MiniLM-L6-v2's vectors with one more component, so its cosines are
0.6 x cos + 0.4: the same neighbours, on another scale (as models with a high floor have)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from pydantic import SecretStr

from indexer import store
from indexer.embedding import make_embedder, scale
from indexer.indexing.reembed import reembed
from indexer.service import open_victor
from tests.conftest import SAMPLE, victor_cli
from tests.support import pg
from tests.support.search import results as search_one

SCALED = "scaled-minilm"
B = 0.6
QUERIES = (
    "how is a discount applied to a price",
    "what happens when the cart is checked out",
    "where is a price formatted for display",
)


@pytest.fixture
def project(tmp_path):
    return shutil.copytree(SAMPLE, tmp_path / "shop")


@pytest.fixture
async def scaled_settings(settings, ollama, pg_admin_url):
    """Settings for the scaled model, on a database of its own."""
    ollama.add_scaled_model(SCALED, B)
    url = await pg.create_database(pg_admin_url)
    return settings.model_copy(update={"embed_model": SCALED, "database_url": SecretStr(url)})


def test_a_scale_maps_its_two_points_onto_the_reference():
    measured = scale.Scale(related=0.7, unrelated=0.45)
    cosines = measured.mapping()
    assert cosines(0.7) == pytest.approx(scale.REFERENCE.related)
    assert cosines(0.45) == pytest.approx(scale.REFERENCE.unrelated)
    assert cosines(0.6) > cosines(0.5)  # the order of the cosines is kept
    assert scale.Scale.from_json(measured.to_json()) == measured


def test_a_model_that_cannot_tell_pairs_apart_is_left_as_it_is():
    assert scale.Scale(related=0.41, unrelated=0.40).mapping().identity
    near = scale.Scale(scale.REFERENCE.related + 0.002, scale.REFERENCE.unrelated - 0.002)
    assert near.mapping().identity


async def test_all_minilm_through_ollama_is_the_reference(settings, ollama):
    measured = await scale.measure(make_embedder(settings))
    assert measured.related == pytest.approx(scale.REFERENCE.related, abs=0.002)
    assert measured.unrelated == pytest.approx(scale.REFERENCE.unrelated, abs=0.002)
    assert measured.mapping().identity
    assert ollama.requests == 2  # the questions and the code: one request each


async def test_the_scaled_model_is_measured_on_its_own_scale(scaled_settings, ollama):
    measured = await scale.measure(make_embedder(scaled_settings))
    # cos' = B cos + 1 - B, so the map found is the inverse: cos = (cos' - 1 + B) / B
    cosines = measured.mapping()
    assert cosines.slope == pytest.approx(1 / B, rel=0.01)
    assert cosines.offset == pytest.approx(-(1 - B) / B, abs=0.01)


async def test_a_model_on_another_scale_ranks_and_scores_as_all_minilm(
    settings, scaled_settings, ollama, project
):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        plain = {q: await search_one(victor, q, top_k=5) for q in QUERIES}
    async with open_victor(scaled_settings) as victor:
        await victor.index(str(project), name="shop")
        space = await store.embedding_space(victor.pool)
        assert space.model == SCALED and space.scale == await scale.measure(victor.embedder)
        mapped = {q: await search_one(victor, q, top_k=5) for q in QUERIES}
        await victor.pool.execute("DELETE FROM victor_meta WHERE key = 'embed_scale'")
        unmapped = {q: await search_one(victor, q, top_k=5) for q in QUERIES}
    for q in QUERIES:
        assert [r.symbol for r in mapped[q]] == [r.symbol for r in plain[q]], q
        for a, b, c in zip(plain[q], mapped[q], unmapped[q], strict=True):
            # mapped: all-MiniLM-L6-v2's scores (the chunks' vectors average two embeddings,
            # so the scaled model's cosines are b x cos + 1 - b only nearly)
            assert b.score == pytest.approx(a.score, abs=0.02), q
            # not mapped: the same model's scores sit well above them
            assert c.score > a.score + 0.05, q


async def test_an_index_bound_before_scales_gets_its_scale_once(settings, ollama, project, caplog):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        await victor.pool.execute("DELETE FROM victor_meta WHERE key = 'embed_scale'")
        # with the embedder down, a run with nothing to embed still succeeds, unmeasured
        ollama.fail_status = 503
        with caplog.at_level(logging.WARNING, logger="indexer"):
            report = await victor.index(str(project), name="shop")
        assert report.chunks_embedded == 0 and ollama.requests >= 1
        # as docs/troubleshooting.md quotes it; the type only, no host
        assert "cosine scale not measured (EmbedderUnavailable); the next run measures it" in (
            caplog.text
        )
        assert (await store.embedding_space(victor.pool)).scale is None
        ollama.reset()
        await victor.index(str(project), name="shop")
        assert ollama.requests == 2  # the probes, nothing re-embedded
        assert (await store.embedding_space(victor.pool)).scale is not None
        ollama.reset()
        await victor.index(str(project), name="shop")
        assert ollama.requests == 0


async def test_reembed_records_the_new_models_scale(settings, ollama, project):
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="shop")
        before = (await store.embedding_space(victor.pool)).scale
    ollama.add_scaled_model(SCALED, B)
    scaled = settings.model_copy(update={"embed_model": SCALED})
    async with open_victor(scaled) as victor:
        await reembed(victor.pool, victor.embedder)
        after = await store.embedding_space(victor.pool)
    assert after.model == SCALED
    assert after.scale == await scale.measure(make_embedder(scaled)) != before


def test_status_and_doctor_say_where_the_model_sits(cli_env, ollama):
    victor_cli("index", str(SAMPLE), "--name", "shop", env=cli_env)
    model = json.loads(victor_cli("status", "--json", env=cli_env).stdout)["model"]
    assert model["scale"] == {
        "related": pytest.approx(scale.REFERENCE.related, abs=0.002),
        "unrelated": pytest.approx(scale.REFERENCE.unrelated, abs=0.002),
    }
    doctor = victor_cli("doctor", env=cli_env, check=False)
    (line,) = [x for x in doctor.stdout.splitlines() if "model match" in x]
    assert "on the scale the ranking was tuned on" in line, line
