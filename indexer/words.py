"""Words for lexical search: identifiers split the way people search for them.

Code names glue words together (`get_selection`, `getSelection`, `Picker:get_selection`),
while a question spells them apart ("get the selection"). Every identifier is indexed as
its parts plus the whole name (`get selection getselection`), so both forms match.

A chunk's words are kept in four fields, strongest first, because a query that names what a
function does usually names the function: A = the qualified name, B = the file's module path
and the parameters, C = the doc comment and the names the code calls, D = the body. PostgreSQL
stems them (`english`: plurals, -ing, -ed) and weighs them per field at query time
(`indexer.search.lexical`). Everything here is a pure function of a stored chunk, so the
fields can be recomputed from the chunks table alone (see `LEXICAL_VERSION`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from indexer.parsing.scanner import KEYWORDS

# Bump when the words of a chunk change: stored fields are recomputed on the next start.
LEXICAL_VERSION = 1

_IDENT = re.compile(r"[^\W\d]\w*")  # non-ASCII letters too: `café`
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# At most 21 names in a chain: an unbounded one made a long `a . a . a ...` quadratic (each
# name started a scan to the end of the chain; 100 KB took 90 s).
_CALL = re.compile(
    r"(?<![\w.:])(function\s+)?([A-Za-z_]\w*(?:\s*[.:]\s*[A-Za-z_]\w*){0,20})\s*[({]"
)
_SPACES = re.compile(r"\s+")
# A dotted or colon name as a user writes it: `Picker:get_selection`, `pl.List.slice`.
_QUALIFIED = re.compile(r"[A-Za-z_]\w*(?:[.:][A-Za-z_]\w*)*")
_PATH_NOISE = frozenset({"lua", "src", "lib", "init", "source"})
# Words that frame a symbol lookup ("where is X defined") rather than name the symbol.
_LOOKUP_WORDS = frozenset(
    {
        "where", "is", "are", "the", "a", "an", "defined", "define", "definition", "declared",
        "of", "for", "find", "show", "me", "function", "method", "implementation", "implemented",
        "source", "code", "what", "does", "do", "how", "in", "lua", "def",
    }
)  # fmt: skip
_BUILTIN_CALLS = frozenset(
    {
        "assert", "error", "ipairs", "pairs", "print", "select", "setmetatable", "getmetatable",
        "tostring", "tonumber", "type", "rawget", "rawset", "rawequal", "pcall", "xpcall",
        "require", "unpack", "next",
    }
)  # fmt: skip


def split_identifier(name: str) -> list[str]:
    """`getElementByKey` -> [get, element, by, key]; `get_selection` -> [get, selection]."""
    return [p.lower() for p in _PART.findall(name)]


def words(text: str, *, drop_keywords: bool = False) -> list[str]:
    """Every identifier of `text` as its lower-cased parts, plus the whole name when it has
    several parts (`get_selection` -> get selection getselection)."""
    out: list[str] = []
    for m in _IDENT.finditer(text):
        name = m.group()
        if drop_keywords and name in KEYWORDS:
            continue
        parts = split_identifier(name)
        out.extend(parts)
        if len(parts) > 1:
            out.append("".join(parts))
    return out


def module_words(path: str) -> list[str]:
    """The words of a file's path that name its module: `lua/pl/List.lua` -> pl list."""
    p = PurePosixPath(path)
    parts = [*p.parent.parts, p.stem]
    return [w for part in parts if part.lower() not in _PATH_NOISE for w in words(part)]


def params(signature: str) -> str:
    """The parameter list of a signature: `function M.f(a, b)` -> `a, b`."""
    start, end = signature.find("("), signature.rfind(")")
    return signature[start + 1 : end] if 0 <= start < end else ""


def called_names(text: str) -> list[str]:
    """Names the code calls (`prices.lookup(`, `self:emit(`), builtins left out."""
    names: list[str] = []
    for m in _CALL.finditer(text):
        if m.group(1):  # `function M.f(`: a definition, not a call
            continue
        name = _SPACES.sub("", m.group(2))
        if name.split(".")[0].split(":")[0] in KEYWORDS or name in _BUILTIN_CALLS:
            continue
        names.append(name)
    return list(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class Fields:
    """A chunk's words by field, each a space-separated string for `to_tsvector`."""

    name: str  # weight A
    context: str  # weight B: module path, parameters
    doc: str  # weight C: doc comment, called names
    body: str  # weight D

    @property
    def body_length(self) -> int:
        """Words in the body: BM25 normalises the body's weight by it."""
        return _count(self.body)

    @property
    def doc_length(self) -> int:
        return _count(self.doc)


def _count(text: str) -> int:
    return text.count(" ") + 1 if text else 0


def chunk_fields(
    path: str, symbol: str, kind: str, signature: str, doc: str, text: str, summary: str = ""
) -> Fields:
    """The lexical fields of a stored chunk. Module and window chunks carry the module's
    name as their symbol, which names no code of theirs: they get no name field. An
    LLM-written summary (indexer/summaries) is prose about the code, like a doc comment: its
    words join field C; without one the fields are exactly the code's."""
    named = kind in ("function", "method")
    body = text
    if doc:  # the chunk's text starts with its doc comment: count those words once, in C
        body = _without_leading_comments(text)
    calls = called_names(body) if named else []
    return Fields(
        name=" ".join(words(symbol)) if named else "",
        context=" ".join(module_words(path) + words(params(signature))),
        doc=" ".join(words(doc) + words(summary) + [w for c in calls for w in words(c)]),
        body=" ".join(words(body, drop_keywords=True)),
    )


def _without_leading_comments(text: str) -> str:
    lines = text.split("\n")
    i = 0
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("--")):
        i += 1
    return "\n".join(lines[i:]) if i < len(lines) else text


def query_words(query: str) -> str:
    """The query's words, split like the index's, for `to_tsvector`."""
    return " ".join(words(query))


def is_trivial(kind: str, text: str) -> bool:
    """A module chunk with (almost) nothing to find: `end`, `}`, `local M = {}`, `return M`.

    Such chunks exist because every line of a file belongs to some chunk; they are stored but
    neither embedded nor searched.
    """
    if kind not in ("module", "window"):
        return False
    names = [w for w in _IDENT.findall(text) if w not in KEYWORDS]
    return len(names) < 3 and len(text.strip()) < 80


SHORT_QUERY = 8  # tokens; a longer query is prose, where a name may be a passing mention


def symbol_terms(query: str) -> tuple[list[str], bool]:
    """The symbols a query names, and whether the query is a lookup (little but a name).

    `where is trim defined` and `Picker:get_selection` are lookups: any function of that
    name counts. In a short question (`how does get_selection work`) only identifier-like
    tokens count (`get_selection`, `M.foo`, `getSelection`). A longer text names none: its
    identifiers are mostly passing mentions ("works the other way around as is_a"), which
    measured no better than leaving them to the lexical side.
    """
    tokens = _QUALIFIED.findall(query)
    rest = [t for t in tokens if t.lower() not in _LOOKUP_WORDS]
    if len(rest) == 1 and len(tokens) <= 6:
        return rest, True
    if len(tokens) > SHORT_QUERY:
        return [], False
    return list(dict.fromkeys(t for t in tokens if _looks_like_code(t))), False


def _looks_like_code(token: str) -> bool:
    return (
        "_" in token.strip("_")
        or "." in token
        or ":" in token
        or re.search(r"[a-z][A-Z]", token) is not None
    )


_DEFINITION = re.compile(
    r"\bfunction\s+([^\W\d][\w.:]*)\s*[(<]"  # function a.b:c(  /  local function f(
    # a.b = function(  /  f = function(  /  t[k].f = function(. A name starts only where no
    # longer one could (linear time: a 50 KB word took 35 s when every position was tried).
    r"|(?:(?<![\w.])|(?<=[\])]\.))([^\W\d][\w.]*+)\s*=\s*function\s*[(<]"
)


def defined_names(text: str) -> list[str]:
    """Names of the functions defined in a chunk's text, in order, without repeats. A chunk
    holds a function and the helpers defined inside it (`local function helper`,
    `self.update = function`): a lookup of those names must find it."""
    names = [m.group(1) or m.group(2) for m in _DEFINITION.finditer(text)]
    return list(dict.fromkeys(names))


def symbol_key(symbol: str) -> str:
    """What a symbol is looked up by: its last name, lower-cased (`Picker:get_selection` ->
    `get_selection`)."""
    return symbol.replace(":", ".").rpartition(".")[2].lower()  # re.split: 4x the time
