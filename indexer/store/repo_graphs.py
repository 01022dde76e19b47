"""Per-repository HNSW graphs: a partial index of a big repository's vectors, so a search
restricted to it walks a graph of its own chunks instead of the whole index's.

The global graph with a repository filter walks the whole index and throws away what the
filter rejects (pgvector's iterative scan): at 1M chunks, searching a repository of 50,000
chunks read 8.8 times the buffers of its own graph and took ~40 times as long (bench/README.md,
"A graph per big repository"). pgvector's README recommends partial indexes when filtering by
few distinct values, which repositories are. The planner uses a partial index only when it can
prove its predicate from the statement, so the search names the repository id as a literal
(indexer/search/dense.py); an INVALID index (an interrupted build) is never used by the
planner, and `reconcile` rebuilds it.

Which repositories: those holding more than MIN_CHUNKS searchable chunks (below, a search
computes every distance: indexer/search/dense.py's EXACT_SCOPE) and at most half of the
index's: the filter on a repository holding most of the index throws little away, and its own
graph would nearly duplicate the global one. A graph is kept until its repository shrinks to
MIN_CHUNKS or goes (no flapping when shares move); the vector space's change drops them all
with the global graph (`drop_all`), and the next `reconcile` builds them again.
"""

from __future__ import annotations

import logging
import re

import asyncpg

from indexer.store.limits import BUILD_MEMORY, UNBOUNDED
from indexer.store.locks import graphs_lock, graphs_lock_waiting

log = logging.getLogger(__name__)

# Searchable chunks a repository must exceed to get its own graph (the test suite lowers it).
MIN_CHUNKS = 20_000

_PREFIX = "chunks_embedding_hnsw_repo"
_NAME = re.compile(rf"{_PREFIX}(\d+)")


def index_name(repo_id: int) -> str:
    return f"{_PREFIX}{int(repo_id)}"


# Every repository's graph: its name, whether it is valid (false: a build was interrupted
# or is under way) and its size.
_GRAPHS = """
SELECT c.relname, i.indisvalid, pg_relation_size(i.indexrelid) AS bytes
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'chunks'::regclass AND c.relname LIKE 'chunks\\_embedding\\_hnsw\\_repo%'
"""


async def existing(db: asyncpg.Pool | asyncpg.Connection) -> dict[int, bool]:
    """Repository id -> whether its graph is valid (false: a build was interrupted)."""
    found = {}
    for r in await db.fetch(_GRAPHS):
        match = _NAME.fullmatch(r["relname"])
        if match:
            found[int(match[1])] = r["indisvalid"]
    return found


async def size(db: asyncpg.Pool | asyncpg.Connection) -> int:
    """Bytes of every repository's graph (what searches restricted to them read)."""
    return sum(r["bytes"] for r in await db.fetch(_GRAPHS))


async def wanted(db: asyncpg.Pool | asyncpg.Connection, min_chunks: int) -> tuple[set, set]:
    """(repositories that should get a graph, repositories that may keep one)."""
    rows = await db.fetch(
        """
        SELECT repo_id, chunks, chunks * 2 <= sum(chunks) OVER () AS minor
        FROM lex_stats WHERE repo_id IN (SELECT id FROM repos)
        """
    )
    keep = {r["repo_id"] for r in rows if r["chunks"] > min_chunks}
    return {r["repo_id"] for r in rows if r["repo_id"] in keep and r["minor"]}, keep


async def reconcile(pool: asyncpg.Pool, min_chunks: int | None = None) -> list[int]:
    """Build the graphs that are missing or INVALID, drop those no longer wanted. Returns the
    repositories whose graph was built; none when another process holds `graphs_lock` (a
    graph it misses, the next run builds).

    CREATE INDEX CONCURRENTLY: a plain CREATE INDEX would not block a chat (its SHARE lock
    lets reads through) but would stop every other repository's index run or sync from
    writing chunks for the whole build (minutes for a big repository); concurrently, writes
    go on, at the price of a second pass over the table and an INVALID index if interrupted,
    which the planner ignores and the next run rebuilds.
    """
    threshold = MIN_CHUNKS if min_chunks is None else min_chunks
    # one connection for all of it: a run's pool may have no second one free (bench.scale
    # loads with two, and holds one meanwhile)
    async with pool.acquire() as conn, graphs_lock(conn) as held:
        return await _reconcile(conn, threshold) if held else []


async def _reconcile(conn: asyncpg.Connection, threshold: int) -> list[int]:
    build, keep = await wanted(conn, threshold)
    have = await existing(conn)
    for repo_id, valid in sorted(have.items()):
        if repo_id not in keep or not valid:
            await drop(conn, repo_id)
    built = []
    for repo_id in sorted(build - {r for r, valid in have.items() if valid}):
        if await _build(conn, repo_id):
            built.append(repo_id)
    return built


async def _build(conn: asyncpg.Connection, repo_id: int) -> bool:
    """Build one repository's graph; False when the build failed. A graph only speeds searches
    up, so a failed build is a warning, never the failure of the index run that asked for it
    (whose chunks are already committed): e.g. a server's statement_timeout. What it leaves
    (an INVALID index), the next run builds again. The pool's per-statement limit does not
    apply (`limits.UNBOUNDED`): a big repository's build would fail on every run."""
    await conn.execute(f"SET maintenance_work_mem = '{BUILD_MEMORY}'")
    try:
        await conn.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index_name(repo_id)} ON chunks "
            f"USING hnsw (embedding vector_cosine_ops) WHERE repo_id = {int(repo_id)}",
            timeout=UNBOUNDED,
        )
    except (asyncpg.PostgresError, TimeoutError) as exc:
        log.warning(
            "could not build the HNSW graph of repository %d (%s); the next run tries again",
            repo_id,
            exc,
        )
        return False
    finally:
        await conn.execute("RESET maintenance_work_mem")
    log.info("built the HNSW graph of repository %d", repo_id)
    return True


async def drop(db: asyncpg.Pool | asyncpg.Connection, repo_id: int) -> None:
    """Drop a repository's graph without blocking searches (outside any transaction)."""
    await db.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(repo_id)}")


async def remove(pool: asyncpg.Pool, repo_id: int) -> None:
    """Drop the graph of a repository being removed, after any build under way: dropping an
    index while CREATE INDEX CONCURRENTLY finishes it makes one of the two fail ("tuple
    concurrently updated"). The wait is the builder's (minutes for a big repository)."""
    async with pool.acquire() as conn, graphs_lock_waiting(conn):
        await drop(conn, repo_id)


async def drop_all(conn: asyncpg.Connection) -> None:
    """Drop every repository's graph, inside the caller's transaction (a change of the vector
    space: `store.unbind_space`)."""
    for repo_id in await existing(conn):
        await conn.execute(f"DROP INDEX IF EXISTS {index_name(repo_id)}", timeout=UNBOUNDED)
