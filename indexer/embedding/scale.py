"""Each embedding model's cosine scale, mapped onto the one Victor's ranking was tuned on.

Fusion adds a chunk's cosine to its lexical share, the ranking stage weighs cosines, and
`min_score` is a fused score: all were measured with all-MiniLM-L6-v2, on whose scale a
question and unrelated code score about 0.04 and a question and the code that answers it about
0.42 (the probes' means). Other models use other ranges (some put every pair above 0.3),
which shifts the balance between the cosine and the lexical share and lets off-topic chats
through the floor. So when an index is bound to a model, Victor embeds the probes of
`indexer.embedding.probes` with it and records where its matching and unrelated pairs fall
(`Scale`); every search maps the model's cosines linearly onto all-MiniLM-L6-v2's
(`Scale.mapping`): those two points land where all-MiniLM-L6-v2 puts them, and the order of
the cosines is kept. For all-MiniLM-L6-v2 itself the map is the identity. A linear map fixes
a model's floor and spread, not what it finds: the ranking's weights were still learned on
all-MiniLM-L6-v2's neighbours (bench/README.md, "A model on another cosine scale").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from indexer.embedding.base import Embedder
from indexer.embedding.probes import PROBES

# A model that barely tells a matching pair from an unrelated one would be stretched without
# bound: its cosines are left as they are (`Scale.mapping`).
MIN_GAP = 0.02
# all-MiniLM-L6-v2 served another way (Ollama's conversion, another torch) lands within a few
# 1e-4 of the reference: closer than this, a model's cosines are left as they are.
SAME = 0.005


@dataclass(frozen=True, slots=True)
class Scale:
    """Where one model puts the probes: the mean cosine of a question and the code that
    answers it, and of a question and another probe's code."""

    related: float
    unrelated: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Scale:
        data = json.loads(text)
        return cls(float(data["related"]), float(data["unrelated"]))

    def mapping(self) -> Mapping:
        """The linear map taking this model's cosines onto the reference's scale."""
        gap = self.related - self.unrelated
        near = abs(self.related - REFERENCE.related) + abs(self.unrelated - REFERENCE.unrelated)
        if gap < MIN_GAP or near <= SAME:
            return IDENTITY
        slope = (REFERENCE.related - REFERENCE.unrelated) / gap
        return Mapping(slope, REFERENCE.unrelated - slope * self.unrelated)


@dataclass(frozen=True, slots=True)
class Mapping:
    """cos -> slope * cos + offset (a float or a NumPy array). The identity's 1.0 and 0.0
    give every cosine back to the bit."""

    slope: float
    offset: float

    def __call__(self, cos):
        return self.slope * cos + self.offset

    @property
    def identity(self) -> bool:
        return self.slope == 1.0 and self.offset == 0.0


IDENTITY = Mapping(1.0, 0.0)

# all-MiniLM-L6-v2 (no prompts) on the probes, as `measure` computes it (tests/test_scale.py
# measures it again, through the Ollama stand-in).
REFERENCE = Scale(related=0.4194, unrelated=0.0395)


async def measure(embedder: Embedder) -> Scale:
    """The probes' scale with this embedder (its query and document prompts included): one
    request for the questions, one for the code. Rounded to 4 decimals: finer is noise."""
    questions = await embedder.embed_queries([q for q, _ in PROBES])
    code = await embedder.embed_documents([c for _, c in PROBES])
    q = _unit(np.asarray(questions, np.float64))
    c = _unit(np.asarray(code, np.float64))
    cos = q @ c.T
    n = len(PROBES)
    related = float(np.trace(cos)) / n
    unrelated = (float(cos.sum()) - float(np.trace(cos))) / (n * n - n)
    return Scale(round(related, 4), round(unrelated, 4))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
