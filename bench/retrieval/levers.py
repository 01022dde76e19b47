"""Candidate pools for the ranking levers: Victor's fused top 50 per query, with the raw
signals a re-scorer needs, collected once per corpus and kept on disk.

For each query (doc-comment set on the held-out copy, developer questions on the corpus as it
is) this stores Victor's hybrid top 50 (`Victor.find`, as `victor search --batch` runs it) and,
for every candidate, what Victor computes but does not return: the dense cosine (from the
stored vector), and each query word's frequency per lexical field (A name, B module/params,
C doc/calls, D body, read from the chunk's weighted tsvector) with the words' document
frequencies; and the stored vectors (the candidates' and the query's, float16). From these,
`study.py` and `stage.py` re-score the same candidates offline: other fusion weights, other
field weights, a learned ranker, a moved query vector, without indexing again.

The core exposes none of these per-side scores today, so this module reads Victor's tables
directly (read-only SQL on the benchmark's own throw-away database). The API the core would
need for a ranking stage is noted in bench/README.md.
"""

from __future__ import annotations

import math
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.retrieval.heldout import write_heldout
from bench.retrieval.metrics import spans
from bench.retrieval.queries import doc_candidates, sample
from bench.retrieval.questions import load as load_questions
from bench.retrieval.victor import VictorIndex
from indexer.search.lexical import query_lexemes

# How many searchable chunks hold each word: counted here, from chunks.lex, so that the
# features do not depend on how the search finds its candidates.
_DF_SQL = """
SELECT t.lexeme, (
    SELECT count(*) FROM chunks c
    WHERE c.searchable AND c.lex @@ quote_literal(t.lexeme)::tsquery
)::float8 AS df
FROM unnest($1::text[]) AS t(lexeme)
"""

DEPTH = 50
EXPAND = 3  # results whose names' words are kept for pseudo-relevance expansion
FIELDS = "ABCD"


@dataclass
class Chunk:
    path: str
    start_line: int
    end_line: int
    kind: str
    symbol: str
    text: str
    lex_len: int
    lex_doc_len: int


@dataclass
class Pool:
    """One query and Victor's top DEPTH candidates for it."""

    set: str  # "doc" or "questions"
    id: str
    text: str
    kind: str  # question kind ("" for doc queries)
    golds: list[tuple[str, int, int]]  # answer first
    chunk_ids: list[int]  # Victor's hybrid order
    hybrid: np.ndarray  # Victor's hybrid score per candidate (1.0 for a named symbol)
    named: int  # how many leading candidates Victor put first as the named symbol
    cos: np.ndarray  # cosine of query and stored vector (0 when the chunk has none)
    idf: np.ndarray  # (L,) Victor's idf of each query lexeme
    tf: np.ndarray  # (n, L, 4) occurrences of each lexeme per field A-D
    # (n, dims) float16 stored vector per candidate (zeros without one), and the query's
    # vector: for dense-side levers (pools collected before these were kept have None)
    vecs: np.ndarray | None = None
    qvec: np.ndarray | None = None
    expansion: Expansion | None = None


@dataclass
class Expansion:
    """Lexemes of the names of a query's top EXPAND results that the query lacks."""

    tf: np.ndarray  # (n, X, 4) occurrences per field of each such lexeme in each candidate
    idf: np.ndarray  # (X,)
    source: np.ndarray  # (EXPAND, X) bool: the lexeme is in the name of the result at rank r


@dataclass
class CorpusPools:
    corpus: str
    chunks: dict[int, Chunk]
    body_avg: float
    doc_avg: float
    pools: list[Pool] = field(default_factory=list)


_TF_SQL = """
SELECT c.id, u.lexeme, w::text AS w, count(*)::int AS n
FROM chunks c, unnest(c.lex) AS u, unnest(u.weights) AS w
WHERE c.id = ANY($1::int8[]) AND u.lexeme = ANY($2::text[])
GROUP BY 1, 2, 3
"""


def _load_chunks(
    index: VictorIndex,
) -> tuple[dict[int, Chunk], dict[int, np.ndarray], float, float]:
    async def go(pool):
        rows = await pool.fetch(
            "SELECT id, path, start_line, end_line, kind, symbol, text, lex_len, lex_doc_len,"
            " embedding FROM chunks"
        )
        avg = await pool.fetchrow(
            "SELECT greatest(avg(lex_len), 1)::float8 AS b, greatest(avg(lex_doc_len), 1)::float8"
            " AS d FROM chunks WHERE searchable"
        )
        return rows, avg

    rows, avg = index.loop.run_until_complete(go(index._victor().pool))
    chunks = {
        r["id"]: Chunk(
            r["path"],
            r["start_line"],
            r["end_line"],
            r["kind"],
            r["symbol"],
            r["text"],
            r["lex_len"],
            r["lex_doc_len"],
        )
        for r in rows
    }
    vectors = {
        r["id"]: np.asarray(
            r["embedding"].to_numpy() if hasattr(r["embedding"], "to_numpy") else r["embedding"],
            dtype=np.float32,
        )
        for r in rows
        if r["embedding"] is not None
    }
    return chunks, vectors, avg["b"], avg["d"]


def _pools(
    index: VictorIndex, set_name: str, queries: list
) -> tuple[list[Pool], dict[int, Chunk], float, float]:
    chunks, vectors, body_avg, doc_avg = _load_chunks(index)
    by_span = {}
    for cid, c in chunks.items():
        by_span.setdefault((c.path, c.start_line, c.end_line), cid)
    texts = [q.text for q in queries]
    results = index.results(texts, "hybrid", DEPTH)
    qvecs = index.loop.run_until_complete(index.embedder.embed_queries(texts))

    async def tf_idf(conn, lexemes: list[str], ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(n, L, 4) occurrences of each lexeme per field, and each lexeme's idf."""
        tf = np.zeros((len(ids), len(lexemes), 4), dtype=np.float32)
        if not lexemes:
            return tf, np.zeros(0, np.float32)
        n = await conn.fetchval("SELECT count(*)::float8 FROM chunks WHERE searchable")
        df = {r["lexeme"]: r["df"] for r in await conn.fetch(_DF_SQL, lexemes)}
        row_of = {cid: i for i, cid in enumerate(ids)}
        col_of = {w: j for j, w in enumerate(lexemes)}
        for r in await conn.fetch(_TF_SQL, ids, lexemes):
            tf[row_of[r["id"]], col_of[r["lexeme"]], FIELDS.index(r["w"])] = r["n"]
        idf = [math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5)) if df[w] else 0.0 for w in lexemes]
        return tf, np.array(idf, np.float32)

    async def lexical(pool, text: str, ids: list[int]):
        """The query's lexemes, and those of the names of its top EXPAND results that the
        query lacks (for pseudo-relevance expansion), with their frequencies and idf."""
        async with pool.acquire() as conn:
            lexemes = await query_lexemes(conn, text)
            tf, idf = await tf_idf(conn, lexemes, ids)
            per_rank = [
                await query_lexemes(conn, chunks[c].symbol.replace(".", " ").replace(":", " "))
                for c in ids[:EXPAND]
            ]
            extra = list(dict.fromkeys(w for ws in per_rank for w in ws if w not in lexemes))
            xtf, xidf = await tf_idf(conn, extra, ids)
            xfrom = np.array([[w in ws for w in extra] for ws in per_rank], bool)
            return tf, idf, Expansion(xtf, xidf, xfrom.reshape(len(per_rank), -1))

    out = []
    pg = index._victor().pool
    for q, rs, qv in zip(queries, results, qvecs, strict=True):
        ids = [by_span[(r.path, r.start_line, r.end_line)] for r in rs]
        named = 0
        for r in rs:
            if r.score != 1.0:
                break
            named += 1
        tf, idf, expansion = index.loop.run_until_complete(lexical(pg, q.text, ids))
        qv = np.asarray(qv, dtype=np.float32)
        cos = np.array([float(vectors[c] @ qv) if c in vectors else 0.0 for c in ids], np.float32)
        vecs = np.stack([vectors.get(c, np.zeros_like(qv)) for c in ids]).astype(np.float16)
        out.append(
            Pool(
                set_name,
                q.id,
                q.text,
                getattr(q, "kind", ""),
                spans(q),
                ids,
                np.array([r.score for r in rs], np.float32),
                named,
                cos,
                idf,
                tf,
                vecs,
                qv.astype(np.float16),
                expansion,
            )
        )
    return out, chunks, body_avg, doc_avg


def collect(
    corpus: Path, admin_url: str, disk, max_queries: int, seed: int, questions_dir: Path
) -> CorpusPools:
    """Pools of the doc-comment set (held-out copy) and the question set (the corpus itself)."""
    doc = sample(doc_candidates(corpus), max_queries, seed)
    questions = load_questions(corpus, questions_dir / f"{corpus.name}.toml")
    index = VictorIndex(admin_url, disk)
    try:
        result = CorpusPools(corpus.name, {}, 0.0, 0.0)
        with tempfile.TemporaryDirectory(prefix="levers-") as tmp:
            for set_name, target, queries in (
                ("doc", write_heldout(corpus, doc, Path(tmp) / corpus.name), doc),
                ("questions", corpus, questions),
            ):
                if not queries:
                    continue
                index.index(target)
                pools, chunks, body_avg, doc_avg = _pools(index, set_name, queries)
                result.pools += pools
                # chunk ids are stable across the re-index of changed files only; keep both
                result.chunks.update(chunks)
                result.body_avg, result.doc_avg = body_avg, doc_avg
        return result
    finally:
        index.close()


def save(pools: CorpusPools, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pools.corpus}.pkl"
    path.write_bytes(pickle.dumps(pools, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def load(folder: Path) -> list[CorpusPools]:
    return [pickle.loads(p.read_bytes()) for p in sorted(folder.glob("*.pkl"))]
