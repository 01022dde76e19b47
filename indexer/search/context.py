"""Context assembly: search results -> the block a model reads, within a budget.

Overlapping or adjacent chunks of a file are merged into one snippet (the model reads a
function once, and neighbouring functions as one piece). Chunks with lines between them that
no fetched chunk covers stay separate snippets: every line inside a labelled range
`path:start-end` is the file's line, never a filler.

Snippets come best-scored first, not grouped by file in line order: models use what stands
at the start of a long context best and what stands in its middle worst ("Lost in the
Middle", Liu et al., TACL 2024), and the block may be cut by a model's own context limit from
the end; grouped by file, the best match came first in only 3 of 8 chats. Each
snippet's header names its file, so no file headings are needed. Every snippet has a header
`path:start-end (symbol)` the model can cite, and a GitHub permalink when the repository's
URL and commit are known. The block never exceeds its budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from indexer.links import permalink
from indexer.search import SearchResult

CHARS_PER_TOKEN = 3.5  # a conservative average for code; only used for token budgets
MIN_TRUNCATED = 300  # a snippet cut shorter than this is not worth showing


@dataclass(frozen=True, slots=True)
class Source:
    """One snippet as a citation: what the UI lists under the answer."""

    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    score: float
    link: str | None
    text: str

    @property
    def label(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"

    def to_json(self) -> dict:
        return {
            "repo": self.repo,
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "symbol": self.symbol,
            "score": round(self.score, 4),
            "link": self.link,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Context:
    text: str  # "" when nothing was found
    sources: list[Source] = field(default_factory=list)
    notice: str = ""  # set when retrieval was degraded: short, safe to show any chat user
    detail: str = ""  # why it was degraded, for the log (may name hosts: redact before showing)

    @property
    def files(self) -> int:
        return len({(s.repo, s.path) for s in self.sources})


@dataclass
class _Span:
    repo: str
    path: str
    lines: dict[int, str]
    symbols: list[str]
    score: float
    commit: str | None
    github_url: str | None

    @property
    def start(self) -> int:
        return min(self.lines)

    @property
    def end(self) -> int:
        return max(self.lines)

    def text(self) -> str:
        # _merge only joins chunks that overlap or touch: every line in the range is known
        return "\n".join(self.lines[n] for n in range(self.start, self.end + 1))

    def absorb(self, result: SearchResult) -> None:
        self.lines |= _lines(result)
        if result.symbol not in self.symbols:
            self.symbols.append(result.symbol)
        self.score = max(self.score, result.score)


def _lines(result: SearchResult) -> dict[int, str]:
    return {result.start_line + i: line for i, line in enumerate(result.text.split("\n"))}


def budget_chars(chars: int | None = None, tokens: int | None = None) -> int:
    """A budget in characters; a token budget is converted conservatively."""
    if tokens is not None:
        return int(tokens * CHARS_PER_TOKEN)
    return chars if chars is not None else 6000


def passing(results: Sequence[SearchResult], min_score: float) -> list[SearchResult]:
    """The results a chat's context is built from: every one when the best scores
    `min_score` or more, none otherwise.

    The floor tells a chat about the code from one that is not (an off-topic message's best
    match scores 0.06-0.18, the right function 0.25-0.5); it is a question about the chat,
    asked of its best match. Once a chat passes, a weaker result is still one of its top_k and
    the budget decides how much of it the model reads. Held to the floor one by one, results
    kept the answer out of more contexts (developer questions on 14 codebases: the answer in
    the context for 69.8 % of them, against 71.3 % now) and no off-topic chat away from code
    (bench/README.md, "min_score asks whether a chat is about the code")."""
    if not results or max(r.score for r in results) < min_score:
        return []
    return list(results)


def _touch(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    """Two line ranges overlap or are adjacent (no line between them)."""
    return a_start <= b_end + 1 and a_end >= b_start - 1


def _merge(results: Sequence[SearchResult]) -> list[_Span]:
    """Spans of merged overlapping/adjacent chunks, in order of their best score."""
    spans: list[_Span] = []
    for r in results:
        near = next(
            (
                s
                for s in spans
                if s.repo == r.repo
                and s.path == r.path
                and _touch(r.start_line, r.end_line, s.start, s.end)
            ),
            None,
        )
        if near is None:
            spans.append(
                _Span(r.repo, r.path, _lines(r), [r.symbol], r.score, r.commit, r.github_url)
            )
            continue
        near.absorb(r)
        # the grown span may now touch another one of the same file: fold them together
        for other in [
            s
            for s in spans
            if s is not near
            and s.repo == near.repo
            and s.path == near.path
            and _touch(s.start, s.end, near.start, near.end)
        ]:
            near.lines |= other.lines
            near.symbols += [x for x in other.symbols if x not in near.symbols]
            near.score = max(near.score, other.score)
            spans.remove(other)
    return sorted(spans, key=lambda s: -s.score)


def _snippet(span: _Span, text: str, end: int, multi_repo: bool) -> tuple[str, Source]:
    symbols = ", ".join(span.symbols[:3]) + (", ..." if len(span.symbols) > 3 else "")
    link = permalink(span.github_url, span.commit, span.path, span.start, end)
    where = f"{span.repo}/{span.path}" if multi_repo else span.path
    header = f"{where}:{span.start}-{end} ({symbols})"
    block = f"`{header}`" + (f" {link}" if link else "") + f"\n```lua\n{text}\n```\n"
    source = Source(span.repo, span.path, span.start, end, symbols, span.score, link, text)
    return block, source


def _truncate(span: _Span, room: int, multi_repo: bool) -> tuple[str, Source] | None:
    """The longest head of the span (whole lines) whose block fits in `room`."""
    lines = span.text().split("\n")
    lo, hi, best = 1, len(lines) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        text = "\n".join(lines[:mid]) + "\n-- ... (truncated)"
        block, source = _snippet(span, text, span.start + mid - 1, multi_repo)
        if len(block) <= room:
            best, lo = (block, source), mid + 1
        else:
            hi = mid - 1
    return best


def build_context(
    results: Sequence[SearchResult],
    *,
    budget: int = 6000,
    title: str = "Relevant Lua code",
    extra: Sequence[SearchResult] = (),
) -> Context:
    """Assemble results into a context block of at most `budget` characters, best-scored
    snippet first.

    `extra` (the code around the hits, `indexer.search.calls`) only fills what room the
    results left, in its order, after every result: it never displaces one. An extra chunk
    that overlaps a result's snippet is left out (its lines are there already); the others
    stay snippets of their own, so every labelled line is still the file's line.
    """
    if not results or budget <= 0:
        return Context("")
    multi_repo = len({r.repo for r in [*results, *extra]}) > 1
    heading = f"## {title}\n\n"
    used = len(heading)
    blocks: list[str] = []
    sources: list[Source] = []
    spans = _merge(results)
    for n, span in enumerate(spans + _extra_spans(extra, spans)):
        if n == len(spans) and not blocks:
            break  # no result fitted: no context of neighbours alone
        block, source = _snippet(span, span.text(), span.end, multi_repo)
        room = budget - used - 1  # each block is followed by a blank line
        if len(block) > room:
            if room < MIN_TRUNCATED:
                continue
            cut = _truncate(span, room, multi_repo)
            if cut is None:
                continue
            block, source = cut
        blocks.append(block)
        sources.append(source)
        used += len(block) + 1
    if not blocks:
        return Context("")
    text = (heading + "\n".join(blocks)).rstrip("\n") + "\n"
    return Context(text, sources)


def _extra_spans(extra: Sequence[SearchResult], spans: list[_Span]) -> list[_Span]:
    """One span per extra chunk, in order, leaving out any that overlaps a result's span."""
    out: list[_Span] = []
    for r in extra:
        if any(
            s.repo == r.repo
            and s.path == r.path
            and r.start_line <= s.end
            and r.end_line >= s.start
            for s in spans + out
        ):
            continue
        out.append(_Span(r.repo, r.path, _lines(r), [r.symbol], r.score, r.commit, r.github_url))
    return out
