"""What a summary model is asked about a function, how its answer is cleaned, and the token
estimate of one request (shown before a run, `victor summarize --estimate`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from indexer.config import Settings

# Bump when SYSTEM or the user message changes: every function is summarised again.
PROMPT_VERSION = 1
SYSTEM = (
    "You write summaries of Lua functions for a code search index. In one or two plain "
    "sentences, say what the function does and when a developer would need it, in the words "
    "a question about that behaviour would use. No preamble, no code, no markdown."
)
MAX_CODE_CHARS = 6000  # VICTOR_MAX_CHUNK_CHARS keeps chunks shorter; a bound on the bill anyway
MAX_SUMMARY_CHARS = 600  # a summary longer than two sentences is cut: it is one field of many

# No tokenizer of the user's model is available offline (Claude's is not public): code and
# English run about 3.5 characters per token with the BPE tokenizers in common use. The
# answer is a sentence or two; the bound is VICTOR_SUMMARY_MAX_TOKENS.
CHARS_PER_TOKEN = 3.5
TYPICAL_OUTPUT_TOKENS = 50
_OVERHEAD_TOKENS = 12  # message framing of a chat request


@dataclass(frozen=True, slots=True)
class Subject:
    """One function to summarise: its chunk's hash (what the summary is kept by) and text."""

    text_hash: bytes
    path: str
    symbol: str
    text: str


def user_message(subject: Subject) -> str:
    return f"File: {subject.path}\nFunction: {subject.symbol}\n\n{subject.text[:MAX_CODE_CHARS]}"


def summariser_key(settings: Settings) -> str:
    """Who wrote a summary: backend, model and prompt version. Another model or prompt
    summarises again; the base URL is not part of it (the same model through another proxy
    writes the same kind of summary)."""
    return f"{settings.summary_backend}:{settings.summary_model}|p{PROMPT_VERSION}"


def input_tokens(chars: int, requests: int) -> int:
    """Estimated input tokens of `requests` requests whose user messages hold `chars`."""
    per_request = len(SYSTEM) / CHARS_PER_TOKEN + _OVERHEAD_TOKENS
    return math.ceil(chars / CHARS_PER_TOKEN + requests * per_request)


_SPACE = re.compile(r"\s+")
_LEAD = re.compile(r"^(summary|this function)\s*:\s*", re.IGNORECASE)


def clean(answer: str) -> str:
    """The answer as one line of prose: whitespace collapsed, a `Summary:` label and wrapping
    quotes or backticks dropped, cut after the sentence that passes MAX_SUMMARY_CHARS. Empty
    when the model said nothing."""
    text = _LEAD.sub("", _SPACE.sub(" ", answer).strip()).strip("`\"' ")
    if len(text) <= MAX_SUMMARY_CHARS:
        return text
    cut = text.rfind(". ", 0, MAX_SUMMARY_CHARS)
    return text[: cut + 1] if cut > 0 else text[:MAX_SUMMARY_CHARS]
