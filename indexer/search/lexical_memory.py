"""The lexical index held in memory by a long-lived chat process (the Pipelines filter, the
LiteLLM hook, the MCP server): the lexical statement's ranking (`indexer.search.lexical`),
computed with numpy from a copy of the postings instead of by PostgreSQL.

Why: at 100k chunks that statement is about half of a chat turn's database CPU (reading some
10,000 postings of a question's common words and summing them per chunk: 8-18 ms), and twenty
chats at once queue for it on two cores. On arrays in the chat's process the lexical side
takes 4 ms instead of 22 (p50 at 100k chunks, this module's one statement included; its
PostgreSQL CPU per chat turn is halved: bench/README.md, "The lexical index in memory").

The ranking is the statement's, step for step: the best `reach` postings of each word, the
approximate top `rescore`, their exact BM25F with the scope's counts, the `extra` chunks scored
too; all of every list when they are short. The exact scores are summed in the statement's
order, so they are equal to the bit; the approximate sums are not (PostgreSQL adds them in
hash order), so a tie to the last bit at the `rescore` boundary could pick another chunk to
score (none in the tests, none of 300 searches at 100k). `tests/test_lexical_memory.py`
compares the two on real codebases, `bench.lexical_memory` at 100k chunks. A lone chat
ranks in two halves (`search.lexical_ahead`): its own top while the query is embedded, then
the dense side's candidates (`Scope.score`, `with_extra`), with the same result.

Never stale: a repository's postings are loaded with its `lex_stats.version` in one snapshot,
and a search uses them only while every repository in its scope still has that version (read
in the statement that also stems the query: one round trip). Every change of a repository's
postings renews its version (`indexer.store.postings`), so after an index run, a sync or a
removal the search reads the database, as without this module, until the new postings are
loaded: in the background, on a connection of its own, once the version has stopped changing
for SETTLE seconds (an index run commits every few files; a repository never loaded yet is
loaded at once). Repositories that do not fit in `max_bytes` stay in the database.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np

from indexer import words as lexical_words
from indexer.errors import DatabaseUnavailable
from indexer.search import lexical
from indexer.search.fusion import Tuning
from indexer.search.ranking import PART_K1
from indexer.store.connection import connect_once
from indexer.store.postings import REF_K1

log = logging.getLogger(__name__)

SETTLE = 5.0  # seconds a changed repository's version must hold before it is loaded again
RETRY = 60.0  # after a failed load, or on a database without versions, search it meanwhile
LOAD_TIMEOUT = 900.0  # seconds for one repository's load (1M chunks' biggest: 90 s here)
MB = 1024 * 1024

# The query's words as the index stores them, and the version of each repository in scope.
_SCOPE = """
SELECT tsvector_to_array(to_tsvector('english', $1::text)) AS lexemes,
       coalesce(array_agg(repo_id ORDER BY repo_id), '{}') AS repos,
       coalesce(array_agg(version ORDER BY repo_id), '{}') AS versions
FROM lex_stats
WHERE chunks > 0 AND ($2::int[] IS NULL OR repo_id = ANY($2::int[]))
"""

# One row of `COPY ... (FORMAT binary)` of `_POSTINGS`: a field count, then each field's
# length and value, big-endian. Every column is NOT NULL and fixed-width, so every row has
# this layout and numpy reads them all at once.
_FIELDS = (
    ("chunk", ">i8"),
    ("impact", ">f4"),
    ("na", ">i2"),
    ("nb", ">i2"),
    ("nc", ">i2"),
    ("nd", ">i2"),
    ("doc", ">i4"),
    ("body", ">i4"),
    ("module", "u1"),
)
_ROW = np.dtype(
    [("fields", ">i2")]
    + [x for n, (name, kind) in enumerate(_FIELDS) for x in ((f"len{n}", ">i4"), (name, kind))]
)
_POSTINGS = """
SELECT chunk_id, impact, na, nb, nc, nd, doc_len, body_len, module
FROM lex_postings WHERE repo_id = $1
ORDER BY term, impact DESC, chunk_id
"""
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
# What one posting costs held here (the arrays of `Postings`), and one word of its dictionary.
POSTING_BYTES = 8 + 4 + 4 * 2 + 4 + 4 + 1 + 8 + 8
WORD_BYTES = 120


class DoesNotFit(Exception):
    """A repository's postings would take more memory than is left for them."""

    def __init__(self, version: int):
        self.version = version


@dataclass(frozen=True, slots=True)
class Postings:
    """One repository's lexical index as loaded: its `lex_stats` row, and per word its
    postings ordered as `lex_postings_impact_idx` orders them (impact, best first; then
    chunk id), plus the same rows ordered by chunk id to find a given chunk's posting."""

    repo_id: int
    version: int
    chunks: int
    body_len: int
    doc_len: int
    words: dict[str, int]  # word -> its list: rows starts[i]:starts[i + 1]
    starts: np.ndarray  # int64
    chunk: np.ndarray  # int64
    impact: np.ndarray  # float32
    counts: np.ndarray  # int16 (rows, 4): occurrences in fields A (name) .. D (body)
    doc: np.ndarray  # int32: the chunk's doc length
    body: np.ndarray  # int32: the chunk's body length
    module: np.ndarray  # bool: a module or window chunk
    by_chunk: np.ndarray  # int64: each list's rows ordered by chunk id
    sorted_chunk: np.ndarray  # int64: chunk[by_chunk]

    @property
    def nbytes(self) -> int:
        return len(self.chunk) * POSTING_BYTES + len(self.words) * WORD_BYTES


def parse_copy(data: bytes | bytearray, rows: int) -> np.ndarray:
    """The rows of a binary COPY of `_POSTINGS`, as one structured array (checked)."""
    if not data.startswith(_SIGNATURE) or not data.endswith(b"\xff\xff"):
        raise ValueError("not a binary COPY")
    extension = int.from_bytes(data[15:19], "big")
    body = memoryview(data)[19 + extension : len(data) - 2]
    if len(body) != rows * _ROW.itemsize:
        raise ValueError(f"{len(body)} bytes for {rows} postings")
    table = np.frombuffer(body, dtype=_ROW)
    sizes = [np.dtype(kind).itemsize for _, kind in _FIELDS]
    if not (table["fields"] == len(_FIELDS)).all() or any(
        not (table[f"len{n}"] == size).all() for n, size in enumerate(sizes)
    ):
        raise ValueError("unexpected row layout")
    return table


def arrays(
    repo_id: int, stats: asyncpg.Record, words: list[str], dfs: list[int], data: bytearray
) -> Postings:
    """`Postings` from what `load` read (numpy work: run it off the event loop)."""
    table = parse_copy(data, sum(dfs))
    starts = np.zeros(len(dfs) + 1, np.int64)
    np.cumsum(dfs, out=starts[1:])
    chunk = table["chunk"].astype(np.int64)
    lists = np.repeat(np.arange(len(dfs)), dfs)
    by_chunk = np.lexsort((chunk, lists))
    return Postings(
        repo_id=repo_id,
        version=stats["version"],
        chunks=stats["chunks"],
        body_len=stats["body_len"],
        doc_len=stats["doc_len"],
        words={w: i for i, w in enumerate(words)},
        starts=starts,
        chunk=chunk,
        impact=table["impact"].astype(np.float32),
        counts=np.stack([table[f].astype(np.int16) for f in ("na", "nb", "nc", "nd")], axis=1),
        doc=table["doc"].astype(np.int32),
        body=table["body"].astype(np.int32),
        module=table["module"].astype(bool),
        by_chunk=by_chunk,
        sorted_chunk=chunk[by_chunk],
    )


async def load(conn: asyncpg.Connection, repo_id: int, max_bytes: int) -> Postings | None:
    """A repository's postings and counts, read in one snapshot; None when it has no
    searchable chunk. Raises DoesNotFit when they would take more than `max_bytes`."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        stats = await conn.fetchrow(
            "SELECT version, chunks, body_len, doc_len FROM lex_stats WHERE repo_id = $1",
            repo_id,
        )
        if stats is None or stats["chunks"] <= 0:
            return None
        terms = await conn.fetch(
            "SELECT term, df FROM lex_terms WHERE repo_id = $1 AND df > 0 ORDER BY term",
            repo_id,
        )
        dfs = [r["df"] for r in terms]
        size = sum(dfs) * POSTING_BYTES + len(dfs) * WORD_BYTES
        if size > max_bytes:
            log.info(
                "the lexical index of repository %d (%.0f MB) does not fit in the %.0f MB left "
                "for it in memory (VICTOR_LEXICAL_MEMORY_MB): it is searched in the database",
                repo_id,
                size / MB,
                max_bytes / MB,
            )
            raise DoesNotFit(stats["version"])
        data = bytearray()  # one buffer, grown in place: no second copy to join the pieces

        async def keep(chunk: bytes) -> None:
            data.extend(chunk)

        await conn.copy_from_query(_POSTINGS, repo_id, output=keep, format="binary")
    words = [r["term"] for r in terms]
    return await asyncio.to_thread(arrays, repo_id, stats, words, dfs, data)


@dataclass(frozen=True, slots=True)
class Scored:
    """A chunk as the lexical statement scores it (its `ranked` row)."""

    score: float
    parts: tuple[float, float, float, float]
    cover: tuple[float, float]


@dataclass(frozen=True, slots=True)
class Scope:
    """The query's words and the postings of every repository a search covers."""

    lexemes: list[str]
    lists: list[Postings]

    def rank(
        self, tuning: Tuning, depth: int, extra: Sequence[int] = (), **bounds: int
    ) -> dict[int, Scored]:
        """What `lexical.lexical_side` scores: the best `depth` chunks and every `extra` one
        holding a query word, by BM25F with `tuning` (`bounds`: `reach`, `rescore`)."""
        return rank(self.lists, self.lexemes, tuning, depth, extra, **bounds)

    def score(self, tuning: Tuning, chunks: Sequence[int]) -> dict[int, Scored]:
        """The exact scores of the `chunks` holding a query word (the rest are left out): a
        search's `extra` chunks, once `rank` gave its own top without them (`with_extra`)."""
        words = _words(self.lists, self.lexemes)
        if words is None or not len(chunks):
            return {}
        ids = np.unique(np.asarray(chunks, np.int64))
        return _scored(words, ids, tuning, np.arange(len(ids)))


def with_extra(own: dict[int, Scored], more: dict[int, Scored], depth: int) -> dict[int, Scored]:
    """What `rank(depth, extra)` returns, from `rank(depth)` (`own`) and the `extra` chunks'
    `score` (`more`): the approximate stage picks the same chunks with or without them, so
    the best `depth` of both is the best `depth` of all (ties by chunk id), and every extra
    chunk is kept."""
    both = own | more
    best = sorted(both, key=lambda i: (-both[i].score, i))[:depth]
    return {i: both[i] for i in sorted(more.keys() | set(best))}


@dataclass(frozen=True, slots=True)
class _List:
    """One word's list in one repository, and how much of it a search reads."""

    postings: Postings
    word: int  # the word's place among the query's words, in the statement's order
    idf: float
    start: int
    stop: int
    reach: int


@dataclass(frozen=True, slots=True)
class _Words:
    """The query's lists in a scope, and the scope's counts."""

    lists: list[_List]
    idfs: list[float]  # per query word found, in the statement's order
    n: float  # the scope's chunks
    body_avg: float
    doc_avg: float


def _words(
    lists: Sequence[Postings], lexemes: Sequence[str], reach: int = lexical.REACH
) -> _Words | None:
    """The lists of the query's words in these repositories, with the statement's idf and
    averages; None when no chunk holds any of them."""
    n_chunks = sum(p.chunks for p in lists)
    if n_chunks == 0:
        return None
    n = float(n_chunks)
    min_reach = lexical.MIN_REACH if reach > 0 else 0
    every: list[_List] = []
    idfs: list[float] = []
    for term in sorted(set(lexemes)):  # by code point: the order of PostgreSQL's "C"
        found = [(p, p.words[term]) for p in lists if term in p.words]
        if not found:
            continue
        bounds = [(int(p.starts[i]), int(p.starts[i + 1])) for p, i in found]
        df = sum(stop - start for start, stop in bounds)
        idf = math.log(1 + ((n - df) + 0.5) / (df + 0.5))
        for (p, _), (start, stop) in zip(found, bounds, strict=True):
            share = max(min_reach, math.ceil(reach * p.chunks / n))
            every.append(_List(p, len(idfs), idf, start, stop, share))
        idfs.append(idf)
    if not every:
        return None
    body_avg = max(float(sum(p.body_len for p in lists)) / n, 1.0)
    doc_avg = max(float(sum(p.doc_len for p in lists)) / n, 1.0)
    return _Words(every, idfs, n, body_avg, doc_avg)


def rank(
    lists: Sequence[Postings],
    lexemes: Sequence[str],
    tuning: Tuning,
    depth: int,
    extra: Sequence[int] = (),
    reach: int = lexical.REACH,
    rescore: int = lexical.RESCORE,
) -> dict[int, Scored]:
    """The `ranked` rows of the lexical statement (see the module's docstring), for the
    repositories `lists` and the query's `lexemes`."""
    words = _words(lists, lexemes, reach)
    if words is None:
        return {}
    every = words.lists
    complete = (
        all(x.stop - x.start <= x.reach for x in every)
        and min(sum(x.stop - x.start for x in every), words.n) <= lexical.EXACT
    )
    if complete:
        chunks = np.unique(np.concatenate([x.postings.chunk[x.start : x.stop] for x in every]))
    else:
        chunks = _approximate(every, tuning.k1, max(rescore, 2 * depth), extra)
    score, parts, cover, held = _exact(chunks, words, tuning)
    ids = chunks[held]
    order = np.lexsort((ids, -score[held]))
    wanted = order[:depth]
    if len(extra):
        wanted = np.union1d(wanted, np.flatnonzero(np.isin(ids, np.asarray(extra, np.int64))))
    return _scored(words, chunks, tuning, held[np.sort(wanted)], (score, parts, cover))


def _scored(
    words: _Words,
    chunks: np.ndarray,
    tuning: Tuning,
    places: np.ndarray,
    exact: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[int, Scored]:
    """The chunks at `places` of `chunks` that hold a query word, as `Scored` rows by id
    (`exact`: `_exact`'s scores of `chunks`, when computed already)."""
    if exact is None:
        score, parts, cover, held = _exact(chunks, words, tuning)
        places = np.intersect1d(places, held)
    else:
        score, parts, cover = exact
    return {
        i: Scored(s, tuple(p), tuple(c))
        for i, s, p, c in zip(
            chunks[places].tolist(),
            score[places].tolist(),
            parts[places].tolist(),
            cover[places].tolist(),
            strict=True,
        )
    }


def _approximate(every: list[_List], k1: float, rescore: int, extra: Sequence[int]) -> np.ndarray:
    """The chunks the exact score is computed for: the best `rescore` by the sum of their
    postings' parts among each list's best `reach`, and the `extra` ones."""
    tops = [(x, min(x.stop, x.start + x.reach)) for x in every]
    impact = np.concatenate([x.postings.impact[x.start : stop] for x, stop in tops])
    ids = np.concatenate([x.postings.chunk[x.start : stop] for x, stop in tops])
    idf = np.repeat([x.idf for x, _ in tops], [stop - x.start for x, stop in tops])
    impact = impact.astype(np.float64)
    tf = impact * REF_K1 / (REF_K1 + 1 - impact)
    chunks, where_in = np.unique(ids, return_inverse=True)
    sums = np.bincount(where_in, weights=idf * tf * (k1 + 1) / (tf + k1))
    return np.union1d(chunks[_best(sums, rescore)], np.asarray(extra, np.int64))


def _best(sums: np.ndarray, k: int) -> np.ndarray:
    """The places of the `k` highest `sums`, ties to the lower place (the lower chunk id: the
    places follow the ids), without sorting them all."""
    if len(sums) <= k:
        return np.arange(len(sums))
    kth = np.partition(sums, len(sums) - k)[len(sums) - k]  # the k-th highest
    above = np.flatnonzero(sums > kth)
    return np.concatenate([above, np.flatnonzero(sums == kth)[: k - len(above)]])


def _exact(
    chunks: np.ndarray, words: _Words, tuning: Tuning
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each of the `chunks` (sorted): its BM25F score, the ranking stage's parts (chunks x 4)
    and cover (chunks x 2); and which of them hold a query word. A chunk is in one repository,
    so it has at most one posting per word: per word a column, summed in the statement's
    order (x + 0.0 is x: the empty cells change nothing)."""
    every, idfs, body_avg, doc_avg = words.lists, words.idfs, words.body_avg, words.doc_avg
    found = []  # per list: the chunks' places in `chunks`, their rows in the list's arrays
    for x in every:
        listed = x.postings.sorted_chunk[x.start : x.stop]
        at = np.minimum(np.searchsorted(listed, chunks), len(listed) - 1)
        hit = np.flatnonzero(listed[at] == chunks)
        found.append((x, hit, x.postings.by_chunk[x.start + at[hit]]))
    place = np.concatenate([hit for _, hit, _ in found])
    word = np.repeat([x.word for x, _, _ in found], [len(hit) for _, hit, _ in found])
    idf = np.repeat([x.idf for x, _, _ in found], [len(hit) for _, hit, _ in found])
    counts = np.concatenate([x.postings.counts[rows] for x, _, rows in found]).astype(np.float64)
    doc = np.concatenate([x.postings.doc[rows] for x, _, rows in found])
    body = np.concatenate([x.postings.body[rows] for x, _, rows in found])
    module = np.concatenate([x.postings.module[rows] for x, _, rows in found])
    na, nb, nc, nd = counts.T
    wa, wb, wc, wd = tuning.weights
    k1 = tuning.k1
    with np.errstate(divide="ignore", invalid="ignore"):
        in_doc = wc * nc / ((1 - tuning.b_doc) + tuning.b_doc * doc / doc_avg)
        in_body = wd * nd / ((1 - tuning.b_body) + tuning.b_body * body / body_avg)
    tf = wa * na + wb * nb
    tf = tf + np.where(nc > 0, in_doc, 0.0)
    tf = tf + np.where(nd > 0, in_body, 0.0)
    size, words = len(chunks), len(idfs)
    cells = np.zeros((7, size, words))  # score, 4 parts, cover of the name, cover of any
    cells[0, place, word] = idf * tf * (k1 + 1) / (tf + k1)
    for f in range(4):
        cells[1 + f, place, word] = idf * counts[:, f] * (PART_K1 + 1) / (counts[:, f] + PART_K1)
    cells[5, place, word] = np.where(na > 0, idf, 0.0)
    cells[6, place, word] = idf
    sums = cells[:, :, 0].copy()
    for w in range(1, words):
        sums += cells[:, :, w]
    is_module = np.zeros(size, bool)
    is_module[place[module]] = True
    score = np.where(is_module, sums[0] * tuning.module_lexical, sums[0])
    total = sum(idfs)
    held = np.flatnonzero(np.bincount(place, minlength=size) > 0)
    return score, sums[1:5].T, sums[5:7].T / total, held


class LexicalMemory:
    """The postings of the repositories a long-lived chat process searches, kept current
    (see the module's docstring). One per pool; every method runs on its event loop."""

    def __init__(self, url: str, max_bytes: int):
        self._url = url
        self.max_bytes = max_bytes
        self._held: dict[int, Postings] = {}
        self._changed: dict[int, tuple[int, float]] = {}  # repo -> (version, first seen)
        self._too_big: dict[int, int] = {}  # repo -> the version that did not fit
        self._loading: asyncio.Task | None = None
        self._pause_until = 0.0
        self.warm = False  # the last search found every repository of its scope here

    @property
    def loading(self) -> asyncio.Task | None:
        """The load running in the background, if one is."""
        return None if self._loading is None or self._loading.done() else self._loading

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self._held.values())

    async def scope(
        self, conn: asyncpg.Connection, query: str, repos: Sequence[int] | None
    ) -> Scope | None:
        """The query's words and the postings of the repositories `repos` (all: None) when
        every one of them is held at its current version; else None, and the stale ones are
        loaded in the background."""
        self.warm = False
        if time.monotonic() < self._pause_until:
            return None
        words = lexical_words.query_words(query)
        try:
            row = await conn.fetchrow(_SCOPE, words, None if repos is None else list(repos))
        except asyncpg.UndefinedColumnError:  # a database before migration 0008
            log.warning(
                "the index's schema is older than this Victor (no lexical versions): chats "
                "search it in the database; `victor init-db` upgrades it"
            )
            self._pause_until = time.monotonic() + RETRY
            return None
        current = dict(zip(row["repos"], row["versions"], strict=True))
        if repos is None:  # every repository: forget the removed ones
            for gone in self._held.keys() - current.keys():
                del self._held[gone]
        stale = {r: v for r, v in current.items() if self._version(r) != v}
        if stale:
            # a version that did not fit is not tried again; a new one may fit
            self._load_later({r: v for r, v in stale.items() if self._too_big.get(r) != v})
            return None
        self.warm = True
        return Scope(list(row["lexemes"]) if words else [], [self._held[r] for r in current])

    def _version(self, repo_id: int) -> int | None:
        held = self._held.get(repo_id)
        return None if held is None else held.version

    def _load_later(self, stale: dict[int, int]) -> None:
        now = time.monotonic()
        for repo_id, version in stale.items():
            seen = self._changed.get(repo_id)
            if seen is None or seen[0] != version:
                self._changed[repo_id] = (version, now)
        ready = [r for r in stale if r not in self._held or now - self._changed[r][1] >= SETTLE]
        if ready and (self._loading is None or self._loading.done()):
            self._loading = asyncio.create_task(self._load(ready))

    async def load(self, repos: Sequence[int] | None = None) -> None:
        """Load the postings of `repos` (every repository: None) now and wait for them: a
        process that wants its first chats served from memory (a benchmark's warm-up)."""
        if self._loading is not None:
            await asyncio.gather(self._loading, return_exceptions=True)
        conn = await connect_once(self._url)
        try:
            ids = await conn.fetch("SELECT repo_id FROM lex_stats WHERE chunks > 0")
        finally:
            await conn.close()
        wanted = [r["repo_id"] for r in ids if repos is None or r["repo_id"] in repos]
        self._loading = asyncio.create_task(self._load(wanted))
        await self._loading

    async def _load(self, repos: list[int]) -> None:
        try:
            conn = await connect_once(self._url)
            try:
                for repo_id in repos:
                    self._held.pop(repo_id, None)  # stale: never used again; free it first
                    started = time.perf_counter()
                    try:
                        # a database that stops answering must not hold the loader for ever
                        async with asyncio.timeout(LOAD_TIMEOUT):
                            held = await load(conn, repo_id, self.max_bytes - self.nbytes)
                    except DoesNotFit as exc:
                        self._too_big[repo_id] = exc.version
                        continue
                    if held is None:
                        continue
                    self._held[repo_id] = held
                    self._changed.pop(repo_id, None)
                    log.info(
                        "lexical index of repository %d in memory: %d postings, %.0f MB, %.1f s",
                        repo_id,
                        len(held.chunk),
                        held.nbytes / MB,
                        time.perf_counter() - started,
                    )
            finally:
                await conn.close(timeout=5)  # aborts a connection that does not answer
        # TimeoutError is an OSError; DatabaseUnavailable says why it could not connect
        except (OSError, asyncpg.PostgresError, ValueError, DatabaseUnavailable) as exc:
            log.warning("could not load the lexical index into memory: %r", exc)
            self._pause_until = time.monotonic() + RETRY

    async def close(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)
        self._held.clear()
