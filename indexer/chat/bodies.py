"""Reading a chat body and putting code context into it: shared by the chat adapters.

The Pipelines filter (pipelines/lua_codebase.py) and the LiteLLM hook (victor/litellm_hook.py)
see the same OpenAI-style `messages`; both must build the same query from them, add the same
block and recognise it, so a request that went through one never gets a second block from the
other. Bodies come from clients: anything may be missing or of an odd type, and nothing here
raises on it.
"""

from __future__ import annotations

import re

CONTEXT_TAG = "lua_codebase_context"  # wraps the context block; marks it as already added
INSTRUCTION = (
    "Below is code retrieved from the user's Lua codebase for their latest message. "
    "Use it when it is relevant, and cite the code you rely on as `path:start-end`, "
    "exactly as in the snippet headers. If it does not contain the answer, say so "
    "instead of guessing."
)

MAX_QUERY_CHARS = 1000
MAX_EARLIER_CHARS = 300  # per earlier user turn added to a short question
MAX_TURNS = 3  # user turns a query may span
MIN_WORDS = 2  # a question with fewer content words is too vague to search on alone

# Words that say nothing about which code is meant.
FILLER = """
    a about above after again all also an and another any are as at be because been before
    being below between both but by can could did do does doing done each else few for from
    further had has have having he her here hers him his how i if in into is it its itself just
    me more most my no nor not now of off on once one only or other others our out over own
    same she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom why
    will with would you your yours please thanks thank ok okay yes hi hello show tell explain
    give find see look get make work works working code lua function functions method methods
    file files thing things part parts bit
"""
STOPWORDS = frozenset(FILLER.split())
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `Cart:add`, `shop.cart`, `lookup(`, `apply_discount`, `getSelection`: clearly about code.
# Every branch starts at a word boundary: unanchored, `\w+[.:]` retried from each character
# of a long word (a pasted blob), quadratic in its length (minutes for 300,000 characters).
CODE_TOKEN = re.compile(r"\b\w+[.:]\w+|\b\w+\(|\b[A-Za-z]+_\w+|\b[a-z]+[A-Z]\w*")


def role(message: object) -> str | None:
    return message.get("role") if isinstance(message, dict) else None


def message_text(message: object) -> str:
    """A message's text: `content` is a string, or a list of parts (text, image_url...)."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def last_index(messages: list, wanted: str) -> int:
    """Index of the last message with this role, -1 when there is none."""
    for i in range(len(messages) - 1, -1, -1):
        if role(messages[i]) == wanted:
            return i
    return -1


def content_words(text: str) -> list[str]:
    return [w for w in WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS]


def is_specific(text: str) -> bool:
    """Enough to search on: a code-like token, or a few words that are not filler."""
    return bool(CODE_TOKEN.search(text)) or len(content_words(text)) >= MIN_WORDS


def build_query(messages: list) -> str:
    """The retrieval query: the last user message, plus earlier user turns when it is too vague.

    "and the other one?" says nothing on its own; together with the question before it, it
    finds the code the user is talking about.
    """
    texts = [message_text(m).strip() for m in messages if role(m) == "user"]
    texts = [t for t in texts if t]
    if not texts:
        return ""
    parts = [texts[-1]]
    for earlier in reversed(texts[:-1]):
        if len(parts) >= MAX_TURNS or is_specific(" ".join(parts)):
            break
        parts.insert(0, earlier[:MAX_EARLIER_CHARS])
    # NUL and lone surrogates cannot travel to PostgreSQL (or be encoded): they are not words
    query = "\n".join(parts)[:MAX_QUERY_CHARS].replace("\0", " ")
    return query.encode("utf-8", "replace").decode("utf-8")


def context_in_current_turn(messages: list) -> bool:
    """True when this turn already carries our context (a re-run): never add it twice.

    The turn starts after the assistant message that precedes the last user message (an
    assistant message after it is a partial answer being continued)."""
    start = last_index(messages[: max(last_index(messages, "user"), 0)], "assistant") + 1
    return any(
        role(m) == "system" and f"<{CONTEXT_TAG}>" in message_text(m) for m in messages[start:]
    )


def with_context(messages: list, text: str) -> list:
    """The messages with the context block as a system message just before the last user one."""
    block = f"<{CONTEXT_TAG}>\n{INSTRUCTION}\n\n{text.rstrip()}\n</{CONTEXT_TAG}>"
    at = last_index(messages, "user")
    at = len(messages) if at < 0 else at
    return [*messages[:at], {"role": "system", "content": block}, *messages[at:]]
