"""End-to-end: Victor as an MCP tool server of a real Open WebUI 0.12.4, in headless Chromium.

The stack of tests/e2e/harness.py (the sample shop project indexed in a real PostgreSQL, the
stand-in model, Open WebUI), plus a real `victor mcp` on 127.0.0.1 that requires a token.
As an admin would, the test registers it through Open WebUI's config API (POST
/api/v1/configs/tool_servers, type "mcp", bearer auth; /verify lists its tools) and creates a
model with native function calling whose default tools are Victor's. The stand-in model then
explores as a model would: it answers the question with a `search_code` call, reads the best
hit's location in the tool result Open WebUI sends back and asks `read_code` for those lines,
and answers citing them. Open WebUI calls Victor over Streamable HTTP each time.

Checks: the tools and Victor's instructions reach the model; each tool result the model gets
is exactly what Victor answers for those arguments; the chat shows the tool use and the
answer; screenshots in docs/screenshots/ (10-14). Skipped when tests/e2e/setup.sh has not
been run, unless VICTOR_E2E_REQUIRE=1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import (
    MODEL_ID,
    REPO,
    E2EConfig,
    Stack,
    get_chat,
    http_json,
    run_browser,
    start_stack,
)
from tests.support.fake_llm import ToolCall, message_text
from tests.support.pipelines import Proc, free_port

pytestmark = pytest.mark.e2e

TOKEN = "e2e-mcp-token-" + "5b2d" * 8
SERVER_ID = "victor"
MODEL = {"id": "lua-explorer", "name": "Lua explorer"}
QUESTION = "What happens when I add a product that is already in the cart?"
SEARCH = {"query": "add a product to the cart", "top_k": 3}
FINAL = "EXPLORED: the quantity is raised and capped, see"
# repo@commit:path:start-end (repo:path:start-end for a folder, as the harness indexes it)
LOCATION = re.compile(
    r"(?P<repo>[\w.-]+)(?:@[0-9a-f]{7,40})?:(?P<path>[^\s:`]+\.lua):(?P<a>\d+)-(?P<b>\d+)"
)


def tool_named(body: dict, suffix: str) -> str | None:
    names = [t["function"]["name"] for t in body.get("tools") or [] if "function" in t]
    return next((n for n in names if n.endswith("_" + suffix)), None)


def tool_results(body: dict) -> list[str]:
    return [message_text(m) for m in body.get("messages") or [] if m.get("role") == "tool"]


def explorer(body: dict) -> list[ToolCall] | str | None:
    """The stand-in model's moves: search, then read the best hit, then answer."""
    search, read = tool_named(body, "search_code"), tool_named(body, "read_code")
    users = [message_text(m) for m in body.get("messages") or [] if m.get("role") == "user"]
    if not (search and read and users and QUESTION in users[-1]):
        return None  # not this chat (a task request, another model): the fixed reply
    results = tool_results(body)
    if not results:
        return [ToolCall(search, SEARCH)]
    found = LOCATION.search(results[0])
    if found is None:
        return "EXPLORED: search_code found nothing"
    if len(results) == 1:
        lines = {"start_line": int(found["a"]), "end_line": int(found["b"])}
        return [ToolCall(read, {"repo": found["repo"], "path": found["path"], **lines})]
    return f"{FINAL} {found[0]}"


@dataclass
class McpRun:
    cfg: E2EConfig
    stack: Stack
    server: Proc
    url: str
    verify: dict
    browser: dict


async def direct(url: str, tool: str, args: dict) -> str:
    """What Victor answers, asked directly with the MCP SDK."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        result = await client.call_tool(tool, args)
    return result.content[0].text


def start_victor_mcp(stack: Stack) -> tuple[Proc, str]:
    port = free_port()
    index = stack.index
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VICTOR_", "OLLAMA_"))}
    env |= {
        "VICTOR_DATABASE_URL": index.database_url,
        "OLLAMA_HOST": index.ollama.url,
        "VICTOR_EMBED_MODEL": "all-minilm",
        "VICTOR_DATA_DIR": str(index.data_dir),
        "VICTOR_MCP_TOKEN": TOKEN,
        "PYTHONPATH": str(REPO),
    }
    proc = Proc(
        "victor-mcp",
        [sys.executable, "-m", "victor.cli", "mcp", "--port", str(port)],
        stack.run_dir / "victor-mcp.log",
        stack.run_dir,
        env,
    )
    base = f"http://127.0.0.1:{port}"
    proc.wait_ready(base + "/healthz", 60)
    return proc, base + "/mcp"


def register(stack: Stack, url: str) -> dict:
    """Admin Settings → External Tools → add an MCP server, through the same API."""
    api = stack.owui_url + "/api/v1/configs/tool_servers"
    connection = {
        "url": url,
        "path": "",
        "type": "mcp",
        "auth_type": "bearer",
        "key": TOKEN,
        "config": {"enable": True},
        "info": {"id": SERVER_ID, "name": "Victor", "description": "Lua codebase tools"},
    }
    verify = http_json("POST", api + "/verify", connection, stack.token, timeout=60)
    saved = http_json("POST", api, {"TOOL_SERVER_CONNECTIONS": [connection]}, stack.token)
    assert saved["TOOL_SERVER_CONNECTIONS"][0]["type"] == "mcp"
    return verify


def create_model(stack: Stack) -> None:
    """A model on the stand-in with native function calling and Victor's tools on."""
    form = {
        **MODEL,
        "base_model_id": MODEL_ID,
        "meta": {
            "description": "Explores the Lua codebase with Victor's tools",
            "toolIds": [f"server:mcp:{SERVER_ID}"],
        },
        "params": {"function_calling": "native"},
        "is_active": True,
        "access_grants": [{"principal_type": "user", "principal_id": "*", "permission": "read"}],
    }
    http_json("POST", stack.owui_url + "/api/v1/models/create", form, stack.token)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = E2EConfig.from_env()
    problems = cfg.missing()
    if problems:
        message = "e2e prerequisites missing (run tests/e2e/setup.sh): " + "; ".join(problems)
        if os.environ.get("VICTOR_E2E_REQUIRE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    started = time.monotonic()
    stack = start_stack(cfg, tmp_path_factory.mktemp("owui-mcp-e2e"))
    server = None
    try:
        server, url = start_victor_mcp(stack)
        stack.llm.script = explorer
        verify = register(stack, url)
        create_model(stack)
        job = {
            "model": MODEL["id"],
            "label": MODEL["name"],
            "question": QUESTION,
            "serverName": "Victor",
        }
        browser = run_browser(stack, cfg.screenshots_dir, mode="mcp", extra={"mcp": job})
        stack.timings["browser_mcp_s"] = browser.get("seconds")
        yield McpRun(cfg, stack, server, url, verify, browser)
    finally:
        if server is not None:
            server.stop()
        stack.stop()
        stack.timings["total_s"] = round(time.monotonic() - started, 1)
        (stack.run_dir / "timings.json").write_text(json.dumps(stack.timings, indent=1))
        print(f"\ne2e (mcp) timings: {stack.timings} (logs in {stack.run_dir})")


def chat_bodies(run: McpRun) -> list[dict]:
    return [e["body"] for e in run.stack.chat_requests(QUESTION)]


def test_open_webui_verifies_the_server_and_lists_the_tools(run):
    assert run.verify["status"] is True
    names = {spec["name"] for spec in run.verify["specs"]}
    assert names == {
        "search_code",
        "find_definition",
        "find_references",
        "read_code",
        "list_files",
        "list_repos",
    }


def test_the_model_gets_the_tools_and_victors_instructions(run):
    first = chat_bodies(run)[0]
    names = {t["function"]["name"] for t in first["tools"] if "function" in t}
    assert {f"{SERVER_ID}_search_code", f"{SERVER_ID}_read_code"} <= names
    read = f"{SERVER_ID}_read_code"
    spec = next(t["function"] for t in first["tools"] if t["function"]["name"] == read)
    assert spec["parameters"]["required"] == ["repo", "path"]
    system = "\n".join(message_text(m) for m in first["messages"] if m["role"] == "system")
    assert "repo@commit:path:start-end" in system  # the server's instructions


def test_each_tool_result_reaches_the_model_as_victor_answers_it(run):
    bodies = chat_bodies(run)
    assert len(bodies) == 3, [tool_results(b) for b in bodies]  # search, read, answer
    assert tool_results(bodies[0]) == []
    (searched,) = tool_results(bodies[1])
    assert searched == asyncio.run(direct(run.url, "search_code", SEARCH))
    assert "function Cart:add(sku, quantity)" in searched
    found = LOCATION.search(searched)
    assert found and found["path"] == "src/shop/cart.lua"
    lines = {"start_line": int(found["a"]), "end_line": int(found["b"])}
    read = tool_results(bodies[2])[1]
    assert read == asyncio.run(
        direct(run.url, "read_code", {"repo": "shop", "path": "src/shop/cart.lua", **lines})
    )
    assert re.search(r"^ *\d+  function Cart:add\(sku, quantity\)$", read, flags=re.M)
    # the calls the model made are in the history Open WebUI sent back, with their ids
    calls = [
        c["function"]
        for m in bodies[2]["messages"]
        if m.get("role") == "assistant"
        for c in m.get("tool_calls") or []
    ]
    assert [c["name"] for c in calls] == [f"{SERVER_ID}_search_code", f"{SERVER_ID}_read_code"]
    asked = {"repo": "shop", "path": "src/shop/cart.lua", **lines}
    assert json.loads(calls[1]["arguments"]) == asked


def test_the_chat_shows_the_tool_use_and_the_answer(run):
    b = run.browser
    assert b.get("exit_code") == 0, f"browser failed at {b.get('steps')}: {b.get('error')}"
    shown = b["mcp"]
    assert FINAL in shown["answerText"]
    assert "search_code" in shown["fullText"] and "read_code" in shown["fullText"]
    assert "Cart:add" in shown["expandedText"]  # the search result, opened
    assert "Victor" in shown["settingsText"] and "Victor" in shown["menuText"]
    assert shown["connectionUrl"] == [run.url]  # the connection as the API saved it
    chat = get_chat(run.stack, shown["chatId"])
    saved = json.dumps(chat["chat"]["history"]["messages"][shown["messageId"]])
    assert "search_code" in saved and "read_code" in saved


def test_screenshots_saved(run):
    names = {Path(p).name for p in run.browser.get("screenshots", [])}
    assert {
        "10-mcp-external-tools.png",
        "11-mcp-connection.png",
        "12-mcp-answer.png",
        "13-mcp-tool-result.png",
        "14-mcp-tools-menu.png",
    } <= names
    for p in run.browser["screenshots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
