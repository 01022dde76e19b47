"""Chunking many files across worker processes: a small process pool that survives a worker
dying on one file (that file falls back to line windows) and never waits on a hung one."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection, wait

from indexer.models import FileChunks, ParseMode
from indexer.parsing.chunker import MAX_CHARS, chunk_source
from indexer.parsing.chunks import line_windows
from indexer.parsing.luaparser_defs import TIME_LIMIT
from indexer.parsing.scanner import load_lines

# Below this much source, starting worker processes costs more than it saves.
MIN_PARALLEL_CHARS = 100_000
_STARTUP_TIMEOUT = 60.0  # seconds for a spawned worker to import and say hello


def chunk_files(
    items: Iterable[tuple[str, str]],
    *,
    workers: int | None = None,
    max_chars: int = MAX_CHARS,
    time_limit: float | None = TIME_LIMIT,
) -> Iterator[FileChunks]:
    """Chunk (path, source) pairs across worker processes, yielding results as they finish.

    Small inputs, or workers=1, are chunked in this process. Workers are started
    with `spawn` (the caller may have torch loaded, which does not survive fork). A
    worker that dies costs only the file it was on: that file falls back to line
    windows with the error recorded, and a fresh worker takes over.
    """
    items = list(items)
    opts = {"max_chars": max_chars, "time_limit": time_limit}
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    workers = min(workers, len(items))
    if workers <= 1 or sum(len(s) for _, s in items) < MIN_PARALLEL_CHARS:
        for path, source in items:
            yield chunk_source(path, source, **opts)
        return
    yield from _Pool(workers, opts).run(items)


class _Worker:
    def __init__(self, ctx: multiprocessing.context.SpawnContext, opts: dict):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, opts), daemon=True)
        self.process.start()
        child.close()  # so that the parent sees EOF when the worker dies
        self.item: tuple[str, str] | None = None
        self.deadline: float | None = None

    def ready(self) -> bool:
        """Wait for the worker's hello. A worker can fail to start at all, e.g. when the
        main module cannot be re-imported (`python -` or a script without a __main__ guard)."""
        try:
            return self.conn.poll(_STARTUP_TIMEOUT) and self.conn.recv() == "ready"
        except Exception:
            return False


class _Pool:
    """A few spawned worker processes, each fed one file at a time over its own pipe.

    A pipe per worker (rather than a shared queue) tells us exactly which file a
    dead worker was working on.
    """

    def __init__(self, size: int, opts: dict):
        self.ctx = multiprocessing.get_context("spawn")
        self.size = size
        self.opts = opts
        limit = opts["time_limit"]
        # Parsing stops at time_limit; scanning is linear. A worker past this is stuck.
        self.watchdog = None if limit is None else 3 * limit + 60

    def run(self, items: list[tuple[str, str]]) -> Iterator[FileChunks]:
        todo = list(reversed(items))
        workers = [_Worker(self.ctx, self.opts) for _ in range(self.size)]
        try:
            startable = all([w.ready() for w in workers])
            for w in workers:
                if startable and todo:
                    self.assign(w, todo.pop())
            while any(w.item is not None for w in workers):
                done = self.collect(workers)
                # Hand out new work before yielding, so workers keep busy while the caller runs.
                for i, w in enumerate(workers):
                    if w.item is None and todo and startable:
                        if not w.process.is_alive():
                            _stop(w)
                            w = workers[i] = _Worker(self.ctx, self.opts)
                            startable = w.ready()
                            if not startable:
                                continue
                        self.assign(w, todo.pop())
                yield from done
            # Workers cannot be started here: chunk what is left in this process.
            while todo:
                path, source = todo.pop()
                yield chunk_source(path, source, **self.opts)
        finally:
            for w in workers:
                _stop(w)

    def assign(self, w: _Worker, item: tuple[str, str]) -> None:
        w.item = item
        w.deadline = None if self.watchdog is None else time.monotonic() + self.watchdog
        with contextlib.suppress(OSError):  # a dead worker: collect() notices and falls back
            w.conn.send(item)

    def collect(self, workers: list[_Worker]) -> list[FileChunks]:
        """Wait for at least one busy worker to finish or die; return what finished."""
        busy = [w for w in workers if w.item is not None]
        deadlines = [w.deadline for w in busy if w.deadline is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
        done: list[FileChunks] = []
        for w in busy:
            assert w.item is not None
            path, source = w.item
            if w.conn in ready or w.process.sentinel in ready:
                try:
                    done.append(w.conn.recv())
                except Exception:  # EOF: the worker died, possibly halfway through a reply
                    w.process.join(1)
                    reason = f"worker died (exit code {w.process.exitcode})"
                    done.append(_lines_result(path, source, reason, self.opts["max_chars"]))
                    _stop(w)
                w.item = None
            elif w.deadline is not None and time.monotonic() >= w.deadline:
                reason = f"worker stuck for {self.watchdog:g}s; stopped"
                done.append(_lines_result(path, source, reason, self.opts["max_chars"]))
                _stop(w)
                w.item = None
        return done


def _stop(w: _Worker) -> None:
    if w.process.is_alive() and w.item is None:
        with contextlib.suppress(OSError):
            w.conn.send(None)
        w.process.join(1)
    if w.process.is_alive():
        w.process.kill()
        w.process.join()
    w.conn.close()


def _lines_result(path: str, source: str, reason: str, max_chars: int) -> FileChunks:
    return FileChunks(
        path=path,
        mode=ParseMode.LINES,
        chunks=line_windows(load_lines(path, source), max_chars),
        error=reason,
    )


def _worker_main(conn: Connection, opts: dict) -> None:
    """Worker process: chunk files sent over `conn` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    conn.send("ready")
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        path, source = item
        conn.send(chunk_source(path, source, **opts))
