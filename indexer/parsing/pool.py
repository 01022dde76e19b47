"""Chunking many files across worker processes: a small pool of parse workers that survives a
worker dying on one file (that file falls back to line windows) and never waits on a hung one."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path

from indexer.models import FileChunks, ParseMode
from indexer.parsing.chunker import MAX_CHARS, chunk_source
from indexer.parsing.chunks import line_windows
from indexer.parsing.luaparser_defs import TIME_LIMIT
from indexer.parsing.scanner import load_lines

# Below this much source, starting worker processes costs more than it saves.
MIN_PARALLEL_CHARS = 100_000
_STARTUP_TIMEOUT = 60.0  # seconds for a worker to import and say hello


def chunk_files(
    items: Iterable[tuple[str, str]],
    *,
    workers: int | None = None,
    max_chars: int = MAX_CHARS,
    time_limit: float | None = TIME_LIMIT,
) -> Iterator[FileChunks]:
    """Chunk (path, source) pairs across worker processes, yielding results as they finish.

    Small inputs, or workers=1, are chunked in this process. Workers are fresh Python
    processes running `indexer.parsing.worker` (the caller may have torch loaded, which does
    not survive fork; see that module for why not multiprocessing's spawn), handed the
    largest files first so that no large file is left for the end. A worker that dies
    costs only the file it was on: that file falls back to line windows with the error
    recorded, and a fresh worker takes over.
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


# where `indexer` is imported from: the worker imports the same code
_IMPORT_ROOT = str(Path(__file__).resolve().parents[2])


class _Worker:
    def __init__(self, opts: dict):
        mine, theirs = socket.socketpair()
        path = os.pathsep.join(p for p in (_IMPORT_ROOT, os.environ.get("PYTHONPATH")) if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "indexer.parsing.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": path},
            )
        finally:
            theirs.close()  # so that we see EOF when the worker dies
        self.conn = Connection(mine.detach())
        with contextlib.suppress(OSError):
            self.conn.send(opts)
        self.item: tuple[str, str] | None = None
        self.deadline: float | None = None
        self.fresh = True  # nothing parsed yet

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        """Wait for the worker's hello: a worker can fail to start at all."""
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
        self.size = size
        self.opts = opts
        limit = opts["time_limit"]
        # Parsing stops at time_limit; scanning is linear. A worker past this is stuck.
        self.watchdog = None if limit is None else 3 * limit + 60

    def run(self, items: list[tuple[str, str]]) -> Iterator[FileChunks]:
        todo = sorted(items, key=lambda item: len(item[1]))  # pop() takes the largest
        workers = [_Worker(self.opts) for _ in range(self.size)]
        try:
            startable = all([w.ready() for w in workers])
            for w in workers:
                if startable and todo:
                    self.assign(w, _next(w, todo))
            while any(w.item is not None for w in workers):
                done = self.collect(workers)
                # Hand out new work before yielding, so workers keep busy while the caller runs.
                for i, w in enumerate(workers):
                    if w.item is None and todo and startable:
                        if not w.alive():
                            _stop(w)
                            w = workers[i] = _Worker(self.opts)
                            startable = w.ready()
                            if not startable:
                                continue
                        self.assign(w, _next(w, todo))
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
        ready = wait([w.conn for w in busy], timeout)  # a dead worker's end reads as EOF
        done: list[FileChunks] = []
        for w in busy:
            assert w.item is not None
            path, source = w.item
            if w.conn in ready:
                try:
                    done.append(w.conn.recv())
                except Exception:  # EOF: the worker died, possibly halfway through a reply
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        w.process.wait(1)
                    reason = f"worker died (exit code {w.process.returncode})"
                    done.append(_lines_result(path, source, reason, self.opts["max_chars"]))
                    _stop(w)
                w.item = None
            elif w.deadline is not None and time.monotonic() >= w.deadline:
                reason = f"worker stuck for {self.watchdog:g}s; stopped"
                done.append(_lines_result(path, source, reason, self.opts["max_chars"]))
                _stop(w)
                w.item = None
        return done


def _next(w: _Worker, todo: list[tuple[str, str]]) -> tuple[str, str]:
    """The largest file left, or the smallest for a fresh worker: its parser is cold (ANTLR
    builds its prediction tables as it goes), and a large file parsed cold can run past the
    time limit on a busy machine."""
    item = todo.pop(0) if w.fresh else todo.pop()
    w.fresh = False
    return item


def _stop(w: _Worker) -> None:
    if w.alive() and w.item is None:
        with contextlib.suppress(OSError):
            w.conn.send(None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.process.wait(1)
    if w.alive():
        w.process.kill()
        w.process.wait()
    w.conn.close()


def _lines_result(path: str, source: str, reason: str, max_chars: int) -> FileChunks:
    return FileChunks(
        path=path,
        mode=ParseMode.LINES,
        chunks=line_windows(load_lines(path, source), max_chars),
        error=reason,
    )
