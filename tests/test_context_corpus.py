"""Code shown to the model equals the file: on a real corpus (penlight's library), every line of
every snippet the context assembly labels `path:start-end` is that line of the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from indexer.search.context import build_context
from indexer.service import open_victor

# Indexing a real corpus takes most of two minutes here: the long tier (CI runs it too).
pytestmark = pytest.mark.hardening

QUESTIONS = [
    "split a string into a list of substrings",
    "deep comparison of two tables",
    "join path components",
    "read a file into a string",
    "format a date",
    "parse command line arguments",
    "pretty print a table",
    "class inheritance and constructors",
    "lexical scanner for Lua tokens",
    "list comprehension",
    "copy a table",
    "template expansion with embedded Lua",
    "sort a table by key",
    "check whether a value is callable",
    "strip whitespace from a string",
]


@pytest.fixture
async def penlight(settings, corpora, tmp_path) -> tuple[object, Path]:
    project = tmp_path / "penlight"
    shutil.copytree(corpora / "penlight" / "lua" / "pl", project / "pl")  # 39 files, 14k lines
    settings = settings.model_copy(update={"embed_timeout": 300})  # a busy machine: be patient
    async with open_victor(settings) as victor:
        await victor.index(str(project), name="penlight")
    return settings, project


def file_lines(project: Path, path: str) -> list[str]:
    return (project / path).read_text(encoding="utf-8", errors="replace").split("\n")


async def test_every_line_in_a_labelled_range_is_the_files_line(penlight):
    settings, project = penlight
    async with open_victor(settings) as victor:
        symbols = [
            r["symbol"]
            for r in await victor.pool.fetch(
                "SELECT DISTINCT symbol FROM chunks WHERE symbol <> '' ORDER BY symbol"
            )
        ]
        queries = QUESTIONS + symbols[::7]
        assert len(queries) > 40
        found = await victor.search(queries, top_k=16)
        contexts = []
        for f in found:
            for budget in (20_000, 1_500):  # whole snippets, and snippets cut to fit
                contexts.append((f, build_context(f.results, budget=budget)))
            # with the code around the best hits (calls.py) in the room the hits leave
            around = await victor.assemble(f.results[:4], budget=20_000, calls="both", seeds=2)
            contexts.append((f, around))
    checked = merged = added = 0
    for f, context in contexts:
        for source in context.sources:
            shown = source.text.split("\n")
            if shown[-1] == "-- ... (truncated)":
                shown.pop()
            expected = file_lines(project, source.path)[source.start_line - 1 : source.end_line]
            assert shown == expected, source.label
            checked += len(shown)
            added += "; call" in source.symbol
            merged += (
                sum(
                    r.path == source.path and source.start_line <= r.start_line <= source.end_line
                    for r in f.results
                )
                > 1
            )
    # many lines, merged snippets among them, and code added around the hits
    assert checked > 5_000 and merged > 0 and added > 20
