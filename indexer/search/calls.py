"""The code around a hit: the functions it calls and the code that calls it, from the index.

A question about a flow ("what happens when I save?") is answered by a chain of functions,
while search finds one link of it. When the context budget has room left after the retrieved
hits, the definitions the best hit calls (callees) and the chunks that call it (callers) are
added after them, each labelled with why it is there. Calls are the names a chunk's code
calls (`indexer.words.called_names`), resolved to definitions in the same repository by their
last name (`symbol_keys`, as symbol lookup does), the closest match first: the same qualified
name, then a method of the same file for `self:name()`, then the same file, then any of at most
MAX_DEFINITIONS definitions of the name. A name defined in more places with none closer
(`new`, `get`) is left out: guessing would fill the context with unrelated code. Callers are
ordered the same way (the closest call first, then the shortest chunk) and tests left out.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import asyncpg

from indexer import words
from indexer.search.fusion import is_test_path
from indexer.search.results import RESULT_SELECT, SearchResult, result_of

CallContext = Literal["off", "callees", "callers", "both"]
CALL_CONTEXTS: tuple[CallContext, ...] = ("off", "callees", "callers", "both")

# Measured over 8 corpora (bench/README.md, "Code around the best hit"): callers before
# callees (questions ctx@answer 0.711 against 0.689), of the best hit only (two hits: 0.732,
# at twice the lookups and +300 characters).
CALL_SEEDS = 1  # hits whose neighbours are added: the best one
CALL_FIRST = "callers"  # with both: the side of a hit tried first
MAX_DEFINITIONS = 3  # a called name defined more often than this, with no closer match: skip
MAX_CALLERS = 4  # callers shown per hit (the closest first)
CANDIDATES = 200  # chunks read to find the callers of one function


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A chunk added for a hit: `result` (score: the hit's) and why, e.g. `called by M.save`."""

    result: SearchResult
    why: str


def _closeness(call: str, hit_path: str, symbol: str, path: str) -> int:
    """How surely the call `call` made in `hit_path` means the function `symbol` of `path`:
    3 the same qualified name, 2 `self:name` and a method of the same file, 1 the same file,
    0 only the last name agrees."""
    if call.replace(":", ".") == symbol.replace(":", "."):
        return 3
    same_file = path == hit_path
    qualifier = re.split(r"[.:]", call)[0]
    if same_file and qualifier == "self" and re.search(r"[.:]", symbol):
        return 2
    return 1 if same_file else 0


async def callees(conn: asyncpg.Connection, hit: SearchResult, limit: int) -> list[Neighbour]:
    """The definitions `hit` calls, in the order its code first calls them."""
    own = words.symbol_key(hit.symbol)
    calls = [c for c in words.called_names(hit.text) if words.symbol_key(c) != own]
    if not calls:
        return []
    keys = list(dict.fromkeys(words.symbol_key(c) for c in calls))
    # the definitions' names first (a common name may have hundreds), the chosen ones' code after
    rows = await conn.fetch(
        """
        SELECT c.id, c.symbol, c.path, c.start_line FROM chunks c
        WHERE c.repo_id = (SELECT id FROM repos WHERE name = $1)
          AND c.symbol_keys && $2::text[] AND c.searchable
          AND c.kind IN ('function', 'method') AND c.part <= 1
        """,
        hit.repo,
        keys,
    )
    by_key: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        by_key.setdefault(words.symbol_key(r["symbol"]), []).append(r)
    chosen: list[int] = []
    for call in calls:
        found = [r for r in by_key.get(words.symbol_key(call), []) if r["id"] not in chosen]
        found = [r for r in found if (r["path"], r["start_line"]) != (hit.path, hit.start_line)]
        if not found:
            continue
        # ties in path order: the rows come in no fixed order, and a context must not change
        # from one run to the next
        ranked = sorted(
            found,
            key=lambda r: (
                -_closeness(call, hit.path, r["symbol"], r["path"]),
                r["path"],
                r["start_line"],
            ),
        )
        best = ranked[0]
        if _closeness(call, hit.path, best["symbol"], best["path"]) == 0 and (
            len(found) > MAX_DEFINITIONS or is_test_path(best["path"])
        ):
            continue
        chosen.append(best["id"])
        if len(chosen) >= limit:
            break
    if not chosen:
        return []
    code = {r["id"]: r for r in await conn.fetch(RESULT_SELECT + "WHERE c.id = ANY($1)", chosen)}
    return [
        Neighbour(result_of(code[i], hit.score), f"called by {hit.symbol}")
        for i in chosen
        if i in code
    ]


async def callers(
    conn: asyncpg.Connection, hit: SearchResult, limit: int = MAX_CALLERS
) -> list[Neighbour]:
    """The chunks whose code calls `hit`'s function, the closest first, tests left out.

    Candidates come from the lexical index (`indexer.store.postings`): the chunks whose
    called names (field C of a function) or module code (field D of a module chunk) hold the
    function's whole name as a word, best first; each is then checked to really call it. So
    no list of calls is stored, and the lookup is an index scan, not a read of every chunk.
    """
    if hit.kind not in ("function", "method"):
        return []
    key = words.symbol_key(hit.symbol)
    name = "".join(words.split_identifier(key))  # `on_key` -> `onkey`, as indexed
    if not name:
        return []
    rows = await conn.fetch(
        RESULT_SELECT
        + """
        WHERE c.id IN (
            SELECT p.chunk_id FROM lex_postings p
            WHERE p.repo_id = (SELECT id FROM repos WHERE name = $1)
              AND p.term = ANY(tsvector_to_array(to_tsvector('english', $2)))
              AND (p.nc > 0 OR (p.module AND p.nd > 0))
            ORDER BY p.impact DESC LIMIT $3)
          AND c.text ~* $4  -- the name followed by a call's `(`, `{` or string
        """,
        hit.repo,
        name,
        CANDIDATES,
        rf"\m{re.escape(key)}\s*[({{\"']",
    )
    rows = [
        r
        for r in rows
        if not is_test_path(r["path"])
        and (r["path"], r["start_line"]) != (hit.path, hit.start_line)
    ]
    names: dict[int, list[str]] = {}  # a row's calls, read once for both passes

    def calls_in(r: asyncpg.Record) -> list[str]:
        if r["id"] not in names:
            names[r["id"]] = words.called_names(r["text"])
        return names[r["id"]]

    if _too_common(rows, hit, key, calls_in):
        return []
    ranked: list[tuple[int, int, asyncpg.Record]] = []
    for r in rows:
        calls = [c for c in calls_in(r) if words.symbol_key(c) == key]
        if not calls:
            continue
        close = max(_closeness(c, r["path"], hit.symbol, hit.path) for c in calls)
        ranked.append((close, -len(r["text"]), r))
    if not ranked:
        return []
    # the closest, then the shortest; ties in path order (the rows come in no fixed order,
    # and a context must not change from one run to the next)
    ranked.sort(key=lambda t: (-t[0], -t[1], t[2]["path"], t[2]["start_line"]))
    if ranked[0][0] == 0 and len(ranked) > MAX_DEFINITIONS * MAX_CALLERS:
        return []  # a common name called everywhere: which of these mean this function?
    return [Neighbour(result_of(r, hit.score), f"calls {hit.symbol}") for _, _, r in ranked[:limit]]


def _too_common(
    rows: Sequence[asyncpg.Record],
    hit: SearchResult,
    key: str,
    calls_in: Callable[[asyncpg.Record], list[str]],
) -> bool:
    """Whether more than MAX_DEFINITIONS x MAX_CALLERS of `rows` call the name and none of
    them can be a close call (see `callers`): decided without reading every row's calls,
    which for a common name's 200 candidates cost more than the lookup's SQL."""
    parts = re.split(r"[.:]", hit.symbol)
    if len(parts) < 2:
        return False  # an unqualified name: any bare call of it is a close call
    # a close call is in the hit's file, or names the hit as qualified (as `_CALL` reads it)
    qualified = re.compile(r"\s*[.:]\s*".join(map(re.escape, parts)))
    if any(r["path"] == hit.path or qualified.search(r["text"]) for r in rows):
        return False
    calling = 0
    for r in rows:
        if any(words.symbol_key(c) == key for c in calls_in(r)):
            calling += 1
            if calling > MAX_DEFINITIONS * MAX_CALLERS:
                return True
    return False


async def neighbours(
    conn: asyncpg.Connection,
    hits: Sequence[SearchResult],
    mode: CallContext,
    *,
    seeds: int = CALL_SEEDS,
    limit: int = 6,
    first: str = CALL_FIRST,
    spare: asyncpg.Connection | None = None,
) -> list[Neighbour]:
    """What the best `seeds` hits call and are called by (per `mode`), in the order the
    context should try them (for `both`: the `first` side of each hit, then the other);
    never a chunk that is one of `hits`. With a `spare` connection, `both` reads the two
    sides at once, the callers on it."""
    if mode == "off" or not hits:
        return []
    taken = {(h.repo, h.path, h.start_line) for h in hits}
    out: list[Neighbour] = []
    for hit in hits[:seeds]:
        down, up = await _sides(conn, hit, mode, limit, spare)
        found = up + down if first == "callers" else down + up
        for n in found:
            where = (n.result.repo, n.result.path, n.result.start_line)
            if where not in taken:
                taken.add(where)
                out.append(n)
    return out[: limit * seeds]


async def _sides(
    conn: asyncpg.Connection,
    hit: SearchResult,
    mode: CallContext,
    limit: int,
    spare: asyncpg.Connection | None,
) -> tuple[list[Neighbour], list[Neighbour]]:
    """What `hit` calls and what calls it, as `mode` asks. Both on two connections: a lone
    chat then waits for the slower side rather than for the two in turn."""
    down_too, up_too = mode in ("callees", "both"), mode in ("callers", "both")
    if spare is not None and down_too and up_too:
        # a task group: if one side fails the other is cancelled, not left running on a
        # connection about to be given back
        async with asyncio.TaskGroup() as group:
            down = group.create_task(callees(conn, hit, limit))
            up = group.create_task(callers(spare, hit))
        return down.result(), up.result()
    return (
        await callees(conn, hit, limit) if down_too else [],
        await callers(conn, hit) if up_too else [],
    )


def labelled(n: Neighbour) -> SearchResult:
    """The neighbour as a result whose symbol says why it is there."""
    return replace(n.result, symbol=f"{n.result.symbol}; {n.why}")
