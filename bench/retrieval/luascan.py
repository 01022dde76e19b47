"""A small, fault-tolerant Lua scanner: tokens, named functions and their leading comments.

This is the benchmark's own ground truth. It deliberately does not use luaparser (which rejects
some real files, e.g. Roblox Luau in roact) nor Victor's chunker (the thing being measured):
it only needs to tokenize strings/comments correctly and match `function`/`if`/`do` with `end`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"0[xX][0-9A-Fa-f_.]*(?:[pP][+-]?\d+)?|\d[\d_.]*(?:[eE][+-]?\d+)?|\.\d[\d_]*")
_LONG_OPEN = re.compile(r"\[(=*)\[")
# fmt: off
_OPS = sorted([
    "...", "..", "==", "~=", "<=", ">=", "::", "//", "->", "+=", "-=", "*=", "/=", "%=", "^=",
    "..=", "<<", ">>",
], key=len, reverse=True)
KEYWORDS = frozenset({
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
})
# After these tokens an `if` is a Luau if-expression (`x = if a then b else c`), which has no `end`.
_EXPR_BEFORE_IF = frozenset({
    "=", "(", ",", "{", "[", "return", "and", "or", "not", "==", "~=", "<", ">", "<=", ">=",
    "..", "+", "-", "*", "/", "//", "%", "^", "#", "+=", "-=", "*=", "/=", "%=", "^=", "..=",
})
# fmt: on


@dataclass(slots=True)
class Token:
    kind: str  # "name", "keyword", "string", "number", "op", "comment"
    text: str
    line: int  # 1-based line of the first character
    end_line: int  # line of the last character


@dataclass(slots=True)
class Function:
    """A named function: `name` as written (`a.b:c`, `f`, or `T.f` for a field of table T)."""

    name: str
    start_line: int  # first line of the header (`local`, `function`, or the assigned name)
    end_line: int  # line of the matching `end`
    form: str  # "statement", "local", "assign", "field"
    body_text: str  # code tokens between the parameter list and `end`, space-joined ("" = stub)
    comment: list[Token]  # the leading comment block, top to bottom ([] if none)


def tokenize(src: str) -> list[Token]:
    """Split Lua source into tokens, comments included. Never raises on malformed input."""
    tokens: list[Token] = []
    i, n, line = 0, len(src), 1
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        start, start_line = i, line
        if src.startswith("--", i):
            m = _LONG_OPEN.match(src, i + 2)
            if m:
                close = src.find("]" + m.group(1) + "]", m.end())
                j = n if close < 0 else close + len(m.group(1)) + 2
            else:
                j = src.find("\n", i)
                j = n if j < 0 else j
            kind = "comment"
        elif c == "[" and _LONG_OPEN.match(src, i):
            m = _LONG_OPEN.match(src, i)
            close = src.find("]" + m.group(1) + "]", m.end())
            j = n if close < 0 else close + len(m.group(1)) + 2
            kind = "string"
        elif c in "\"'`":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            kind = "string"
        elif m := _NAME.match(src, i):
            j = m.end()
            kind = "keyword" if m.group() in KEYWORDS else "name"
        elif m := _NUMBER.match(src, i):
            j = m.end()
            kind = "number"
        else:
            op = next((o for o in _OPS if src.startswith(o, i)), c)
            j = i + len(op)
            kind = "op"
        text = src[start:j]
        line += text.count("\n")
        tokens.append(Token(kind, text, start_line, line))
        i = j
    return tokens


def _opens_block(code: list[Token], i: int) -> bool:
    t = code[i]
    if t.kind != "keyword":
        return False
    if t.text in ("function", "do"):  # `while`/`for` share their `do`'s `end`
        return True
    if t.text == "if":
        return i == 0 or code[i - 1].text not in _EXPR_BEFORE_IF
    return False


def _name_after(code: list[Token], i: int) -> tuple[str, int]:
    """Read `a.b:c` starting at code[i]; return (name, index after it)."""
    parts = [code[i].text]
    j = i + 1
    while j + 1 < len(code) and code[j].text in (".", ":") and code[j + 1].kind == "name":
        parts += [code[j].text, code[j + 1].text]
        j += 2
    return "".join(parts), j


def _name_before(code: list[Token], i: int) -> tuple[str, int]:
    """Read `a.b` ending at code[i] backwards; return (name, index of its first token)."""
    parts = [code[i].text]
    j = i
    while j >= 2 and code[j - 1].text == "." and code[j - 2].kind == "name":
        parts = [code[j - 2].text, ".", *parts]
        j -= 2
    return "".join(parts), j


def _body(code: list[Token], fn_index: int, end_index: int) -> list[Token]:
    """Tokens between the parameter list's `)` and `end`."""
    j = fn_index + 1
    while j < end_index and code[j].text != "(":
        j += 1
    depth = 0
    while j < end_index:
        if code[j].text == "(":
            depth += 1
        elif code[j].text == ")":
            depth -= 1
            if depth == 0:
                break
        j += 1
    return code[j + 1 : end_index]


def _leading_comment(tokens: list[Token], first: int) -> list[Token]:
    """Comment tokens that sit on their own lines directly above tokens[first], no blank line."""
    block: list[Token] = []
    below_line = tokens[first].line
    j = first - 1
    while j >= 0 and tokens[j].kind == "comment":
        c = tokens[j]
        own_line = j == 0 or tokens[j - 1].end_line < c.line
        if not own_line or c.end_line != below_line - 1:
            break
        block.insert(0, c)
        below_line = c.line
        j -= 1
    return block


def find_functions(src: str) -> list[Function]:
    """Every named function in `src`, in source order, with its line span and leading comment."""
    tokens = tokenize(src)
    code_at = [i for i, t in enumerate(tokens) if t.kind != "comment"]
    code = [tokens[i] for i in code_at]
    # Stack entries: (opener text, pending function or None, table name for `{`).
    stack: list[tuple[str, dict | None, str]] = []
    found: list[tuple[int, Function]] = []
    for i, t in enumerate(code):
        if t.text == "{" and t.kind == "op":
            table = ""
            named = i >= 2 and code[i - 1].text == "=" and code[i - 2].kind == "name"
            if named and stack and stack[-1][0] == "{":  # `{ sub = {` inside table T: T.sub
                table = stack[-1][2] + "." + code[i - 2].text if stack[-1][2] else ""
            elif named:  # `T = {` / `a.b = {`
                table = _name_before(code, i - 2)[0]
            stack.append(("{", None, table))
        elif t.text in ("(", "[") and t.kind == "op":
            stack.append((t.text, None, ""))
        elif t.text in ("}", ")", "]") and t.kind == "op":
            opener = {"}": "{", ")": "(", "]": "["}[t.text]
            if stack and stack[-1][0] == opener:
                stack.pop()
        elif _opens_block(code, i):
            header = _function_header(code, i, stack) if t.text == "function" else None
            stack.append((t.text, header, ""))
        elif t.text == "end" and t.kind == "keyword":
            while stack and stack[-1][0] in ("{", "(", "["):  # unbalanced brackets: recover
                stack.pop()
            if not stack:
                continue
            _, pending, _ = stack.pop()
            if pending is not None:
                body = _body(code, pending["fn_index"], i)
                fn = Function(
                    name=pending["name"],
                    start_line=code[pending["first"]].line,
                    end_line=t.line,
                    form=pending["form"],
                    body_text=" ".join(b.text for b in body),
                    comment=_leading_comment(tokens, code_at[pending["first"]]),
                )
                found.append((pending["first"], fn))
    found.sort(key=lambda p: p[0])
    return [fn for _, fn in found]


def _function_header(code: list[Token], i: int, stack: list) -> dict | None:
    """Name, form and first token of the function whose `function` keyword is code[i]."""
    nxt = code[i + 1] if i + 1 < len(code) else None
    prev = code[i - 1] if i > 0 else None
    if nxt is not None and nxt.kind == "name":  # function a.b:c (...) / local function f
        name, _ = _name_after(code, i + 1)
        if prev is not None and prev.text == "local":
            return {"name": name, "form": "local", "first": i - 1, "fn_index": i}
        return {"name": name, "form": "statement", "first": i, "fn_index": i}
    if prev is None or prev.text != "=" or i < 2 or code[i - 2].kind != "name":
        return None  # anonymous: argument, return value, `t[k] = function`, ...
    name, first = _name_before(code, i - 2)
    before = code[first - 1] if first > 0 else None
    in_table = bool(stack) and stack[-1][0] == "{"
    if in_table and "." not in name and before is not None and before.text in ("{", ",", ";"):
        table = stack[-1][2]
        return {
            "name": f"{table}.{name}" if table else name,
            "form": "field",
            "first": first,
            "fn_index": i,
        }
    if before is not None and before.text == "local":
        return {"name": name, "form": "local", "first": first - 1, "fn_index": i}
    if in_table:
        return None
    return {"name": name, "form": "assign", "first": first, "fn_index": i}
