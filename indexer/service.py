"""One object that holds what every adapter needs: settings, a pool, an embedder.

The CLI, the Open WebUI pipeline, the webhook worker and the LiteLLM hook all
open a `Victor` and call its methods; none of them touches SQL or the
embedder directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import asyncpg

from . import db, indexing, search, store
from .config import Settings
from .context import Context, build_context
from .embedder import Embedder, make_embedder
from .errors import SourceError
from .indexing import IndexReport, Progress
from .search import DEFAULT_TUNING, Found, Mode, SearchResult, Tuning
from .sources import open_source


def default_name(target: str) -> str:
    """`https://github.com/o/penlight.git` -> `penlight`; `./src/lua/` -> `lua`."""
    name = target.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = name.removesuffix(".git")
    if not name or name in {".", ".."}:
        name = Path(target).expanduser().resolve().name
    if not name:
        raise SourceError(f"Cannot derive a name from {target!r}; pass --name.")
    return name


class Victor:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, embedder: Embedder):
        self.settings = settings
        self.pool = pool
        self.embedder = embedder

    async def index(
        self,
        target: str,
        *,
        name: str | None = None,
        ref: str | None = None,
        progress: Progress | None = None,
    ) -> IndexReport:
        name = name or default_name(target)
        source = await asyncio.to_thread(
            open_source,
            target,
            ref=ref,
            include=self.settings.include,
            max_bytes=self.settings.max_file_bytes,
            clones_dir=self.settings.clones_dir,
            name=name,
        )
        return await indexing.index_source(
            self.pool, self.embedder, self.settings, source, name, ref=ref, progress=progress
        )

    async def find(
        self,
        queries: Sequence[str],
        *,
        mode: Mode = "hybrid",
        top_k: int = 8,
        repos: Sequence[str] | None = None,
        tuning: Tuning = DEFAULT_TUNING,
    ) -> list[Found]:
        """Search for many queries at once (one embedding request). When the embedder is
        down or slower than VICTOR_QUERY_TIMEOUT, results come from lexical search and each
        Found says so in `notice`."""
        return await search.search(
            self.pool,
            self.embedder,
            queries,
            mode=mode,
            top_k=top_k,
            repos=repos,
            timeout=self.settings.query_timeout,
            tuning=tuning,
        )

    async def search(
        self,
        query: str,
        *,
        mode: Mode = "hybrid",
        top_k: int = 8,
        repos: Sequence[str] | None = None,
    ) -> list[SearchResult]:
        (found,) = await self.find([query], mode=mode, top_k=top_k, repos=repos)
        return found.results

    async def retrieve(
        self,
        query: str,
        *,
        top_k: int = 8,
        budget: int = 6000,
        min_score: float = 0.0,
        repos: Sequence[str] | None = None,
    ) -> Context:
        """Search (hybrid) and assemble the context block a chat puts in front of the model.

        `min_score` (0-1) leaves out weaker results; see indexer/search.py for what scores
        mean. Never fails for a down or slow embedder: the context then comes from lexical
        search and `Context.notice` says so.
        """
        (found,) = await self.find([query], top_k=top_k, repos=repos)
        context = build_context([r for r in found.results if r.score >= min_score], budget=budget)
        return replace(context, notice=found.notice) if found.notice else context

    async def repos(self) -> list[store.Repo]:
        return await store.list_repos(self.pool)

    async def remove(self, name: str) -> None:
        await store.remove_repo(self.pool, name)

    async def close(self) -> None:
        await self.embedder.close()
        await self.pool.close()


async def connect(settings: Settings, *, embedder: Embedder | None = None, **pool_args) -> Victor:
    """A Victor for a long-lived process (the Pipelines filter); the caller closes it."""
    pool = await db.create_pool(settings, **pool_args)
    return Victor(settings, pool, embedder or make_embedder(settings))


@asynccontextmanager
async def open_victor(settings: Settings, *, embedder: Embedder | None = None, **pool_args):
    victor = await connect(settings, embedder=embedder, **pool_args)
    try:
        yield victor
    finally:
        await victor.close()
