"""
title: Lua Codebase
author: victor
version: 0.0.1
description: Search the Lua codebase (test stand-in)
"""

# Stand-in for Victor's Open WebUI Function (a per-chat toggle). The contract it stands in for:
# - class Filter with toggle = True and a data-URI icon; no third-party imports;
# - runs after the Pipelines filter, only when the user switched it on in this chat;
# - reads body["metadata"]["lua_codebase"] = {"status", "sources": [...]} that the Pipelines
#   filter left there, emits one "source" event per snippet (chip label "path:start-end") and a
#   status line, and returns the body unchanged. It never raises: an error here fails the chat.
#
# Test hook, not part of the contract: when the environment variable VICTOR_E2E_FUNCTION_DUMP
# names a file, each inlet call appends one JSON line describing what it received.

import json
import os

ICON = (
    "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9"
    "IjAgMCAyNCAyNCIgZmlsbD0ibm9uZSIgc3Ryb2tlPSJjdXJyZW50Q29sb3IiIHN0cm9rZS13aWR0aD0iMiI+PGNp"
    "cmNsZSBjeD0iMTIiIGN5PSIxMiIgcj0iOSIvPjxwYXRoIGQ9Ik0xMCA3djEwaDUiLz48L3N2Zz4="
)


def source_label(source: dict) -> str:
    start, end = source.get("start_line", "?"), source.get("end_line", "?")
    return f"{source.get('path', '?')}:{start}-{end}"


def source_event(source: dict) -> dict:
    """One chip under the answer. Open WebUI groups chips by metadata[i].source, so that key
    must be unique per snippet; an http(s) key becomes a link, and "external" keeps our label."""
    label = source_label(source)
    link = source.get("link") or ""
    key = link if link.startswith("http") else label
    meta = {"source": key, "name": label}
    if key.startswith("http"):
        meta["external"] = True
    return {
        "type": "source",
        "data": {
            "source": {"name": label, "id": key},
            "document": [source.get("text", "")],
            "metadata": [meta],
            "distances": [source.get("score", 0.0)],
        },
    }


def _dump(body: dict, metadata: dict | None) -> None:
    path = os.environ.get("VICTOR_E2E_FUNCTION_DUMP")
    if not path:
        return
    body_meta = body.get("metadata") or {}
    record = {
        "body_keys": sorted(body.keys()),
        "body_metadata_keys": sorted(body_meta.keys()),
        "body_metadata_lua_codebase": body_meta.get("lua_codebase"),
        "body_metadata_is___metadata__": body_meta is metadata,
        "dunder_metadata_keys": sorted((metadata or {}).keys()),
        "dunder_metadata_lua_codebase": (metadata or {}).get("lua_codebase"),
        "dunder_metadata_filter_ids": (metadata or {}).get("filter_ids"),
        "messages": body.get("messages"),
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=str) + "\n")


class Filter:
    def __init__(self):
        self.toggle = True
        self.icon = ICON

    async def inlet(self, body: dict, __event_emitter__=None, __metadata__=None) -> dict:
        try:
            _dump(body, __metadata__)
            if __event_emitter__ is None:
                return body
            info = (body.get("metadata") or {}).get("lua_codebase")
            if not isinstance(info, dict):
                await __event_emitter__(
                    {
                        "type": "status",
                        "data": {"description": "Lua Codebase: no context", "done": True},
                    }
                )
                return body
            for source in info.get("sources") or []:
                await __event_emitter__(source_event(source))
            await __event_emitter__(
                {
                    "type": "status",
                    "data": {"description": info.get("status") or "Lua Codebase", "done": True},
                }
            )
        except Exception as e:  # never break the chat
            print(f"lua_codebase function: {e!r}")
        return body
