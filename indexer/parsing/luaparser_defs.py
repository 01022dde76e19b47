"""The luaparser path: parse standard Lua into an AST, within a time limit, and find its
named function definitions (the same `Def` tree the scanner produces)."""

from __future__ import annotations

import signal
import threading
import time

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.atn.PredictionMode import PredictionMode
from antlr4.error.ErrorListener import ErrorListener
from antlr4.error.Errors import ParseCancellationException
from antlr4.error.ErrorStrategy import BailErrorStrategy
from luaparser import astnodes as lua
from luaparser.builder import BuilderVisitor
from luaparser.parser.LuaLexer import LuaLexer
from luaparser.parser.LuaParser import LuaParser

from indexer.models import ChunkKind
from indexer.parsing.scanner import Def

TIME_LIMIT = 10.0
# Faster than luaparser was ever measured (60-125 KB/s). Without a timer (not in the
# main thread) a file this far over the time limit goes straight to the scanner.
_MAX_PARSE_CHARS_PER_SECOND = 300_000


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


class _BoundedTokenStream(CommonTokenStream):
    """A token stream that stops the parse at a deadline, in any thread.

    ANTLR's prediction asks the stream for every token it looks at, so this notices a parse
    that runs long within milliseconds. It matters outside the main thread, where there is no
    alarm: LL prediction is superlinear on some input (a chain of 400 calls, `f()()()...`,
    takes minutes; the SLL stage reads it at once, but a syntax error elsewhere in the file
    sends it to the LL stage) and indexing parses small batches in a thread.
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
    with ParseTimeout once past `deadline` (time.monotonic) when one is given.

    ANTLR's two-stage parse: SLL prediction first, which is faster (it never falls back to
    full-context prediction, whose results ANTLR does not cache), then, only if that reports
    a syntax error, the whole file again in LL mode, the default. SLL may reject input that LL
    accepts, never the reverse, and where both accept they build the same tree, so the result
    is what an LL parse alone gives. The caller's deadline and alarm cover both stages.
    """
    # Keep character offsets, but hide what the grammar rejects and Lua ignores.
    if source.startswith("\ufeff"):
        source = " " + source[1:]
    if source.startswith("#"):
        source = "--" + source[2:] if len(source) > 1 else " "
    try:
        return _parse_in(PredictionMode.SLL, source, deadline, time_limit)
    except ParseCancellationException:
        return _parse_in(PredictionMode.LL, source, deadline, time_limit)


def _parse_in(
    mode: PredictionMode, source: str, deadline: float | None, time_limit: float | None
) -> lua.Chunk:
    """One parse with a fresh lexer, token stream and parser, in prediction mode `mode`."""
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
    parser._interp.predictionMode = mode
    # An interrupted parse (time limit, RecursionError) leaves ANTLR's shared DFA caches
    # (LuaLexer/LuaParser.decisionsToDFA) valid, so they are kept: ANTLR builds each DFA state
    # completely before one statement links it in (`addDFAState`, `addDFAEdge`; "all adds to
    # dfa are done after we've created full D state"), and an exception raised between two
    # statements leaves at most an unlinked state behind. Resetting them (as this code once
    # did) sent a worker back to a cold parser, about twice as slow, after every timeout.
    return BuilderVisitor(stream).visit(parser.start_())


def describe_failure(e: Exception) -> str:
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
