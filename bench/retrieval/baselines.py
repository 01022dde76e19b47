"""Baselines: what a user gets today, measured in the same run as Victor.

* `owui-dense`: Open WebUI's default Knowledge-base pipeline on uploaded code: LangChain's
  RecursiveCharacterTextSplitter (1000 chars, 100 overlap), cosine with all-MiniLM-L6-v2.
* `bm25`: BM25 over the same chunks with identifier-aware tokens.
* `rrf`: reciprocal rank fusion of the two.
* `function-dense`: one chunk per function, dense (the doc's fourth reference row).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.retrieval.luascan import find_functions
from bench.retrieval.queries import lua_files, read_text
from bench.retrieval.systems import Context, Embedder, Hit, register

CHUNK_SIZE = 1000
CHUNK_OVERLAP = 100
# LangChain's default list; the final "" (split into characters) only matters for a run of
# over 1000 characters without a space or newline.
SEPARATORS = ("\n\n", "\n", " ", "")


# ---------------------------------------------------------------- recursive character splitter


def split_spans(
    text: str,
    chunk_size: int = CHUNK_SIZE,
    overlap: int = CHUNK_OVERLAP,
    separators: tuple[str, ...] = SEPARATORS,
) -> list[tuple[int, int]]:
    """Chunk `text` like LangChain's RecursiveCharacterTextSplitter (keep_separator=True,
    strip_whitespace=True) and return each chunk as a (start, end) character span, so a chunk's
    lines are known exactly. `text[start:end]` is the chunk LangChain would produce."""
    return _split(text, 0, len(text), separators, chunk_size, overlap)


def _pieces(text: str, start: int, end: int, sep: str) -> list[tuple[int, int]]:
    """Split text[start:end] before every occurrence of `sep` (the separator starts a piece)."""
    if sep == "":
        return [(i, i + 1) for i in range(start, end)]
    cuts = [start]
    pos = text.find(sep, start, end)
    while pos >= 0:
        cuts.append(pos)
        pos = text.find(sep, pos + len(sep), end)
    cuts.append(end)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _split(text, start, end, separators, chunk_size, overlap) -> list[tuple[int, int]]:
    sep, finer = separators[-1], ()
    for i, s in enumerate(separators):
        if s == "" or text.find(s, start, end) >= 0:
            sep, finer = s, separators[i + 1 :]
            break
    out: list[tuple[int, int]] = []
    small: list[tuple[int, int]] = []
    for a, b in _pieces(text, start, end, sep):
        if b - a < chunk_size:
            small.append((a, b))
            continue
        out += _merge(text, small, chunk_size, overlap)
        small = []
        out += _split(text, a, b, finer, chunk_size, overlap) if finer else [_strip(text, a, b)]
    out += _merge(text, small, chunk_size, overlap)
    return [s for s in out if s[1] > s[0]]


def _merge(text, pieces, chunk_size, overlap) -> list[tuple[int, int]]:
    """Greedily pack contiguous pieces up to chunk_size, carrying up to `overlap` chars over."""
    out: list[tuple[int, int]] = []
    current: list[tuple[int, int]] = []
    total = 0
    for a, b in pieces:
        size = b - a
        if total + size > chunk_size and current:
            out.append(_strip(text, current[0][0], current[-1][1]))
            while total > overlap or (total + size > chunk_size and total > 0):
                total -= current[0][1] - current[0][0]
                current.pop(0)
        current.append((a, b))
        total += size
    if current:
        out.append(_strip(text, current[0][0], current[-1][1]))
    return out


def _strip(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


# ---------------------------------------------------------------- chunks of a corpus


@dataclass(frozen=True, slots=True)
class TextChunk:
    path: str
    start_line: int
    end_line: int
    text: str


def _split_lines(rel: str, text: str, first_line: int = 1) -> list[TextChunk]:
    """`text` (which starts at line `first_line` of file `rel`) as 1000/100 character chunks."""
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    chunks = []
    for a, b in split_spans(text):
        first = bisect.bisect_right(line_starts, a) + first_line - 1
        last = bisect.bisect_right(line_starts, b - 1) + first_line - 1
        chunks.append(TextChunk(rel, first, last, text[a:b]))
    return chunks


def char_chunks(corpus_dir: Path) -> list[TextChunk]:
    """Every .lua file under `corpus_dir` split into 1000/100 character chunks, with lines."""
    return [
        c for rel in lua_files(corpus_dir) for c in _split_lines(rel, read_text(corpus_dir / rel))
    ]


def function_chunks(corpus_dir: Path) -> list[TextChunk]:
    """One chunk per outermost named function, with its leading comment, found by the
    benchmark's scanner; code outside functions is not indexed. This is the doc's "one chunk
    per function" reference row (R@5 0.63 on Penlight), not a model of Victor's chunker."""
    chunks = []
    for rel in lua_files(corpus_dir):
        text = read_text(corpus_dir / rel)
        lines = text.split("\n")
        done = 0  # last line of the previous function
        for fn in find_functions(text):
            start = fn.comment[0].line if fn.comment else fn.start_line
            if start > done:  # skip functions nested in the previous one
                body = "\n".join(lines[start - 1 : fn.end_line])
                chunks.append(TextChunk(rel, start, fn.end_line, body))
                done = fn.end_line
    return chunks


def _hit(c: TextChunk, score: float) -> Hit:
    return Hit(c.path, c.start_line, c.end_line, c.text, float(score))


# ---------------------------------------------------------------- dense


class DenseSystem:
    """Cosine similarity between the query and each chunk's embedding."""

    def __init__(self, name: str, embedder: Embedder, chunker=char_chunks):
        self.name = name
        self.embedder = embedder
        self.chunker = chunker
        self.embed_seconds = 0.0
        self.chunks: list[TextChunk] = []
        self.vectors = np.zeros((0, 384), dtype=np.float32)

    def index(self, corpus_dir: Path) -> None:
        self.chunks = self.chunker(corpus_dir)
        before = self.embedder.seconds
        self.vectors = self.embedder.embed([c.text for c in self.chunks])
        self.embed_seconds = self.embedder.seconds - before

    def search_batch(self, queries: list[str], k: int) -> list[list[Hit]]:
        sims = self.embedder.embed(queries) @ self.vectors.T
        out = []
        for row in sims:
            top = np.argsort(-row, kind="stable")[:k]
            out.append([_hit(self.chunks[i], row[i]) for i in top])
        return out


# ---------------------------------------------------------------- BM25

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# English stop words (the Snowball list, which PostgreSQL's `english` configuration also uses).
# Without them a doc-comment query's "the", "of", "a" favour whichever chunk has the most
# prose, and BM25 lands well below the figures in docs/retrieval-eval.md (R@5 0.41 vs 0.46).
# fmt: off
STOP_WORDS = frozenset({
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your", "yours",
    "yourself", "yourselves", "he", "him", "his", "himself", "she", "her", "hers", "herself",
    "it", "its", "itself", "they", "them", "their", "theirs", "themselves", "what", "which",
    "who", "whom", "this", "that", "these", "those", "am", "is", "are", "was", "were", "be",
    "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an",
    "the", "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for",
    "with", "about", "against", "between", "into", "through", "during", "before", "after",
    "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under",
    "again", "further", "then", "once", "here", "there", "when", "where", "why", "how", "all",
    "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not",
    "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don",
    "should", "now",
})
# fmt: on


def ident_tokens(text: str) -> list[str]:
    """Lower-cased identifiers plus their snake_case/camelCase parts, stop words dropped:
    `getElementByKey` -> getelementbykey, get, element, key."""
    out = []
    for m in _IDENT.finditer(text):
        word = m.group()
        parts = [p.lower() for p in _WORD_PART.findall(word)]
        out.append(word.lower())
        if len(parts) > 1:
            out += parts
    return [t for t in out if t not in STOP_WORDS]


class BM25:
    """Okapi BM25 (k1=1.2, b=0.75) with Lucene's always-positive idf, log(1 + (N-df+.5)/(df+.5)).

    Own code rather than `rank-bm25`: that package's Okapi idf goes negative for terms in more
    than half the chunks (`function`, `end`, `local` in Lua) and patches it with an epsilon
    floor; Lucene's form is the one Elasticsearch/OpenSearch users get, and it is 30 lines."""

    def __init__(self, docs: list[list[str]], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.n = len(docs)
        self.lengths = np.array([len(d) for d in docs], dtype=np.float64)
        self.avg_len = float(self.lengths.mean()) if self.n else 0.0
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, doc in enumerate(docs):
            for term, tf in Counter(doc).items():
                self.postings[term].append((i, tf))

    def idf(self, term: str) -> float:
        df = len(self.postings.get(term, ()))
        return math.log(1 + (self.n - df + 0.5) / (df + 0.5))

    def scores(self, query: list[str]) -> np.ndarray:
        out = np.zeros(self.n)
        norm = self.k1 * (1 - self.b + self.b * self.lengths / (self.avg_len or 1))
        for term in query:
            idf = self.idf(term)
            for i, tf in self.postings.get(term, ()):
                out[i] += idf * tf * (self.k1 + 1) / (tf + norm[i])
        return out


class BM25System:
    name = "bm25"
    embed_seconds = 0.0

    def __init__(self, name: str = "bm25"):
        self.name = name
        self.chunks: list[TextChunk] = []
        self.bm25 = BM25([])

    def index(self, corpus_dir: Path) -> None:
        self.chunks = char_chunks(corpus_dir)
        self.bm25 = BM25([ident_tokens(c.text) for c in self.chunks])

    def search_batch(self, queries: list[str], k: int) -> list[list[Hit]]:
        out = []
        for q in queries:
            s = self.bm25.scores(ident_tokens(q))
            top = [i for i in np.argsort(-s, kind="stable")[:k] if s[i] > 0]
            out.append([_hit(self.chunks[i], s[i]) for i in top])
        return out


# ---------------------------------------------------------------- fusion


def rrf(rankings: list[list[Hit]], k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion: score = sum over rankings of 1 / (k + rank). Results are
    identified by (path, lines, text), so any systems returning the same units can be fused."""
    fused: dict[tuple, float] = defaultdict(float)
    first: dict[tuple, Hit] = {}
    for ranking in rankings:
        for rank, h in enumerate(ranking, 1):
            key = (h.path, h.start_line, h.end_line, h.text)
            fused[key] += 1 / (k + rank)
            first.setdefault(key, h)
    order = sorted(fused, key=lambda key: -fused[key])
    return [Hit(*key, score=fused[key]) for key in order]


class RRFSystem:
    """RRF over the top `depth` results of each part."""

    def __init__(self, name: str, parts: list, k: int = 60, depth: int = 100):
        self.name = name
        self.parts = parts
        self.k = k
        self.depth = depth
        self.embed_seconds = 0.0

    def index(self, corpus_dir: Path) -> None:
        for p in self.parts:
            p.index(corpus_dir)
        self.embed_seconds = sum(p.embed_seconds for p in self.parts)

    def search_batch(self, queries: list[str], k: int) -> list[list[Hit]]:
        per_part = [p.search_batch(queries, max(k, self.depth)) for p in self.parts]
        return [rrf(list(lists), self.k)[:k] for lists in zip(*per_part, strict=True)]


@register("owui-dense")
def _owui_dense(ctx: Context) -> DenseSystem:
    return DenseSystem("owui-dense", ctx.embedder)


@register("function-dense")
def _function_dense(ctx: Context) -> DenseSystem:
    return DenseSystem("function-dense", ctx.embedder, function_chunks)


@register("bm25")
def _bm25(ctx: Context) -> BM25System:
    return BM25System("bm25")


@register("rrf")
def _rrf(ctx: Context) -> RRFSystem:
    return RRFSystem("rrf", [DenseSystem("owui-dense", ctx.embedder), BM25System("bm25")])
