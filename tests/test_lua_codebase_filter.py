"""The "Lua Codebase" filter in-process (query building, idempotence, connection lifecycle,
failing open) and the toggle Function. tests/test_pipelines_server.py drives the same filter
through the real Pipelines server."""

from __future__ import annotations

import ast
import copy
import json
import logging
import socket
import sys
import time

import pytest

from indexer.search.context import Context, Source
from indexer.service import open_victor
from tests.conftest import SAMPLE
from tests.plugins import FILTER_FILE, FUNCTION_FILE, inlet_request, load
from tests.support.ollama_server import FakeOllama

lc = load(FILTER_FILE, "lua_codebase_pipeline")
fn = load(FUNCTION_FILE, "lua_codebase_function")


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# --- the hand-over ----------------------------------------------------------------------------


def source(path, start, end, text="x"):
    return Source("shop", path, start, end, "f", 0.5, None, text)


def test_handover_status_lines():
    ctx = Context("...", [source("a.lua", 1, 5), source("a.lua", 20, 25), source("b.lua", 1, 2)])
    info = lc.handover("q", 12, ctx)
    assert info["status"] == "ok"
    assert info["message"] == "Lua Codebase: 3 snippets from 2 files"
    assert [s["label"] for s in info["sources"]] == ["a.lua:1-5", "a.lua:20-25", "b.lua:1-2"]
    one = lc.handover("q", 1, Context("...", [source("a.lua", 1, 5)]))
    assert one["message"] == "Lua Codebase: 1 snippet from 1 file"
    lexical = lc.handover("q", 1, Context("...", [source("a.lua", 1, 5)], notice="lexical only"))
    assert lexical["status"] == "degraded"
    assert lexical["message"] == "Lua Codebase: 1 snippet from 1 file (lexical only)"
    assert lc.handover("q", 1, Context(""))["message"] == "Lua Codebase: no matching code found"
    down = lc.handover("q", 5000, None, "database unavailable")
    assert down["status"] == "unavailable"
    assert down["message"] == (
        "Lua Codebase: index unavailable — answered without code context (database unavailable)"
    )


def test_the_session_redacts_the_password_of_the_valve_url():
    pipeline = lc.Pipeline()
    pipeline.valves.database_url = "postgresql://victor:s3cret@db:5433/victor"
    session = pipeline._session()
    assert session.redact("cannot connect to postgresql://victor:s3cret@db:5433/victor") == (
        "cannot connect to postgresql://victor:***@db:5433/victor"
    )


# --- in-process, against a real PostgreSQL and the Ollama stand-in ----------------------------


@pytest.fixture
async def shop_settings(settings):
    async with open_victor(settings) as victor:
        await victor.index(str(SAMPLE), name="shop")
    return settings


def make_pipeline(settings, **valves):
    pipeline = lc.Pipeline()
    pipeline.valves = pipeline.Valves(
        **{
            "database_url": settings.database_url.get_secret_value(),
            "ollama_host": settings.ollama_host,
            "embed_model": settings.embed_model,
            "timeout_seconds": 5,
            **valves,
        }
    )
    return pipeline


def request_body(question="Where is add defined in the Lua code?", **metadata):
    return inlet_request(question, **metadata)["body"]


async def test_inlet_adds_context_once_per_turn(shop_settings, ollama):
    pipeline = make_pipeline(shop_settings)
    await pipeline.on_startup()
    try:
        first = await pipeline.inlet(request_body(), None)
        system = [m for m in first["messages"] if m["role"] == "system"]
        assert len(system) == 1 and "function Cart:add(sku, quantity)" in system[0]["content"]
        assert first["metadata"]["lua_codebase"]["status"] == "ok"
        embeds = ollama.requests

        # The same body again (a re-run, a second filter pass): unchanged, no second search.
        again = await pipeline.inlet(copy.deepcopy(first), None)
        assert again == first
        assert ollama.requests == embeds

        # Regenerate: Open WebUI resends the turn without our message: context once again.
        regenerated = await pipeline.inlet(request_body(), None)
        assert sum(m["role"] == "system" for m in regenerated["messages"]) == 1

        # Next turn: the earlier context stays, the new turn gets its own.
        follow = copy.deepcopy(first)
        follow["messages"] += [assistant("In cart.lua."), user("How is the cart total computed?")]
        second = await pipeline.inlet(follow, None)
        roles = [m["role"] for m in second["messages"]]
        assert roles == ["system", "user", "assistant", "system", "user"]
    finally:
        await pipeline.on_shutdown()
    assert pipeline.session is None


async def test_inlet_skips_tasks_and_toggle_off(shop_settings, ollama):
    pipeline = make_pipeline(shop_settings)
    embeds = ollama.requests
    try:
        for body in (
            request_body(task="title_generation"),
            request_body(filter_ids=[]),
            request_body(filter_ids=["another_toggle"]),
        ):
            assert await pipeline.inlet(copy.deepcopy(body), None) == body
        no_ids = request_body()
        del no_ids["metadata"]["filter_ids"]
        assert await pipeline.inlet(copy.deepcopy(no_ids), None) == no_ids
        assert ollama.requests == embeds

        pipeline.valves = pipeline.valves.model_copy(update={"require_toggle": False})
        out = await pipeline.inlet(request_body(filter_ids=[]), None)
        assert out["metadata"]["lua_codebase"]["status"] == "ok"
        # tasks are skipped even without the toggle requirement
        task = request_body(task="follow_up_generation")
        assert await pipeline.inlet(copy.deepcopy(task), None) == task
    finally:
        await pipeline.on_shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_database_down_at_startup_then_fixed_by_valves(shop_settings):
    good = shop_settings.database_url.get_secret_value()
    pipeline = make_pipeline(shop_settings)
    pipeline.valves.database_url = f"postgresql://victor:pw@127.0.0.1:{closed_port()}/victor"
    await pipeline.on_startup()  # must not raise: the server would not start
    assert pipeline.session.victor is None
    out = await pipeline.inlet(request_body(), None)
    assert out["metadata"]["lua_codebase"]["status"] == "unavailable"
    assert len(out["messages"]) == 1

    pipeline.valves = pipeline.valves.model_copy(update={"database_url": good})
    await pipeline.on_valves_updated()  # connection settings changed: rebuilt now
    victor = pipeline.session.victor
    assert victor is not None
    pipeline.valves = pipeline.valves.model_copy(update={"top_k": 2})
    await pipeline.on_valves_updated()  # only a search setting: the same pool stays
    assert pipeline.session.victor is victor
    out = await pipeline.inlet(request_body(), None)
    assert out["metadata"]["lua_codebase"]["status"] == "ok"
    assert len(out["metadata"]["lua_codebase"]["sources"]) <= 2
    await pipeline.on_shutdown()


async def test_hanging_database_fails_open_within_the_timeout(settings):
    """A server that accepts the connection and never answers (a hung or firewalled host)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        pipeline = make_pipeline(settings, timeout_seconds=2.0)
        pipeline.valves.database_url = f"postgresql://victor@127.0.0.1:{port}/victor"
        started = time.monotonic()
        out = await pipeline.inlet(request_body(), None)
        first = time.monotonic() - started
        info = out["metadata"]["lua_codebase"]
        assert info["status"] == "unavailable" and "2 s" in info["notice"]
        assert 1.9 < first < 4.0  # 2 s, and some slack for a busy machine
        # Within the reconnect delay the next chat does not wait again (waiting: 2 s or more).
        started = time.monotonic()
        out = await pipeline.inlet(request_body(), None)
        assert time.monotonic() - started < 1.0
        assert out["metadata"]["lua_codebase"]["notice"] == "database did not answer in time"
        await pipeline.on_shutdown()
    finally:
        listener.close()


async def test_ollama_down_fails_open(shop_settings, ollama):
    pipeline = make_pipeline(shop_settings)
    try:
        ollama.fail_status = 500
        out = await pipeline.inlet(request_body(), None)
        info = out["metadata"]["lua_codebase"]
        # hybrid search: lexical-only context, and it says so
        assert info["status"] == "degraded" and info["notice"] == KEYWORD_ONLY, info
        assert info["sources"] and len(out["messages"]) == 2, out["messages"]
    finally:
        await pipeline.on_shutdown()


KEYWORD_ONLY = "keyword search only: embeddings unavailable"


async def test_ollama_stopped_the_user_sees_a_short_phrase_the_log_the_details(
    shop_settings, caplog
):
    """With Ollama stopped, chat users read one short, secret-free phrase; the
    Pipelines log gets the details (redacted), once, not once per chat."""
    stopped = FakeOllama().start()
    host = stopped.url.replace("127.0.0.1", "ollama:s3cret@127.0.0.1")  # a secret to keep out
    stopped.stop()
    pipeline = make_pipeline(shop_settings, ollama_host=host)
    caplog.set_level(logging.DEBUG, logger="lua_codebase")
    try:
        await pipeline.on_startup()
        await pipeline.warming  # the warm-up fails quietly: Ollama is not there
        infos = []
        for _ in range(3):
            out = await pipeline.inlet(request_body(), None)
            infos.append(out["metadata"]["lua_codebase"])
            assert "function Cart:add(sku, quantity)" in out["messages"][0]["content"]
    finally:
        await pipeline.on_shutdown()
    for info in infos:
        assert info["status"] == "degraded"
        assert info["notice"] == KEYWORD_ONLY
        assert info["message"].endswith(f"({KEYWORD_ONLY})")
        shown = json.dumps({k: info[k] for k in ("message", "notice")})
        for leak in ("127.0.0.1", "http", "OLLAMA", "VICTOR_", "s3cret", "ollama serve"):
            assert leak not in shown, leak
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    degraded = [r.getMessage() for r in warnings if "Cannot reach Ollama" in r.getMessage()]
    assert len(degraded) == 1, [r.getMessage() for r in warnings]
    assert "ollama:***@127.0.0.1" in degraded[0]
    assert all("s3cret" not in r.getMessage() for r in caplog.records)


async def test_timeout_seconds_bounds_the_query_embedding(shop_settings, ollama, monkeypatch):
    """The valve, not VICTOR_QUERY_TIMEOUT, decides how long the query embedding may take."""
    # Were the variable obeyed, every chat here would wait for Ollama's answer and get "ok".
    monkeypatch.setenv("VICTOR_QUERY_TIMEOUT", "30")
    ollama.delay = 3.5
    patient = make_pipeline(shop_settings, timeout_seconds=12)
    try:
        out = await patient.inlet(request_body(), None)
        info = out["metadata"]["lua_codebase"]
        assert info["status"] == "ok", info  # dense results, in time
    finally:
        await patient.on_shutdown()
    hasty = make_pipeline(shop_settings, timeout_seconds=2)
    try:
        started = time.monotonic()
        out = await hasty.inlet(request_body(), None)
        elapsed = time.monotonic() - started
        info = out["metadata"]["lua_codebase"]
        assert info["status"] == "degraded" and info["notice"] == KEYWORD_ONLY
        assert elapsed < 3.5  # the valve's 2 s: it did not wait for Ollama's answer
    finally:
        await hasty.on_shutdown()


async def test_the_filter_keeps_the_model_loaded_and_warms_it_at_startup(shop_settings, ollama):
    ollama.reset()  # forget the indexing of the fixture
    pipeline = make_pipeline(shop_settings)
    assert pipeline.valves.keep_alive == "30m"
    try:
        await pipeline.on_startup()
        await pipeline.warming
        assert ollama.inputs == ["warm up"]  # before any chat
        await pipeline.inlet(request_body(), None)
        pipeline.valves = pipeline.valves.model_copy(update={"keep_alive": "-1"})
        await pipeline.on_valves_updated()
        await pipeline.warming
        await pipeline.inlet(request_body(), None)
    finally:
        await pipeline.on_shutdown()
    assert ollama.keep_alives == ["30m", "30m", -1.0, -1.0]  # -1 goes as a number: "always"


async def test_a_slow_ollama_does_not_hold_up_startup(shop_settings, ollama):
    ollama.delay = 10.0
    pipeline = make_pipeline(shop_settings)
    try:
        started = time.monotonic()
        await pipeline.on_startup()
        assert time.monotonic() - started < 5  # connecting only: the warm-up runs behind
        assert not pipeline.warming.done()
    finally:
        await pipeline.on_shutdown()  # cancels the warm-up


async def test_inlet_never_raises(shop_settings):
    pipeline = make_pipeline(shop_settings)
    for body in ({}, {"messages": None}, {"messages": [user("Cart:add")], "metadata": None}):
        assert await pipeline.inlet(body, None) == body  # toggle required, absent: untouched
    pipeline.valves.require_toggle = False
    weird = {"messages": [{"role": "user", "content": 42}, "not a message"]}
    assert await pipeline.inlet(copy.deepcopy(weird), None) == weird
    await pipeline.on_shutdown()


# --- the toggle Function ------------------------------------------------------------------------


def test_function_is_a_toggle_with_an_icon_and_imports_only_what_open_webui_has():
    f = fn.Filter()
    assert f.toggle is True
    assert f.icon.startswith("data:image/svg+xml;base64,")
    tree = ast.parse(FUNCTION_FILE.read_text())
    imported = {
        (n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    # pydantic is Open WebUI's own dependency: nothing to install, also offline
    allowed = sys.stdlib_module_names | {"pydantic"}
    assert imported <= allowed, imported - allowed


async def emitted(body: dict) -> list[dict]:
    events: list[dict] = []

    async def emit(event):
        events.append(event)

    assert await fn.Filter().inlet(body, __event_emitter__=emit) is body
    return events


async def test_function_shows_sources_and_status():
    info = lc.handover(
        "q",
        10,
        Context(
            "...",
            [
                source("src/a.lua", 1, 5, "local a"),
                source("src/a.lua", 20, 25, "local b"),
                Source(
                    "shop",
                    "src/b.lua",
                    3,
                    4,
                    "g",
                    0.7,
                    "https://github.com/o/r/blob/c/src/b.lua#L3-L4",
                    "g",
                ),
            ],
        ),
    )
    events = await emitted({"messages": [], "metadata": {"lua_codebase": info}})
    chips = [e["data"] for e in events if e["type"] == "source"]
    assert [c["metadata"][0]["name"] for c in chips] == [
        "src/a.lua:1-5",
        "src/a.lua:20-25",
        "src/b.lua:3-4",
    ]
    # one chip per distinct metadata.source: two snippets of a file stay two chips
    assert len({c["metadata"][0]["source"] for c in chips}) == 3
    assert chips[0]["document"] == ["```lua\nlocal a\n```"]
    link = chips[2]["metadata"][0]
    assert link["source"].startswith("https://") and link["external"] is True
    assert events[-1] == {
        "type": "status",
        "data": {"description": "Lua Codebase: 3 snippets from 2 files", "done": True},
    }


def test_function_shows_code_verbatim_as_a_fenced_block():
    """Open WebUI renders a source's document as Markdown. In a fenced block `---`
    doc comments, indentation, `$` and `%` patterns show as they are in the file."""
    code = (
        "--- Trim a string.\n"
        "-- @param s string\n"
        "---\n"
        "function M.trim(s)\n"
        '    return (s:gsub("^%s*(.-)%s*$", "%1"))  -- $x$ is not maths\n'
        "end"
    )
    shown = fn.as_code(code)
    assert shown == f"```lua\n{code}\n```"
    assert shown.split("\n")[1:-1] == code.split("\n")  # every line as in the file
    # code holding a fence of its own gets a longer one, so it cannot close the block early
    tricky = "local md = [[\n```lua\nx = 1\n```\n]]"
    fenced = fn.as_code(tricky)
    assert fenced.startswith("````lua\n") and fenced.endswith("\n````")


async def test_function_user_valves_turn_off_the_sources_or_the_status_line():
    """The toggle's Valves dialog offers what a user may tune for themselves."""
    schema = fn.Filter.UserValves.model_json_schema()["properties"]
    assert set(schema) == {"show_sources", "show_status"}
    assert all(p["default"] is True and p["description"] for p in schema.values())
    info = lc.handover("q", 10, Context("...", [source("src/a.lua", 1, 5, "local a")]))
    body = {"metadata": {"lua_codebase": info}}

    async def shown(user) -> list[str]:
        events: list[dict] = []

        async def emit(event):
            events.append(event)

        await fn.Filter().inlet(body, __user__=user, __event_emitter__=emit)
        return [e["type"] for e in events]

    assert await shown(None) == ["source", "status"]
    assert await shown({"id": "u", "valves": fn.Filter.UserValves()}) == ["source", "status"]
    no_sources = {"valves": fn.Filter.UserValves(show_sources=False)}
    assert await shown(no_sources) == ["status"]
    assert await shown({"valves": {"show_status": False}}) == ["source"]
    assert await shown({"valves": {"show_status": "not a bool"}}) == ["source", "status"]


async def test_function_says_when_the_index_or_the_filter_is_missing():
    down = lc.handover("q", 5000, None, "no answer within 5 s")
    events = await emitted({"metadata": {"lua_codebase": down}})
    assert events == [
        {
            "type": "status",
            "data": {
                "description": "Lua Codebase: index unavailable — answered without code context"
                " (no answer within 5 s)",
                "done": True,
            },
        }
    ]
    (not_run,) = await emitted({"metadata": {"filter_ids": ["lua_codebase"]}})
    assert "Pipelines filter did not run" in not_run["data"]["description"]
    assert await emitted({"metadata": {"task": "title_generation"}}) == []


async def test_function_never_raises():
    async def broken(event):
        raise RuntimeError("socket gone")

    body = {"metadata": {"lua_codebase": {"sources": [{"path": "a.lua"}], "message": "m"}}}
    assert await fn.Filter().inlet(body, __event_emitter__=broken) is body
    for odd in ({}, {"metadata": "x"}, {"metadata": {"lua_codebase": {"sources": "x"}}}):
        assert await fn.Filter().inlet(odd) is odd
        await emitted(odd)


def test_the_filter_and_the_function_agree_on_the_handover_key():
    assert lc.HANDOVER_KEY == fn.HANDOVER_KEY == "lua_codebase"
    assert lc.Pipeline().valves.toggle_function_id == "lua_codebase"


async def test_the_call_context_valve_adds_what_the_best_match_calls(shop_settings, ollama):
    question = request_body("Where is Cart:total defined?")
    shown = {}
    for mode in ("off", "callees"):
        pipeline = make_pipeline(shop_settings, top_k=1, call_context=mode)
        await pipeline.on_startup()
        try:
            body = await pipeline.inlet(copy.deepcopy(question), None)
        finally:
            await pipeline.on_shutdown()
        (system,) = [m["content"] for m in body["messages"] if m["role"] == "system"]
        shown[mode] = system
    assert "function Cart:total()" in shown["off"] and "called by" not in shown["off"]
    assert "function Cart:total()" in shown["callees"]
    assert "called by Cart:total" in shown["callees"]
