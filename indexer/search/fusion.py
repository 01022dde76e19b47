"""Fusing the sides into one score in [0, 1], with the priors (module chunks, test files), and
the knobs of ranking (`Tuning`)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from indexer.embedding.scale import IDENTITY, Mapping
from indexer.search.results import Candidate, Mode


@dataclass(frozen=True, slots=True)
class Tuning:
    """The knobs of ranking. alpha, weights, k1, lexical_half and b_doc are what the folds of a
    leave-one-corpus-out study over 8 Lua codebases agree on (bench/README.md, "Ranking
    levers": alpha 7 of 8 folds, k1 7, weights 5, half 8, b_doc 6; the same setting is the
    best on all 8), measured through the core on every cached corpus; the rest was measured
    on Penlight and Roact."""

    # BM25F of the hybrid: weight of a word in each field (A name, B module/params, C doc/calls,
    # D body)
    weights: tuple[float, float, float, float] = (6.0, 2.0, 1.0, 1.0)
    k1: float = 1.2  # saturates early: a second occurrence adds little, a new query word a lot
    # 0: the doc field is not length-normalised. The old lexical SQL passed b_doc and
    # module_lexical where PostgreSQL inferred integer parameters, so 0.75 and 0.25 ran as 0:
    # every figure in bench/README.md was measured with 0, which these defaults now say.
    b_doc: float = 0.0
    b_body: float = 1.0  # and of the body; names are short and not normalised
    # lexical-only mode (the fallback when the embedder is down) keeps the BM25F it had: the
    # cross-corpus tuning was of the hybrid; through the core, these beat the hybrid's on doc
    # comments (R@5 0.759 vs 0.698) and keep lexical scores on the scale min_score expects
    lexical_weights: tuple[float, float, float, float] = (6.0, 2.0, 0.5, 0.5)
    lexical_k1: float = 6.0
    depth: int = 50  # candidates taken from each side before fusing
    # hybrid: weight of the lexical share next to the cosine (1: as much; 0.1 before the
    # cross-corpus tuning)
    alpha: float = 1.0
    fusion: Literal["score", "rrf"] = "score"
    rrf_k: int = 10  # for fusion="rrf"
    lexical_half: float = 30.0  # the BM25F score whose lexical share is 0.5
    symbols: bool = True  # put the definition of a named symbol first
    # hybrid, score fusion: re-order the fused top 50 with the learned stage
    # (`indexer.search.ranking`; bench/README.md, "A learned ranking stage in the core")
    stage: bool = True
    stage_model: str = ""  # the stage's model file; "": the one Victor ships
    module_lexical: float = 0.0  # lexical score factor of module/window chunks (see b_doc)
    module_dense: float = 0.8  # cosine factor of module/window chunks
    tests: float = 0.8  # score factor of chunks in test/spec files


DEFAULT_TUNING = Tuning()


_TEST_PATH = re.compile(r"(^|/)(tests?|spec|specs|__tests__)/|[_.-](spec|test)\.lua$|(^|/)test[_-]")


@functools.lru_cache(maxsize=65536)  # a search asks for each of its ~100 candidates' paths
def is_test_path(path: str) -> bool:
    """Test and spec files: a question about the code is rarely about its tests."""
    return _TEST_PATH.search(path.lower()) is not None


def fuse(
    candidates: dict[int, Candidate],
    dense: dict[int, float],
    lex: dict[int, float],
    mode: Mode,
    tuning: Tuning,
    cosines: Mapping = IDENTITY,
) -> dict[int, float]:
    """id -> score in [0, 1] for the mode (see the module docstring); `cosines` puts the
    model's cosines on the scale the knobs were tuned on (`indexer.embedding.scale`)."""
    rrf = mode == "hybrid" and tuning.fusion == "rrf"
    dense_rank = _ranks(dense) if rrf else {}
    lex_rank = _ranks(lex) if rrf else {}
    scores: dict[int, float] = {}
    for i, candidate in candidates.items():
        cos = cosines(candidate.cos)
        if candidate.kind in ("module", "window"):
            cos *= tuning.module_dense
        cos = max(0.0, cos)
        if mode == "dense":
            score = cos
        elif mode == "lexical":
            score = lex.get(i, 0.0) / (lex.get(i, 0.0) + tuning.lexical_half)
        elif rrf:
            score = sum(1 / (tuning.rrf_k + r[i]) for r in (dense_rank, lex_rank) if i in r) / (
                2 / (tuning.rrf_k + 1)
            )
        else:
            s = lex.get(i, 0.0)
            score = (cos + tuning.alpha * s / (s + tuning.lexical_half)) / (1 + tuning.alpha)
        if is_test_path(candidate.path):
            score *= tuning.tests
        scores[i] = score
    return scores


def _ranks(scores: dict[int, float]) -> dict[int, int]:
    """id -> its rank by score, 1 the best."""
    return {i: n for n, i in enumerate(sorted(scores, key=lambda i: -scores[i]), 1)}
