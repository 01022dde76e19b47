"""All configuration, read from the environment in one place.

Defaults match the user's stack: PostgreSQL on 5433 (or the embedded server
when no URL is set), Ollama on 11434. Secrets are SecretStr so they never
print in a repr, a log line or an error message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Query/document prefixes per embedding model family. nomic-embed-text is
# trained with them and retrieves badly without; mxbai wants a query prefix.
MODEL_PREFIXES: dict[str, tuple[str, str]] = {
    # model family: (document prefix, query prefix)
    "nomic-embed-text": ("search_document: ", "search_query: "),
    "mxbai-embed-large": ("", "Represent this sentence for searching relevant passages: "),
}

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"


def model_family(model: str) -> str:
    """`nomic-embed-text:latest` and `library/nomic-embed-text` -> `nomic-embed-text`."""
    return model.split(":", 1)[0].rsplit("/", 1)[-1].lower()


class Settings(BaseSettings):
    """Victor's settings. Every field maps to an environment variable."""

    model_config = SettingsConfigDict(env_prefix="VICTOR_", extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL, e.g. postgresql://victor:...@localhost:5433/victor. "
        "Unset: an embedded PostgreSQL in VICTOR_DATA_DIR.",
    )
    data_dir: Path = Field(
        default=Path(platformdirs.user_data_dir("victor")),
        description="Where the embedded database and git clones live.",
    )
    ollama_host: str = Field(
        default="http://localhost:11434",
        validation_alias=AliasChoices("OLLAMA_HOST", "VICTOR_OLLAMA_HOST"),
        description="Ollama's address, for embeddings (from a container on the Mac: "
        "http://host.docker.internal:11434).",
    )
    embed_backend: Literal["ollama", "local"] = Field(
        default="ollama",
        description="ollama: embeddings from Ollama; local: all-MiniLM-L6-v2 in-process "
        "(the `local` extra; offline, no server).",
    )
    embed_model: str = Field(
        default="nomic-embed-text",
        description="The Ollama embedding model (ignored by the local backend). Changing it "
        "needs `victor reembed`.",
    )
    embed_timeout: float = Field(default=120.0, gt=0, description="Seconds per embedding request.")
    embed_batch_size: int = Field(
        default=32, ge=1, le=2048, description="Texts per embedding request."
    )
    embed_concurrency: int = Field(
        default=2, ge=1, le=64, description="Embedding requests in flight at once."
    )
    embed_retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Retries of an embedding request that failed for a passing reason "
        "(connection, 5xx, 429), with backoff.",
    )
    query_timeout: float = Field(
        default=3.0,
        gt=0,
        description="Seconds a search waits for the query's embedding before it answers from "
        "lexical search alone (a chat must not hang on a slow or absent embedder).",
    )
    ollama_keep_alive: str | None = Field(
        default=None,
        description="How long Ollama keeps the embedding model loaded after a request "
        "(Ollama's keep_alive: 30m, 1h, seconds, -1 for always). Unset: Ollama's own "
        "default (5 minutes).",
    )
    document_prefix: str | None = Field(default=None, description="Override the model's default.")
    query_prefix: str | None = Field(default=None, description="Override the model's default.")

    sql_timeout: float = Field(default=300.0, gt=0, description="Seconds per SQL statement.")

    include: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("*.lua",), description="Comma-separated globs."
    )
    max_file_bytes: int = Field(
        default=1_000_000, ge=1, description="Larger files are skipped (and listed as skipped)."
    )
    max_chunk_chars: int = Field(
        default=3000,
        ge=200,
        description="A function longer than this is split into windows (its nested functions "
        "get their own chunks).",
    )
    parse_time_limit: float = Field(
        default=10.0, gt=0, description="Seconds per file for luaparser."
    )
    parse_workers: int | None = Field(
        default=None,
        ge=1,
        description="Processes that parse Lua while indexing. Unset: one per CPU core.",
    )

    # LLM-written summaries of functions (indexer/summaries, docs/summaries.md): off by default
    summary_backend: Literal["off", "openai", "ollama"] = Field(
        default="off",
        description="Who writes the one- or two-sentence summaries `victor summarize` adds to "
        "each function's lexical field: off (nothing is summarised or changed); openai: an "
        "OpenAI-compatible chat endpoint such as LiteLLM (POST /v1/chat/completions); ollama: "
        "an Ollama chat model (POST /api/chat). See [summaries](summaries.md).",
    )
    summary_model: str | None = Field(
        default=None,
        description="The chat model that writes summaries (e.g. claude-haiku on LiteLLM, "
        "qwen2.5-coder:7b on Ollama); required when VICTOR_SUMMARY_BACKEND is not off.",
    )
    summary_url: str | None = Field(
        default=None,
        description="The summary model's base URL. Unset: http://localhost:4000/v1 (LiteLLM) "
        "for openai, VICTOR_OLLAMA_HOST for ollama.",
    )
    summary_api_key: SecretStr | None = Field(
        default=None,
        description="Bearer key for the openai backend (a LiteLLM key); never logged or shown.",
    )
    summary_timeout: float = Field(
        default=60.0, gt=0, le=600, description="Seconds per summary request."
    )
    summary_concurrency: int = Field(
        default=2, ge=1, le=16, description="Summary requests in flight at once."
    )
    summary_max_tokens: int = Field(
        default=120, ge=16, le=1000, description="Most tokens a summary may take (its answer)."
    )
    summary_on_sync: bool = Field(
        default=False,
        description="After each sync of a followed repository (the webhook's worker, `victor "
        "sync`), summarise its functions that have no summary yet: after a push, only what "
        "changed. A failing summary model is logged and never fails the sync.",
    )
    summary_sync_limit: int = Field(
        default=200,
        ge=0,
        description="Most functions a sync summarises by itself; more (a first run, another "
        "model) is left to `victor summarize`, which shows the cost first.",
    )

    # GitHub webhook and sync worker (webhook/, indexer/worker.py)
    webhook_secret: SecretStr | None = Field(
        default=None, description="The secret set on the GitHub webhook (required)."
    )
    webhook_insecure_dev: bool = Field(
        default=False,
        description="Development only: run the webhook without a secret, unsigned deliveries.",
    )
    webhook_max_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="Largest delivery accepted (GitHub: 25 MB)."
    )
    jobs_token: SecretStr | None = Field(
        default=None, description="Bearer token for GET /jobs; unset: only from localhost."
    )
    github_token: SecretStr | None = Field(
        default=None, description="Token for `git fetch` of private GitHub repositories."
    )
    job_lease: float = Field(
        default=60.0, gt=0, description="Seconds a worker holds a job without a heartbeat."
    )
    job_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Tries of a sync job before it is marked failed."
    )
    job_retry_delay: float = Field(
        default=10.0, ge=0, description="Seconds before the first retry; doubles each time."
    )
    worker_poll: float = Field(
        default=2.0, gt=0, description="Seconds between queue checks when no notification came."
    )
    worker_grace: float = Field(
        default=8.0, ge=0, description="On SIGTERM, seconds to finish the job before releasing it."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="Level of Victor's own log lines (loggers indexer, webhook, victor) in the "
        "webhook and `victor worker`.",
    )
    library_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING",
        description="Level of the libraries' log lines (pgserver, asyncpg, urllib3...) in the "
        "webhook and `victor worker`; INFO or DEBUG to see them.",
    )

    # `victor mcp` (victor/mcp_server.py)
    mcp_token: SecretStr | None = Field(
        default=None,
        description="Bearer token every MCP request must carry; required to listen beyond "
        "127.0.0.1 (e.g. in a container).",
    )
    mcp_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds an MCP tool call may take."
    )
    mcp_database_url: SecretStr | None = Field(
        default=None,
        description="The database URL `victor mcp` uses, e.g. the read-only victor_reader's "
        "(docs/database-role.md); unset: VICTOR_DATABASE_URL.",
    )

    @field_validator("include", mode="before")
    @classmethod
    def _split_globs(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(g.strip() for g in value.split(",") if g.strip())
        return value

    @property
    def model(self) -> str:
        """The embedding model actually used (the local backend has exactly one)."""
        return LOCAL_MODEL_NAME if self.embed_backend == "local" else self.embed_model

    @property
    def prefixes(self) -> tuple[str, str]:
        """(document prefix, query prefix) for the configured model."""
        doc, query = MODEL_PREFIXES.get(model_family(self.model), ("", ""))
        if self.document_prefix is not None:
            doc = self.document_prefix
        if self.query_prefix is not None:
            query = self.query_prefix
        return doc, query

    @property
    def embedding_space(self) -> str:
        """Identifies a vector space: vectors from different spaces must never be mixed."""
        model = self.model
        if self.embed_backend == "ollama" and ":" not in model:
            model += ":latest"
        doc, query = self.prefixes
        return f"{self.embed_backend}:{model}|{doc}|{query}"

    @property
    def summaries_on(self) -> bool:
        return self.summary_backend != "off"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def clones_dir(self) -> Path:
        return self.data_dir / "repos"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags, valves)."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)
