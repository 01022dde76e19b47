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

# The prompts each embedding model was trained with, by model family: (document prefix, query
# prefix), from each model's card (docs/embedding-models.md has the sources). A model that reads
# plain text on both sides is listed too, so only a model nobody checked gets the notice of
# `prompt_notice`. A prompt belongs to the vector space: changing one needs `victor reembed`.
MODEL_PREFIXES: dict[str, tuple[str, str]] = {
    # Qwen3-Embedding: an instruction on the query side only; this is the code-search one
    "qwen3-embedding": ("", "Instruct: Given a code search query, retrieve relevant code\nQuery: "),
    # EmbeddingGemma: task prompts on both sides; "code retrieval" is its code-search task
    "embeddinggemma": ("title: none | text: ", "task: code retrieval | query: "),
    # nomic-embed-text v1/v1.5 (and v2): trained with these, retrieves badly without
    "nomic-embed-text": ("search_document: ", "search_query: "),
    "mxbai-embed-large": ("", "Represent this sentence for searching relevant passages: "),
    # Arctic Embed 2.0 (l/m-v2.0): `query: ` on queries, documents plain
    "snowflake-arctic-embed2": ("", "query: "),
    # Arctic Embed v1/v1.5 (Ollama's snowflake-arctic-embed): the BGE-style query prompt
    "snowflake-arctic-embed": ("", "Represent this sentence for searching relevant passages: "),
    "bge-m3": ("", ""),  # dense retrieval needs no instruction
    "all-minilm": ("", ""),  # all-MiniLM-L6-v2 (and L12): plain text
}

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"


def model_family(model: str) -> str:
    """`nomic-embed-text:latest` and `library/nomic-embed-text` -> `nomic-embed-text`."""
    return model.split(":", 1)[0].rsplit("/", 1)[-1].lower()


def known_prompts(model: str) -> tuple[str, str] | None:
    """(document prefix, query prefix) of a model by its name, None when no prompt is known.

    Any tag or namespace (`qwen3-embedding:0.6b`, `library/bge-m3`) names the family; so does
    a name that extends a family's with a size or format (`Qwen3-Embedding-0.6B-GGUF`,
    `all-MiniLM-L6-v2`), the longest family first (`snowflake-arctic-embed2` before
    `snowflake-arctic-embed`).
    """
    family = model_family(model)
    if family in MODEL_PREFIXES:
        return MODEL_PREFIXES[family]
    for name in sorted(MODEL_PREFIXES, key=len, reverse=True):
        if family.startswith(name) and family[len(name)] in "-_.":
            return MODEL_PREFIXES[name]
    return None


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
    document_prefix: str | None = Field(
        default=None,
        description="Text put before every chunk that is embedded. Unset: the model's own "
        "document prompt (indexer/config.py MODEL_PREFIXES; docs/embedding-models.md).",
    )
    query_prefix: str | None = Field(
        default=None,
        description="Text put before every query that is embedded. Unset: the model's own "
        "query prompt (e.g. qwen3-embedding's code-search instruction).",
    )

    call_context: Literal["off", "callees", "callers", "both"] = Field(
        default="both",
        description="When the context budget has room after the retrieved code, add the code "
        "around the best hit: the code that calls it and the functions it calls (both), one "
        "side only (callers, callees), or nothing (off). Never displaces retrieved code. "
        "bench/README.md has the measurements.",
    )

    ranking_stage: bool = Field(
        default=True,
        description="Re-order a hybrid search's best 50 with the learned ranking stage "
        "(indexer/search/ranking.py). Trained with all-MiniLM-L6-v2 on 14 Lua codebases, where "
        "it ranks better than fusion alone on both benchmarks held out (bench/README.md); with "
        "another embedding model its gain is not measured: false compares without it.",
    )

    lexical_memory_mb: int = Field(
        default=1024,
        ge=0,
        description="Memory (MB) a chat process (the Pipelines filter, the LiteLLM hook, the "
        "MCP server) may use to hold the lexical index, so a chat's keyword search runs in "
        "the process instead of in PostgreSQL (about 160 MB per 100,000 chunks). A repository "
        "that does not fit is searched in the database, as with 0 (off). Same results either "
        "way.",
    )

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
        doc, query = known_prompts(self.model) or ("", "")
        if self.document_prefix is not None:
            doc = self.document_prefix
        if self.query_prefix is not None:
            query = self.query_prefix
        return doc, query

    @property
    def prompt_notice(self) -> str:
        """What to tell the operator when no prompt is known for the model and none is set
        ("" otherwise): shown by `victor doctor` and once per index run."""
        if known_prompts(self.model) is not None:
            return ""
        if self.document_prefix is not None and self.query_prefix is not None:
            return ""
        doc, query = self.prefixes
        used = (
            f"code with {doc!r} in front and queries with {query!r}"
            if doc or query
            else "code and queries as they are, with no prompt"
        )
        return (
            f"No query/document prompt is known for the embedding model {self.model!r}: "
            f"Victor embeds {used}. If the model's card asks for prompts, set "
            "VICTOR_QUERY_PREFIX and VICTOR_DOCUMENT_PREFIX to them (then run `victor "
            "reembed`); setting both, even to an empty value, silences this note. Models with "
            "known prompts: " + ", ".join(MODEL_PREFIXES) + "."
        )

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
