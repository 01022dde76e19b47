"""
title: Lua Codebase
author: victor
version: 0.1.0
license: MIT
description: Search your Lua codebase: the code put in front of the model shows as sources.
"""

# The per-chat "Lua Codebase" toggle of Open WebUI. The retrieval itself runs in the Pipelines
# filter of the same name (pipelines/lua_codebase.py), which reads the toggle from
# metadata.filter_ids and leaves what it found in body["metadata"]["lua_codebase"]:
#   {"status": "ok" | "degraded" | "empty" | "unavailable", "message": "...",
#    "sources": [{"path", "start_line", "end_line", "label", "text", "link", "score", ...}]}
# This Function runs after it, only in chats where the toggle is on, and shows that: one source
# chip per snippet under the answer and a one-line status. Standard library only, and it never
# raises: an exception in a Function fails the whole chat.

import logging

log = logging.getLogger(__name__)

HANDOVER_KEY = "lua_codebase"
NAME = "Lua Codebase"
NOT_RUN = (
    f"{NAME}: the Pipelines filter did not run — answered without code context "
    "(check the Pipelines connection in Admin Settings)"
)

ICON = (
    "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3"
    "g9IjAgMCAyNCAyNCIgZmlsbD0ibm9uZSIgc3Ryb2tlPSIjNGE2Y2Y3IiBzdHJva2Utd2lkdGg9IjIiIHN0cm9rZS"
    "1saW5lY2FwPSJyb3VuZCIgc3Ryb2tlLWxpbmVqb2luPSJyb3VuZCI+PGNpcmNsZSBjeD0iMTEiIGN5PSIxMyIgcj"
    "0iOCIvPjxjaXJjbGUgY3g9IjIwIiBjeT0iNCIgcj0iMS42IiBmaWxsPSIjNGE2Y2Y3IiBzdHJva2U9Im5vbmUiLz"
    "48cGF0aCBkPSJNOC41IDkuNXY3aDUiLz48L3N2Zz4="
)


def label(source: dict) -> str:
    """`path:start-end`: the chip's name, unique per snippet."""
    if source.get("label"):
        return str(source["label"])
    path, start, end = (source.get(k, "?") for k in ("path", "start_line", "end_line"))
    return f"{path}:{start}-{end}"


def source_event(source: dict) -> dict:
    """One chip under the answer.

    Open WebUI makes one chip per distinct metadata[i].source, so the key is the snippet's
    permalink or `path:start-end`, never the bare path (two snippets of a file stay two chips).
    A key starting with http becomes a link; "external" keeps our label instead of the URL.
    """
    name = label(source)
    link = str(source.get("link") or "")
    key = link if link.startswith("http") else name
    meta = {"source": key, "name": name}
    if key.startswith("http"):
        meta["external"] = True
    return {
        "type": "source",
        "data": {
            "source": {"name": name, "id": key},
            "document": [str(source.get("text") or "")],
            "metadata": [meta],
            "distances": [source.get("score") or 0.0],
        },
    }


def status_event(description: str) -> dict:
    return {"type": "status", "data": {"description": description, "done": True}}


def events(body: dict) -> list[dict]:
    """What to show for this chat body: the sources, then the status line."""
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("task"):
        return []
    info = metadata.get(HANDOVER_KEY)
    if not isinstance(info, dict):
        return [status_event(NOT_RUN)]
    sources = [s for s in info.get("sources") or [] if isinstance(s, dict)]
    message = info.get("message") or f"{NAME}: {len(sources)} snippets"
    return [*(source_event(s) for s in sources), status_event(str(message))]


class Filter:
    def __init__(self):
        self.toggle = True  # a switch in the chat's Integrations menu
        self.icon = ICON

    async def inlet(self, body: dict, __event_emitter__=None) -> dict:
        try:
            if __event_emitter__ is not None:
                for event in events(body):
                    await __event_emitter__(event)
        except Exception:  # never fail the chat over a status line
            log.exception("lua_codebase: could not show the sources")
        return body
