"""
title: Lua Codebase (test stand-in)
author: victor
version: 0.0.1
description: Stand-in for Victor's Pipelines filter. Adds a fake retrieved snippet as a system
  message and hands the sources to the "Lua Codebase" Function through body["metadata"].
"""

# The contract this file stands in for (the real filter must do the same):
# - runs on the Pipelines server, class Pipeline, type "filter", valves.pipelines ["*"];
# - acts only when the per-chat toggle is on: body["metadata"]["filter_ids"] holds the
#   Function id ("lua_codebase"), and never for Open WebUI's task requests (metadata.task set);
# - adds the retrieved context as a system message (it reaches the model);
# - puts {"status": str, "sources": [{path, start_line, end_line, symbol, score, link, text}]}
#   into body["metadata"]["lua_codebase"] for the Function (metadata never reaches the model).

from pydantic import BaseModel

MARKER = "CONTEXT-MARKER"

FAKE_SNIPPETS = [
    {
        "path": "src/math.lua",
        "start_line": 10,
        "end_line": 12,
        "symbol": "add",
        "score": 0.88,
        "link": "",
        "text": "local function add(a, b)\n  return a + b\nend",
    },
    {
        "path": "src/strings.lua",
        "start_line": 3,
        "end_line": 8,
        "symbol": "trim",
        "score": 0.61,
        "link": "",
        "text": "local function trim(s)\n  return (s:gsub('^%s+', ''):gsub('%s+$', ''))\nend",
    },
]


def last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return ""


class Pipeline:
    class Valves(BaseModel):
        pipelines: list[str] = ["*"]
        priority: int = 0
        toggle_id: str = "lua_codebase"

    def __init__(self):
        self.type = "filter"
        self.name = "Lua Codebase"
        self.valves = self.Valves()

    async def on_startup(self):
        pass

    async def on_shutdown(self):
        pass

    async def inlet(self, body: dict, user: dict | None = None) -> dict:
        metadata = body.get("metadata") or {}
        if self.valves.toggle_id not in (metadata.get("filter_ids") or []):
            return body
        if metadata.get("task"):
            return body

        messages = body.get("messages") or []
        question = last_user_text(messages)
        context = "\n\n".join(
            f"-- {s['path']}:{s['start_line']}-{s['end_line']} ({s['symbol']})\n{s['text']}"
            for s in FAKE_SNIPPETS
        )
        system_text = f"{MARKER} lua_codebase: retrieved context for: {question}\n\n{context}"
        body["messages"] = [{"role": "system", "content": system_text}, *messages]

        metadata["lua_codebase"] = {
            "status": f"Lua Codebase: {len(FAKE_SNIPPETS)} snippets attached",
            "sources": [dict(s) for s in FAKE_SNIPPETS],
        }
        body["metadata"] = metadata
        return body
