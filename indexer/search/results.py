"""What a search returns: `SearchResult` (one chunk, scored) and `Found` (the results of one
query, the mode that actually ran, and why it differs from the one asked for)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")


@dataclass(frozen=True, slots=True)
class SearchResult:
    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    score: float
    text: str
    signature: str = ""
    commit: str | None = None
    github_url: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["score"] = round(self.score, 4)
        return data


@dataclass(slots=True)
class Found:
    """What a search returns: results, the mode that actually ran, and why it differs."""

    results: list[SearchResult]
    mode: Mode
    # Set when the search was degraded (embedder down or slow: lexical only). `notice` is what
    # the operator at a terminal reads (it may name the embedder's host and say what to fix);
    # `summary` is the short, secret-free phrase a chat shows any user.
    notice: str = ""
    summary: str = ""
