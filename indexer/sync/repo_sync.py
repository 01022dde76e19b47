"""Syncing a tracked repository: fetch its branch, index what changed since the last sync.

The worker (for pushes) and `victor sync` both call `sync_repo`. It always indexes the
branch head it has just fetched: a push's `after` is in it (or was rewritten away by a
later force-push), so late, duplicated, reordered or lost deliveries cannot move the index
backwards, and every sync converges on the branch. What the payload says is never
trusted for content: files are read from git objects of the configured remote.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg

from indexer import store
from indexer.config import Settings
from indexer.embedding import Embedder
from indexer.errors import ConfigError, SourceError
from indexer.indexing.run import Changes, IndexReport, index_source
from indexer.indexing.sources import GitSource, display_path, matches
from indexer.summaries.run import after_sync
from indexer.sync import git


@dataclass
class SyncReport:
    repo: str
    branch: str
    commit: str
    previous: str | None
    mode: str  # incremental | full
    why: str
    changes: list[dict] = field(default_factory=list)  # Lua files in the diff
    note: str | None = None
    fetch_seconds: float = 0.0
    index: dict = field(default_factory=dict)  # IndexReport.summary()
    summaries: dict = field(default_factory=dict)  # VICTOR_SUMMARY_ON_SYNC's run, if any

    def summary(self) -> dict:
        return asdict(self)


def token_of(settings: Settings) -> str | None:
    return settings.github_token.get_secret_value() if settings.github_token else None


def clone_dir(settings: Settings, name: str) -> Path:
    """The bare clone of a repository (shared with `victor index URL --name NAME`)."""
    return settings.clones_dir / name


def fetch(settings: Settings, repo: store.Repo) -> tuple[Path, str]:
    """Fetch the remote into the local bare clone; return (clone, branch head)."""
    if not repo.tracked or not repo.ref:
        raise ConfigError(
            f"{repo.name!r} is not followed. Run: victor repo add {repo.name} URL --branch BRANCH"
        )
    # The GitHub token goes only to a repository with a GitHub page, not to any other host.
    token = token_of(settings) if repo.github_url else None
    clone = git.clone_or_fetch(repo.source, clone_dir(settings, repo.name), token)
    try:
        head = git.resolve_commit(clone, f"refs/heads/{repo.ref}")
    except SourceError:
        raise SourceError(
            f"The branch {repo.ref!r} is not in {repo.source} (deleted or renamed?). The index "
            f"keeps commit {(repo.commit_sha or 'none')[:12]}; to follow another branch run: "
            f"victor repo add {repo.name} {repo.source} --branch OTHER"
        ) from None
    return clone, head


def plan(
    clone: Path, indexed: str | None, head: str, include: tuple[str, ...]
) -> tuple[Changes | None, str, list[git.Change]]:
    """What to compare: the diff since the indexed commit, or (None) every file, and why."""
    if indexed is None:
        return None, "first sync of this repository", []
    if not git.is_ancestor(clone, indexed, head):
        why = f"indexed commit {indexed[:12]} is not in the history of {head[:12]}"
        return None, why + " (force-push, or unknown commit): comparing every file", []
    lua = [
        c
        for c in git.diff(clone, indexed, head)
        if matches(c.path, include) or (c.old_path and matches(c.old_path, include))
    ]
    paths = {c.path for c in lua} | {c.old_path for c in lua if c.old_path}
    why = f"{len(lua)} Lua files changed since {indexed[:12]}"
    return Changes(indexed, frozenset(paths)), why, lua


def _change(c: git.Change) -> dict:
    """A change for the job's result (JSON in PostgreSQL: paths as storable text)."""
    old = display_path(c.old_path) if c.old_path else None
    return {"status": c.status, "path": display_path(c.path), "old_path": old}


async def sync_repo(
    pool: asyncpg.Pool,
    embedder: Embedder,
    settings: Settings,
    name: str,
    *,
    after: str | None = None,
    full: bool = False,
) -> SyncReport:
    """Bring the index of a tracked repository to the head of its branch."""
    repo = await store.get_repo(pool, name)
    async with store.sync_lock(pool, repo.id):
        repo = await store.get_repo(pool, name)  # as it is now that no other sync runs
        started = time.monotonic()
        clone, head = await asyncio.to_thread(fetch, settings, repo)
        fetched = time.monotonic() - started
        try:
            if full:
                changes, why, diff = None, "asked for a full sync: comparing every file", []
            else:
                changes, why, diff = await asyncio.to_thread(
                    plan, clone, repo.commit_sha, head, settings.include
                )
            source = GitSource(
                clone,
                head,
                settings.include,
                settings.max_file_bytes,
                description=repo.source,
                github_url=repo.github_url,
            )
            report: IndexReport = await index_source(
                pool, embedder, settings, source, repo.name, ref=repo.ref, changes=changes
            )
        except SourceError as exc:
            await asyncio.to_thread(_discard_if_damaged, clone, exc)
            raise
        summaries = await after_sync(pool, settings, repo.id)
        return SyncReport(
            repo=repo.name,
            branch=repo.ref or "",
            commit=head,
            previous=repo.commit_sha,
            mode="incremental" if report.incremental else "full",
            why=why if changes is None or report.incremental else report.scope,
            changes=[_change(c) for c in diff],
            note=await asyncio.to_thread(_note, clone, after, head),
            fetch_seconds=round(fetched, 3),
            index=report.summary(),
            summaries=summaries,
        )


def _discard_if_damaged(clone: Path, exc: SourceError) -> None:
    """Reading the clone failed: if the clone itself is damaged (a fetch does not read old
    packs, so it can miss that), delete it so that the retry clones it again, and say so."""
    if git.clone_is_sound(clone):
        return
    git.discard_clone(clone)
    exc.args = (
        f"{exc} The local clone {clone} was damaged: it was deleted, and the next attempt "
        "clones the repository again.",
    )


def _note(clone: Path, after: str | None, head: str) -> str | None:
    if after is None or after == head or git.is_ancestor(clone, after, head):
        return None
    return (
        f"the pushed commit {after[:12]} is no longer on the branch (force-pushed away); "
        f"indexed the branch head {head[:12]}"
    )
