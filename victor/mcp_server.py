"""`victor mcp`: Victor's index as MCP tools, over Streamable HTTP or stdio.

A model that calls tools explores the code itself: it searches, opens a definition, follows a
call, reads more lines, searches again. Six read-only tools do that over the index:
search_code, find_definition, find_references, read_code, list_files, list_repos. Every
result names its lines as `repo@commit:path:start-end`, with a GitHub permalink when the
repository's URL is known.

Built on the official MCP Python SDK (`mcp`, the SDK Open WebUI's own MCP client uses): the
protocol (sessions, JSON-RPC, tool schemas from the type hints below, argument validation)
is the SDK's, so this module holds only the tools and their text. The work runs in the chat
session every chat adapter shares (bounded waits, a lazily opened and reconnected pool,
short user-safe reasons); the SQL is the core's (`indexer.store.browse`, `indexer.search`).

Security: every statement is a SELECT (the read-only role `victor_reader` suffices), nothing
outside the index is read (a file's lines come from its chunks), every answer is bounded
(MAX_OUTPUT_CHARS), a bearer token (VICTOR_MCP_TOKEN) is required for any bind beyond the
loopback interface, and neither the token nor the database password reaches a reply or a log.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from pydantic import Field

from indexer import __version__
from indexer.chat.session import EMBED_SHARE, ChatSession, Unavailable
from indexer.config import Settings
from indexer.errors import ConfigError, NotFound
from indexer.service import Victor
from indexer.store import browse

log = logging.getLogger("victor.mcp")

T = TypeVar("T")
Transport = Literal["http", "stdio"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
PATH = "/mcp"
MAX_OUTPUT_CHARS = 40_000  # one tool answer: about 10k tokens of a model's context
MAX_TOP_K = 20
MAX_CODE_LINES = 60  # of one search result or definition; read_code shows more
MAX_FILES = 500  # paths one list_files answer shows
MIN_TOKEN_CHARS = 16
POOL_SIZE = 4
# Host headers accepted on a loopback bind (the SDK's DNS-rebinding protection): the loopback
# names, and Docker's name for the host, by which Open WebUI in a container reaches the Mac.
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "host.docker.internal:*"]

INSTRUCTIONS = """\
Victor indexes private Lua codebases (the code as of each repository's indexed commit).
Explore with these tools instead of guessing: search_code for a question or keywords,
find_definition and find_references to follow a name, read_code for more lines around a hit,
list_files and list_repos to see what is indexed. Cite code by the `repo@commit:path:start-end`
of the results (or their GitHub links)."""


# --- formatting -----------------------------------------------------------------------------


class Output:
    """A tool's text answer, cut at MAX_OUTPUT_CHARS between blocks, saying what was left out."""

    def __init__(self, limit: int = MAX_OUTPUT_CHARS):
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.left_out = 0

    def add(self, block: str) -> bool:
        if self.left_out or self.size + len(block) > self.limit:
            self.left_out += 1
            return False
        self.parts.append(block)
        self.size += len(block)
        return True

    def text(self, more: str = "") -> str:
        text = "\n".join(self.parts).rstrip("\n")
        if self.left_out:
            text += f"\n\n({self.left_out} more not shown: the answer is limited to "
            text += f"{self.limit} characters{'; ' + more if more else ''})"
        return text


def code_block(text: str, start: int, *, numbered: bool, max_lines: int | None = None) -> str:
    lines = text.split("\n")
    cut = max_lines is not None and len(lines) > max_lines
    shown = lines[:max_lines] if cut else lines
    width = len(str(start + len(shown) - 1))
    if numbered:
        body = "\n".join(f"{n:>{width}}  {line}" for n, line in enumerate(shown, start))
    else:
        body = "\n".join(shown)
    fence = "````" if "```" in body else "```"
    tail = f"\n-- ... {len(lines) - len(shown)} more lines (read_code shows them)" if cut else ""
    return f"{fence}lua\n{body}{tail}\n{fence}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _link(url: str | None) -> str:
    return f"\n{url}" if url else ""


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never completed"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


# --- the tools ------------------------------------------------------------------------------

Repo = Annotated[
    str | None,
    Field(
        description="Only this repository (a name from list_repos). Omit to use all.",
        max_length=200,
    ),
]
Name = Annotated[
    str,
    Field(
        description="A function, method or module name as the code writes it: "
        "`get_selection`, `M.setup`, `Picker:get_selection`.",
        min_length=1,
        max_length=browse.MAX_NAME,
    ),
]
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False, idempotent_hint=True)


@dataclass(frozen=True, slots=True)
class _BadInput:
    message: str


@dataclass
class Tools:
    """The six tools, over one chat session."""

    session: ChatSession

    async def run(self, work: Callable[[Victor], Awaitable[T]]) -> T:
        """The work in the session (bounded, reconnecting); failures as tool errors a model
        can read. The session turns every failure into a short reason; a mistake in the
        arguments (an unknown repository, a path outside the index) comes back as a value,
        so the model gets its own message."""

        async def guarded(victor: Victor):
            try:
                return await work(victor)
            except (ConfigError, NotFound) as exc:
                return _BadInput(str(exc))

        try:
            outcome = await self.session.call(guarded)
        except Unavailable as exc:
            raise ToolError(
                f"Victor's index is unavailable right now ({exc}). Try again in a moment."
            ) from None
        if isinstance(outcome, _BadInput):
            raise ToolError(outcome.message)
        return outcome

    async def search_code(
        self,
        query: Annotated[
            str,
            Field(
                description="What to look for: a question (`how is the cart total "
                "computed`), keywords, or a name (`Cart:add`).",
                min_length=1,
                max_length=1000,
            ),
        ],
        repo: Repo = None,
        top_k: Annotated[
            int, Field(description="How many results (1-20).", ge=1, le=MAX_TOP_K)
        ] = 8,
    ) -> str:
        """Search the indexed Lua code: hybrid search over meaning, words and function names
        (a query that names a function gets its definition first). Use it first to find where
        something happens; then read_code for more lines around a hit, find_definition and
        find_references to follow a name. Returns up to top_k code chunks, best first, each
        with `repo@commit:path:start-end`, a GitHub permalink when known, the function's
        name, a score from 0 to 1 and its code."""
        repos = [repo] if repo else None

        async def work(victor: Victor):
            await browse.repo_ids(victor.pool, repos)
            (found,) = await victor.search([query], top_k=top_k, repos=repos)
            return found

        found = await self.run(work)
        out = Output()
        head = f"{plural(len(found.results), 'result')} for {query!r} ({found.mode} search)"
        if found.notice:
            head += f" — {found.notice}"
        out.add(head + "\n")
        for n, r in enumerate(found.results, 1):
            span = browse.Span(r.repo, r.path, r.start_line, r.end_line, r.commit, r.github_url)
            block = (
                f"{n}. {span.location}  {r.symbol} ({r.kind})  score {r.score:.2f}"
                f"{_link(span.link)}\n"
                + code_block(r.text, r.start_line, numbered=False, max_lines=MAX_CODE_LINES)
                + "\n"
            )
            out.add(block)
        return out.text("ask for fewer (top_k)")

    async def find_definition(self, name: Name, repo: Repo = None) -> str:
        """Where a function, method or module is defined: `get_selection`, `M.setup`,
        `Picker:get_selection` (`.` and `:` are interchangeable). Exact names first; a bare
        name also finds methods of that name (`Picker:get_selection`) and helpers defined
        inside other functions. Returns each definition's location, signature, doc comment
        and the start of its code (read_code shows the rest)."""
        repos = [repo] if repo else None

        async def work(victor: Victor):
            ids = await browse.repo_ids(victor.pool, repos)
            return await browse.definitions(victor.pool, name, ids)

        found = await self.run(work)
        if not found:
            where = f" in {repo}" if repo else ""
            return (
                f"No definition of {name!r}{where}. Try search_code with what it does, or "
                "find_references to see where the name is used."
            )
        out = Output()
        out.add(f"{plural(len(found), 'definition')} of {name!r}\n")
        for n, d in enumerate(found, 1):
            where = f"defined at line {d.line} inside {d.symbol}" if d.nested else d.kind
            code = d.text  # from the chunk's first line: its doc comment, then the code
            start = d.span.start_line
            if d.nested:  # show the helper, not the function around it
                code = "\n".join(d.text.split("\n")[d.line - d.span.start_line :])
                start = d.line
            block = (
                f"{n}. {d.name} — {d.span.location} ({where}){_link(d.span.link)}\n"
                + code_block(code, start, numbered=False, max_lines=MAX_CODE_LINES)
                + "\n"
            )
            out.add(block)
        return out.text()

    async def find_references(self, name: Name, repo: Repo = None) -> str:
        """Where a function or variable is called or mentioned: every chunk of code that uses
        its last name as a whole word (`Picker:get_selection` finds `self:get_selection()` and
        `picker.get_selection`), with the numbered lines that do. The definition line itself
        is not listed (find_definition shows it)."""
        repos = [repo] if repo else None

        async def work(victor: Victor):
            ids = await browse.repo_ids(victor.pool, repos)
            return await browse.references(victor.pool, name, ids)

        found, more = await self.run(work)
        if not found:
            where = f" in {repo}" if repo else ""
            return f"No use of {name!r}{where} in the index."
        out = Output()
        uses = sum(len(r.lines) for r in found)
        head = f"{plural(uses, 'line')} in {plural(len(found), 'chunk')} use {name!r}"
        if more:
            head += " (more exist: pass repo to narrow it down)"
        out.add(head + "\n")
        for r in found:
            what = "calls" if r.calls else "mentions"
            lines = "\n".join(f"{n:>5}  {text[:300]}" for n, text in r.lines)
            block = f"{r.span.location}  in {r.symbol} ({r.kind}) {what} it{_link(r.span.link)}\n"
            out.add(f"{block}{lines}\n")
        return out.text("pass repo to narrow it down")

    async def read_code(
        self,
        repo: Annotated[
            str, Field(description="The repository (a name from list_repos).", max_length=200)
        ],
        path: Annotated[
            str,
            Field(
                description="The file's path inside the repository, as the results and "
                "list_files show it (e.g. src/shop/cart.lua).",
                min_length=1,
                max_length=1000,
            ),
        ],
        start_line: Annotated[int, Field(description="First line (from 1).", ge=1)] = 1,
        end_line: Annotated[
            int | None,
            Field(
                description=f"Last line; at most {browse.MAX_LINES} lines per call. Omit to "
                f"read {browse.MAX_LINES} lines or to the end of the file.",
                ge=1,
            ),
        ] = None,
    ) -> str:
        """Lines of an indexed file, numbered, as of the indexed commit (served from the index;
        the file system is never read). At most 400 lines per call: read a long file in
        steps. Use it to see the code around a search result, a definition or a use."""

        async def work(victor: Victor):
            return await browse.lines(victor.pool, repo, path, start_line, end_line)

        got = await self.run(work)
        span = got.span
        head = f"{span.location} (of {got.file_lines} lines){_link(span.link)}"
        text = code_block(got.text, span.start_line, numbered=True)
        if len(text) > MAX_OUTPUT_CHARS:  # long lines: cut whole lines off the end
            keep = got.text.split("\n")
            while keep and len(code_block("\n".join(keep), span.start_line, numbered=True)) > (
                MAX_OUTPUT_CHARS
            ):
                keep = keep[: max(1, len(keep) * 3 // 4)] if len(keep) > 1 else []
            span = browse.Span(
                span.repo,
                span.path,
                span.start_line,
                span.start_line + max(len(keep), 1) - 1,
                span.commit,
                span.github_url,
            )
            head = f"{span.location} (of {got.file_lines} lines, cut to fit){_link(span.link)}"
            text = code_block("\n".join(keep), span.start_line, numbered=True)
        tail = ""
        if span.end_line < got.file_lines:
            tail = f"\n(more: read_code from start_line={span.end_line + 1})"
        return f"{head}\n{text}{tail}"

    async def list_files(
        self,
        repo: Annotated[
            str, Field(description="The repository (a name from list_repos).", max_length=200)
        ],
        pattern: Annotated[
            str | None,
            Field(
                description="A glob to filter paths: `*` within a folder, `**` across "
                "folders; without `/` it matches file names at any depth (`*cart*.lua`, "
                "`src/ui/**`). Omit to list all.",
                max_length=300,
            ),
        ] = None,
    ) -> str:
        """The indexed files of a repository (only Lua files are indexed), by path, with
        their number of lines and functions. At most 500 paths per call: narrow it with
        pattern."""

        async def work(victor: Victor):
            return await browse.files(victor.pool, repo, pattern, limit=MAX_FILES)

        listing = await self.run(work)
        shown = f"the first {len(listing.files)} of " if listing.total > len(listing.files) else ""
        what = f" matching {pattern!r}" if pattern else ""
        out = Output()
        out.add(f"{shown}{listing.total} indexed files in {repo}{what}\n")
        for f in listing.files:
            out.add(f"{f.path}  ({f.lines} lines, {f.functions} functions)")
        return out.text("narrow it with pattern")

    async def list_repos(self) -> str:
        """The indexed repositories: name, the commit indexed, branch, when last indexed, how
        many files and chunks, GitHub URL, and whether pushes keep it current. Use the names
        as the `repo` argument of the other tools."""

        async def work(victor: Victor):
            return await browse.repos(victor.pool)

        repos = await self.run(work)
        if not repos:
            return "Nothing is indexed yet."
        out = Output()
        for r in repos:
            commit = (r.commit or "")[:12] or "no commit (a folder)"
            branch = f" branch {r.branch}" if r.branch else ""
            follow = ", followed (pushes re-index it)" if r.followed else ""
            github = f"\n  {r.github_url}" if r.github_url else ""
            out.add(
                f"{r.name}: {commit}{branch}, indexed {_age(r.age_seconds)}, "
                f"{r.files} files, {r.chunks} chunks{follow}{github}"
            )
        return out.text()


TOOL_NAMES = (
    "search_code",
    "find_definition",
    "find_references",
    "read_code",
    "list_files",
    "list_repos",
)


def build_server(session: ChatSession) -> MCPServer:
    """The MCP server with the six tools over the session."""
    server = MCPServer(
        name="victor",
        title="Victor: Lua codebase",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    tools = Tools(session)
    for name in TOOL_NAMES:
        # text only: what a model reads (Open WebUI would add structured data as a second copy)
        server.add_tool(
            getattr(tools, name), name=name, annotations=READ_ONLY, structured_output=False
        )
    return server


# --- serving ---------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, settings: Settings) -> str | None:
    """The token to require, if any; refuses a bind beyond loopback without a good one."""
    token = settings.mcp_token.get_secret_value() if settings.mcp_token else None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"VICTOR_MCP_TOKEN is too short: use at least {MIN_TOKEN_CHARS} random characters, "
            "e.g. python3 -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"Refusing to listen on {host} without a token: anyone who can reach it could read "
            "the index. Set VICTOR_MCP_TOKEN (a long random string, e.g. python3 -c 'import "
            "secrets; print(secrets.token_hex(32))') and give clients "
            "'Authorization: Bearer <token>', or listen on 127.0.0.1."
        )
    return token


class BearerToken:
    """ASGI middleware: every HTTP request but the health check carries the token."""

    def __init__(self, app, token: str, open_paths: Sequence[str] = ("/healthz",)):
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open_paths = set(open_paths)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        body = b'{"error": "unauthorized: send Authorization: Bearer <VICTOR_MCP_TOKEN>"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="victor"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def http_app(server: MCPServer, host: str, token: str | None):
    """The Streamable HTTP app at /mcp (stateless: any replica or restart can answer), a
    health check at /healthz, and the token check in front."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    security = None
    if is_loopback(host):
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=LOOPBACK_HOSTS,
            allowed_origins=[f"http://{h}" for h in LOOPBACK_HOSTS],
        )
    app = server.streamable_http_app(
        streamable_http_path=PATH,
        stateless_http=True,
        transport_security=security,
        host=host,
    )
    return BearerToken(app, token) if token else app


async def serve(
    settings: Settings,
    *,
    transport: Transport = "http",
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the server until it is stopped (SIGINT/SIGTERM for HTTP, end of input for stdio)."""
    token = check_exposure(host, settings) if transport == "http" else None
    if settings.mcp_database_url is not None:  # e.g. the read-only role
        settings = settings.model_copy(update={"database_url": settings.mcp_database_url})
    timeout = settings.mcp_timeout
    # as for every chat: the embedding and each statement bounded by the call's timeout
    settings = settings.model_copy(
        update={"embed_timeout": timeout * EMBED_SHARE, "embed_retries": 0, "sql_timeout": timeout}
    )
    session = ChatSession(
        settings, timeout=timeout, pool_size=POOL_SIZE, log=log, name="victor mcp"
    )
    server = build_server(session)
    await session.start()
    try:
        if transport == "stdio":
            if ready:
                ready("stdio")
            await server.run_stdio_async()
            return
        import uvicorn

        config = uvicorn.Config(
            http_app(server, host, token),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,  # paths only would be harmless; quiet is simpler
            lifespan="on",
        )
        web = uvicorn.Server(config)
        if ready:
            url = f"http://{host if ':' not in host else f'[{host}]'}:{port}{PATH}"
            ready(url + (" (bearer token required)" if token else ""))
        await web.serve()
    finally:
        await session.close()


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "TOOL_NAMES",
    "ChatSession",
    "Tools",
    "Unavailable",
    "build_server",
    "check_exposure",
    "http_app",
    "serve",
]
