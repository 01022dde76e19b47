"""The NumPy forward pass of all-MiniLM-L6-v2 gives the vectors sentence-transformers gives
(the ones an index built with the local backend holds)."""

from __future__ import annotations

import numpy as np

from indexer.embedding.local import load_local_model
from indexer.embedding.minilm import load_minilm
from tests.conftest import SAMPLE


def test_numpy_minilm_vectors_equal_sentence_transformers():
    texts = [
        "where is trim defined",
        "apply the loyalty discount for members",
        "local function café(prix)\n  return prix * 2\nend",
        "x",
        "",
        "word " * 400,  # longer than the model's 256 tokens: truncated the same way
        *(p.read_text() for p in sorted(SAMPLE.rglob("*.lua"))),
    ]
    ours = load_minilm().encode(texts)
    theirs = load_local_model().encode(texts, batch_size=32, normalize_embeddings=True)
    assert ours.shape == theirs.shape == (len(texts), 384)
    cosines = (ours * theirs).sum(1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    )
    assert cosines.min() >= 0.9999, cosines
