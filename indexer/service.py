"""One object that holds what every adapter needs: settings, a pool, an embedder.

The CLI, the Open WebUI pipeline, the webhook worker and the LiteLLM hook all
open a `Victor` and call its methods; none of them touches SQL or the
embedder directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from . import db, indexing, search, store
from .config import Settings
from .context import Context, build_context
from .embedder import Embedder, make_embedder
from .errors import SourceError
from .indexing import IndexReport, Progress
from .search import SearchResult
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

    async def search(
        self, query: str, *, top_k: int = 8, repos: Sequence[str] | None = None
    ) -> list[SearchResult]:
        return await search.dense(self.pool, self.embedder, query, top_k=top_k, repos=repos)

    async def retrieve(
        self,
        query: str,
        *,
        top_k: int = 8,
        budget: int = 6000,
        min_score: float = 0.0,
        repos: Sequence[str] | None = None,
    ) -> Context:
        """Search and assemble the context block a chat puts in front of the model."""
        results = await self.search(query, top_k=top_k, repos=repos)
        return build_context([r for r in results if r.score >= min_score], budget=budget)

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
