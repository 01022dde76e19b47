"""The LiteLLM hook's settings (VICTOR_LITELLM_*), kept apart from the hook so that they can be
read (configuration reference, tests) where LiteLLM is not installed."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPOS_HEADER = "x-victor-repos"  # LiteLLM passes request headers lower-cased


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class HookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VICTOR_LITELLM_", extra="ignore", frozen=True)

    models: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("*-lua",),
        description="Model aliases that get code context: comma-separated globs.",
    )
    timeout: float = Field(
        default=5.0, gt=0, le=120, description="Seconds the hook may take; past it, no context."
    )
    # the Pipelines filter's defaults (bench/README.md, "How much code")
    top_k: int = Field(default=12, ge=1, le=100, description="Chunks to retrieve.")
    context_tokens: int = Field(
        default=3000,
        ge=100,
        le=100_000,
        description="Budget of the code context, in tokens (about 3.5 characters each).",
    )
    min_score: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Send code only when the best match scores at least this (0-1).",
    )
    repos: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Search only these indexed repositories (empty: all)."
    )

    @field_validator("models", "repos", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split(value)


def requested_repos(data: dict, configured: tuple[str, ...]) -> list[str] | None:
    """The repositories to search: None for all. `X-Victor-Repos` narrows the search within
    VICTOR_LITELLM_REPOS; an empty list when nothing it asks for is allowed."""
    headers = (data.get("metadata") or {}).get("headers") or {}
    asked = _split(headers.get(REPOS_HEADER) or "")
    if not asked:
        return list(configured) or None
    return [r for r in asked if not configured or r in configured]
