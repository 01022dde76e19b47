"""Text -> vectors: the `Embedder` protocol and its backends (Ollama, in-process), and the texts
a chunk is embedded as."""

from indexer.embedding.base import Embedder, check_dimensions, check_vectors, make_embedder

__all__ = ["Embedder", "check_dimensions", "check_vectors", "make_embedder"]
