"""Tests of the ranking stage's features and model file (indexer/search/ranking.py) and of its
study (bench/retrieval/stage.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indexer.search.ranking import FEATURES, Candidates, Model, features


def _candidates() -> Candidates:
    """Four candidates: two of lua/save.lua (one calls the other), a test, a module chunk."""
    return Candidates(
        fused=np.array([0.5, 0.4, 0.3, 0.2], np.float32),
        cos=np.array([0.6, 0.7, 0.2, 0.1], np.float32),
        parts=np.array([[1, 0, 0, 2], [0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]], np.float32),
        cover=np.array([[0.5, 1.0], [0, 0.5], [0, 0], [0, 0.2]], np.float32),
        module=np.array([False, False, False, True]),
        test=np.array([False, False, True, False]),
        lines=np.array([10, 3, 20, 40], np.float32),
        paths=["lua/save.lua", "lua/save.lua", "spec/save_spec.lua", "lua/util.lua"],
        symbols=["M.save_buffer", "write_file", "it", "util"],
        texts=[
            "function m.save_buffer() write_file(buf) vim.notify('saved') end",
            "local function write_file(buf) end",
            "it('saves', function() m.save_buffer() end)",
            "return util",
        ],
        query="what happens when I save the buffer",
    )


def test_features_read_ranks_agreement_and_names():
    c = _candidates()
    x = features(c)
    assert x.shape == (4, len(FEATURES)) and x.dtype == np.float32
    col = {n: x[:, i] for i, n in enumerate(FEATURES)}
    assert col["fused_gap"].tolist() == pytest.approx([0.0, -0.1, -0.2, -0.3])
    assert col["cos_rank"][1] == 0.0  # the best cosine ranks first: log(1)
    # same file: save_buffer and write_file see each other; the others see no one
    assert (col["file_others"] > 0).tolist() == [True, True, False, False]
    assert col["file_best_gap"][1] == pytest.approx(0.0)  # its neighbour is the best
    assert col["file_best_gap"][0] == pytest.approx(-0.1)
    # save_buffer calls write_file (a top candidate); write_file is called by save_buffer;
    # the spec's call counts for save_buffer's called_by
    assert col["calls_top"][0] > 0 and col["calls_top"][1] == 0
    assert col["called_by_top"][1] > 0 and col["called_by_top"][0] > 0
    assert col["name_in_query"].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert col["test"].tolist() == [0, 0, 1, 0] and col["module"].tolist() == [0, 0, 0, 1]


def test_no_candidates_no_rows():
    c = _candidates()
    empty = Candidates(
        *(v[:0] for v in (c.fused, c.cos, c.parts, c.cover, c.module, c.test, c.lines)),
        [], [], [],
    )  # fmt: skip
    assert features(empty).shape == (0, len(FEATURES))


def test_model_file_round_trip_and_mismatch(tmp_path):
    w = np.arange(len(FEATURES), dtype=np.float64) / 10
    path = tmp_path / "model.json"
    Model(list(FEATURES), w, -0.5).save(path, "test model")
    loaded = Model.load(path)
    assert loaded.about == "test model" and loaded.bias == -0.5
    x = features(_candidates())
    assert loaded.score(x) == pytest.approx(x @ w - 0.5, rel=1e-5)
    data = json.loads(path.read_text())
    data["weights"]["not_a_feature"] = data["weights"].pop("fused")
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"missing \['fused'\].*unknown \['not_a_feature'\]"):
        Model.load(path)


def test_stage_reads_a_pool_as_the_core_would_and_prf_moves_the_query():
    from dataclasses import replace

    from bench.retrieval.stage import TUNED, candidates, hits_with_scores, prf_fused
    from bench.retrieval.study import fused
    from tests.test_bench_retrieval import _pools

    cp, pool = _pools()
    c = candidates(cp, pool)
    assert c.fused.tolist() == pytest.approx(fused(cp, pool, TUNED).tolist())
    # one query word (idf 2): in the name of the third candidate, 3 times in the second's body
    assert c.parts[2].tolist() == pytest.approx([2.0 * 2.2 / 2.2, 0, 0, 0])
    assert c.parts[1, 3] == pytest.approx(2.0 * 3 * 2.2 / 4.2)
    assert c.cover.tolist() == [[0, 0], [0, 1], [1, 1]]
    # re-ordered hits keep the fused values, best first
    hits = hits_with_scores(cp, pool, np.array([2, 0, 1]), c.fused)
    assert [h.symbol for h in hits] == ["M.open_file", "t", "M.close"]
    assert [h.score for h in hits] == pytest.approx(sorted(c.fused.tolist(), reverse=True))
    # without vectors, or with beta 0, PRF is the fusion; with them, the query moves towards
    # the best fused candidate, which gains cosine over one pointing elsewhere
    assert prf_fused(cp, pool, (0.5, 1)).tolist() == pytest.approx(c.fused.tolist())
    vecs = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0]], np.float16)
    q = np.array([0.8, 0.6, 0], np.float16)
    cos = (vecs.astype(np.float32) @ q.astype(np.float32)).astype(np.float32)  # .8 .6 .96
    moved = replace(pool, vecs=vecs, qvec=q, cos=cos)
    base, prf = fused(cp, moved, TUNED), prf_fused(cp, moved, (1.0, 1))
    assert int(np.argmax(base)) == 2
    assert prf[2] > base[2] and prf[0] < base[0]  # towards the best, away from the other
    assert prf_fused(cp, moved, (0.0, 1)).tolist() == pytest.approx(base.tolist())
