"""Repositories in the index: adding, listing, removing, following (webhook and `victor sync`),
and recording a completed index run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from indexer.errors import NotFound
from indexer.store import postings, repo_graphs
from indexer.store.locks import transaction


@dataclass(frozen=True, slots=True)
class Repo:
    id: int
    name: str
    source: str
    ref: str | None
    commit_sha: str | None
    github_url: str | None
    indexed_at: datetime | None
    last_run: dict | None
    tracked: bool = False  # followed by the webhook and `victor sync` (source = URL, ref = branch)


def _repo(row: asyncpg.Record) -> Repo:
    last_run = row["last_run"]
    return Repo(
        id=row["id"],
        name=row["name"],
        source=row["source"],
        ref=row["ref"],
        commit_sha=row["commit_sha"],
        github_url=row["github_url"],
        indexed_at=row["indexed_at"],
        last_run=json.loads(last_run) if isinstance(last_run, str) else last_run,
        tracked=row["tracked"],
    )


async def upsert_repo(
    db: asyncpg.Pool | asyncpg.Connection,
    name: str,
    source: str,
    ref: str | None,
    github_url: str | None,
) -> Repo:
    row = await db.fetchrow(
        """
        INSERT INTO repos (name, source, ref, github_url) VALUES ($1, $2, $3, $4)
        ON CONFLICT (name) DO UPDATE
            SET source = EXCLUDED.source, ref = EXCLUDED.ref,
                github_url = COALESCE(EXCLUDED.github_url, repos.github_url)
        RETURNING *
        """,
        name,
        source,
        ref,
        github_url,
    )
    return _repo(row)


async def get_repo(db: asyncpg.Pool | asyncpg.Connection, name: str) -> Repo:
    row = await db.fetchrow("SELECT * FROM repos WHERE name = $1", name)
    if row is None:
        known = [r["name"] for r in await db.fetch("SELECT name FROM repos ORDER BY name")]
        hint = f" Known: {', '.join(known)}." if known else " Nothing is indexed yet."
        raise NotFound(f"No repository named {name!r} in the index.{hint}")
    return _repo(row)


async def list_repos(db: asyncpg.Pool | asyncpg.Connection) -> list[Repo]:
    return [_repo(r) for r in await db.fetch("SELECT * FROM repos ORDER BY name")]


async def repo_counts(db: asyncpg.Pool | asyncpg.Connection) -> dict[int, tuple[int, int]]:
    """repo id -> (files, chunks)."""
    rows = await db.fetch(
        """
        SELECT r.id,
               (SELECT count(*) FROM files f WHERE f.repo_id = r.id) AS files,
               (SELECT count(*) FROM chunks c WHERE c.repo_id = r.id) AS chunks
        FROM repos r
        """
    )
    return {r["id"]: (r["files"], r["chunks"]) for r in rows}


async def remove_repo(pool: asyncpg.Pool, name: str) -> None:
    repo = await get_repo(pool, name)
    # its own graph first, on its own (DROP INDEX CONCURRENTLY: no search waits for it), after
    # any graph build under way; if the removal below fails, the next index run builds the
    # graph again
    await repo_graphs.remove(pool, repo.id)
    async with transaction(pool) as conn:
        repo_id = await conn.fetchval("SELECT id FROM repos WHERE name = $1", name)
        await postings.remove_repo(conn, repo_id)
        await conn.execute("DELETE FROM chunks WHERE repo_id = $1", repo_id)
        await conn.execute("DELETE FROM repos WHERE id = $1", repo_id)


async def repo_commit(db: asyncpg.Pool | asyncpg.Connection, repo_id: int) -> str | None:
    """The last commit indexed completely."""
    return await db.fetchval("SELECT commit_sha FROM repos WHERE id = $1", repo_id)


# --- followed repositories (the webhook and `victor sync`) ---------------------------------


async def track_repo(
    db: asyncpg.Pool | asyncpg.Connection,
    name: str,
    url: str,
    branch: str,
    github_url: str | None,
) -> Repo:
    """Follow `branch` of `url`. An existing index of that name is kept and synced from now on."""
    row = await db.fetchrow(
        """
        INSERT INTO repos (name, source, ref, github_url, tracked) VALUES ($1, $2, $3, $4, true)
        ON CONFLICT (name) DO UPDATE
            SET source = EXCLUDED.source, ref = EXCLUDED.ref,
                github_url = EXCLUDED.github_url, tracked = true
        RETURNING *
        """,
        name,
        url,
        branch,
        github_url,
    )
    return _repo(row)


async def untrack_repo(db: asyncpg.Pool | asyncpg.Connection, name: str) -> None:
    """Stop following a repository; its index stays searchable."""
    await get_repo(db, name)
    await db.execute("UPDATE repos SET tracked = false WHERE name = $1", name)


async def tracked_repos(db: asyncpg.Pool | asyncpg.Connection) -> list[Repo]:
    rows = await db.fetch("SELECT * FROM repos WHERE tracked ORDER BY name")
    return [_repo(r) for r in rows]


async def repos_for_push(
    db: asyncpg.Pool | asyncpg.Connection, github_url: str, branch: str
) -> list[Repo]:
    """Tracked repositories a push to `branch` of `github_url` concerns."""
    rows = await db.fetch(
        "SELECT * FROM repos WHERE tracked AND lower(github_url) = lower($1) AND ref = $2 "
        "ORDER BY name",
        github_url,
        branch,
    )
    return [_repo(r) for r in rows]


async def finish_run(
    db: asyncpg.Pool | asyncpg.Connection, repo_id: int, commit_sha: str | None, summary: dict
) -> None:
    """Record a complete run: only now does the repo's commit move forward."""
    await db.execute(
        "UPDATE repos SET commit_sha = $2, indexed_at = now(), last_run = $3::jsonb WHERE id = $1",
        repo_id,
        commit_sha,
        json.dumps(summary),
    )
