"""Split Lua files into symbol-level chunks for retrieval.

Each file is parsed with luaparser; every named function (`local function f`,
`function a.b()`, `function A:m()`, `x.y = function`, `{ f = function }` fields)
becomes a chunk that starts at its leading doc comment and ends at its `end`.
Code between functions becomes module chunks. When luaparser fails (Luau,
syntax errors) or takes longer than `time_limit`, the scanner in
`indexer.luascan` finds the same definitions; if even that fails, the file is
cut into fixed line windows. `FileChunks.mode` and `.error` say which happened.

Naming: `return { f = function }` gives `<module>.f` (module = file stem, or the
directory name for init.lua); `local M = { sub = { f = function } }` gives
`M.sub.f`; `M["x"] = function` gives `M.x`; `return function()` at top level is
named after the module. Functions nested in a function body get their own chunk
only when the enclosing function is larger than max_chars; they keep the name
they are written with (`helper`, `self.update`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.dfa.DFA import DFA
from antlr4.error.ErrorListener import ErrorListener
from antlr4.error.Errors import ParseCancellationException
from antlr4.error.ErrorStrategy import BailErrorStrategy
from antlr4.PredictionContext import PredictionContextCache
from luaparser import astnodes as lua
from luaparser.builder import BuilderVisitor
from luaparser.parser.LuaLexer import LuaLexer
from luaparser.parser.LuaParser import LuaParser

from indexer import luascan
from indexer.luascan import Def
from indexer.models import ChunkKind, FileChunks, ParseMode

# Bump when chunking rules change: every file is re-chunked on the next run
# (embeddings of unchanged chunk texts are still reused from the cache).
CHUNKER_VERSION = 1

MAX_CHARS = 3000
TIME_LIMIT = 10.0
# Faster than luaparser was ever measured (60-125 KB/s). Without a timer (not in the
# main thread) a file this far over the time limit goes straight to the scanner.
_MAX_PARSE_CHARS_PER_SECOND = 300_000
# Below this much source, starting worker processes costs more than it saves.
_MIN_PARALLEL_CHARS = 100_000
_STARTUP_TIMEOUT = 60.0  # seconds for a spawned worker to import and say hello


def chunk_source(
    path: str,
    source: str,
    *,
    max_chars: int = MAX_CHARS,
    time_limit: float | None = TIME_LIMIT,
) -> FileChunks:
    """Chunk one file. `path` is repo-relative (it names the module). Never raises."""
    started = time.perf_counter()
    result = FileChunks(path=path, mode=ParseMode.AST)
    try:
        src = luascan.load(path, source)
        try:
            defs = ast_defs(parse_lua(source, time_limit), src.module)
        except Exception as e:
            result.mode, result.error = ParseMode.SCANNER, _describe(e)
            defs = luascan.scan_defs(src)
        result.chunks = luascan.build_chunks(src, defs, max_chars)
    except Exception as e:  # a bug in the scanner or the assembly: still index the file
        result.mode = ParseMode.LINES
        result.error = "; ".join(filter(None, [result.error, f"chunking failed: {e!r}"]))
        result.chunks = luascan.line_windows(luascan.load_lines(path, source), max_chars)
    result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------------------------------------
# luaparser


class ParseTimeout(Exception):
    pass


class _RaiseOnError(ErrorListener):
    """Raise instead of printing `line X:Y token recognition error` to stderr."""

    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):
        raise ParseCancellationException(f"line {line}:{column}: {msg}")


def parse_lua(source: str, time_limit: float | None = TIME_LIMIT) -> lua.Chunk:
    """Parse with luaparser, giving up after time_limit seconds (ParseTimeout).

    Two bounds: the token stream checks the deadline whenever the parser looks at a token
    (any thread), and in the main thread SIGALRM also stops what runs between tokens (the AST
    builder). Elsewhere files that could not possibly be parsed in time are refused up front.
    """
    if time_limit is None:
        return _parse(source)
    deadline = time.monotonic() + time_limit
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        if len(source) > time_limit * _MAX_PARSE_CHARS_PER_SECOND:
            raise ParseTimeout(f"{len(source)} chars cannot be parsed within {time_limit:g}s")
        return _parse(source, deadline, time_limit)

    parsing = True

    def on_alarm(signum, frame):
        if parsing:
            raise ParseTimeout(f"parse exceeded the time limit of {time_limit:g}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        try:
            # The alarm repeats: an exception raised while Python runs a __del__ or gc
            # callback is swallowed, and the parse must still be stopped.
            signal.setitimer(signal.ITIMER_REAL, time_limit, 0.05)
            return _parse(source, deadline, time_limit)
        finally:
            parsing = False  # a late alarm must not escape into the caller's code
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _reset_antlr_caches() -> None:
    """An interrupted parse may leave ANTLR's shared DFA cache half updated: start afresh."""
    for cls in (LuaLexer, LuaParser):
        cls.decisionsToDFA = [DFA(state, i) for i, state in enumerate(cls.atn.decisionToState)]
    LuaParser.sharedContextCache = PredictionContextCache()


class _BoundedTokenStream(CommonTokenStream):
    """A token stream that stops the parse at a deadline, in any thread.

    ANTLR's prediction asks the stream for every token it looks at, so this notices a parse
    that runs long within milliseconds. It matters outside the main thread, where there is no
    alarm: luaparser is superlinear on some input (a chain of 400 calls, `f()()()...`, takes
    minutes) and indexing parses small batches in a thread.
    """

    def __init__(self, lexer: LuaLexer, deadline: float, time_limit: float):
        super().__init__(lexer, channel=Token.DEFAULT_CHANNEL)
        self.deadline = deadline
        self.time_limit = time_limit

    def LA(self, i: int) -> int:
        if time.monotonic() > self.deadline:
            raise ParseTimeout(f"parse exceeded the time limit of {self.time_limit:g}s")
        return super().LA(i)


def _parse(
    source: str, deadline: float | None = None, time_limit: float | None = None
) -> lua.Chunk:
    """luaparser's `ast.parse`, minus the console error listener that spams stderr; stopped
    with ParseTimeout once past `deadline` (time.monotonic) when one is given."""
    # Keep character offsets, but hide what the grammar rejects and Lua ignores.
    if source.startswith("\ufeff"):
        source = " " + source[1:]
    if source.startswith("#"):
        source = "--" + source[2:] if len(source) > 1 else " "
    lexer = LuaLexer(InputStream(source))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_RaiseOnError())
    if deadline is None:
        stream = CommonTokenStream(lexer, channel=Token.DEFAULT_CHANNEL)
    else:
        stream = _BoundedTokenStream(lexer, deadline, time_limit or 0.0)
    parser = LuaParser(stream)
    parser.removeErrorListeners()
    parser.addErrorListener(_RaiseOnError())
    parser._errHandler = BailErrorStrategy()
    try:
        return BuilderVisitor(stream).visit(parser.start_())
    except ParseCancellationException:
        raise  # a syntax error: ANTLR stopped cleanly
    except BaseException:
        _reset_antlr_caches()  # interrupted (time limit, recursion) at an arbitrary point
        raise


def _describe(e: Exception) -> str:
    if isinstance(e, ParseCancellationException) and e.args:
        cause = e.args[0]
        tok = getattr(cause, "offendingToken", None)
        if tok is not None:
            return f"syntax error at line {tok.line}:{tok.column} near {tok.text!r}"
        return f"syntax error: {cause}"
    if isinstance(e, ParseTimeout):
        return str(e)
    return f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------------------------------------
# AST -> definitions (the same rules as the scanner's)


def ast_defs(tree: lua.Chunk, module: str) -> list[Def]:
    return _block_defs(tree.body.body, module, top=True)


def _block_defs(stmts: list, module: str, top: bool) -> list[Def]:
    defs: list[Def] = []
    for stmt in stmts:
        defs.extend(_stmt_defs(stmt, module, top))
    return defs


def _stmt_defs(s: lua.Node, module: str, top: bool) -> list[Def]:
    """Definitions made by one statement; descends into blocks, not into function bodies."""
    if isinstance(s, lua.Method):
        owner = _lhs_name(s.source)
        return [_def(f"{owner}:{s.name.id}", ChunkKind.METHOD, s, s, module)] if owner else []
    if isinstance(s, lua.Function):
        name = _lhs_name(s.name)
        return [_def(name, ChunkKind.FUNCTION, s, s, module)] if name else []
    if isinstance(s, lua.LocalFunction):
        return [_def(s.name.id, ChunkKind.FUNCTION, s, s, module)]
    if isinstance(s, (lua.Assign, lua.LocalAssign)):
        if len(s.targets) != 1 or not s.values:
            return []
        name = _lhs_name(s.targets[0])
        return _value_defs(name, s.values[0], s, module) if name else []
    if isinstance(s, lua.Return):
        return _value_defs(module, s.values[0], s, module) if top and s.values else []
    if isinstance(s, (lua.If, lua.ElseIf)):
        defs = _block_defs(s.body.body, module, top)
        if isinstance(s.orelse, lua.Block):
            defs += _block_defs(s.orelse.body, module, top)
        elif s.orelse is not None:
            defs += _stmt_defs(s.orelse, module, top)
        return defs
    if isinstance(s, (lua.Do, lua.While, lua.Repeat, lua.Fornum, lua.Forin)):
        return _block_defs(s.body.body, module, top)
    return []


def _value_defs(name: str, value: lua.Node, head: lua.Node, module: str) -> list[Def]:
    """`name = value`: a function definition, or the functions of a table constructor."""
    if getattr(value, "wrapped", False):
        return []
    if isinstance(value, lua.AnonymousFunction):
        return [_def(name, ChunkKind.FUNCTION, head, value, module)]
    if isinstance(value, lua.Table):
        defs: list[Def] = []
        for f in value.fields:
            if isinstance(f.key, lua.Name) and not f.between_brackets:
                key = f.key.id
            elif isinstance(f.key, lua.String) and f.between_brackets:
                key = f.key.raw
            else:
                continue
            defs.extend(_value_defs(f"{name}.{key}", f.value, f, module))
        return defs
    return []


def _def(name: str, kind: ChunkKind, head: lua.Node, fn: lua.Node, module: str) -> Def:
    return Def(
        name=name,
        kind=kind,
        start=head.start_char,
        line=head.line,
        end_line=fn.last_token.line,
        children=_block_defs(fn.body.body, module, top=False),
    )


def _lhs_name(node: lua.Node) -> str | None:
    """`a.b["c"]` -> "a.b.c"; None for anything that is not a plain name path."""
    if getattr(node, "wrapped", False):
        return None
    if isinstance(node, lua.Name):
        return node.id
    if isinstance(node, lua.Index):
        base = _lhs_name(node.value)
        if base is None:
            return None
        if node.notation == lua.IndexNotation.DOT and isinstance(node.idx, lua.Name):
            return f"{base}.{node.idx.id}"
        if node.notation == lua.IndexNotation.SQUARE and isinstance(node.idx, lua.String):
            return f"{base}.{node.idx.raw}"
    return None


# ---------------------------------------------------------------------------------------------
# Many files


def chunk_files(
    items: Iterable[tuple[str, str]],
    *,
    workers: int | None = None,
    max_chars: int = MAX_CHARS,
    time_limit: float | None = TIME_LIMIT,
) -> Iterator[FileChunks]:
    """Chunk (path, source) pairs across worker processes, yielding results as they finish.

    Small inputs, or workers=1, are chunked in this process. Workers are fresh Python
    processes running `indexer.parse_worker` (the caller may have torch loaded, which does
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
    if workers <= 1 or sum(len(s) for _, s in items) < _MIN_PARALLEL_CHARS:
        for path, source in items:
            yield chunk_source(path, source, **opts)
        return
    yield from _Pool(workers, opts).run(items)


# where `indexer` is imported from: the worker imports the same code
_IMPORT_ROOT = str(Path(__file__).resolve().parent.parent)


class _Worker:
    def __init__(self, opts: dict):
        mine, theirs = socket.socketpair()
        path = os.pathsep.join(p for p in (_IMPORT_ROOT, os.environ.get("PYTHONPATH")) if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "indexer.parse_worker", str(theirs.fileno())],
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
        chunks=luascan.line_windows(luascan.load_lines(path, source), max_chars),
        error=reason,
    )
