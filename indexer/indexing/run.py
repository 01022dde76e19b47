"""Incremental indexing of one source into the index.

Unchanged files are skipped without parsing (content id compare); changed
files are parsed in worker processes while the main loop embeds and writes;
chunk embeddings are reused by hash of their text, so moving or keeping a
function never re-embeds it. Each batch of files is written in one
transaction, so a crash leaves every file entirely old or entirely new, and
the repository's commit moves only when the whole run is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import asyncpg
import numpy as np

from indexer import store
from indexer.config import Settings
from indexer.embedding import Embedder, check_dimensions, scale
from indexer.embedding.texts import EMBED_TEXT_VERSION, embedding_text, name_text, text_hash
from indexer.errors import EmbedderUnavailable, EmbeddingError, ModelMismatch, ModelMissing
from indexer.indexing.sources import Skipped, Source, SourceFile, binary_reason, decode_lua
from indexer.models import Chunk, ChunkKind, FileChunks, ParseMode
from indexer.parsing.chunker import CHUNKER_VERSION
from indexer.parsing.pool import chunk_files
from indexer.store import summaries as stored_summaries
from indexer.summaries.prompt import summariser_key
from indexer.words import is_trivial

log = logging.getLogger(__name__)

# A file is re-chunked when either the chunker or the embedding text changes.
INDEX_VERSION = CHUNKER_VERSION * 1000 + EMBED_TEXT_VERSION
# Functions get a second, short embedding averaged into their vector (embedding.texts.name_text).
NAME_EMBEDDINGS = True
# Seconds a batch being written may take to finish after the run is cancelled (Ctrl-C).
FINISH_WRITE = 5.0


class Progress(Protocol):
    def start(self, files: int) -> None: ...

    def advance(self, files: int, chunks: int) -> None: ...


class NoProgress:
    def start(self, files: int) -> None:
        pass

    def advance(self, files: int, chunks: int) -> None:
        pass


@dataclass
class IndexReport:
    repo: str
    commit: str | None = None
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    chunks_written: int = 0
    chunks_embedded: int = 0  # chunks with at least one newly embedded text
    chunks_reused: int = 0  # chunks whose vector came from the embedding cache
    chunks_not_embedded: int = 0  # nothing to find in them (`end`, `}`): stored, not searched
    texts_embedded: int = 0  # embedding inputs sent to the model (a function has two)
    parse_modes: Counter = field(default_factory=Counter)
    parse_errors: list[tuple[str, str]] = field(default_factory=list)
    scope: str = "all files"  # or "N changed paths since <commit>" for an incremental sync
    notices: list[str] = field(default_factory=list)  # for the operator: once per run
    incremental: bool = False  # only the paths of a Changes were compared
    seconds: float = 0.0

    def summary(self) -> dict:
        data = asdict(self)
        data["skipped"] = [[s.path, s.reason] for s in self.skipped]
        data["parse_modes"] = dict(self.parse_modes)
        return data


@dataclass(frozen=True, slots=True)
class Changes:
    """The paths that may differ between the indexed commit `base` and the source's commit.

    With it, index_source looks at these paths only (a push touches a few files of a large
    repository); everything else is known to be unchanged since `base`. Those other files
    keep the commit they were read at: their content, and so a permalink to it, is the same.
    """

    base: str
    paths: frozenset[str]


@dataclass
class IndexRun:
    """What one run works with: where it writes, how it embeds, what it reads, what it reports."""

    pool: asyncpg.Pool
    embedder: Embedder
    settings: Settings
    source: Source
    repo_id: int
    dims: int  # the index's vector dimension
    report: IndexReport
    progress: Progress


async def ensure_space(pool: asyncpg.Pool, embedder: Embedder) -> int:
    """Refuse a model other than the index's; bind the space on first use, with the model's
    cosine scale (`indexer.embedding.scale`). Returns the index's vector dimension.

    Probing the dimension and the scale costs embedding requests, so it only happens when
    nothing is recorded yet (or, once, the scale of an index bound before Victor measured
    scales): re-indexing unchanged code makes no request.
    """
    recorded = await store.embedding_space(pool)
    if recorded is not None:
        if recorded.space != embedder.space:
            raise ModelMismatch(store.mismatch_message(recorded, embedder.space, embedder.model))
        if recorded.scale is None:
            await _record_scale(pool, recorded.space, embedder)
        return recorded.dims
    dims = await embedder.dimensions()
    measured = await scale.measure(embedder)
    await store.use_embedding_space(pool, embedder.space, embedder.model, dims, measured)
    return dims


async def _record_scale(pool: asyncpg.Pool, space: str, embedder: Embedder) -> None:
    """Measure and record the scale of an index bound before Victor measured scales. A run with
    nothing to embed must not fail for it while the embedder is down: the next run measures."""
    try:
        measured = await scale.measure(embedder)
    except (EmbedderUnavailable, EmbeddingError, ModelMissing, TimeoutError, OSError) as exc:
        # the type only: an embedder's message may name its host
        log.warning("cosine scale not measured (%s); the next run measures it", type(exc).__name__)
        return
    await store.record_scale(pool, space, measured)


async def index_source(
    pool: asyncpg.Pool,
    embedder: Embedder,
    settings: Settings,
    source: Source,
    name: str,
    *,
    ref: str | None = None,
    progress: Progress | None = None,
    changes: Changes | None = None,
) -> IndexReport:
    """Bring the index of `name` to exactly what `source` holds now.

    With `changes`, only those paths are compared, written or deleted; when they no longer
    describe the index (it moved on, or the chunker changed) every file is compared instead.
    """
    started = time.monotonic()
    progress = progress or NoProgress()
    dims = await ensure_space(pool, embedder)
    repo = await store.upsert_repo(pool, name, source.description, ref, source.github_url)
    report = IndexReport(repo=name, commit=source.commit)
    if settings.prompt_notice:  # once per run, not per embedding batch
        report.notices.append(settings.prompt_notice)
        log.info("%s", settings.prompt_notice)  # the CLI shows it; the worker logs it
    async with store.repo_lock(pool, repo.id):
        files, skipped = await asyncio.to_thread(source.scan)
        known = await store.file_states(pool, repo.id)
        if changes is not None:
            stale = await _stale(pool, repo.id, changes, known)
            if stale:
                report.scope = f"all files ({stale})"
            else:
                files, skipped, known = _restrict(changes.paths, files, skipped, known)
                report.scope = f"{len(changes.paths)} changed paths since {changes.base[:12]}"
                report.incremental = True
        report.skipped.extend(skipped)
        todo, unchanged = _classify(files, known, report)
        progress.start(len(todo))
        run = IndexRun(pool, embedder, settings, source, repo.id, dims, report, progress)
        written = await _index_files(run, todo)
        # A git file found binary only once read is skipped, not new or changed; an earlier
        # version of it leaves the index.
        unreadable = {f.path for f in todo} - written
        report.files_new -= len(unreadable - known.keys())
        report.files_changed -= len(unreadable & known.keys())
        gone = sorted(set(known) - {f.path for f in unchanged} - written)
        await store.delete_files(pool, repo.id, gone)
        report.files_deleted = len(set(known) - ({f.path for f in files} - unreadable))
        if source.commit:
            await store.update_commit(pool, repo.id, [f.path for f in unchanged], source.commit)
        if written or gone:
            # fresh planner statistics: the first searches after a big run stay fast
            await store.analyze_chunks(pool)
        report.seconds = round(time.monotonic() - started, 3)
        await store.finish_run(pool, repo.id, source.commit, report.summary())
    # a big repository's own graph (built once; rebuilt if a build was interrupted), outside
    # the repository's lock: CONCURRENTLY, so searches and other runs go on meanwhile
    await store.repo_graphs.reconcile(pool)
    for item in report.skipped:
        log.info("skipped %s: %s", item.path, item.reason)
    return report


async def _stale(
    pool: asyncpg.Pool, repo_id: int, changes: Changes, known: dict[str, tuple[str, int]]
) -> str | None:
    """Why `changes` does not describe the index any more, or None when it does."""
    if await store.repo_commit(pool, repo_id) != changes.base:
        return "the index moved since the change list was made"
    if any(version != INDEX_VERSION for _, version in known.values()):
        return "files were chunked by another chunker version"
    return None


def _restrict(
    paths: frozenset[str],
    files: list[SourceFile],
    skipped: list[Skipped],
    known: dict[str, tuple[str, int]],
) -> tuple[list[SourceFile], list[Skipped], dict[str, tuple[str, int]]]:
    return (
        [f for f in files if f.path in paths],
        [s for s in skipped if s.path in paths],
        {p: state for p, state in known.items() if p in paths},
    )


def _classify(
    files: Sequence[SourceFile], known: dict[str, tuple[str, int]], report: IndexReport
) -> tuple[list[SourceFile], list[SourceFile]]:
    todo: list[SourceFile] = []
    unchanged: list[SourceFile] = []
    for f in files:
        state = known.get(f.path)
        if state == (f.blob, INDEX_VERSION):
            unchanged.append(f)
            report.files_unchanged += 1
        else:
            todo.append(f)
            if state is None:
                report.files_new += 1
            else:
                report.files_changed += 1
    return todo, unchanged


_DONE = object()


def _decoded(
    source: Source,
    files: Sequence[SourceFile],
    skipped: list[Skipped],
    sizes: dict[str, SourceFile],
) -> Iterator[tuple[str, str]]:
    for f, data in source.read(files):
        reason = binary_reason(data)
        if reason:
            skipped.append(Skipped(f.path, reason))
            continue
        sizes[f.path] = f
        yield f.path, decode_lua(data)


async def _index_files(run: IndexRun, todo: Sequence[SourceFile]) -> set[str]:
    """Parse in a background thread (which drives the process pool), embed and write here."""
    if not todo:
        return set()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    read_skips: list[Skipped] = []
    by_path: dict[str, SourceFile] = {}

    def produce() -> None:
        results = chunk_files(
            _decoded(run.source, todo, read_skips, by_path),
            workers=run.settings.parse_workers,
            max_chars=run.settings.max_chunk_chars,
            time_limit=run.settings.parse_time_limit,
            stop=stop,
        )
        try:
            for item in results:
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except BaseException as exc:  # hand any failure to the async side
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            results.close()
            with contextlib.suppress(RuntimeError):  # the loop is gone: run abandoned
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    thread = threading.Thread(target=produce, name="victor-parse", daemon=True)
    thread.start()
    written: set[str] = set()
    pending: list[FileChunks] = []
    flush_at = run.settings.embed_batch_size * run.settings.embed_concurrency * 2
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            pending.append(item)
            if sum(len(fc.chunks) for fc in pending) >= flush_at:
                await _flush(run, pending, by_path)
                written.update(fc.path for fc in pending)
                pending = []
        await _flush(run, pending, by_path)
        written.update(fc.path for fc in pending)
    finally:
        stop.set()
        # The pool stops its workers at once; a file parsed in this thread (no workers) is
        # not waited for after a second: the thread is a daemon, Ctrl-C must not wait on it.
        await asyncio.to_thread(thread.join, 1.0)
    run.report.skipped.extend(read_skips)
    return written


def _vector_texts(path: str, chunk: Chunk) -> list[str]:
    """The texts whose embeddings make a chunk's vector: none for a chunk not worth
    searching, the full text, and for a function also its short name text."""
    if is_trivial(chunk.kind.value, chunk.text):
        return []
    full = embedding_text(path, chunk)
    short = name_text(path, chunk) if NAME_EMBEDDINGS else None
    return [full, short] if short else [full]


def combine(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The normalised mean of a chunk's vectors (cosine search wants unit length)."""
    total = np.sum(np.stack(vectors), axis=0, dtype=np.float32)
    norm = float(np.linalg.norm(total))
    return total / norm if norm else total


async def _kept_summaries(run: IndexRun, batch: Sequence[FileChunks]) -> dict[bytes, str]:
    """The summaries already written for these functions' texts (indexer/summaries): the
    unchanged functions of a changed file keep theirs. None at all while summaries are off."""
    if not run.settings.summaries_on:
        return {}
    hashes = [
        text_hash(embedding_text(fc.path, c))
        for fc in batch
        for c in fc.chunks
        if c.kind in (ChunkKind.FUNCTION, ChunkKind.METHOD)
    ]
    return await stored_summaries.for_hashes(run.pool, summariser_key(run.settings), hashes)


async def _flush(
    run: IndexRun, batch: Sequence[FileChunks], by_path: dict[str, SourceFile]
) -> None:
    """Embed what the cache lacks, then write these files and their chunks in one transaction."""
    if not batch:
        return
    pool, embedder, report = run.pool, run.embedder, run.report
    texts = {}
    for fc in batch:
        for chunk in fc.chunks:
            for text in _vector_texts(fc.path, chunk):
                texts[text_hash(text)] = text
    vectors = await store.cached_embeddings(pool, embedder.space, list(texts))
    missing = [h for h in texts if h not in vectors]
    if missing:
        fresh = await embedder.embed_documents([texts[h] for h in missing])
        check_dimensions(fresh, run.dims, embedder.model)
        new = {h: np.asarray(v, dtype=np.float32) for h, v in zip(missing, fresh, strict=True)}
        await store.cache_embeddings(pool, embedder.space, new.items())
        vectors.update(new)
    fresh = set(missing)
    summaries = await _kept_summaries(run, batch)
    files: list[store.FileRecord] = []
    rows: list[store.ChunkRow] = []
    for fc in batch:
        f = by_path[fc.path]
        files.append(
            store.FileRecord(
                fc.path, f.blob, run.source.commit, fc.mode.value, fc.error, INDEX_VERSION, f.size
            )
        )
        report.parse_modes[fc.mode.value] += 1
        if fc.mode is not ParseMode.AST:
            report.parse_errors.append((fc.path, fc.error))
        for c in fc.chunks:
            hashes = [text_hash(t) for t in _vector_texts(fc.path, c)]
            if not hashes:
                report.chunks_not_embedded += 1
            elif fresh.intersection(hashes):
                report.chunks_embedded += 1
            else:
                report.chunks_reused += 1
            embed_hash = text_hash(embedding_text(fc.path, c))
            rows.append(
                store.ChunkRow(
                    fc.path,
                    c.symbol,
                    c.kind.value,
                    c.signature,
                    c.doc,
                    c.start_line,
                    c.end_line,
                    c.part,
                    c.text,
                    embed_hash,
                    combine([vectors[h] for h in hashes]) if hashes else None,
                    hashes[1] if len(hashes) > 1 else None,
                    summaries.get(embed_hash, ""),
                )
            )
    write = asyncio.ensure_future(store.replace_files(pool, run.repo_id, files, rows))
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        # Ctrl-C while these files are written: they are embedded already, and the write
        # takes a fraction of a second, so it is finished rather than thrown away.
        await asyncio.wait_for(write, FINISH_WRITE)
        _count(run, batch, rows, missing)
        raise
    _count(run, batch, rows, missing)


def _count(run: IndexRun, batch: Sequence[FileChunks], rows: list, missing: list) -> None:
    run.report.chunks_written += len(rows)
    run.report.texts_embedded += len(missing)
    run.progress.advance(len(batch), len(rows))
