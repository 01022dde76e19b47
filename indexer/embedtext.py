"""The text a chunk is embedded as.

Small embedding models read only the start of their input (all-MiniLM-L6-v2:
256 word pieces), so what identifies the code comes first: path, qualified
name, signature; then the code with its doc comment.
"""

from __future__ import annotations

import hashlib

from .models import Chunk

# Bump when the format changes: files are re-chunked, and new texts re-embedded.
EMBED_TEXT_VERSION = 1


def embedding_text(path: str, chunk: Chunk) -> str:
    head = f"{path} :: {chunk.symbol} ({chunk.kind})"
    if chunk.part:
        # a window of a large function: repeat the header the window itself lacks
        return f"{head} part {chunk.part}\n{chunk.signature}\n{chunk.text}"
    return f"{head}\n{chunk.text}"


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
