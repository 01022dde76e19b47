"""Chunk one Lua file: luaparser first, the fault-tolerant scanner when it fails, line
windows as the last resort.

Every named function (`local function f`, `function a.b()`, `function A:m()`,
`x.y = function`, `{ f = function }` fields) becomes a chunk that starts at its leading doc
comment and ends at its `end`. Code between functions becomes module chunks. When luaparser
fails (Luau, syntax errors) or takes longer than `time_limit`, the scanner
(`indexer.parsing.scanner`) finds the same definitions; if even that fails, the file is cut
into fixed line windows. `FileChunks.mode` and `.error` say which happened.

Naming: `return { f = function }` gives `<module>.f` (module = file stem, or the directory name
for init.lua); `local M = { sub = { f = function } }` gives `M.sub.f`; `M["x"] = function` gives
`M.x`; `return function()` at top level is named after the module. Functions nested in a
function body get their own chunk only when the enclosing function is larger than max_chars;
they keep the name they are written with (`helper`, `self.update`).
"""

from __future__ import annotations

import time

from indexer.models import FileChunks, ParseMode
from indexer.parsing import scanner
from indexer.parsing.chunks import build_chunks, line_windows
from indexer.parsing.luaparser_defs import TIME_LIMIT, ast_defs, describe_failure, parse_lua

# Bump when chunking rules change: every file is re-chunked on the next run
# (embeddings of unchanged chunk texts are still reused from the cache).
CHUNKER_VERSION = 1

MAX_CHARS = 3000


def chunk_source(
    path: str,
    source: str,
    *,
    max_chars: int = MAX_CHARS,
    time_limit: float | None = TIME_LIMIT,
) -> FileChunks:
    """Chunk one file. `path` is repo-relative (it names the module). Never raises."""
    started = time.perf_counter()
    result = FileChunks(path=path, mode=ParseMode.AST)
    try:
        src = scanner.load(path, source)
        try:
            defs = ast_defs(parse_lua(source, time_limit), src.module)
        except Exception as e:
            result.mode, result.error = ParseMode.SCANNER, describe_failure(e)
            defs = scanner.scan_defs(src)
        result.chunks = build_chunks(src, defs, max_chars)
    except Exception as e:  # a bug in the scanner or the assembly: still index the file
        result.mode = ParseMode.LINES
        result.error = "; ".join(filter(None, [result.error, f"chunking failed: {e!r}"]))
        result.chunks = line_windows(scanner.load_lines(path, source), max_chars)
    result.seconds = time.perf_counter() - started
    return result
