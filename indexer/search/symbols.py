"""Symbol lookup: the definitions of the functions a query names (`Picker:get_selection`,
`get_selection`, `where is trim defined`), strongest match first."""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from indexer import words


@dataclass(frozen=True, slots=True)
class SymbolHit:
    id: int
    strength: tuple[int, bool]  # (match level, same letter case): see match_strength


async def symbol_hits(
    conn: asyncpg.Connection, query: str, repos: list[int] | None
) -> list[SymbolHit]:
    """Definitions of the symbols the query names, strongest match first.

    A chunk matches through any function it defines: its own symbol, or a helper defined
    inside it (`local function helper`, `self.update = function`). In a lookup (`where is
    trim defined`) any definition of that name counts; in a longer question only a name
    that matches with its qualifier (`Picker:get_selection`) or one spelled like an
    identifier (`get_selection`) does: prose such as 'list[first:last]' must not pull up
    some function called `last`.
    """
    terms, lookup = words.symbol_terms(query)
    if not terms:
        return []
    keys = list({words.symbol_key(t) for t in terms})
    rows = await conn.fetch(
        """
        SELECT id, symbol, kind, part, path, defines FROM chunks
        WHERE symbol_keys && $1::text[] AND searchable
          AND ($2::int[] IS NULL OR repo_id = ANY($2))
        """,
        keys,
        repos,
    )
    hits: list[SymbolHit] = []
    for r in rows:
        names = list(r["defines"])
        if r["part"] > 1 and r["kind"] in ("function", "method"):
            names = names[1:]  # a later window of a large function: its first part stands for it
        strength = max(
            (match_strength(t, n, r["path"]) for t in terms for n in names), default=(0, False)
        )
        if strength[0] >= (1 if lookup else 2):
            hits.append(SymbolHit(r["id"], strength))
    return sorted(hits, key=lambda h: h.strength, reverse=True)


def match_strength(term: str, name: str, path: str) -> tuple[int, bool]:
    """How well a query term names a defined function, as (level, same case).

    Level 4: the same name (`Picker:get_selection`); 3: a qualified name the term ends with
    (`pl.data.write` for `data.write`), or whose file's path and qualifiers hold the term's
    qualifiers (`apisix.secret.aws.get` for `_M.get` in apisix/secret/aws.lua); 2: the same
    for a bare name (`local function get` there), or an identifier-like term
    (`get_selection`) naming it; 1: only the last names agree; 0: another function.
    A bare name never matches a qualified term by its ending alone: every `check_schema`
    ends `apisix.plugins.acl.check_schema`, and only the one in that file is meant.
    """
    if words.symbol_key(term) != words.symbol_key(name):
        return (0, False)
    same_case = re.split(r"[.:]", term)[-1] == re.split(r"[.:]", name)[-1]
    term_l, name_l = term.lower(), name.lower()
    if term_l == name_l:
        return (4, same_case)
    name_parts = re.split(r"[.:]", name_l)
    qualified = len(name_parts) > 1
    if qualified and term_l.endswith(("." + name_l, ":" + name_l)):
        return (3, same_case)
    term_parts = re.split(r"[.:]", term_l)
    if len(term_parts) == 1:
        identifier = "_" in term.strip("_") or re.search(r"[a-z][A-Z]", term) is not None
        return (2 if identifier else 1, same_case)
    where = set(re.split(r"[/._-]", path.lower())) | set(name_parts[:-1])
    if set(term_parts[:-1]) <= where:
        return (3 if qualified else 2, same_case)
    return (1, same_case)
