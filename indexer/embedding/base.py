"""What every embedder offers (`Embedder`), the checks on what it returns, and `make_embedder`,
which picks the backend the settings name."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from indexer.config import Settings
from indexer.errors import EmbeddingError


class Embedder(Protocol):
    space: str  # identifies the vector space (model + prefixes); see Settings.embedding_space
    model: str

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def dimensions(self) -> int: ...

    async def ready(self) -> None:
        """Load what a first request would load; query timeouts start after this."""
        ...

    async def close(self) -> None: ...


def check_vectors(vectors: list[list[float]], expected: int, dims: int | None, model: str) -> None:
    if len(vectors) != expected:
        raise EmbeddingError(
            f"The embedder returned {len(vectors)} vectors for {expected} inputs (model {model})."
        )
    for vector in vectors:
        if dims is not None and len(vector) != dims:
            raise EmbeddingError(
                f"The embedder returned a {len(vector)}-dimension vector; model {model} "
                f"gave {dims} before. Is another model answering under this name?"
            )
        if not all(map(math.isfinite, vector)):  # map: no generator frame per value
            raise EmbeddingError(f"The embedder returned a vector with NaN/inf (model {model}).")


def check_dimensions(vectors: Sequence[Sequence[float]], dims: int, model: str) -> None:
    """Vectors for an index whose column is vector(dims) must have exactly that many values.

    Checked before anything is cached or written: a wrong vector would otherwise fail the
    write with a bare database error, or worse, sit in the embedding cache for good.
    """
    for vector in vectors:
        if len(vector) != dims:
            raise EmbeddingError(
                f"The embedding model '{model}' returned {len(vector)}-dimension vectors, but "
                f"the index holds {dims}-dimension vectors of that model: is another model "
                f"answering under this name? Put the right one back in Ollama "
                f"(ollama pull {model})"
            )


def make_embedder(settings: Settings, **kwargs: object) -> Embedder:
    if settings.embed_backend == "local":
        from indexer.embedding.local import LocalEmbedder

        return LocalEmbedder(settings)
    from indexer.embedding.ollama import OllamaEmbedder

    return OllamaEmbedder(settings, **kwargs)  # type: ignore[arg-type]
