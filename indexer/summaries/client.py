"""The summary model over HTTP: an OpenAI-compatible chat endpoint (LiteLLM in front of Claude)
or Ollama's /api/chat, with one timeout, bounded retries and errors that never show the key.

httpx rather than the `openai` or `ollama` clients: each backend is one JSON POST, httpx is
already how Victor speaks HTTP, and one client gives both backends the same timeouts, retry
rule and error messages (the `openai` package is not a dependency; adding it for one request
would not pay).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from indexer.config import Settings
from indexer.errors import ConfigError, SummariserError, SummariserUnavailable
from indexer.redaction import redact, redact_url
from indexer.summaries.prompt import SYSTEM, Subject, clean, summariser_key, user_message

LITELLM_URL = "http://localhost:4000/v1"
RETRIES = 2  # a 429 or 5xx is tried again after 1 s, then 2 s; anything else fails at once
_EXCERPT = 200  # characters of a bad answer quoted in the error


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    input_tokens: int | None  # as the model reported them
    output_tokens: int | None


class ChatSummariser:
    """Writes one summary per request. Use as an async context manager (it owns a client)."""

    def __init__(self, settings: Settings):
        if not settings.summaries_on:
            raise ConfigError("summaries are off: set VICTOR_SUMMARY_BACKEND (docs/summaries.md)")
        if not settings.summary_model:
            raise ConfigError(
                "VICTOR_SUMMARY_MODEL is not set: name the chat model that writes summaries"
            )
        self.backend = settings.summary_backend
        self.model = settings.summary_model
        self.key = summariser_key(settings)
        self.max_tokens = settings.summary_max_tokens
        self.timeout = settings.summary_timeout
        if self.backend == "openai":
            base = (settings.summary_url or LITELLM_URL).rstrip("/")
            self.url = base + "/chat/completions"
        else:
            base = (settings.summary_url or settings.ollama_host).rstrip("/")
            self.url = base + "/api/chat"
        self.where = redact_url(self.url)  # what messages show: never a password or the key
        secret = settings.summary_api_key
        self._secrets = [secret.get_secret_value()] if secret else []
        headers = {"Authorization": f"Bearer {self._secrets[0]}"} if self._secrets else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            limits=httpx.Limits(max_connections=settings.summary_concurrency),
        )

    async def __aenter__(self) -> ChatSummariser:
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    def _body(self, subject: Subject) -> dict:
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user_message(subject)},
        ]
        if self.backend == "openai":
            return {
                "model": self.model,
                "messages": messages,
                "max_tokens": self.max_tokens,
                "temperature": 0,
            }
        return {
            "model": self.model,
            "messages": messages,
            "stream": False,
            "options": {"num_predict": self.max_tokens, "temperature": 0},
        }

    async def summarise(self, subject: Subject) -> Summary:
        body = self._body(subject)
        for attempt in range(RETRIES + 1):
            response = await self._post(body)
            passing = response.status_code == 429 or response.status_code >= 500
            if passing and attempt < RETRIES:
                await asyncio.sleep(2.0**attempt)
                continue
            return self._read(response, subject)
        raise AssertionError("unreachable")

    async def _post(self, body: dict) -> httpx.Response:
        try:
            return await self._client.post(self.url, json=body)
        except httpx.TimeoutException:
            raise SummariserUnavailable(
                f"the summary model {self.model} at {self.where} did not answer within "
                f"{self.timeout:g} s (VICTOR_SUMMARY_TIMEOUT)"
            ) from None
        except httpx.HTTPError as exc:
            reason = redact(str(exc) or exc.__class__.__name__, self._secrets)
            raise SummariserUnavailable(
                f"cannot reach the summary model at {self.where} ({reason}); is "
                f"{'LiteLLM' if self.backend == 'openai' else 'Ollama'} running there? "
                "(VICTOR_SUMMARY_URL)"
            ) from None

    def _read(self, response: httpx.Response, subject: Subject) -> Summary:
        status = response.status_code
        if status in (401, 403):
            raise SummariserUnavailable(
                f"the summary model at {self.where} refused the request (HTTP {status}): "
                "check VICTOR_SUMMARY_API_KEY"
            )
        if status != 200:
            raise SummariserUnavailable(
                f"the summary model at {self.where} answered HTTP {status}: "
                f"{self._excerpt(response)}"
            )
        try:
            data = response.json()
            if self.backend == "openai":
                text = data["choices"][0]["message"]["content"]
                usage = data.get("usage") or {}
                tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
            else:
                text = data["message"]["content"]
                tokens = data.get("prompt_eval_count"), data.get("eval_count")
        except (ValueError, KeyError, IndexError, TypeError):
            raise SummariserError(
                f"the summary model at {self.where} did not answer with a chat "
                f"{'completion' if self.backend == 'openai' else 'message'}: "
                f"{self._excerpt(response)}"
            ) from None
        summary = clean(text) if isinstance(text, str) else ""
        if not summary:
            raise SummariserError(
                f"the summary model {self.model} at {self.where} answered with no text for "
                f"{subject.path} {subject.symbol}"
            )
        return Summary(summary, *(t if isinstance(t, int) else None for t in tokens))

    def _excerpt(self, response: httpx.Response) -> str:
        text = " ".join(response.text.split())[:_EXCERPT] or "(empty body)"
        return redact(text, self._secrets)
