"""What a search returns: `SearchResult` (one chunk, scored) and `Found` (the results of one
query, the mode that actually ran, and why it differs from the one asked for); `Candidate`
(what fusion needs of a chunk before any text is read) and how a result is read from its row."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import asyncpg

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


@dataclass(frozen=True, slots=True)
class Candidate:
    """What fusion and the ranking stage need of a candidate chunk. Its text and links are
    read only for the candidates the stage re-orders and the results a search returns
    (`RESULT_SELECT`), not for every candidate of both sides."""

    path: str
    kind: str
    cos: float  # cosine similarity to the query; 0 without a vector
    symbol: str = ""
    lines: int = 1
    # per field (name, module/params, doc/calls, body): the query words' idf x saturated
    # count, unweighted and not length-normalised (`indexer.search.ranking`); 0 without a match
    parts: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    # the share of the query words' idf found in the name field, and in any field
    cover: tuple[float, float] = (0.0, 0.0)

    def with_cos(self, cos: float) -> Candidate:
        """The same candidate with another cosine (`dataclasses.replace` inspects the fields
        on every call: about twice the time, for ~50 candidates a chat turn)."""
        return Candidate(self.path, self.kind, cos, self.symbol, self.lines, self.parts, self.cover)


# A result's row: `RESULT_SELECT + "WHERE ..."`. The file's commit is a per-row primary-key
# read: a join let the planner hash all of `files` (a sequential scan of 10,000 rows at 100k
# chunks) to attach the commit to a few rows.
RESULT_SELECT = """
    SELECT c.id, r.name AS repo, c.path, c.start_line, c.end_line, c.symbol, c.kind, c.text,
           c.signature, r.github_url,
           (SELECT f.commit_sha FROM files f
            WHERE f.repo_id = c.repo_id AND f.path = c.path) AS commit_sha
    FROM chunks c
    JOIN repos r ON r.id = c.repo_id
"""


def result_of(row: asyncpg.Record, score: float) -> SearchResult:
    """The SearchResult of a `RESULT_SELECT` row."""
    return SearchResult(
        repo=row["repo"],
        path=row["path"],
        start_line=row["start_line"],
        end_line=row["end_line"],
        symbol=row["symbol"],
        kind=row["kind"],
        score=score,
        text=row["text"],
        signature=row["signature"],
        commit=row["commit_sha"],
        github_url=row["github_url"],
    )
