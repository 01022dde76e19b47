"""The ranking stage of a hybrid search: a linear model re-orders the fused top STAGE_DEPTH.

Fusion scores each candidate by its cosine and its BM25F share alone. The stage also weighs
what fusion cannot see: how much of the query's idf the function's *name* holds, the
candidate's standing against the best one, whether it calls or is called by one of the best
candidates (flow questions are answered by a chain of functions), whether its file holds
other strong candidates, test files. Trained on the doc-comment and developer-question sets
of 14 Lua codebases; each codebase held out in turn (trained on the other 13), it ranks better
than fusion on both sets (bench/README.md, "A learned ranking stage in the core").

The model is a JSON of weights per feature name (`ranking_model.json`, written by `python -m
bench.retrieval.stage --train`), evaluated with NumPy: no model library at run time. A
re-ordered result keeps a fused score, handed out in the new order: the stage changes the
order, not the scale `min_score` was calibrated on.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer import words

PART_K1 = 1.2  # saturation of the per-field BM25 parts (the lexical statement's, see lexical.py)
CALL_TOP = 10  # call agreement: calls to/from the best CALL_TOP fused candidates count
STAGE_DEPTH = 50  # fused candidates the stage re-orders: the depth it was trained on
MODEL_PATH = Path(__file__).with_name("ranking_model.json")

FEATURES = (
    "fused", "fused_gap", "fused_rank", "cos", "cos_gap", "cos_rank",
    "part_name", "part_context", "part_doc", "part_body", "cover_name", "cover_any",
    "name_in_query", "module", "test", "log_lines", "file_others", "file_best_gap",
    "calls_top", "called_by_top",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Candidates:
    """The fused candidates of one query, as arrays of the same length n."""

    fused: np.ndarray  # the fused score (`fusion.fuse`)
    cos: np.ndarray  # the cosine to the query (0 without a vector)
    parts: np.ndarray  # (n, 4) sum over query words of idf x tf/(tf + k1) x (k1 + 1), per field
    cover: np.ndarray  # (n, 2) share of the query's idf found in the name field / any field
    module: np.ndarray  # bool: a module or window chunk
    test: np.ndarray  # bool: a test/spec file
    lines: np.ndarray  # the chunk's line count
    paths: list[str]
    symbols: list[str]
    texts: list[str]  # each chunk's code, lower-cased (calls: `name(` of a candidate's name)
    query: str = ""


def _log_rank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(-x, kind="stable")
    r = np.empty(len(x), np.float32)
    r[order] = np.arange(1, len(x) + 1)
    return np.log(r)


@functools.lru_cache(maxsize=65536)  # the same symbols come back turn after turn
def _name_words(symbol: str) -> frozenset[str]:
    """`M.get_selection` -> {get, selection}."""
    return frozenset(words.split_identifier(words.symbol_key(symbol)))


def _name_in_query(symbols: list[str], query: str) -> np.ndarray:
    """Share of each symbol's words (`M.get_selection` -> get, selection) in the query."""
    q = {w.lower() for w in words.words(query)}
    out = np.zeros(len(symbols), np.float32)
    if not q:
        return out
    for i, s in enumerate(symbols):
        name = _name_words(s)
        if name:
            out[i] = len(name & q) / len(name)
    return out


def _agreement(c: Candidates) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Other candidates of the same file (how many, log; the best of their fused scores as
    a gap to the best overall) and calls to / from the best CALL_TOP candidates: a candidate
    calls another when its code holds the other's last name and `(` (a substring test; the
    call regex of `words.called_names` ranked the same at three times the cost)."""
    n = len(c.paths)
    files: dict[str, list[int]] = {}
    for i, p in enumerate(c.paths):
        files.setdefault(p, []).append(i)
    others = np.zeros(n, np.float32)
    best = np.full(n, -1.0, np.float32)
    top = float(c.fused.max()) if n else 0.0
    for members in files.values():
        if len(members) < 2:
            continue
        scores = c.fused[members]
        for k, i in enumerate(members):
            others[i] = len(members) - 1
            best[i] = float(np.delete(scores, k).max()) - top
    top_ids = [int(i) for i in np.argsort(-c.fused, kind="stable")[:CALL_TOP]]
    keys = [words.symbol_key(s) for s in c.symbols]
    calls = [k + "(" if k else "" for k in keys]  # how code calls it: `lookup(`, `M.lookup(`
    calls_top = np.zeros(n, np.float32)
    called_by = np.zeros(n, np.float32)
    for j in top_ids:
        if not keys[j]:
            continue
        for i in range(n):
            if j == i or keys[i] == keys[j]:
                continue
            calls_top[i] += calls[j] in c.texts[i]
            called_by[i] += bool(calls[i]) and calls[i] in c.texts[j]
    return np.log1p(others), best, np.log1p(calls_top), np.log1p(called_by)


def features(c: Candidates) -> np.ndarray:
    """(n, len(FEATURES)) float32."""
    n = len(c.fused)
    if n == 0:
        return np.zeros((0, len(FEATURES)), np.float32)
    others, file_best, calls_top, called_by = _agreement(c)
    cols = [
        c.fused, c.fused - c.fused.max(), _log_rank(c.fused),
        c.cos, c.cos - c.cos.max(), _log_rank(c.cos),
        *np.log1p(np.asarray(c.parts, np.float32)).T, *np.asarray(c.cover, np.float32).T,
        _name_in_query(c.symbols, c.query), c.module, c.test, np.log1p(c.lines),
        others, file_best, calls_top, called_by,
    ]  # fmt: skip
    return np.stack([np.asarray(x, np.float32) for x in cols], axis=1)


@dataclass(frozen=True)
class Model:
    """A linear scorer: weights per feature (by name) and a bias."""

    names: list[str]
    weights: np.ndarray
    bias: float
    version: int = 1
    about: str = ""

    def score(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights + self.bias

    def save(self, path: Path, about: str = "") -> None:
        path.write_text(
            json.dumps(
                {
                    "version": self.version,
                    "about": about or self.about,
                    "bias": round(self.bias, 6),
                    "weights": {
                        n: round(float(w), 6) for n, w in zip(self.names, self.weights, strict=True)
                    },
                },
                indent=1,
            )
            + "\n"
        )

    @classmethod
    def load(cls, path: Path) -> Model:
        """A model whose features are exactly FEATURES (in any order in the file)."""
        data = json.loads(path.read_text())
        got = data["weights"]
        missing = [f for f in FEATURES if f not in got]
        extra = [f for f in got if f not in FEATURES]
        if missing or extra:
            raise ValueError(
                f"{path}: ranking model does not match this code's features "
                f"(missing {missing}, unknown {extra}); retrain it with "
                "`python -m bench.retrieval.stage --train`"
            )
        w = np.array([float(got[f]) for f in FEATURES], np.float64)
        return cls(list(FEATURES), w, float(data["bias"]), int(data["version"]), data["about"])


@functools.cache
def model_at(path: str = "") -> Model:
    """The model in the file `path` ("": the one Victor ships, `MODEL_PATH`), read once per
    process."""
    return Model.load(Path(path) if path else MODEL_PATH)


def reorder(c: Candidates, named: int, model: Model) -> tuple[list[int], list[float]]:
    """The candidates' new order, as positions into `c`, and the scores of the re-ordered
    ones in that order. The first `named` (the definitions of a symbol the query names) stay
    first; the others go by the model, each given the fused score of the rank it lands on."""
    rest = np.arange(named, len(c.fused))
    model_scores = model.score(features(c))[rest]
    moved = rest[np.argsort(-model_scores, kind="stable")]
    values = np.sort(c.fused[rest])[::-1]
    return [*range(named), *moved.tolist()], [float(v) for v in values]
