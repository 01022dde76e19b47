"""Victor: retrieval over a private Lua codebase.

The `indexer` package is the core: configuration, database access, chunking,
embedding, storage and search. The CLI, the Open WebUI pipeline and the
webhook app are thin adapters over it.
"""

__version__ = "0.1.0"
