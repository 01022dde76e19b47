"""Embeddings from Ollama (the user's GPU) through the official `ollama` client: batched, bounded
by a timeout, retried on transient failures, with the model's query/document prefixes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx

from indexer.config import Settings
from indexer.embedding.base import check_vectors
from indexer.errors import EmbedderUnavailable, ModelMissing

if TYPE_CHECKING:
    import ollama

log = logging.getLogger(__name__)


def keep_alive_value(text: str | None) -> str | float | None:
    """Ollama reads a bare number as seconds but a string only as a duration with a unit
    ("-1" would be refused): numbers go as numbers."""
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return text.strip()


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
        self.keep_alive = keep_alive_value(settings.ollama_keep_alive)
        self._made_client: ollama.AsyncClient | None = None
        self._limit = asyncio.Semaphore(settings.embed_concurrency)
        self._dims: int | None = None
        self.requests = 0  # HTTP embedding requests made (for reports)

    @property
    def _client(self) -> ollama.AsyncClient:
        # Made (and `ollama`, 0.2-0.3 s of imports, loaded) on first use: a command that
        # embeds nothing, such as a re-index with nothing changed, does not pay for it.
        if self._made_client is None:
            import ollama

            self._made_client = ollama.AsyncClient(host=self.host, timeout=self.timeout)
        return self._made_client

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        # A batch keeps its slot while it retries: queued behind every other batch, a retry
        # would only come after all of them had waited out their own timeouts.
        async with self._limit:
            return await self._embed_batch_retried(batch)

    async def _embed_batch_retried(self, batch: list[str]) -> list[list[float]]:
        import ollama

        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                self.requests += 1
                response = await self._client.embed(
                    model=self.model, input=batch, keep_alive=self.keep_alive
                )
                vectors = [list(v) for v in response.embeddings]
                check_vectors(vectors, len(batch), self._dims, self.model)
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
        if self._made_client is not None:
            await self._made_client.close()
