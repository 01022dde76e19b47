"""`victor mcp` driven by the official MCP SDK's own client, as Open WebUI drives it.

A real `victor mcp` process (the CLI) serves a real index on 127.0.0.1: the sample shop project
(a git repository whose origin is on GitHub, so results carry permalinks) and the test
fixtures (a folder), indexed in a PostgreSQL of this module's own by the roles of
docs/database-role.md. The server reads as `victor_reader`, its password checked by the
server and given in PGPASSWORD, and requires a bearer token. The client is `mcp.Client`
over `streamable_http_client` with an httpx2 client carrying the token: exactly how Open
WebUI 0.12.4 connects (open_webui/utils/mcp/client.py), in its default `auto` mode and in
the `legacy` handshake older clients use. Every tool is called, with good and bad
arguments; stdio is driven the same way.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx2  # the MCP SDK's HTTP client; with the SDK in the dev extra: never a skip
import mcp
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from indexer.store import browse
from tests.conftest import FIXTURES, ROOT, SAMPLE, VICTOR, git
from tests.support import pg
from tests.test_db_roles import documented_sql
from victor import mcp_server

ROLES = ("victor_owner", "victor_app", "victor_reader")
PASSWORDS = {role: f"{role}-secret-pw-{i}" for i, role in enumerate(ROLES)}
TOKEN = "mcp-token-" + "7f3a" * 8
GITHUB = "https://github.com/acme/shop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """The index and a running `victor mcp` over it."""

    admin_url: str  # superuser URL of the database, for the test's own checks
    reader_url: str  # victor_reader, without its password
    shop: Path  # the working tree indexed as "shop"
    commit: str
    env: dict  # the server's environment (secrets in it)
    url: str = ""
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def log_text(self) -> str:
        return self.log.read_text() if self.log and self.log.exists() else ""


def base_env(ollama, data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_", "PG"))}
    return env | {
        "OLLAMA_HOST": ollama.url,
        "VICTOR_EMBED_MODEL": "all-minilm",
        "VICTOR_DATA_DIR": str(data_dir),
        "VICTOR_PARSE_WORKERS": "1",
        "PYTHONPATH": str(ROOT),
    }


def run_victor(env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([*VICTOR, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"victor {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def index(tmp_path_factory, ollama_server) -> Served:
    """The documented roles on a server of our own; shop and fixtures indexed by the owner."""
    folder = tmp_path_factory.mktemp("mcp")
    server = pg.start_server(folder / "pg")
    admin = server.get_uri()
    on_server, in_database = documented_sql()

    async def setup() -> None:
        conn = await asyncpg.connect(admin)
        try:
            for statement in on_server:
                await conn.execute(statement)
            for role, password in PASSWORDS.items():
                await conn.execute(f"ALTER ROLE {role} PASSWORD '{password}'")
        finally:
            await conn.close()
        conn = await asyncpg.connect(pg.with_database(admin, "victor"))
        try:
            for statement in in_database:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(setup())
    pg.require_passwords(server, list(ROLES))

    shop = folder / "shop"
    shutil.copytree(SAMPLE, shop)
    git(shop, "init", "-q", "-b", "main")
    git(shop, "add", "-A")
    git(shop, "commit", "-q", "-m", "shop")
    git(shop, "remote", "add", "origin", GITHUB + ".git")
    env = base_env(ollama_server, folder / "data")
    owner_url = pg.role_url(admin, "victor_owner", PASSWORDS["victor_owner"], "victor")
    owner = {**env, "VICTOR_DATABASE_URL": owner_url}
    run_victor(owner, "init-db")
    run_victor(owner, "index", str(shop), "--name", "shop")
    run_victor(owner, "index", str(FIXTURES / "lua"), "--name", "fixtures")
    served = Served(
        admin_url=pg.with_database(admin, "victor"),
        reader_url=pg.role_url(admin, "victor_reader", None, "victor"),
        shop=shop,
        commit=git(shop, "rev-parse", "HEAD"),
        env={**env, "PGPASSWORD": PASSWORDS["victor_reader"], "VICTOR_MCP_TOKEN": TOKEN},
    )
    served.env["VICTOR_DATABASE_URL"] = served.reader_url
    yield served
    server.cleanup()


def start(env: dict, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*VICTOR, "mcp", *args],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"victor mcp exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"victor mcp did not answer {url} within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def served(index, tmp_path_factory) -> Served:
    """`victor mcp` (Streamable HTTP) on 127.0.0.1, as victor_reader, token required."""
    port = free_port()
    index.log = tmp_path_factory.mktemp("mcp-log") / "victor-mcp.log"
    index.proc = start(index.env, index.log, "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base + "/healthz", index.proc)
    except AssertionError as exc:
        stop(index.proc)
        raise AssertionError(f"{exc}\n{index.log_text()}") from None
    index.url = base + "/mcp"
    yield index
    stop(index.proc)


@asynccontextmanager
async def connect(url: str, token: str | None = TOKEN, mode: str = "auto"):
    """Open WebUI's way: an httpx2 client with the Authorization header, the SDK's
    Streamable HTTP transport, `mcp.Client` (utils/mcp/client.py: MCPClient.connect)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http,
        Client(
            streamable_http_client(url, http_client=http), read_timeout_seconds=60, mode=mode
        ) as client,
    ):
        yield client


async def call(served: Served, tool: str, **args) -> tuple[str, bool]:
    async with connect(served.url) as client:
        result = await client.call_tool(tool, args)
    texts = [c.text for c in result.content if c.type == "text"]
    assert len(texts) == 1 and result.structured_content is None  # text a model reads, once
    return texts[0], bool(result.is_error)


async def ok(served: Served, tool: str, **args) -> str:
    text, error = await call(served, tool, **args)
    assert not error, text
    return text


async def refused(served: Served, tool: str, **args) -> str:
    text, error = await call(served, tool, **args)
    assert error, text
    assert "Traceback" not in text
    return text


def location(commit: str, path: str, start: int, end: int) -> str:
    return f"shop@{commit[:12]}:{path}:{start}-{end}"


def permalink(commit: str, path: str, start: int, end: int) -> str:
    return f"{GITHUB}/blob/{commit}/{path}#L{start}-L{end}"


async def chunk(admin_url: str, repo: str, symbol: str) -> asyncpg.Record:
    conn = await asyncpg.connect(admin_url)
    try:
        return await conn.fetchrow(
            "SELECT c.path, c.start_line, c.end_line FROM chunks c JOIN repos r ON r.id = "
            "c.repo_id WHERE r.name = $1 AND c.symbol = $2",
            repo,
            symbol,
        )
    finally:
        await conn.close()


# --- the protocol -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_six_read_only_tools_with_schemas(served, mode):
    async with connect(served.url, mode=mode) as client:
        listed = (await client.list_tools()).tools
        assert client.instructions and "repo@commit:path:start-end" in client.instructions
    tools = {t.name: t for t in listed}
    assert set(tools) == set(mcp_server.TOOL_NAMES)
    required = {
        "search_code": ["query"],
        "find_definition": ["name"],
        "find_references": ["name"],
        "read_code": ["repo", "path"],
        "list_files": ["repo"],
        "list_repos": [],
    }
    for name, tool in tools.items():
        assert len(tool.description) > 100, name  # a model can use it without a manual
        assert tool.annotations.read_only_hint is True
        schema = tool.input_schema
        assert sorted(schema.get("required", [])) == sorted(required[name]), name
        for prop, spec in schema["properties"].items():
            assert spec.get("description"), (name, prop)
    top_k = tools["search_code"].input_schema["properties"]["top_k"]
    assert (top_k["minimum"], top_k["maximum"], top_k["default"]) == (1, 20, 8)


async def test_token_is_required(served):
    base = served.url.removesuffix("/mcp")
    with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
        assert resp.read() == b"ok"  # the health check needs no token
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": TOKEN},
    ):
        headers = {"Content-Type": "application/json", **headers}
        request = urllib.request.Request(served.url, data=b"{}", method="POST", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 401
        assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(Exception):  # noqa: B017 - the SDK's error type for a 401 varies
        async with connect(served.url, token="wrong-token-wrong-token") as client:
            await client.list_tools()


# --- search_code --------------------------------------------------------------------------


async def test_search_code_finds_the_function_with_location_and_permalink(served):
    cart_add = await chunk(served.admin_url, "shop", "Cart:add")
    start, end = cart_add["start_line"], cart_add["end_line"]
    text = await ok(served, "search_code", query="add a product to the cart", top_k=3)
    first = text.split("\n2. ")[0]
    assert f"1. {location(served.commit, 'src/shop/cart.lua', start, end)}  Cart:add" in first
    assert permalink(served.commit, "src/shop/cart.lua", start, end) in first
    assert "function Cart:add(sku, quantity)" in first
    assert text.startswith("3 results for 'add a product to the cart' (hybrid search)")


async def test_search_code_in_one_repository(served):
    text = await ok(served, "search_code", query="form fields", repo="fixtures", top_k=5)
    found = re.findall(r"^\d+\. (\S+?):", text, flags=re.M)
    assert found and set(found) == {"fixtures"}  # a folder: no commit, no permalink
    assert "https://github.com" not in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            {"query": "cart", "repo": "nope"},
            "No repository named 'nope' in the index. Known repositories: fixtures, shop.",
        ),
        ({"query": "cart", "top_k": 21}, "top_k"),
        ({"query": "cart", "top_k": 0}, "top_k"),
        ({"query": "cart", "top_k": "many"}, "top_k"),
        ({"query": ""}, "query"),
        ({"query": "x" * 1001}, "query"),
        ({"query": ["cart"]}, "query"),
        ({}, "query"),
    ],
    ids=[
        "unknown repo",
        "top_k too big",
        "top_k 0",
        "top_k text",
        "empty",
        "too long",
        "list",
        "missing",
    ],
)
async def test_search_code_bad_arguments(served, args, expected):
    assert expected in await refused(served, "search_code", **args)


# --- find_definition ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["get_selection", "Picker:get_selection", "Picker.get_selection"])
async def test_find_definition_of_a_method(served, name):
    text = await ok(served, "find_definition", name=name)
    assert text.startswith(f"1 definition of {name!r}")
    picker = await chunk(served.admin_url, "shop", "Picker:get_selection")
    span = (picker["start_line"], picker["end_line"])
    assert location(served.commit, "src/shop/picker.lua", *span) in text
    assert permalink(served.commit, "src/shop/picker.lua", *span) in text
    assert "function Picker:get_selection()" in text


async def test_find_definition_of_local_and_field_functions(served):
    text = await ok(served, "find_definition", name="is_member")
    assert "is_member — shop@" in text and "local function is_member(customer)" in text
    discount = await chunk(served.admin_url, "shop", "M.apply_discount")
    text = await ok(served, "find_definition", name="M.apply_discount", repo="shop")
    where = location(served.commit, "src/shop/prices.lua", *discount[1:])
    assert text.startswith(f"1 definition of 'M.apply_discount'\n\n1. M.apply_discount — {where}")
    assert "M.apply_discount = function(total, customer)" in text
    # `format_price = function` inside `return {...}`: one definition, strings.format_price
    text = await ok(served, "find_definition", name="format_price")
    assert text.startswith("1 definition of 'format_price'\n\n1. strings.format_price — ")
    assert "(function)" in text and "inside" not in text


async def test_find_definition_not_found_and_bad_names(served):
    text = await ok(served, "find_definition", name="no_such_function")
    assert text.startswith("No definition of 'no_such_function'")
    for bad in ("drop table; --", "a b", "Picker::x", "1abc"):
        assert "is not a Lua name" in await refused(served, "find_definition", name=bad)
    assert "name" in await refused(served, "find_definition", name="x" * 201)
    assert "Known repositories" in await refused(
        served, "find_definition", name="add", repo="../shop"
    )


# --- find_references ----------------------------------------------------------------------


async def test_find_references_lists_the_calls_not_the_definition(served):
    cart = (served.shop / "src/shop/cart.lua").read_text().splitlines()
    call_line = next(n for n, s in enumerate(cart, 1) if "prices.lookup(sku)" in s)
    text = await ok(served, "find_references", name="prices.lookup")
    assert f"{call_line:>5}  sum = sum + prices.lookup(sku) * quantity" in text
    assert "in Cart:total (method) calls it" in text
    assert "function M.lookup" not in text  # the definition line is not a use
    # a method called through self: Picker:toggle is called nowhere, Cart:add nowhere either
    assert (await ok(served, "find_references", name="Picker:toggle")).startswith("No use of")


async def test_find_references_bad_arguments(served):
    assert "is not a Lua name" in await refused(served, "find_references", name="x.*")
    assert "Known repositories" in await refused(
        served, "find_references", name="lookup", repo="nope"
    )


# --- read_code ----------------------------------------------------------------------------


async def test_read_code_is_the_file_from_the_index(served):
    path = "src/shop/cart.lua"
    lines = (served.shop / path).read_text().splitlines()
    text = await ok(served, "read_code", repo="shop", path=path)
    head, body = text.split("\n", 1)
    last = len(lines)
    assert head == f"{location(served.commit, path, 1, last)} (of {last} lines)"
    numbered = re.findall(r"^ *(\d+)  ?(.*)$", body.split("```lua\n", 1)[1], flags=re.M)
    assert [(int(n), s) for n, s in numbered] == list(enumerate(lines, 1))

    text = await ok(served, "read_code", repo="shop", path="./" + path, start_line=21, end_line=22)
    assert location(served.commit, path, 21, 22) in text
    assert permalink(served.commit, path, 21, 22) in text
    assert f"21  {lines[20]}\n22  {lines[21]}\n```" in text
    assert "(more: read_code from start_line=23)" in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"repo": "nope", "path": "x.lua"}, "Known repositories: fixtures, shop."),
        ({"repo": "shop", "path": "../../../etc/passwd"}, "leaves the repository"),
        ({"repo": "shop", "path": "src/../../x.lua"}, "leaves the repository"),
        ({"repo": "shop", "path": "/etc/passwd"}, "is an absolute path"),
        ({"repo": "shop", "path": "~/.ssh/id_rsa"}, "is an absolute path"),
        ({"repo": "shop", "path": "C:/Windows/win.ini"}, "is an absolute path"),
        ({"repo": "shop", "path": "..\\..\\x"}, "use '/' between folders"),
        ({"repo": "shop", "path": "cart.lua"}, "Did you mean: src/shop/cart.lua?"),
        (
            {"repo": "shop", "path": "src/shop/cart.lua", "end_line": 100_000},
            "at most 400 are read at once",
        ),
        (
            {"repo": "shop", "path": "src/shop/cart.lua", "start_line": 10, "end_line": 5},
            "is before start_line",
        ),
        ({"repo": "shop", "path": "src/shop/cart.lua", "start_line": 9999}, "past its end"),
        ({"repo": "shop", "path": "src/shop/cart.lua", "start_line": 0}, "start_line"),
        ({"repo": "shop", "path": "src/shop/cart.lua", "start_line": "ten"}, "start_line"),
        ({"repo": "shop", "path": "src/shop/cart.lua", "start_line": 1.5}, "start_line"),
        ({"repo": "shop", "path": 42}, "path"),
        ({"repo": "shop"}, "path"),
    ],
    ids=[
        "unknown repo",
        "dot-dot",
        "dot-dot inside",
        "absolute",
        "home",
        "drive",
        "backslash",
        "not a path in the index",
        "huge range",
        "reversed",
        "past the end",
        "line 0",
        "line as text",
        "line as float",
        "path as number",
        "no path",
    ],
)
async def test_read_code_bad_arguments(served, args, expected):
    assert expected in await refused(served, "read_code", **args)


async def test_read_code_is_bounded(served):
    """No end_line: at most MAX_LINES lines (the fixture's huge file is shorter: all of it)."""
    path = "huge.lua"
    lines = (FIXTURES / "lua" / path).read_text().splitlines()
    text = await ok(served, "read_code", repo="fixtures", path=path)
    assert f"fixtures:{path}:1-{len(lines)} (of {len(lines)} lines)" in text
    assert len(text) <= mcp_server.MAX_OUTPUT_CHARS + 500


# --- list_files and list_repos ------------------------------------------------------------


async def test_list_files(served):
    text = await ok(served, "list_files", repo="shop")
    files = sorted(str(p.relative_to(served.shop)) for p in served.shop.rglob("*.lua"))
    assert text.splitlines()[0] == f"{len(files)} indexed files in shop"
    assert re.findall(r"^(\S+\.lua)  \(\d+ lines, \d+ functions\)$", text, flags=re.M) == files
    cart = len((served.shop / "src/shop/cart.lua").read_text().splitlines())
    assert f"src/shop/cart.lua  ({cart} lines, 4 functions)" in text

    for pattern, expected in (
        ("*cart*", ["src/shop/cart.lua"]),
        ("src/**/p*.lua", ["src/shop/picker.lua", "src/shop/prices.lua"]),
        ("src/*.lua", []),
        ("**/strings.lua", ["src/shop/strings.lua"]),
        ("[a-z]*(", []),  # regex characters in a glob are plain characters
    ):
        text = await ok(served, "list_files", repo="shop", pattern=pattern)
        assert re.findall(r"^(\S+\.lua)  \(", text, flags=re.M) == expected, pattern
    assert "Known repositories" in await refused(served, "list_files", repo="nope")


async def test_list_repos(served):
    text = await ok(served, "list_repos")
    lines = text.splitlines()
    assert lines[0].startswith("fixtures: no commit (a folder), indexed ")
    assert lines[1].startswith(f"shop: {served.commit[:12]}, indexed ")
    assert re.search(r"indexed (just now|\d+ min ago), 4 files, \d+ chunks", lines[1])
    assert lines[2] == f"  {GITHUB}"


async def test_unknown_tool(served):
    async with connect(served.url) as client:
        try:
            result = await client.call_tool("drop_everything", {})
        except mcp.MCPError as exc:  # a protocol error is fine too: it is not a crash
            assert "drop_everything" in str(exc)
        else:
            assert result.is_error and "Unknown tool" in result.content[0].text
        assert (await client.list_tools()).tools  # the server goes on


async def test_many_clients_at_once(served):
    async def one(n: int) -> str:
        return await ok(served, "search_code", query=f"cart total {n}", top_k=2)

    answers = await asyncio.gather(*(one(n) for n in range(8)))
    assert all("shop@" in a for a in answers)


# --- secrets, exposure and outages --------------------------------------------------------


async def test_no_secret_in_any_answer_or_log(served):
    answers = [
        await ok(served, "list_repos"),
        await ok(served, "search_code", query="price"),
        await refused(served, "read_code", repo="shop", path="/etc/passwd"),
    ]
    secrets = [TOKEN, PASSWORDS["victor_reader"]]
    for text in [*answers, served.log_text()]:
        for secret in secrets:
            assert secret not in text


def test_a_public_bind_needs_a_good_token(index, tmp_path):
    env = {k: v for k, v in index.env.items() if k != "VICTOR_MCP_TOKEN"}
    done = subprocess.run(
        [*VICTOR, "mcp", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Refusing to listen on 0.0.0.0 without a token" in done.stderr
    assert "Traceback" not in done.stderr
    short = {**env, "VICTOR_MCP_TOKEN": "short"}
    done = subprocess.run(
        [*VICTOR, "mcp", "--host", "0.0.0.0", "--port", str(free_port())],
        env=short,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "VICTOR_MCP_TOKEN is too short" in done.stderr
    assert "short" not in done.stderr.replace("too short", "")

    from indexer.config import Settings

    good = Settings(mcp_token=TOKEN)
    assert mcp_server.check_exposure("0.0.0.0", good) == TOKEN
    assert mcp_server.check_exposure("::", good) == TOKEN
    assert mcp_server.check_exposure("127.0.0.1", Settings()) is None
    assert mcp_server.check_exposure("localhost", Settings()) is None
    with pytest.raises(Exception, match="without a token"):
        mcp_server.check_exposure("192.168.1.10", Settings())


async def test_database_down_is_a_clear_tool_error_and_no_password_leaks(index, tmp_path):
    """A wrong password in the URL: every call answers at once with a short reason, the
    server keeps running, and neither the password nor the token is in its log."""
    wrong = "wrong-pw-" + "9c1e" * 4
    url = pg.role_url(index.admin_url, "victor_reader", wrong, "victor")
    env = {**index.env, "VICTOR_DATABASE_URL": url, "PGPASSWORD": ""}
    port = free_port()
    log = tmp_path / "down.log"
    proc = start(env, log, "--port", str(port))
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
        down = Served(
            index.admin_url, url, index.shop, index.commit, env, url=f"http://127.0.0.1:{port}/mcp"
        )
        for tool, args in (("list_repos", {}), ("search_code", {"query": "cart"})):
            started = time.monotonic()
            text = await refused(down, tool, **args)
            assert text.endswith(
                "Victor's index is unavailable right now (database unavailable). "
                "Try again in a moment."
            ), text
            assert time.monotonic() - started < 10
    finally:
        stop(proc)
    logged = log.read_text()
    assert "database unavailable" in logged
    assert wrong not in logged and TOKEN not in logged


async def test_embedder_down_search_falls_back_to_lexical(index, tmp_path):
    """Ollama unreachable: search_code still answers, from lexical search, and says so."""
    env = {**index.env, "OLLAMA_HOST": "http://127.0.0.1:9", "VICTOR_QUERY_TIMEOUT": "2"}
    port = free_port()
    proc = start(env, tmp_path / "no-ollama.log", "--port", str(port))
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
        down = Served(
            index.admin_url,
            index.reader_url,
            index.shop,
            index.commit,
            env,
            url=f"http://127.0.0.1:{port}/mcp",
        )
        text = await ok(down, "search_code", query="Cart:add", top_k=2)
    finally:
        stop(proc)
    head = text.splitlines()[0]
    assert head.startswith("2 results for 'Cart:add' (lexical search) — embedder unavailable")
    assert head.endswith("lexical search only")
    assert "function Cart:add(sku, quantity)" in text


# --- stdio --------------------------------------------------------------------------------


async def test_stdio(index):
    env = {k: v for k, v in index.env.items() if k != "VICTOR_MCP_TOKEN"}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "victor.cli", "mcp", "--transport", "stdio"], env=env
    )
    async with Client(params, read_timeout_seconds=60) as client:
        assert {t.name for t in (await client.list_tools()).tools} == set(mcp_server.TOOL_NAMES)
        found = await client.call_tool("find_definition", {"name": "Cart:total"})
        assert not found.is_error and "function Cart:total()" in found.content[0].text
        bad = await client.call_tool("read_code", {"repo": "shop", "path": "../x"})
        assert bad.is_error and "leaves the repository" in bad.content[0].text


# --- the pieces ---------------------------------------------------------------------------


def test_glob_regex():
    paths = [
        "a.lua",
        "x/y/b.lua",
        "src/a.lua",
        "src/x/y.lua",
        "src/b.lua",
        "src/x/b.lua",
        "d/c.lua",
        "ab.lua",
    ]
    cases = {
        "*.lua": paths,  # no '/': a file name at any depth
        "x/*.lua": [],
        "src/*.lua": ["src/a.lua", "src/b.lua"],
        "src/**": ["src/a.lua", "src/x/y.lua", "src/b.lua", "src/x/b.lua"],
        "src/**/b.lua": ["src/b.lua", "src/x/b.lua"],
        "?.lua": [p for p in paths if p != "ab.lua"],
    }
    for pattern, expected in cases.items():
        rx = re.compile(browse.glob_regex(pattern))
        assert [p for p in paths if rx.match(p)] == [p for p in paths if p in expected], pattern


def test_output_is_cut_between_blocks():
    out = mcp_server.Output(limit=100)
    assert out.add("a" * 60)
    assert not out.add("b" * 60)
    assert not out.add("c")
    text = out.text("narrow it")
    assert text.startswith("a" * 60) and "b" not in text
    assert "(2 more not shown: the answer is limited to 100 characters; narrow it)" in text


def test_match_levels():
    assert browse.match_level("Picker:get_selection", "Picker:get_selection") == 4
    assert browse.match_level("picker.get_selection", "Picker:get_selection") == 3
    assert browse.match_level("get_selection", "Picker:get_selection") == 2
    assert browse.match_level("pl.List:slice", "List:slice") == 2
    assert browse.match_level("Other:get_selection", "Picker:get_selection") == 1
    assert browse.match_level("get_selected", "Picker:get_selection") == 0
