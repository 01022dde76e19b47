"""Limits of the statements whose cost grows with the index: building an HNSW graph and
rewriting every chunk's vector (`victor reembed`).

The pool's per-statement limit (VICTOR_SQL_TIMEOUT, 300 s: asyncpg's command timeout) guards a
chat and an index run against a hung server; these statements take minutes at 100k+ chunks
(a 250,000-chunk repository's graph: ~270 s on a 2-core machine), so they get `UNBOUNDED`.
"""

UNBOUNDED = 24 * 3600.0  # seconds

# Memory for an HNSW build: a graph that outgrows it builds several times slower (pgvector's
# notice "hnsw graph no longer fits into maintenance_work_mem"); 384-dim vectors take ~2 KB
# each, so 1 GB holds ~500,000 chunks. A ceiling, not an allocation.
BUILD_MEMORY = "1GB"
