"""Plain data passed between the chunker, the embedder, storage and search.

Dataclasses, not pydantic: these are created by the hundred thousand while
indexing and cross process boundaries (the parse pool pickles them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ChunkKind(StrEnum):
    FUNCTION = "function"  # local function f / function a.b() / x.y = function / { f = function }
    METHOD = "method"  # function A:m()
    MODULE = "module"  # code between symbols: requires, locals, constants, top comments
    WINDOW = "window"  # last-resort fixed line window (file could not be parsed or scanned)


class ParseMode(StrEnum):
    AST = "ast"  # luaparser succeeded
    SCANNER = "scanner"  # luaparser failed or timed out; fault-tolerant scanner found the symbols
    LINES = "lines"  # neither worked; fixed line windows


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable unit of a Lua file.

    `text` is exactly the source lines `start_line..end_line` (1-based,
    inclusive), so line ranges can be merged and deduplicated downstream.
    A function too large for one chunk becomes several chunks with the same
    `symbol` and `signature` and increasing `part` (1, 2, ...); `part` is 0
    for a chunk that holds a whole symbol.
    """

    symbol: str  # qualified name: "M.foo", "Class:method", "f"; module chunks: module name
    kind: ChunkKind
    signature: str  # header line, e.g. "function M.foo(a, b)"; "" for module/window chunks
    doc: str  # leading comment block (LDoc/EmmyLua), comment markers stripped; "" if none
    start_line: int
    end_line: int
    text: str
    part: int = 0


@dataclass(slots=True)
class FileChunks:
    """What the chunker made of one file, and how."""

    path: str
    mode: ParseMode
    chunks: list[Chunk] = field(default_factory=list)
    error: str = ""  # why the AST parse was not used (empty when mode is AST)
    seconds: float = 0.0
