"""Checking that the index holds exactly what it should, read straight from PostgreSQL.

`assert_index_holds` is the "nothing lost, nothing corrupted" check of the hardening tests:
the repository's files are exactly the expected ones, each with the content id of its bytes,
and its chunks are exact slices of the decoded text that together cover every non-blank line.
"""

from __future__ import annotations

import asyncpg

from indexer.indexing.sources import blob_id, decode_lua


async def assert_index_holds(url: str, name: str, expected: dict[str, bytes]) -> dict[str, str]:
    """The index of `name` is exactly `expected` (path -> bytes). Returns path -> parse mode."""
    conn = await asyncpg.connect(url)
    try:
        repo_id = await conn.fetchval("SELECT id FROM repos WHERE name = $1", name)
        assert repo_id is not None, f"no repository {name!r} in the index"
        files = await conn.fetch(
            "SELECT path, content_hash, parse_mode, size_bytes FROM files WHERE repo_id = $1",
            repo_id,
        )
        chunks = await conn.fetch(
            "SELECT path, start_line, end_line, text FROM chunks WHERE repo_id = $1 "
            "ORDER BY path, start_line",
            repo_id,
        )
    finally:
        await conn.close()
    assert sorted(f["path"] for f in files) == sorted(expected)
    by_path: dict[str, list[asyncpg.Record]] = {}
    for c in chunks:
        by_path.setdefault(c["path"], []).append(c)
    assert set(by_path) <= set(expected), f"chunks of unknown files: {set(by_path) - set(expected)}"
    for f in files:
        data = expected[f["path"]]
        assert f["content_hash"] == blob_id(data), f["path"]
        assert f["size_bytes"] == len(data), f["path"]
        lines = decode_lua(data).split("\n")
        covered: set[int] = set()
        previous_end = 0
        for c in by_path.get(f["path"], []):
            assert c["text"] == "\n".join(lines[c["start_line"] - 1 : c["end_line"]]), (
                f["path"],
                c["start_line"],
            )
            assert c["start_line"] > previous_end, f"overlapping chunks in {f['path']!r}"
            previous_end = c["end_line"]
            covered.update(range(c["start_line"], c["end_line"] + 1))
        lost = [n for n, line in enumerate(lines, 1) if line.strip() and n not in covered]
        assert not lost, f"{f['path']!r}: lines in no chunk: {lost[:10]}"
    return {f["path"]: f["parse_mode"] for f in files}
