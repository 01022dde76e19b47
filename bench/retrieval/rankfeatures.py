"""Features of a learned ranking stage over the fused candidates of one query, and its linear
model, as the core would run them (bench/README.md, "A learned stage on the tuned fusion").

Written against what `indexer.search._one` has for every fused candidate (the fused score,
the cosine, per-field BM25 parts the lexical statement could return, the chunk's path, symbol,
kind, lines and text) and vectorised where the work is per candidate, so it can move to
`indexer/search/` unchanged if a model wins held-out; the study (`stage.py`) found none that
wins on both benchmarks, so the core does not run it. The model is a JSON of weights per
feature name, evaluated with NumPy (no model library at run time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer import words

PART_K1 = 1.2  # saturation of the per-field BM25 parts (the lexical statement's, see lexical.py)
CALL_TOP = 10  # call agreement: calls to/from the best CALL_TOP fused candidates count

FEATURES = (
    "fused", "fused_gap", "fused_rank", "cos", "cos_gap", "cos_rank",
    "part_name", "part_context", "part_doc", "part_body", "cover_name", "cover_any",
    "name_in_query", "module", "test", "log_lines", "file_others", "file_best_gap",
    "calls_top", "called_by_top", "query_words",
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
    calls: list[list[str]]  # names each chunk's code calls (`words.called_names`)
    query_words: int  # the query's distinct lexemes
    query: str = ""


def _log_rank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(-x, kind="stable")
    r = np.empty(len(x), np.float32)
    r[order] = np.arange(1, len(x) + 1)
    return np.log(r)


def _name_in_query(symbols: list[str], query: str) -> np.ndarray:
    """Share of each symbol's words (`M.get_selection` -> get, selection) in the query."""
    q = {w.lower() for w in words.words(query)}
    out = np.zeros(len(symbols), np.float32)
    if not q:
        return out
    for i, s in enumerate(symbols):
        name = {w.lower() for w in words.split_identifier(words.symbol_key(s))}
        if name:
            out[i] = len(name & q) / len(name)
    return out


def _agreement(c: Candidates) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Other candidates of the same file (how many, log; the best of their fused scores as
    a gap to the best overall) and calls to / from the best CALL_TOP candidates."""
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
    called = [{words.symbol_key(x) for x in calls} for calls in c.calls]
    calls_top = np.zeros(n, np.float32)
    called_by = np.zeros(n, np.float32)
    for i in range(n):
        for j in top_ids:
            if j == i or not keys[j] or keys[i] == keys[j]:
                continue
            calls_top[i] += keys[j] in called[i]
            called_by[i] += keys[i] in called[j]
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
        np.full(n, np.log1p(c.query_words), np.float32),
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
