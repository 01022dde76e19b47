"""Victor's own search modes as benchmark systems: "victor-dense", "victor-lexical",
"victor-hybrid", and "victor-fusion" (the hybrid without its ranking stage).

Everything goes through Victor's core, as a user's `victor index` / `victor search --batch`
would: the held-out copy is indexed by `Victor.index` (Victor's chunker, embedding texts,
lexical fields) into a fresh database on a throw-away embedded PostgreSQL, and each query
set is searched with `Victor.find` (all queries in one call, one embedding batch). The
systems share that one index, so only the first one's `index()` does the work; the others
report the time of their own (no-change) index run.

Victor embeds with its `local` backend: the same all-MiniLM-L6-v2 as the baselines, in this
process. `Hit.text` is the chunk's text, the unit Victor's context assembly puts into the
prompt (it only adds a header line per snippet and merges neighbours).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.retrieval.cache import VectorCache
from bench.retrieval.metrics import CONTEXT_MIN_SCORE, CONTEXT_TOKENS, CONTEXT_TOP_K
from bench.retrieval.systems import Context, Hit, register
from indexer.config import Settings
from indexer.embedding.local import LocalEmbedder
from indexer.search import DEFAULT_TUNING, SearchResult, Tuning
from indexer.search.calls import CALL_FIRST, CALL_SEEDS
from indexer.search.context import Context as Block
from indexer.search.context import budget_chars
from indexer.service import Victor, open_victor
from tests.support.ollama_server import scaled_vectors

MODES = ("dense", "lexical", "hybrid")


# VICTOR_BENCH_COSINE_SCALE=B (0 < B < 1): a model on another cosine scale. Every vector v of
# all-MiniLM-L6-v2 is served as [sqrt(B) v, sqrt(1 - B)], so every cosine is B x cos + 1 - B:
# the same neighbours with a higher floor and a narrower spread, as some models have.
# VICTOR_BENCH_COSINE_MAP=off drops the scale Victor records for it, so searches use the raw
# cosines as before Victor mapped them (`indexer.embedding.scale`).
COSINE_SCALE = float(os.environ.get("VICTOR_BENCH_COSINE_SCALE") or 0)
COSINE_MAP = os.environ.get("VICTOR_BENCH_COSINE_MAP", "on") != "off"


def _rescaled(vectors: list[list[float]]) -> list[list[float]]:
    return scaled_vectors(vectors, COSINE_SCALE) if COSINE_SCALE else vectors


class TimedEmbedder(LocalEmbedder):
    """Victor's local embedder, counting the seconds spent embedding documents, and reading
    and writing the benchmark's on-disk vector cache (keyed by the exact text the model
    reads, prefix included), so a re-run embeds only what changed; on another cosine scale
    with VICTOR_BENCH_COSINE_SCALE (the cache keeps all-MiniLM-L6-v2's own vectors)."""

    seconds = 0.0
    disk: VectorCache | None = None

    async def _encode(self, texts: list[str]) -> list[list[float]]:
        if self.disk is None:
            return _rescaled(await super()._encode(texts))
        known = self.disk.get_many(self.model, texts)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            vecs = await super()._encode(missing)
            pairs = list(zip(missing, vecs, strict=True))
            self.disk.put_many(self.model, pairs)
            known.update((t, np.asarray(v, dtype=np.float32)) for t, v in pairs)
        return _rescaled([known[t].tolist() for t in texts])

    async def _encode_queries(self, texts: list[str]) -> list[list[float]]:
        return _rescaled(await super()._encode_queries(texts))

    async def dimensions(self) -> int:
        return await super().dimensions() + (1 if COSINE_SCALE else 0)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        t0 = time.perf_counter()
        try:
            return await super().embed_documents(texts)
        finally:
            self.seconds += time.perf_counter() - t0


class VictorIndex:
    """A throw-away PostgreSQL holding Victor's index of one directory, and a loop to use it."""

    def __init__(self, database_url: str | None = None, disk: VectorCache | None = None):
        """`database_url`: a server to create a fresh database on (its admin URL); None
        starts a throw-away embedded PostgreSQL of its own."""
        from tests.support import pg

        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp(prefix="bench-victor-"))
        weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)
        self.server = None
        if database_url is None:
            self.server = pg.start_server(self.folder)
            database_url = self.server.get_uri()
        database_url = self.loop.run_until_complete(
            pg.create_database(database_url, prefix="bench")
        )
        self.settings = Settings(
            database_url=database_url,
            embed_backend="local",
            data_dir=self.folder / "data",
            query_timeout=600,
        )
        self.embedder = TimedEmbedder(self.settings)
        self.embedder.disk = disk
        self.victor: Victor | None = None
        self._open = None
        self.indexed: Path | None = None

    def _victor(self) -> Victor:
        if self.victor is None:
            self._open = open_victor(self.settings, embedder=self.embedder)
            self.victor = self.loop.run_until_complete(self._open.__aenter__())
        return self.victor

    def index(self, corpus_dir: Path) -> float:
        """Index `corpus_dir` (incremental: a second call changes nothing); embedding seconds."""
        before = self.embedder.seconds
        self.loop.run_until_complete(self._victor().index(str(corpus_dir), name="bench"))
        if not COSINE_MAP:
            self.loop.run_until_complete(
                self.victor.pool.execute("DELETE FROM victor_meta WHERE key = 'embed_scale'")
            )
        if self.settings.summaries_on:  # VICTOR_SUMMARY_* set: measure them (docs/summaries.md)
            from indexer.summaries.run import summarize

            self.loop.run_until_complete(summarize(self.victor.pool, self.settings, None))
        self.indexed = corpus_dir
        return self.embedder.seconds - before

    def search(
        self, queries: list[str], mode: str, k: int, tuning: Tuning = DEFAULT_TUNING
    ) -> list[list[Hit]]:
        return [[_hit(r) for r in rs] for rs in self.results(queries, mode, k, tuning)]

    def results(
        self, queries: list[str], mode: str, k: int, tuning: Tuning = DEFAULT_TUNING
    ) -> list[list[SearchResult]]:
        """Victor's own results (kind, symbol, signature), for rankers built on top."""
        found = self.loop.run_until_complete(
            self._victor().search(queries, mode=mode, top_k=k, tuning=tuning)
        )
        degraded = [f.notice for f in found if f.notice]
        if degraded:  # a benchmark figure must never silently be lexical-only
            raise RuntimeError(f"{len(degraded)} queries degraded: {degraded[0]}")
        return [f.results for f in found]

    def contexts(
        self,
        results: list[list[SearchResult]],
        calls: str | None = None,
        seeds: int = CALL_SEEDS,
        first: str = CALL_FIRST,
        top_k: int = CONTEXT_TOP_K,
        tokens: int = CONTEXT_TOKENS,
    ) -> list[Block]:
        """The block the chat filter would send for each query's results, built by Victor's
        own `Victor.assemble` with the filter's defaults (the best `top_k`, CONTEXT_MIN_SCORE,
        a budget of `tokens`); `calls`: the code around the best hit (None:
        VICTOR_CALL_CONTEXT's default)."""
        budget = budget_chars(tokens=tokens)
        victor = self._victor()

        async def build() -> list[Block]:
            return [
                await victor.assemble(
                    rs[:top_k],
                    budget=budget,
                    min_score=CONTEXT_MIN_SCORE,
                    calls=calls,
                    seeds=seeds,
                    first=first,
                )
                for rs in results
            ]

        return self.loop.run_until_complete(build())

    def close(self) -> None:
        if self.victor is not None:
            self.loop.run_until_complete(self._open.__aexit__(None, None, None))
            self.victor = None
        self.loop.close()


def _hit(r: SearchResult) -> Hit:
    return Hit(r.path, r.start_line, r.end_line, r.text, r.score, r.symbol)


_shared: dict[int, VictorIndex] = {}


def shared_index(ctx: Context) -> VictorIndex:
    """One Victor index per benchmark run (per Context), shared by the three modes."""
    key = id(ctx)
    if key not in _shared:
        _shared[key] = VictorIndex(ctx.database_url, ctx.embedder.disk)
    return _shared[key]


def release(ctx: Context) -> None:
    """Close the Victor index of `ctx` (its database stays until the server stops)."""
    index = _shared.pop(id(ctx), None)
    if index is not None:
        index.close()


class VictorSystem:
    def __init__(self, mode: str, ctx: Context, name: str = "", tuning: Tuning = DEFAULT_TUNING):
        self.name = name or f"victor-{mode}"
        self.mode = mode
        self.tuning = tuning
        self.ctx = ctx
        self.embed_seconds = 0.0

    def index(self, corpus_dir: Path) -> None:
        self.embed_seconds = shared_index(self.ctx).index(corpus_dir)
        self.corpus = corpus_dir.name

    def search_batch(self, queries: list[str], k: int) -> list[list[Hit]]:
        self.results = shared_index(self.ctx).results(queries, self.mode, k, self.tuning_now())
        return [[_hit(r) for r in rs] for rs in self.results]

    def tuning_now(self) -> Tuning:
        return self.tuning

    def contexts(
        self,
        calls: str | None = None,
        seeds: int = CALL_SEEDS,
        first: str = CALL_FIRST,
        top_k: int = CONTEXT_TOP_K,
        tokens: int = CONTEXT_TOKENS,
    ) -> list[Block]:
        """The filter's context block for each query of the last `search_batch`."""
        return shared_index(self.ctx).contexts(self.results, calls, seeds, first, top_k, tokens)


def _factory(mode: str):
    return lambda ctx: VictorSystem(mode, ctx)


for _mode in MODES:
    register(f"victor-{_mode}")(_factory(_mode))

# The hybrid without its ranking stage: fusion's order (what the stage is measured against).
register("victor-fusion")(
    lambda ctx: VictorSystem("hybrid", ctx, "victor-fusion", replace(DEFAULT_TUNING, stage=False))
)


class StageLocoSystem(VictorSystem):
    """The hybrid with, for each corpus, a stage model trained without it: the shipped model
    saw every dev corpus, so only this measures the stage on a corpus it has not seen. Its
    models: `python -m bench.retrieval.stage --train-loco DIR`, then VICTOR_BENCH_STAGE_LOCO=DIR."""

    def __init__(self, ctx: Context):
        super().__init__("hybrid", ctx, "victor-stage-loco")
        folder = os.environ.get("VICTOR_BENCH_STAGE_LOCO", "")
        if not folder:
            raise NotImplementedError("set VICTOR_BENCH_STAGE_LOCO to the --train-loco folder")
        self.folder = Path(folder)

    def tuning_now(self) -> Tuning:
        model = self.folder / f"{self.corpus}.json"
        if not model.is_file():
            raise NotImplementedError(f"no fold model {model}")
        return replace(self.tuning, stage_model=str(model))


register("victor-stage-loco")(StageLocoSystem)
