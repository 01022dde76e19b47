"""Fault-tolerant Lua scanner: a file's lines and tokens, and its named function definitions.

luaparser accepts only standard Lua and gives up on the first error. This
scanner understands just enough of the language (comments, strings, block
keywords, brackets) to find named function definitions in any dialect (Luau
types, generics, `continue`, `+=`, backtick strings, if-expressions; Lua 5.4
`<const>`, `goto`) and in broken files. It never raises and runs in linear time.

It reduces a file to the same tree of `Def`s as the AST path
(`indexer.parsing.luaparser_defs`); `indexer.parsing.chunks` turns either into chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import NamedTuple

from indexer.models import ChunkKind

KEYWORDS = frozenset(
    {
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
        "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
    }
)  # fmt: skip

_TOKEN_RE = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+)
    |(?P<newline>\n)
    |(?P<comment>--)
    |(?P<long>\[=*\[)
    |(?P<string>"(?:[^"\\\n]|\\z\s*|\\[\s\S])*"?
        |'(?:[^'\\\n]|\\z\s*|\\[\s\S])*'?
        |`(?:[^`\\\n]|\\[\s\S])*`?)
    |(?P<name>[^\W\d]\w*)  # also non-ASCII letters: `café` is one name
    |(?P<number>0[xXbB][0-9A-Fa-f_]*(?:\.[0-9A-Fa-f_]*)?(?:[pP][+-]?[0-9]+)?
        |[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][+-]?[0-9]+)?)
    |(?P<op>\.\.\.|\.\.=|//=|\.\.|==|~=|<=|>=|//|::|->|<<|>>|[-+*/%^]=
        |[-+*/%^\#&~|<>=(){}\[\];:,.?])
    |(?P<other>[\s\S])
    """,
    re.VERBOSE,
)
LONG_BRACKET = re.compile(r"\[(=*)\[")

BLANK, COMMENT, CODE = 0, 1, 2  # line kinds


class Token(NamedTuple):
    kind: str  # name, keyword, string, number, op, comment, shebang, other
    text: str
    start: int  # character offset
    line: int  # 1-based line of the first character
    end_line: int  # line of the last character (long strings and comments span lines)
    col: int  # 0-based column of the first character


def tokenize(source: str) -> list[Token]:
    """Split Lua (or Luau) source into tokens; whitespace is dropped, comments kept."""
    tokens: list[Token] = []
    pos, line, line_start, n = 0, 1, 0, len(source)
    if source.startswith("#"):  # shebang line, skipped by the Lua interpreter
        end = source.find("\n")
        pos = n if end < 0 else end
        tokens.append(Token("shebang", source[:pos], 0, 1, 1, 0))
    match = _TOKEN_RE.match
    while pos < n:
        m = match(source, pos)
        kind, end = m.lastgroup or "other", m.end()
        if kind == "space":
            pos = end
            continue
        if kind == "newline":
            line += 1
            pos = line_start = end
            continue
        if kind == "comment":
            end = _comment_end(source, pos)
        elif kind == "long":
            kind, end = "string", _long_end(source, end, end - pos - 2)
        elif kind == "name" and m.group() in KEYWORDS:
            kind = "keyword"
        text = source[pos:end]
        newlines = text.count("\n") if kind in ("comment", "string") else 0
        tokens.append(Token(kind, text, pos, line, line + newlines, pos - line_start))
        if newlines:
            line += newlines
            line_start = pos + text.rfind("\n") + 1
        pos = end
    return tokens


def _comment_end(source: str, pos: int) -> int:
    m = LONG_BRACKET.match(source, pos + 2)
    if m:
        return _long_end(source, m.end(), len(m.group(1)))
    end = source.find("\n", pos)
    return len(source) if end < 0 else end


def _long_end(source: str, body: int, level: int) -> int:
    close = "]" + "=" * level + "]"
    end = source.find(close, body)
    return len(source) if end < 0 else end + len(close)


def module_name(path: str) -> str:
    """File stem, or the directory name for init.lua (how `require` names it)."""
    p = PurePosixPath(path.replace("\\", "/"))
    name = p.name
    for ext in (".lua", ".luau"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    if name == "init" and p.parent.name:
        return p.parent.name
    return name


@dataclass(slots=True)
class SourceFile:
    """A file split into lines and tokens, with what each line holds."""

    path: str
    module: str
    lines: list[str]
    tokens: list[Token]
    starts: list[int]  # token start offsets, for bisect
    token_lines: list[int]  # token start lines, for bisect
    kinds: bytearray  # kinds[line] is BLANK, COMMENT or CODE (index 0 unused)
    cum: list[int]  # cum[i] = characters in lines 1..i, one newline per line included

    def size(self, first: int, last: int) -> int:
        """Length of the text of lines first..last."""
        return self.cum[last] - self.cum[first - 1] - 1

    def text(self, first: int, last: int) -> str:
        return "\n".join(self.lines[first - 1 : last])

    def blank(self, line: int) -> bool:
        return not self.lines[line - 1].strip()


def load(path: str, source: str) -> SourceFile:
    src = load_lines(path, source)
    src.tokens = tokenize(source)
    src.starts = [t.start for t in src.tokens]
    src.token_lines = [t.line for t in src.tokens]
    src.kinds = _line_kinds(src.tokens, len(src.lines))
    return src


def load_lines(path: str, source: str) -> SourceFile:
    """Lines only, no tokens: enough for `line_windows`."""
    lines = source.split("\n")
    cum = [0]
    for line in lines:
        cum.append(cum[-1] + len(line) + 1)
    return SourceFile(path, module_name(path), lines, [], [], [], bytearray(len(lines) + 2), cum)


def _line_kinds(tokens: list[Token], nlines: int) -> bytearray:
    kinds = bytearray(nlines + 2)
    for t in tokens:
        kind = COMMENT if t.kind == "comment" else CODE
        for line in range(t.line, t.end_line + 1):
            kinds[line] = max(kinds[line], kind)
    # A long comment opened after code on the same line belongs to that code, not to a doc block.
    for t in tokens:
        if t.kind == "comment" and t.end_line > t.line and kinds[t.line] == CODE:
            for line in range(t.line, t.end_line + 1):
                kinds[line] = CODE
    return kinds


@dataclass(slots=True)
class Def:
    """A named function definition, as found by the AST or by the scanner."""

    name: str
    kind: ChunkKind
    start: int  # offset of its first token: `local`, `function`, the assigned name or field key
    line: int
    end_line: int  # line of its `end`
    children: list[Def] = field(default_factory=list)  # named functions defined in its body


# ---------------------------------------------------------------------------------------------
# Scanner

_BLOCKS = frozenset(("function", "do", "if", "repeat"))
_END_CLOSES = frozenset(("function", "do", "if"))
_OPENER = {")": "(", "]": "[", "}": "{"}
# A token after which `if` starts a Luau if-expression rather than a statement.
_EXPR_BEFORE = frozenset(
    {
        "=", "(", "[", "{", ",", "return", "and", "or", "not", "in", "..", "+", "-", "*", "/",
        "//", "%", "^", "#", "==", "~=", "<", ">", "<=", ">=", "&", "|", "~", "<<", ">>",
        "+=", "-=", "*=", "/=", "//=", "%=", "^=", "..=",
    }
)  # fmt: skip
_NOT_STATEMENT_START = frozenset((".", ":", ",", "::", "goto", "local", "function"))
_BRACKET_SEARCH = 200  # how far a closing bracket looks for its opener (keeps the scan linear)
_EOF = Token("eof", "", 0, 0, 0, 0)


@dataclass(slots=True)
class _Open:
    kind: str  # function, do, if, repeat, exprif, (, [, {
    indent: int  # indentation of the line the opener is on
    fn: Def | None = None  # for named functions
    table: str | None = None  # for `{` of a named table: its qualified name


class _Scanner:
    """Finds named function definitions by counting blocks over the token stream."""

    def __init__(self, src: SourceFile):
        self.src = src
        self.toks = [t for t in src.tokens if t.kind not in ("comment", "shebang")]
        self.indents = [len(line) - len(line.lstrip()) for line in src.lines]
        self.stack: list[_Open] = []
        self.funcs: list[_Open] = []  # the function entries of the stack
        self.counts: dict[str, int] = {}
        self.top: list[Def] = []
        self.pending_fn: dict[int, Def] = {}  # `function` token index -> its definition
        self.pending_table: dict[int, str] = {}  # `{` token index -> the table's name
        self.expr_kw = -2  # index of the last then/elseif/else of an if-expression

    def tok(self, i: int) -> Token:
        return self.toks[i] if 0 <= i < len(self.toks) else _EOF

    def is_op(self, i: int, text: str) -> bool:
        t = self.tok(i)
        return t.kind == "op" and t.text == text

    def run(self) -> list[Def]:
        for i, t in enumerate(self.toks):
            if t.kind == "keyword":
                self.keyword(i, t)
            elif t.kind == "name":
                self.name(i, t)
            elif t.kind == "op":
                self.op(i, t)
        self.close_all(self.toks[-1].line if self.toks else 1)
        return self.top

    # -- stack --------------------------------------------------------------------------------

    def push(self, kind: str, t: Token, fn: Def | None = None, table: str | None = None) -> None:
        entry = _Open(kind, self.indents[t.line - 1], fn, table)
        self.stack.append(entry)
        if kind == "function":
            self.funcs.append(entry)
        for key in self.keys(entry):
            self.counts[key] = self.counts.get(key, 0) + 1

    def pop(self, end_line: int) -> _Open:
        entry = self.stack.pop()
        if entry.kind == "function":
            self.funcs.pop()
            if entry.fn is not None:
                entry.fn.end_line = max(end_line, entry.fn.line)
        for key in self.keys(entry):
            self.counts[key] -= 1
        return entry

    @staticmethod
    def keys(entry: _Open) -> tuple[str, ...]:
        if entry.kind in _END_CLOSES:
            return ("end", "end0") if entry.indent == 0 else ("end",)
        return (entry.kind,)

    def close_all(self, end_line: int) -> None:
        while self.stack:
            self.pop(end_line)

    def attach(self, fn: Def) -> Def | None:
        """Record a definition under its enclosing named function; drop it inside anonymous ones."""
        if not self.funcs:
            self.top.append(fn)
            return fn
        parent = self.funcs[-1].fn
        if parent is None:
            return None
        parent.children.append(fn)
        return fn

    def resync(self, i: int) -> None:
        """A definition at column 0 inside an open function: an `end` is missing; close all."""
        if self.toks[i].col == 0 and self.funcs:
            self.close_all(self.tok(i - 1).line)

    # -- tokens -------------------------------------------------------------------------------

    def keyword(self, i: int, t: Token) -> None:
        word = t.text
        if word == "function":
            self.function(i, t)
        elif word == "local":
            self.local(i, t)
        elif word == "return":
            self.return_(i, t)
        elif word in ("do", "repeat"):
            self.push(word, t)
        elif word == "if":
            self.push("exprif" if self.in_expression(i) else "if", t)
        elif word in ("then", "elseif", "else"):
            if self.stack and self.stack[-1].kind == "exprif":
                self.expr_kw = i
                if word == "else":  # the else branch is a single expression: nothing to close
                    self.pop(t.line)
        elif word == "end":
            self.end(t)
        elif word == "until" and self.counts.get("repeat"):
            while self.pop(t.line).kind != "repeat":
                pass

    def in_expression(self, i: int) -> bool:
        prev = self.tok(i - 1)
        return (prev.kind in ("op", "keyword") and prev.text in _EXPR_BEFORE) or (
            self.expr_kw == i - 1
        )

    def end(self, t: Token) -> None:
        if not self.counts.get("end"):
            return  # stray `end`
        if t.col == 0 and self.counts.get("end0"):
            # An `end` at column 0 closes the block opened at column 0, even when an
            # inner block was left unclosed (a missing `end` in a broken file).
            inner = next(e for e in reversed(self.stack) if e.kind in _BLOCKS)
            if inner.indent > 0:
                while True:
                    entry = self.pop(t.line)
                    if entry.kind in _END_CLOSES and entry.indent == 0:
                        return
        while self.pop(t.line).kind not in _END_CLOSES:
            pass

    def function(self, i: int, t: Token) -> None:
        fn = self.pending_fn.pop(i, None)
        if fn is None and self.tok(i + 1).kind == "name":
            self.resync(i)
            name, kind = self.funcname(i + 1)
            fn = Def(name, kind, t.start, t.line, t.line)
        if fn is not None:
            fn = self.attach(fn)
        self.push("function", t, fn=fn)

    def funcname(self, i: int) -> tuple[str, ChunkKind]:
        name, j = self.tok(i).text, i + 1
        while self.is_op(j, ".") and self.tok(j + 1).kind == "name":
            name, j = f"{name}.{self.tok(j + 1).text}", j + 2
        if self.is_op(j, ":") and self.tok(j + 1).kind == "name":
            return f"{name}:{self.tok(j + 1).text}", ChunkKind.METHOD
        return name, ChunkKind.FUNCTION

    def local(self, i: int, t: Token) -> None:
        nxt = self.tok(i + 1)
        if nxt.kind == "keyword" and nxt.text == "function" and self.tok(i + 2).kind == "name":
            self.resync(i)
            name = self.tok(i + 2).text
            self.pending_fn[i + 1] = Def(name, ChunkKind.FUNCTION, t.start, t.line, t.line)
        elif nxt.kind == "name":
            j = i + 2
            if self.is_op(j, "<") and self.tok(j + 1).kind == "name" and self.is_op(j + 2, ">"):
                j += 3  # Lua 5.4 attribute: local f <const> = ...
            if self.is_op(j, "="):
                self.value(j + 1, nxt.text, t)

    def return_(self, i: int, t: Token) -> None:
        if not self.funcs:
            self.value(i + 1, self.src.module, t)

    def value(self, j: int, name: str, head: Token) -> None:
        """`head ... = <token j>`: note a function or a table constructor assigned to `name`."""
        v = self.tok(j)
        if v.kind == "keyword" and v.text == "function":
            if self.is_op(j + 1, "(") or self.is_op(j + 1, "<"):
                self.pending_fn[j] = Def(name, ChunkKind.FUNCTION, head.start, head.line, head.line)
        elif v.kind == "op" and v.text == "{":
            self.pending_table[j] = name

    def name(self, i: int, t: Token) -> None:
        top = self.stack[-1] if self.stack else None
        prev = self.tok(i - 1)
        if top is not None and top.kind == "{":
            if top.table and prev.text in ("{", ",", ";") and self.is_op(i + 1, "="):
                self.value(i + 2, f"{top.table}.{t.text}", t)
            return
        if top is not None and top.kind in ("(", "["):
            return
        if prev.kind in ("op", "keyword") and prev.text in _NOT_STATEMENT_START:
            return
        name, j = self.chain(i)
        if self.is_op(j, "="):
            self.value(j + 1, name, t)

    def chain(self, i: int) -> tuple[str, int]:
        """`a.b["c"].d` -> ("a.b.c.d", index after it)."""
        name, j = self.tok(i).text, i + 1
        while True:
            if self.is_op(j, ".") and self.tok(j + 1).kind == "name":
                name, j = f"{name}.{self.tok(j + 1).text}", j + 2
            elif self.is_op(j, "[") and self.tok(j + 1).kind == "string" and self.is_op(j + 2, "]"):
                name, j = f"{name}.{string_value(self.tok(j + 1).text)}", j + 3
            else:
                return name, j

    def op(self, i: int, t: Token) -> None:
        s = t.text
        if s == "{":
            self.push("{", t, table=self.pending_table.pop(i, None))
        elif s == "[":
            top = self.stack[-1] if self.stack else None
            if (
                top is not None
                and top.kind == "{"
                and top.table
                and self.tok(i - 1).text in ("{", ",", ";")
                and self.tok(i + 1).kind == "string"
                and self.is_op(i + 2, "]")
                and self.is_op(i + 3, "=")
            ):
                key = string_value(self.tok(i + 1).text)
                self.value(i + 4, f"{top.table}.{key}", t)
            self.push("[", t)
        elif s == "(":
            self.push("(", t)
        elif s in _OPENER:
            self.close_bracket(_OPENER[s], t.line)

    def close_bracket(self, opener: str, line: int) -> None:
        if not self.counts.get(opener):
            return
        for depth, entry in enumerate(reversed(self.stack)):
            if entry.kind == opener:
                for _ in range(depth + 1):
                    self.pop(line)
                return
            if entry.kind in _BLOCKS or depth >= _BRACKET_SEARCH:
                return  # never let a stray bracket close a block


def string_value(text: str) -> str:
    """The content of a string literal token, escapes left as written (like luaparser's `raw`)."""
    if text[:1] in ("'", '"', "`"):
        return text[1:-1] if len(text) > 1 and text[-1] == text[0] else text[1:]
    m = LONG_BRACKET.match(text)
    if m:
        close = "]" + m.group(1) + "]"
        body = text[m.end() :]
        return body[: -len(close)] if body.endswith(close) else body
    return text


def scan_defs(src: SourceFile) -> list[Def]:
    """Named function definitions outside any function body, each with its nested ones."""
    return _Scanner(src).run()
