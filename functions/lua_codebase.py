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
# chip per snippet under the answer and a one-line status, each of which a user can turn off
# (UserValves, "Valves" in the toggle's menu). Only the standard library and pydantic (Open
# WebUI's own dependency: nothing to install), and it never raises: an exception in a Function
# fails the whole chat.

import logging
import re

from pydantic import BaseModel, Field

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


def as_code(text: str) -> str:
    """The snippet as a fenced `lua` block: Open WebUI renders a source's document as Markdown,
    which would make `---` doc comments headings, drop indentation and read `$...$` in Lua
    patterns as LaTeX; inside a code block every character shows as it is in the file. The
    fence is longer than any run of backticks in the code."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}lua\n{text}\n{fence}"


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
            "document": [as_code(str(source.get("text") or ""))],
            "metadata": [meta],
            "distances": [source.get("score") or 0.0],
        },
    }


def user_valves(user: object, model: type):
    """The user's valves: Open WebUI passes them as __user__["valves"] (an instance of our
    UserValves, or a dict); the defaults when absent or unreadable."""
    valves = user.get("valves") if isinstance(user, dict) else None
    if isinstance(valves, model):
        return valves
    try:
        return model(**valves) if isinstance(valves, dict) else model()
    except Exception:
        return model()


def status_event(description: str) -> dict:
    return {"type": "status", "data": {"description": description, "done": True}}


def events(body: dict, sources_shown: bool = True, status_shown: bool = True) -> list[dict]:
    """What to show for this chat body: the sources, then the status line."""
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("task"):
        return []
    info = metadata.get(HANDOVER_KEY)
    if not isinstance(info, dict):
        return [status_event(NOT_RUN)] if status_shown else []
    sources = [s for s in info.get("sources") or [] if isinstance(s, dict)]
    message = info.get("message") or f"{NAME}: {len(sources)} snippets"
    shown = [source_event(s) for s in sources] if sources_shown else []
    return shown + ([status_event(str(message))] if status_shown else [])


class Filter:
    class UserValves(BaseModel):
        """What each user may change for themselves (the toggle's "Valves" dialog). The code
        the model reads is the admin's business: the Pipelines filter's valves."""

        show_sources: bool = Field(
            default=True,
            description="List the code sent to the model under the answer, one source per snippet.",
        )
        show_status: bool = Field(
            default=True,
            description="Show the status line above the answer (how many snippets, or why "
            "there are none).",
        )

    def __init__(self):
        self.toggle = True  # a switch in the chat's Integrations menu
        self.icon = ICON

    async def inlet(self, body: dict, __user__=None, __event_emitter__=None) -> dict:
        try:
            if __event_emitter__ is not None:
                mine = user_valves(__user__, self.UserValves)
                for event in events(body, mine.show_sources, mine.show_status):
                    await __event_emitter__(event)
        except Exception:  # never fail the chat over a status line
            log.exception("lua_codebase: could not show the sources")
        return body
