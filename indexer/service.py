"""The `Victor` facade: settings, a pool and an embedder in one object, with the operations the
adapters run (index, search, retrieve a chat's context, follow and sync repositories).

The CLI, the chat session (`indexer.chat.session`) and the sync worker call these methods; for
plain listings they call `indexer.store` (and the job queue, `indexer.sync.jobs`), where all
the SQL lives. None of them talks to the embedder directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from indexer import search, store
from indexer.config import Settings
from indexer.embedding import Embedder, make_embedder
from indexer.errors import ConfigError, NotFound, SourceError
from indexer.search import DEFAULT_TUNING, Found, Mode, Tuning
from indexer.search.calls import CALL_FIRST, CALL_SEEDS, CallContext, labelled
from indexer.search.calls import neighbours as call_neighbours
from indexer.search.context import Context, build_context, passing
from indexer.search.lexical_memory import LexicalMemory
from indexer.sync import git, jobs

if TYPE_CHECKING:
    from indexer.indexing.run import IndexReport, Progress
    from indexer.sync.repo_sync import SyncReport

# A lone chat's second connection for its call context is taken only when one is idle, and
# waited for no longer than this, in case another chat took it first (seconds).
SPARE_WAIT = 0.01

# Indexing (and syncing, which indexes) import the Lua parser (luaparser, ANTLR): 0.2 s and
# more of a cold `victor search` that never parses. They are imported where they are used.


def default_name(target: str) -> str:
    """`https://github.com/o/penlight.git` -> `penlight`; `./src/lua/` -> `lua`."""
    name = target.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = name.removesuffix(".git")
    if not name or name in {".", ".."}:
        name = Path(target).expanduser().resolve().name
    if not name:
        raise SourceError(f"Cannot derive a name from {target!r}; pass --name.")
    return name


def check_name(name: str) -> str:
    """A repository name also names its clone folder: one plain folder name."""
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(
            f"{name!r} cannot be a repository name: it names a folder for its clone, so it "
            "may not be empty, '.' or '..', nor hold '/' or '\\'. Choose another name."
        )
    return name


def web_url(url: str) -> str:
    """https://github.com/o/r/ or .../r.git -> https://github.com/o/r (how GitHub names it)."""
    url = url.strip().rstrip("/").removesuffix(".git")
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"{url!r} is not a web URL; give it as https://github.com/OWNER/REPO.")
    return url


def clone_source(target: str) -> str:
    """What `victor repo add` follows: a git URL as given, or a local repository's absolute path.

    Any host works (GitHub, GitLab, a server over ssh, `file://`, a folder): the GitHub page
    only adds permalinks and matches GitHub's push deliveries. Credentials in a URL are
    refused: they would be stored in the database and shown in listings.
    """
    if git.is_url(target):
        if git.has_credentials(target):
            raise ConfigError(
                "The URL carries credentials. Give it without them and put a GitHub token in "
                "VICTOR_GITHUB_TOKEN (it is never written to disk)."
            )
        return target
    path = Path(target).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(
            f"{target!r} is neither a git URL nor a folder. Give a clone URL (https://, ssh://, "
            "git@host:path, file://) or the path of a git repository."
        )
    if not git.is_repo_root(path):
        raise ConfigError(
            f"{path} is not a git repository (no .git, not a bare repository). Follow the "
            "top folder of a repository, or index a plain folder with `victor index`."
        )
    return str(path)


class Victor:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        embedder: Embedder,
        memory: LexicalMemory | None = None,
    ):
        self.settings = settings
        self.pool = pool
        self.embedder = embedder
        self.memory = memory  # the lexical index held in this process, if it holds one
        self._chats = 0  # `retrieve` calls in flight

    async def index(
        self,
        target: str,
        *,
        name: str | None = None,
        ref: str | None = None,
        progress: Progress | None = None,
    ) -> IndexReport:
        from indexer.indexing import run as indexing
        from indexer.indexing.sources import open_source
        from indexer.sync import repo_sync

        name = check_name(name or default_name(target))
        await self._refuse_followed(name)
        source = await asyncio.to_thread(
            open_source,
            target,
            ref=ref,
            include=self.settings.include,
            max_bytes=self.settings.max_file_bytes,
            clones_dir=self.settings.clones_dir,
            name=name,
            token=repo_sync.token_of(self.settings),
        )
        report = await indexing.index_source(
            self.pool, self.embedder, self.settings, source, name, ref=ref, progress=progress
        )
        if report.files_new + report.files_changed + report.files_unchanged == 0:
            # nothing to search there: keep no 0-file repository in the index
            await store.remove_repo(self.pool, name)
        return report

    async def search(
        self,
        queries: Sequence[str],
        *,
        mode: Mode = "hybrid",
        top_k: int = 8,
        repos: Sequence[str] | None = None,
        tuning: Tuning = DEFAULT_TUNING,
        timeout: float | None = None,
    ) -> list[Found]:
        """Search for each query (one embedding request for all). When the embedder is down
        or slower than `timeout` (default VICTOR_QUERY_TIMEOUT), results come from lexical
        search and each Found says so in `notice`."""
        return await search.search(
            self.pool,
            self.embedder,
            queries,
            mode=mode,
            top_k=top_k,
            repos=repos,
            timeout=self.settings.query_timeout if timeout is None else timeout,
            tuning=self._tuned(tuning),
            memory=self.memory,
        )

    def _tuned(self, tuning: Tuning = DEFAULT_TUNING) -> Tuning:
        """`tuning` with the ranking stage off when VICTOR_RANKING_STAGE says so."""
        return tuning if self.settings.ranking_stage else replace(tuning, stage=False)

    async def _refuse_followed(self, name: str) -> None:
        """`victor index` over a followed repository would change its URL and branch."""
        try:
            repo = await store.get_repo(self.pool, name)
        except NotFound:
            return
        if repo.tracked:
            raise ConfigError(
                f"{name!r} follows {repo.source} branch {repo.ref}: update it with "
                f"`victor sync {name}`, or index this under another --name."
            )

    async def retrieve(
        self,
        query: str,
        *,
        top_k: int = 8,
        budget: int = 6000,
        min_score: float = 0.0,
        repos: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> Context:
        """Search (hybrid) and assemble the context block a chat puts in front of the model.

        Nothing is sent unless the best result scores `min_score` (0-1) or more
        (`indexer.search.context.passing`; indexer/search/__init__.py says what scores mean).
        `timeout` bounds the query embedding (default VICTOR_QUERY_TIMEOUT). Never fails
        for a down or slow embedder: the context then comes from lexical search,
        `Context.notice` says so in a short phrase any user may see, `Context.detail` says why.
        """
        timeout = self.settings.query_timeout if timeout is None else timeout
        tuning = self._tuned()
        self._chats += 1
        try:
            return await self._retrieve(query, top_k, budget, min_score, repos, timeout, tuning)
        finally:
            self._chats -= 1

    async def _retrieve(
        self,
        query: str,
        top_k: int,
        budget: int,
        min_score: float,
        repos: Sequence[str] | None,
        timeout: float,
        tuning: Tuning,
    ) -> Context:
        # A lone chat reads its lexical top while the query is embedded (it needs no vector),
        # on a second connection: from the index held in memory, one short statement and
        # Python; else the lexical statement. Later it reads the callers and callees of its
        # best hit at once: the cores are idle. With other chats in flight they are not, and
        # the second connection only adds work (20 chats: p95 +10 % with the statement;
        # bench/README.md).
        ahead = (
            search.lexical_ahead(
                self.pool, query, top_k=top_k, repos=repos, tuning=tuning, memory=self.memory
            )
            if self._chats == 1
            else nullcontext()
        )
        # one connection for the rest of the search and the code around its hits, taken
        # after the embedding: a chat waiting for Ollama holds none another chat could use
        async with ahead as early:
            asked = await search.embedded(self.embedder, [query], mode="hybrid", timeout=timeout)
            async with self.pool.acquire() as conn:
                (found,) = await search.search_with(
                    conn,
                    self.embedder,
                    [query],
                    asked,
                    top_k=top_k,
                    repos=repos,
                    tuning=tuning,
                    ahead=early,
                    memory=self.memory,
                )
                kept = passing(found.results, min_score)
                mode = self.settings.call_context
                async with self._spare(bool(kept) and mode == "both") as spare:
                    extra = await self._around(conn, kept, mode, spare=spare)
        context = build_context(kept, budget=budget, extra=extra)
        if not found.notice:
            return context
        return replace(context, notice=found.summary, detail=found.notice)

    async def assemble(
        self,
        results: Sequence[search.SearchResult],
        *,
        budget: int = 6000,
        min_score: float = 0.0,
        calls: CallContext | None = None,
        seeds: int = CALL_SEEDS,
        first: str = CALL_FIRST,
    ) -> Context:
        """The context block of a search's results (all of them, when the best scores
        `min_score` or more: `passing`), then, while the budget has room, the code around the
        best (`calls`, default VICTOR_CALL_CONTEXT: what it calls and what calls it;
        indexer/search/calls.py)."""
        kept = passing(results, min_score)
        mode = self.settings.call_context if calls is None else calls
        extra: list[search.SearchResult] = []
        if kept and mode != "off":  # a connection only when there is code to look for
            async with self.pool.acquire() as conn:
                extra = await self._around(conn, kept, mode, seeds=seeds, first=first)
        return build_context(kept, budget=budget, extra=extra)

    async def _around(
        self,
        conn: asyncpg.Connection,
        kept: Sequence[search.SearchResult],
        mode: CallContext,
        *,
        seeds: int = CALL_SEEDS,
        first: str = CALL_FIRST,
        spare: asyncpg.Connection | None = None,
    ) -> list[search.SearchResult]:
        """The code around the `kept` results (see assemble), labelled for the context."""
        if not kept or mode == "off":
            return []
        found = await call_neighbours(conn, kept, mode, seeds=seeds, first=first, spare=spare)
        return [labelled(n) for n in found]

    @asynccontextmanager
    async def _spare(self, wanted: bool):
        """A second connection for a lone chat (`wanted`), when one is idle now, else None.
        Never waited for beyond SPARE_WAIT: the chat already holds a connection, and chats
        that each hold one while waiting for another could wait for ever."""
        conn = None
        if wanted and self._chats == 1 and self.pool.get_idle_size() > 0:
            try:
                conn = await self.pool.acquire(timeout=SPARE_WAIT)
            except TimeoutError:  # another chat took it first
                conn = None
        try:
            yield conn
        finally:
            if conn is not None:
                await self.pool.release(conn)

    async def repos(self) -> list[store.Repo]:
        return await store.list_repos(self.pool)

    async def remove(self, name: str) -> None:
        await store.remove_repo(self.pool, name)

    async def sync(self, name: str, *, after: str | None = None, full: bool = False) -> SyncReport:
        """Fetch a tracked repository and index what changed on its branch."""
        from indexer.sync import repo_sync

        return await repo_sync.sync_repo(
            self.pool, self.embedder, self.settings, name, after=after, full=full
        )

    async def track(
        self,
        name: str,
        url: str,
        *,
        branch: str,
        github_url: str | None = None,
        check: bool = True,
    ) -> tuple[store.Repo, int]:
        """Follow a repository's branch; queue its first sync. Returns (repo, job id).

        `url` is any git URL or a local repository (see `clone_source`). Without a GitHub
        page (`github_url`, or read from a github.com URL) the repository is synced by
        `victor sync` only: GitHub's push deliveries are matched by that page.
        """
        check_name(name)
        url = clone_source(url)
        web = github_url or git.github_url(url)
        if check:
            await asyncio.to_thread(self._check_remote, url, branch, github=web is not None)
        repo = await store.track_repo(self.pool, name, url, branch, web and web_url(web))
        job = await jobs.enqueue(
            self.pool, repo.id, reason="repo add", max_attempts=self.settings.job_max_attempts
        )
        return repo, job

    def _check_remote(self, url: str, branch: str, *, github: bool) -> None:
        from indexer.sync import repo_sync

        token = repo_sync.token_of(self.settings) if github else None  # GitHub's token: GitHub only
        try:
            found = git.remote_has_branch(url, branch, token)
        except SourceError as exc:
            advice = (
                "For a private repository set VICTOR_GITHUB_TOKEN (a token that may read its "
                "contents)."
                if github
                else "Check the URL, and that git can read it as this user (ssh key, "
                "credential helper)."
            )
            raise SourceError(f"Cannot read {url}: {exc}. {advice}") from None
        if not found:
            raise ConfigError(f"{url} has no branch {branch!r}. Pass the right --branch.")

    async def untrack(self, name: str) -> None:
        await store.untrack_repo(self.pool, name)

    async def close(self) -> None:
        if self.memory is not None:
            await self.memory.close()
        await self.embedder.close()
        await self.pool.close()


async def connect(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    lexical_memory: bool = False,
    **pool_args,
) -> Victor:
    """A Victor for a long-lived process (the Pipelines filter); the caller closes it.
    `lexical_memory`: hold the lexical index in this process (up to VICTOR_LEXICAL_MEMORY_MB),
    for a process that serves many searches (a chat adapter), not one."""
    pool = await store.create_pool(settings, **pool_args)
    memory = None
    if lexical_memory and settings.lexical_memory_mb > 0:
        url = await asyncio.to_thread(store.database_url, settings)
        memory = LexicalMemory(url, settings.lexical_memory_mb * 1024 * 1024)
    return Victor(settings, pool, embedder or make_embedder(settings), memory)


@asynccontextmanager
async def open_victor(settings: Settings, *, embedder: Embedder | None = None, **pool_args):
    victor = await connect(settings, embedder=embedder, **pool_args)
    try:
        yield victor
    finally:
        await victor.close()
