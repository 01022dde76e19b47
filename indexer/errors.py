"""Errors a user can meet, each with a message that says what to do.

Every adapter (CLI, pipeline, webhook) shows `str(error)` as is: the message
is written for the person who has to fix it, never a traceback.
"""


class VictorError(Exception):
    """Base class: a failure with a user-facing message."""


class ConfigError(VictorError):
    """Bad configuration or bad input from the user."""


class DatabaseUnavailable(VictorError):
    """PostgreSQL cannot be reached or refused us."""


class SchemaError(VictorError):
    """The schema could not be applied (rights, missing pgvector)."""


class EmbedderUnavailable(VictorError):
    """The embedding backend cannot be reached or timed out."""


class ModelMissing(VictorError):
    """The embedding model is not available in Ollama."""


class EmbeddingError(VictorError):
    """The embedder answered, but not with what we need (wrong count or dimension)."""


class ModelMismatch(VictorError):
    """The index was built with another embedding model than the one configured."""


class SourceError(VictorError):
    """A path or git repository to index cannot be read."""


class NotFound(VictorError):
    """A named repository (or job) does not exist."""


class SummariserUnavailable(VictorError):
    """The summary model (LiteLLM, Ollama) cannot be reached, timed out or refused the key."""


class SummariserError(VictorError):
    """The summary model answered, but not with a summary (not a chat answer, or empty)."""
