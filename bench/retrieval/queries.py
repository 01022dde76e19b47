"""Query sets with known answers, built from the corpus itself (CodeSearchNet recipe).

* doc-comment set: the first prose paragraph of a function's doc comment is the query, the
  function is the answer (docs/retrieval-eval.md, "Method").
* symbol set: the query is a function's name (`slice`, `List:slice`, `pl.List:slice`, or
  "where is X defined"); the answer is its definition. Scored by recall@1.
"""

from __future__ import annotations

import random
import re
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.retrieval.luascan import Function, Token, find_functions

MAX_WORDS = 60
MIN_WORDS = 5

_TEST_DIRS = {"test", "tests", "spec", "specs", "__tests__", "testing"}
_VENDOR_DIRS = {
    "vendor", "vendored", "third_party", "third-party", "thirdparty", "external", "extern",
    "deps", "node_modules", "lua_modules", "rocks", ".git",
}  # fmt: skip
_TEST_FILE = re.compile(r"(^test[_-]|[_.-]spec\.lua$|[_.-]test\.lua$|^spec[_-])", re.I)

# Tags that mark a comment as describing a module or section, not the function below it.
_HEADER_TAGS = re.compile(r"@(module|classmod|submodule|script|topic|section|file|license)\b")
_LICENCE = re.compile(
    r"\b(copyright|licen[cs]ed?|permission is hereby granted|spdx|all rights reserved)\b", re.I
)
_TODO = re.compile(r"^(todo|fixme|xxx|hack)\b", re.I)
_TAG_LINE = re.compile(r"^@(?!\{)")
_FENCE = re.compile(r"^(```|~~~)")
# Commented-out code: a line that starts like a Lua statement and carries code punctuation
# (`f(`, ` = `, `==`, ` + x`, `..`, braces), or is a bare block word. Prose such as
# "return the keys of the table." starts with a keyword too, hence the punctuation test.
_CODE_START = re.compile(r"^(local|function|end|if|for|while|repeat|until|else|elseif|return)\b")
_CODE_MARK = re.compile(
    r"\b(then|do)$|\w\(|\s=\s|==|~=|\s[-+*/%]\s\w|\.\.|[{}]|\w\[|^[\w.\[\]'\"]+\s*=\s*\S|^[\w.:]+\(.*\)$"
)
_BLOCK_WORD = re.compile(r"^(end|else|do|then|repeat)[),]*$")
_STUB_BODIES = {"", "return", "return nil"}


@dataclass(frozen=True, slots=True)
class Query:
    """One query and its single correct answer (a function's line span in one file)."""

    id: str
    text: str
    path: str  # relative to the corpus root, "/"-separated
    start_line: int
    end_line: int
    symbol: str = ""  # the function's name as written, for reports
    doc_lines: tuple[int, int] = (0, 0)  # first/last line of its doc comment (0, 0 if none)


@dataclass(frozen=True, slots=True)
class Definition:
    """A named function found in a non-test source file."""

    path: str
    fn: Function


def is_source_file(rel: str) -> bool:
    """True for a Lua file that is neither a test nor vendored code."""
    parts = rel.split("/")
    if not rel.endswith(".lua"):
        return False
    if any(p.lower() in _TEST_DIRS or p.lower() in _VENDOR_DIRS for p in parts[:-1]):
        return False
    return not _TEST_FILE.search(parts[-1])


def lua_files(corpus: Path) -> list[str]:
    """All .lua files under `corpus` as sorted "/"-separated relative paths."""
    return sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*.lua") if p.is_file())


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def definitions(corpus: Path) -> list[Definition]:
    """Every named function in the corpus's non-test, non-vendored files."""
    out = []
    for rel in lua_files(corpus):
        if is_source_file(rel):
            out += [Definition(rel, fn) for fn in find_functions(read_text(corpus / rel))]
    return out


# ---------------------------------------------------------------- doc comment -> prose


def comment_lines(comment: list[Token]) -> list[str]:
    """The text of a comment block, markers removed, one entry per source line."""
    lines: list[str] = []
    for tok in comment:
        text = tok.text
        m = re.match(r"--\[(=*)\[", text)
        if m:
            body = text[m.end() :]
            close = "]" + m.group(1) + "]"
            if body.endswith(close):
                body = body[: -len(close)]
            first, _, rest = body.expandtabs(4).partition("\n")
            lines += [first.strip(), *textwrap.dedent(rest).split("\n")]
        else:
            lines.append(re.sub(r"^-+ ?", "", text.rstrip()))
    return lines


def first_paragraph(lines: list[str]) -> list[str]:
    """First prose paragraph: ends at a blank line, a tag (`@param`, `---@return`) or code
    (a fence, or a line indented by 2+ spaces beyond the comment marker and its space)."""
    para: list[str] = []
    for raw in lines:
        line = raw.strip()
        if _TAG_LINE.match(line) or _FENCE.match(line):
            break
        blank = not line or re.fullmatch(r"[-=*#~_]+", line)
        if blank or raw.expandtabs(4).startswith("  "):
            if para:
                break
            continue
        para.append(line)
    return para


def strip_markup(text: str) -> str:
    """Remove LDoc/Markdown/HTML markup, keep the words (inline code keeps its identifier)."""
    text = re.sub(r"@\{([^}|]*)\|([^}]*)\}", r"\2", text)  # @{ref|label} -> label
    text = re.sub(r"@\{([^}]*)\}", r"\1", text)  # @{ref} -> ref
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [label](url) -> label
    text = re.sub(r"</?(a|b|i|em|strong|code|tt|pre|p|br|ul|ol|li|span|div)\b[^>]*>", " ", text)
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"`+|\*\*|__(?=\w)|(?<=\w)__", "", text)
    text = re.sub(r"(?<!\w)[*_](\S[^*_]*)[*_](?!\w)", r"\1", text)  # *em* / _em_
    return " ".join(text.split())


def _is_code_line(line: str) -> bool:
    if _BLOCK_WORD.match(line):
        return True
    if line.endswith((".", "?", "!", ":")):
        return False
    return bool(_CODE_MARK.search(line)) and (
        bool(_CODE_START.match(line)) or bool(re.match(r"^[\w.:\[\]'\"]+\s*(=|\()", line))
    )


def _looks_like_code(lines: list[str]) -> bool:
    return sum(_is_code_line(line) for line in lines) * 2 > len(lines)


def doc_query_text(fn: Function) -> str | None:
    """The query for `fn`'s doc comment, or None when the method says to drop it."""
    if not fn.comment or fn.body_text.strip() in _STUB_BODIES:
        return None
    lines = comment_lines(fn.comment)
    whole = "\n".join(lines)
    if _HEADER_TAGS.search(whole) or _LICENCE.search(whole):
        return None
    para = first_paragraph(lines)
    if not para or _TODO.match(para[0]) or _looks_like_code(para):
        return None
    words = strip_markup(" ".join(para)).split()
    if len(words) < MIN_WORDS:
        return None
    return " ".join(words[:MAX_WORDS])


def doc_candidates(corpus: Path) -> list[Query]:
    """Every doc-comment -> function query the method allows, in file/line order."""
    candidates = []
    for d in definitions(corpus):
        text = doc_query_text(d.fn)
        if text is None:
            continue
        doc = (d.fn.comment[0].line, d.fn.comment[-1].end_line)
        qid = f"{d.path}:{d.fn.start_line}"
        candidates.append(Query(qid, text, d.path, d.fn.start_line, d.fn.end_line, d.fn.name, doc))
    shared = Counter(q.text.lower() for q in candidates)
    return [q for q in candidates if shared[q.text.lower()] == 1]


def sample(items: list[Query], k: int, seed: int) -> list[Query]:
    """At most `k` items, chosen with a fixed seed, kept in their original order."""
    if len(items) <= k:
        return items
    picked = random.Random(seed).sample(range(len(items)), k)
    return [items[i] for i in sorted(picked)]


# ---------------------------------------------------------------- symbol lookup


def module_name(rel: str) -> str:
    """`lua/pl/List.lua` -> `pl.List`; `src/init.lua` -> `src`-less package name."""
    parts = rel[: -len(".lua")].split("/")
    if len(parts) > 1 and parts[0] in ("lua", "src", "lib"):
        parts = parts[1:]
    if len(parts) > 1 and parts[-1] == "init":
        parts = parts[:-1]
    return ".".join(parts)


def symbol_forms(d: Definition) -> list[str]:
    """Names a user might type for `d`: `slice`, `List:slice`, and `pl.List:slice` when the
    written name is qualified by the module's own table (`List` in List.lua, or `M`/`_M`)."""
    written = d.fn.name
    parts = re.split(r"[.:]", written)
    forms = [parts[-1]] if parts[0] == "self" else [parts[-1], written]
    module = module_name(d.path)
    if len(parts) > 1 and parts[0].lower() in (module.split(".")[-1].lower(), "m", "_m"):
        forms.append(module + written[len(parts[0]) :])
    return [f for f in dict.fromkeys(forms) if len(f) >= 3]


def symbol_candidates(corpus: Path, seed: int = 0) -> list[Query]:
    """Name-lookup queries: one of a function's unambiguous names, picked at random, half of
    them phrased "where is X defined". Functions whose every name is shared with another
    definition (or shorter than 3 characters) are skipped."""
    defs = definitions(corpus)
    counts = Counter(form for d in defs for form in symbol_forms(d))
    rng = random.Random(seed)
    candidates = []
    for d in defs:
        unique = [f for f in symbol_forms(d) if counts[f] == 1]
        if not unique:
            continue
        name = rng.choice(unique)
        text = f"where is {name} defined" if rng.random() < 0.5 else name
        qid = f"{d.path}:{d.fn.start_line}"
        candidates.append(Query(qid, text, d.path, d.fn.start_line, d.fn.end_line, d.fn.name))
    return candidates
