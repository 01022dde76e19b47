"""Browsing the index read-only: repositories, files, lines, definitions and references.

What an exploring client (the tools of `victor mcp`) asks besides search: which repositories
are indexed, at which commit and how fresh; which files; the lines of a file; where a name is
defined; where it is called or mentioned. The lines of a file are rebuilt from its chunks (a
chunk's text is exactly its lines): the index is the only source, no file is ever read.

Every statement is a parameterised SELECT, so the read-only role `victor_reader`
(docs/database-role.md) runs all of it. Every answer is bounded (`limit`, `MAX_LINES`); the
caller decides how much of it to show.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from indexer import words as lexical
from indexer.errors import ConfigError, NotFound
from indexer.links import permalink

DB = asyncpg.Pool | asyncpg.Connection

MAX_LINES = 400  # lines of a file per read
MAX_NAME = 200  # characters of a name to look up
_NAME = re.compile(r"[A-Za-z_]\w*(?:\s*[.:]\s*[A-Za-z_]\w*)*")


# --- what comes back ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """Lines of an indexed file, at the commit they were indexed from."""

    repo: str
    path: str
    start_line: int
    end_line: int
    commit: str | None = None
    github_url: str | None = None

    @property
    def location(self) -> str:
        """`repo@commit:path:start-end` (`repo:path:start-end` for a folder without git)."""
        at = f"{self.repo}@{self.commit[:12]}" if self.commit else self.repo
        return f"{at}:{self.path}:{self.start_line}-{self.end_line}"

    @property
    def link(self) -> str | None:
        """The GitHub permalink of these lines, when the repository's URL and commit are known."""
        return permalink(self.github_url, self.commit, self.path, self.start_line, self.end_line)


@dataclass(frozen=True, slots=True)
class RepoInfo:
    name: str
    commit: str | None  # the last commit indexed completely (None: a folder, or never finished)
    branch: str | None  # the ref asked for (the branch of a followed repository)
    github_url: str | None
    indexed_at: datetime | None  # end of the last complete run
    age_seconds: float | None  # how long ago that was
    files: int
    chunks: int
    followed: bool  # kept current by the GitHub webhook and `victor sync`


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    lines: int
    functions: int
    commit: str | None


@dataclass(frozen=True, slots=True)
class Listing:
    repo: str
    files: list[FileInfo]
    total: int  # files matching, of which `files` holds the first `limit`


@dataclass(frozen=True, slots=True)
class Lines:
    span: Span  # the lines returned
    text: str
    file_lines: int  # the file's last line


@dataclass(frozen=True, slots=True)
class Definition:
    span: Span  # the chunk (a large function: all its parts) holding the definition
    name: str  # the name as defined (`Picker:get_selection`, `helper`)
    line: int  # the line of the definition (`function ...` or `... = function`)
    symbol: str  # the chunk's symbol: the function itself, or the one it is nested in
    kind: str
    signature: str
    doc: str
    text: str  # the code of the first chunk, from its first line

    @property
    def nested(self) -> bool:
        return self.name != self.symbol


@dataclass(frozen=True, slots=True)
class Reference:
    span: Span  # the chunk that calls or mentions the name
    symbol: str
    kind: str
    lines: list[tuple[int, str]] = field(default_factory=list)  # (line, its text) of each use
    calls: bool = False  # at least one use is a call


# --- repositories ---------------------------------------------------------------------------


async def repos(db: DB) -> list[RepoInfo]:
    """Every indexed repository with its commit, freshness and size."""
    rows = await db.fetch(
        """
        SELECT r.name, r.commit_sha, r.ref, r.github_url, r.indexed_at, r.tracked,
               extract(epoch FROM now() - r.indexed_at)::float8 AS age,
               (SELECT count(*) FROM files f WHERE f.repo_id = r.id) AS files,
               (SELECT count(*) FROM chunks c WHERE c.repo_id = r.id) AS chunks
        FROM repos r ORDER BY r.name
        """
    )
    return [
        RepoInfo(
            name=r["name"],
            commit=r["commit_sha"],
            branch=r["ref"],
            github_url=r["github_url"],
            indexed_at=r["indexed_at"],
            age_seconds=r["age"],
            files=r["files"],
            chunks=r["chunks"],
            followed=r["tracked"],
        )
        for r in rows
    ]


async def repo_ids(db: DB, names: Sequence[str] | None) -> list[int] | None:
    """The ids of the named repositories (None: all); NotFound names the known ones."""
    if not names:
        return None
    rows = await db.fetch("SELECT id, name FROM repos WHERE name = ANY($1)", list(names))
    missing = [n for n in names if n not in {r["name"] for r in rows}]
    if missing:
        raise NotFound(await _unknown_repo(db, missing[0]))
    return [r["id"] for r in rows]


async def _unknown_repo(db: DB, name: str) -> str:
    known = [r["name"] for r in await db.fetch("SELECT name FROM repos ORDER BY name")]
    hint = f"Known repositories: {', '.join(known)}." if known else "Nothing is indexed yet."
    return f"No repository named {name!r} in the index. {hint}"


async def _repo(db: DB, name: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT id, name, github_url FROM repos WHERE name = $1", name)
    if row is None:
        raise NotFound(await _unknown_repo(db, name))
    return row


# --- files ----------------------------------------------------------------------------------


def glob_regex(pattern: str) -> str:
    """A glob as a PostgreSQL regular expression over a whole path: `*` and `?` stay within a
    folder, `**` crosses folders, and a pattern without `/` matches the file name at any
    depth (`cart*.lua`), as in .gitignore."""
    pattern = pattern.strip().lstrip("/")
    if not pattern:
        return ".*"
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(c) or re.escape(c))
        i += 1
    prefix = "" if "/" in pattern else "(.*/)?"
    return f"^{prefix}{''.join(out)}$"


async def files(db: DB, repo: str, pattern: str | None = None, *, limit: int = 500) -> Listing:
    """The repository's indexed files (matching the glob), by path, at most `limit`."""
    row = await _repo(db, repo)
    regex = glob_regex(pattern or "")
    total = await db.fetchval(
        "SELECT count(*) FROM files WHERE repo_id = $1 AND path ~ $2", row["id"], regex
    )
    rows = await db.fetch(
        """
        SELECT f.path, f.commit_sha,
               (SELECT coalesce(max(c.end_line), 0) FROM chunks c
                WHERE c.repo_id = f.repo_id AND c.path = f.path) AS lines,
               (SELECT count(*) FROM chunks c
                WHERE c.repo_id = f.repo_id AND c.path = f.path
                  AND c.kind IN ('function', 'method') AND c.part <= 1) AS functions
        FROM files f WHERE f.repo_id = $1 AND f.path ~ $2
        ORDER BY f.path LIMIT $3
        """,
        row["id"],
        regex,
        limit,
    )
    found = [FileInfo(r["path"], r["lines"], r["functions"], r["commit_sha"]) for r in rows]
    return Listing(repo, found, total)


def clean_path(path: str) -> str:
    """A path inside a repository as the index stores it (`src/shop/cart.lua`). Anything
    that could point elsewhere (absolute, `..`, backslashes, NUL) is refused: the index
    holds nothing outside its repositories, and saying so is clearer than 'not found'."""
    if "\0" in path or "\\" in path:
        raise ConfigError(f"{path!r} is not a path in the index: use '/' between folders.")
    if path.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", path):
        raise ConfigError(
            f"{path!r} is an absolute path: give the path inside the repository, as "
            "list_files shows it (e.g. src/shop/cart.lua)."
        )
    parts = [p for p in path.strip().split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(
            f"{path!r} leaves the repository ('..'): only indexed files can be read; "
            "list_files shows them."
        )
    if not parts:
        raise ConfigError("The path is empty: give a file's path, as list_files shows it.")
    return "/".join(parts)


async def lines(db: DB, repo: str, path: str, start: int = 1, end: int | None = None) -> Lines:
    """Lines `start..end` of an indexed file (at most MAX_LINES; `end` None: as many as
    allowed), rebuilt from its chunks."""
    row = await _repo(db, repo)
    path = clean_path(path)
    file = await db.fetchrow(
        """
        SELECT f.commit_sha, (SELECT coalesce(max(c.end_line), 0) FROM chunks c
                              WHERE c.repo_id = f.repo_id AND c.path = f.path) AS last
        FROM files f WHERE f.repo_id = $1 AND f.path = $2
        """,
        row["id"],
        path,
    )
    if file is None:
        raise NotFound(await _unknown_file(db, row, path))
    last = file["last"]
    if start < 1:
        raise ConfigError(f"start_line must be 1 or more (got {start}).")
    if end is not None and end < start:
        raise ConfigError(f"end_line ({end}) is before start_line ({start}).")
    if end is not None and end - start + 1 > MAX_LINES:
        raise ConfigError(
            f"Lines {start}-{end} are {end - start + 1} lines; at most {MAX_LINES} are read at "
            f"once. Ask for {start}-{start + MAX_LINES - 1}, then the next ones."
        )
    if start > last:
        raise ConfigError(f"{path} has {last} lines; start_line {start} is past its end.")
    end = min(last, end if end is not None else start + MAX_LINES - 1)
    chunks = await db.fetch(
        """
        SELECT start_line, text FROM chunks
        WHERE repo_id = $1 AND path = $2 AND end_line >= $3 AND start_line <= $4
        ORDER BY start_line, part
        """,
        row["id"],
        path,
        start,
        end,
    )
    text: dict[int, str] = {}
    for c in chunks:
        for n, line in enumerate(c["text"].split("\n"), c["start_line"]):
            if start <= n <= end:
                text.setdefault(n, line)
    body = "\n".join(text.get(n, "") for n in range(start, end + 1))
    span = Span(repo, path, start, end, file["commit_sha"], row["github_url"])
    return Lines(span, body, last)


async def _unknown_file(db: DB, repo: asyncpg.Record, path: str) -> str:
    """Not found, with the indexed files of the same name as a hint."""
    name = path.rsplit("/", 1)[-1]
    alike = await db.fetch(
        "SELECT path FROM files WHERE repo_id = $1 AND lower(path) LIKE '%' || lower($2) "
        "ORDER BY path LIMIT 5",
        repo["id"],
        name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),
    )
    hint = (
        f" Did you mean: {', '.join(r['path'] for r in alike)}?"
        if alike
        else " list_files shows the indexed files."
    )
    return f"{repo['name']} has no indexed file {path!r}.{hint}"


# --- definitions and references -------------------------------------------------------------


def check_name(name: str) -> str:
    """A Lua name as code writes it: `get_selection`, `M.setup`, `Picker:get_selection`."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name[:80]!r} is not a Lua name: give a function, method or module name such as "
            "get_selection, M.setup or Picker:get_selection."
        )
    return re.sub(r"\s+", "", name)


def match_level(wanted: str, defined: str) -> int:
    """How well a looked-up name names a definition: 4 the same name, 3 the same but for
    case or `.` vs `:`, 2 one qualifies the other (`get_selection` and
    `Picker:get_selection`, `pl.List:slice` and `List:slice`), 1 only the last names agree,
    0 another function."""
    if lexical.symbol_key(wanted) != lexical.symbol_key(defined):
        return 0
    if wanted == defined:
        return 4

    def norm(s: str) -> str:
        return s.replace(":", ".").lower()

    w, d = norm(wanted), norm(defined)
    if w == d:
        return 3
    if w.endswith("." + d) or d.endswith("." + w):
        return 2
    return 1


def _definition_line(text: str, start: int, name: str) -> int:
    """The line of the chunk that defines `name`; its own symbol may be written shorter
    there (`format_price = function` inside `return {...}` is `strings.format_price`)."""
    key = lexical.symbol_key(name)
    loose = None
    for n, line in enumerate(text.split("\n"), start):
        defined = lexical.defined_names(line)
        if name in defined:
            return n
        if loose is None and any(lexical.symbol_key(d) == key for d in defined):
            loose = n
    return loose or start


async def definitions(
    db: DB, name: str, repos: list[int] | None = None, *, limit: int = 20
) -> list[Definition]:
    """Where functions of that name are defined, the closest matches first (see
    match_level); a name qualified by a class or module leaves out other classes' methods
    of the same last name when it has a closer match."""
    name = check_name(name)
    rows = await db.fetch(
        """
        SELECT c.path, c.symbol, c.kind, c.signature, c.doc, c.start_line, c.end_line, c.part,
               c.text, c.defines, r.name AS repo, r.github_url, f.commit_sha
        FROM chunks c
        JOIN repos r ON r.id = c.repo_id
        JOIN files f ON f.repo_id = c.repo_id AND f.path = c.path
        WHERE c.symbol_keys && $1::text[] AND ($2::int[] IS NULL OR c.repo_id = ANY($2))
        ORDER BY r.name, c.path, c.start_line
        """,
        [lexical.symbol_key(name)],
        repos,
    )
    # the parts of a large function are one definition: keyed by (repo, path, symbol)
    parts: dict[tuple[str, str, str], list[asyncpg.Record]] = {}
    for r in rows:
        if r["part"] >= 1 and r["kind"] in ("function", "method"):
            parts.setdefault((r["repo"], r["path"], r["symbol"]), []).append(r)
    found: list[tuple[int, Definition]] = []
    for r in rows:
        names = list(r["defines"])
        whole = [r]
        if r["part"] >= 1 and r["kind"] in ("function", "method"):
            if r["part"] > 1:
                names = names[1:]  # the function itself: reported with its first part
            else:
                whole = parts[(r["repo"], r["path"], r["symbol"])]
        own = r["symbol"] if r["kind"] in ("function", "method") else None
        own_line = _definition_line(r["text"], r["start_line"], own) if own else None
        for defined in names:
            level = match_level(name, defined)
            if not level:
                continue
            line = _definition_line(r["text"], r["start_line"], defined)
            if defined != own and line == own_line:
                continue  # the function itself, under the shorter name its line writes
            span = Span(
                r["repo"],
                r["path"],
                min(p["start_line"] for p in whole),
                max(p["end_line"] for p in whole),
                r["commit_sha"],
                r["github_url"],
            )
            definition = Definition(
                span, defined, line, r["symbol"], r["kind"], r["signature"], r["doc"], r["text"]
            )
            found.append((level, definition))
    best = max((level for level, _ in found), default=0)
    if best >= 2 and _qualified(name):
        found = [f for f in found if f[0] >= 2]
    found.sort(key=lambda f: (-f[0], f[1].nested, f[1].span.repo, f[1].span.path, f[1].line))
    unique: dict[tuple[str, str, int], Definition] = {}
    for _, d in found:
        unique.setdefault((d.span.repo, d.span.path, d.line), d)
    return list(unique.values())[:limit]


def _qualified(name: str) -> bool:
    return "." in name or ":" in name


async def references(
    db: DB, name: str, repos: list[int] | None = None, *, limit: int = 50, scan: int = 2000
) -> tuple[list[Reference], bool]:
    """Chunks that call or mention the name (by its last name, as a whole word), with the
    lines that do; the definition line itself is not a use. Returns (references, whether
    there were more than `limit` or more than `scan` chunks to look at)."""
    name = check_name(name)
    last = re.split(r"[.:]", name)[-1]
    # The lexical index finds the candidates (every identifier is indexed whole, stemmed);
    # a stop word ("all", "each") has no lexeme: then the regular expression alone decides.
    query = await db.fetchval(
        "SELECT plainto_tsquery('english', $1)::text", "".join(lexical.split_identifier(last))
    )
    rows = await db.fetch(
        """
        SELECT c.path, c.symbol, c.kind, c.start_line, c.end_line, c.text,
               r.name AS repo, r.github_url, f.commit_sha
        FROM chunks c
        JOIN repos r ON r.id = c.repo_id
        JOIN files f ON f.repo_id = c.repo_id AND f.path = c.path
        WHERE ($1 = '' OR c.lex @@ $1::tsquery) AND c.text ~ $2
          AND ($3::int[] IS NULL OR c.repo_id = ANY($3))
        ORDER BY r.name, c.path, c.start_line
        LIMIT $4
        """,
        query or "",
        rf"(^|[^[:alnum:]_]){last}([^[:alnum:]_]|$)",
        repos,
        scan + 1,
    )
    word = re.compile(rf"(?<![\w]){re.escape(last)}(?!\w)")
    call = re.compile(rf"(?<![\w]){re.escape(last)}\s*[(\{{\"']")
    key = lexical.symbol_key(last)
    found: list[Reference] = []
    seen: set[tuple[str, str, int]] = set()
    for r in rows[:scan]:
        uses: list[tuple[int, str]] = []
        calls = False
        for n, line in enumerate(r["text"].split("\n"), r["start_line"]):
            if (r["repo"], r["path"], n) in seen or not word.search(line):
                continue
            if any(lexical.symbol_key(d) == key for d in lexical.defined_names(line)):
                continue  # the definition, not a use
            seen.add((r["repo"], r["path"], n))
            uses.append((n, line.strip()))
            calls = calls or call.search(line) is not None
        if uses:
            span = Span(
                r["repo"],
                r["path"],
                r["start_line"],
                r["end_line"],
                r["commit_sha"],
                r["github_url"],
            )
            found.append(Reference(span, r["symbol"], r["kind"], uses, calls))
    more = len(rows) > scan or len(found) > limit
    return found[:limit], more
