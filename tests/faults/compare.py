"""Comparing an index that lived through faults with one built cleanly."""

from __future__ import annotations

import json

import asyncpg
import numpy as np

from indexer.store import postings


async def snapshot(url: str, repo: str) -> dict:
    """What the index holds for one repository, independent of row ids and timestamps."""
    conn = await asyncpg.connect(url)
    try:
        repo_id, commit = await conn.fetchrow(
            "SELECT id, commit_sha FROM repos WHERE name = $1", repo
        )
        files = {
            r["path"]: (r["content_hash"], r["commit_sha"], r["parse_mode"], r["chunker_version"])
            for r in await conn.fetch("SELECT * FROM files WHERE repo_id = $1", repo_id)
        }
        rows = await conn.fetch(
            "SELECT path, symbol, kind, start_line, end_line, part, text, embed_hash, name_hash, "
            "searchable, embedding::text AS embedding FROM chunks WHERE repo_id = $1",
            repo_id,
        )
        lexical = await postings.check(conn, repo_id)  # the lexical index in step with chunks
        orphans = await conn.fetchval(
            "SELECT count(*) FROM files f WHERE f.repo_id = $1 AND NOT EXISTS "
            "(SELECT 1 FROM chunks c WHERE c.repo_id = f.repo_id AND c.path = f.path)",
            repo_id,
        )
    finally:
        await conn.close()
    chunks = {}
    for r in rows:
        key = (r["path"], r["symbol"], r["kind"], r["start_line"], r["end_line"], r["part"])
        assert key not in chunks, f"chunk twice: {key}"
        vector = None if r["embedding"] is None else np.array(json.loads(r["embedding"]))
        chunks[key] = (r["text"], bytes(r["embed_hash"]), r["searchable"], vector)
    return {
        "commit": commit,
        "files": files,
        "chunks": chunks,
        "orphans": orphans,
        "lexical": lexical,
    }


def assert_same(got: dict, clean: dict, *, file_commits: bool = True) -> None:
    """The same files and chunks; vectors equal up to float noise (batching changes the
    embedding model's arithmetic by ~1e-7). `file_commits=False` for an index built by
    several syncs: each file row records the commit it was last written at, a clean sync
    records the head for all."""
    assert got["orphans"] == 0
    assert got["lexical"] == {"postings": 0, "terms": 0, "stats": 0}, got["lexical"]
    assert got["commit"] == clean["commit"]
    if file_commits:
        assert got["files"] == clean["files"]
    else:

        def without_commit(files: dict) -> dict:
            return {path: (h, mode, version) for path, (h, _, mode, version) in files.items()}

        assert without_commit(got["files"]) == without_commit(clean["files"])
    assert got["chunks"].keys() == clean["chunks"].keys()
    for key, (text, embed_hash, searchable, vector) in got["chunks"].items():
        c_text, c_hash, c_searchable, c_vector = clean["chunks"][key]
        assert (text, embed_hash, searchable) == (c_text, c_hash, c_searchable), key
        assert (vector is None) == (c_vector is None), key
        if vector is not None:
            assert float(np.dot(vector, c_vector)) > 0.999, key
