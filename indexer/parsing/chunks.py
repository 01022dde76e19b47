"""Chunk assembly: a file's definitions (from the AST or the scanner) -> chunks.

Both parse paths reduce a file to a tree of `Def`s; `build_chunks` turns that tree into one
chunk per top-level definition (with its leading doc comment), module chunks for the code
between them, and windows for definitions too large for one chunk. So the scanner and the AST
give identical chunks whenever they find the same definitions.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right

from indexer.models import Chunk, ChunkKind
from indexer.parsing.scanner import COMMENT, LONG_BRACKET, Def, SourceFile, load, scan_defs


def build_chunks(src: SourceFile, defs: list[Def], max_chars: int) -> list[Chunk]:
    """One chunk per top-level definition (split if too large) and module chunks between them."""
    chunks: list[Chunk] = []
    done = 0  # last line already in a chunk
    for fn in sorted(defs, key=lambda d: d.line):
        if fn.line <= done:
            continue  # shares a line with the previous definition: already in its chunk
        first = doc_start(src, fn.line, done)
        chunks.extend(module_chunks(src, done + 1, first - 1, max_chars))
        chunks.extend(def_chunks(src, fn, first, max_chars))
        done = max(fn.end_line, fn.line)
    chunks.extend(module_chunks(src, done + 1, len(src.lines), max_chars))
    return chunks


def module_chunks(src: SourceFile, first: int, last: int, max_chars: int) -> list[Chunk]:
    return [
        Chunk(src.module, ChunkKind.MODULE, "", "", a, b, src.text(a, b))
        for a, b in windows(src, first, last, max_chars)
    ]


def def_chunks(src: SourceFile, fn: Def, first: int, max_chars: int) -> list[Chunk]:
    """The chunks of one definition whose leading comment starts at line `first`.

    A definition larger than max_chars gives its nested named functions their own
    chunks (named as written, e.g. `helper` or `self.update`) and the rest of its
    lines become windows sharing its symbol and signature, numbered part 1, 2, ...
    """
    last = max(fn.end_line, fn.line)
    signature = def_signature(src, fn)
    doc = doc_text(src, first, fn.line)

    def chunk(a: int, b: int, part: int) -> Chunk:
        return Chunk(fn.name, fn.kind, signature, doc, a, b, src.text(a, b), part)

    if src.size(first, last) <= max_chars:
        return [chunk(first, last, 0)]
    kids: list[Chunk] = []
    spans: list[tuple[int, int]] = []
    cursor = first  # first line not yet in a chunk
    for kid in sorted(fn.children, key=lambda d: d.line):
        if kid.line < cursor or kid.line <= fn.line or kid.end_line > last:
            continue
        kid_first = doc_start(src, kid.line, max(cursor - 1, fn.line))
        spans.extend(windows(src, cursor, kid_first - 1, max_chars))
        kids.extend(def_chunks(src, kid, kid_first, max_chars))
        cursor = max(kid.end_line, kid.line) + 1
    spans.extend(windows(src, cursor, last, max_chars))
    parts = [chunk(a, b, n) for n, (a, b) in enumerate(spans, 1)]
    return sorted(parts + kids, key=lambda c: c.start_line)


def windows(src: SourceFile, first: int, last: int, max_chars: int) -> list[tuple[int, int]]:
    """Split lines first..last into runs of at most max_chars, without blank edges.

    A run is cut after a blank line when one falls in its second half, so windows
    tend to end between statements. A single line longer than max_chars is its own run.
    """
    runs: list[tuple[int, int]] = []
    a = first
    while a <= last:
        while a <= last and src.blank(a):
            a += 1
        if a > last:
            break
        b = bisect_right(src.cum, src.cum[a - 1] + max_chars + 1) - 1
        b = min(max(b, a), last)
        if b < last:
            for k in range(b, (a + b) // 2, -1):
                if src.blank(k):
                    b = k
                    break
        end = b
        while src.blank(end):
            end -= 1
        runs.append((a, end))
        a = b + 1
    return runs


def line_windows(src: SourceFile, max_chars: int) -> list[Chunk]:
    """Last resort: fixed windows over the whole file."""
    return [
        Chunk(src.module, ChunkKind.WINDOW, "", "", a, b, src.text(a, b), n)
        for n, (a, b) in enumerate(windows(src, 1, len(src.lines), max_chars), 1)
    ]


def doc_start(src: SourceFile, line: int, floor: int) -> int:
    """First line of the comment block directly above `line` (no blank line between)."""
    first = line
    while first - 1 > floor and src.kinds[first - 1] == COMMENT:
        first -= 1
    return first


def doc_text(src: SourceFile, first: int, line: int) -> str:
    """The comments on lines first..line-1 with the comment markers stripped."""
    out: list[str] = []
    i = bisect_left(src.token_lines, first)
    while i < len(src.tokens) and src.tokens[i].line < line:
        t = src.tokens[i]
        if t.kind == "comment":
            out.extend(_strip_comment(t.text))
        i += 1
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(out))
    return text.strip()


def _strip_comment(text: str) -> list[str]:
    body = text[2:]
    m = LONG_BRACKET.match(body)
    if not m:
        return [body.lstrip("-").strip()]
    close = "]" + m.group(1) + "]"
    body = body[m.end() :]
    if body.endswith(close):
        body = body[: -len(close)]
    lines = [ln.strip() for ln in body.lstrip("-").split("\n")]
    return lines


def def_signature(src: SourceFile, fn: Def) -> str:
    """The header up to the `)` that closes the parameter list, on one line."""
    toks = src.tokens
    i = bisect_left(src.starts, fn.start)
    limit = min(len(toks), i + 400)
    j = i
    while j < limit and not (toks[j].kind == "keyword" and toks[j].text == "function"):
        j += 1
    while j < limit and toks[j].text != "(":
        j += 1
    depth = 0
    while j < limit:
        if toks[j].kind == "op":
            depth += {"(": 1, ")": -1}.get(toks[j].text, 0)
            if depth == 0:
                break
        j += 1
    if j >= limit:  # no parameter list found: fall back to the first line
        return " ".join(src.lines[fn.line - 1].split())
    parts: list[str] = []
    prev_end = None
    for t in toks[i : j + 1]:
        if t.kind == "comment":
            continue
        if prev_end is not None and (t.start > prev_end) and parts[-1] != "(" and t.text != ")":
            parts.append(" ")
        parts.append(t.text)
        prev_end = t.start + len(t.text)
    return " ".join("".join(parts).split())


def scan_chunks(path: str, source: str, max_chars: int = 3000) -> list[Chunk]:
    """Chunk a file with the scanner alone (what the chunker falls back to)."""
    src = load(path, source)
    return build_chunks(src, scan_defs(src), max_chars)
