"""Victor in the LiteLLM proxy: Lua code context for clients that call LiteLLM directly.

Open WebUI chats do not need this: the "Lua Codebase" Pipelines filter adds the code before
the body reaches LiteLLM. This hook is for every other OpenAI-compatible client (an editor, a
script): when it asks for a model alias configured here (e.g. `claude-lua`), the hook searches
the index for the last user message and puts the code in front of the model as a system
message, the way the filter does. Other aliases are left alone.

In LiteLLM's config.yaml (see deploy/litellm/config.yaml)::

    litellm_settings:
      callbacks: victor.litellm_hook.victor_hook

Settings, from the proxy's environment:

    VICTOR_LITELLM_MODELS          aliases that get context: comma-separated globs (`*-lua`)
    VICTOR_LITELLM_TIMEOUT         seconds the hook may take (5); past it, no context
    VICTOR_LITELLM_TOP_K           chunks to retrieve (12)
    VICTOR_LITELLM_CONTEXT_TOKENS  size of the code context (3000)
    VICTOR_LITELLM_MIN_SCORE       leave out weaker matches (0)
    VICTOR_LITELLM_REPOS           only these indexed repositories (all)
    VICTOR_DATABASE_URL            required; its password in PGPASSWORD, not in the URL
    OLLAMA_HOST, VICTOR_EMBED_MODEL, ...  as for every Victor process

A request may narrow the repositories with the header `X-Victor-Repos: game,engine`.

The proxy does not fail open: an exception raised here would fail the request, and a slow
hook would hold it. So the hook bounds its own work (a timeout it does not overrun) and catches
everything: with the database or Ollama down or slow, the request goes on without context.
"""

from __future__ import annotations

import fnmatch
import logging

from litellm.integrations.custom_logger import CustomLogger

from indexer.chat import bodies
from indexer.chat.session import ChatSession, chat_settings
from indexer.errors import ConfigError
from victor.litellm_config import HookSettings, requested_repos

log = logging.getLogger("victor.litellm")

CHAT_CALLS = ("acompletion", "completion")
POOL_SIZE = 4


class VictorHook(CustomLogger):
    """LiteLLM pre-call hook. The proxy calls it on its event loop for every request."""

    def __init__(self) -> None:
        super().__init__()
        self._hook: HookSettings | None = None
        self.session: ChatSession | None = None  # made on first use, from the environment

    # Defined on this class itself: the proxy only calls a hook the class defines.
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type: str):
        """Add code context for configured aliases. Never raises, never waits past the bound."""
        try:
            return await self._pre_call(data, call_type)
        except Exception as exc:
            text = self.session.redact(str(exc)) if self.session else type(exc).__name__
            log.warning("victor: no code context: %s", text)
            return None

    async def _pre_call(self, data: dict, call_type: str) -> dict | None:
        hook = self.hook_settings()
        model = str(data.get("model") or "")
        if call_type not in CHAT_CALLS or not any(
            fnmatch.fnmatchcase(model, glob) for glob in hook.models
        ):
            return None
        messages = data.get("messages")
        if not isinstance(messages, list):
            return None
        if bodies.context_in_current_turn(messages):
            return None  # an Open WebUI chat whose filter already added it, or a re-run
        query = bodies.build_query(messages)
        if not query:
            return None
        repos = requested_repos(data, hook.repos)
        if repos == []:
            return None
        found = await self._session().retrieve(
            query,
            top_k=hook.top_k,
            context_tokens=hook.context_tokens,
            min_score=hook.min_score,
            repos=repos,
        )
        context = found.context
        if context is None or not context.text:
            if context is not None:
                log.info("victor: no matching code for %s (%d ms)", model, found.elapsed_ms)
            return None
        data["messages"] = bodies.with_context(messages, context.text)
        log.info(
            "victor: %d snippets from %d files for %s (%d ms)",
            len(context.sources),
            context.files,
            model,
            found.elapsed_ms,
        )
        return data

    def hook_settings(self) -> HookSettings:
        if self._hook is None:
            self._hook = HookSettings()
        return self._hook

    def _session(self) -> ChatSession:
        """One session (one pool) for all requests, from the proxy's environment."""
        if self.session is None:
            timeout = self.hook_settings().timeout
            settings = chat_settings(timeout)
            if settings.database_url is None:
                raise ConfigError(
                    "VICTOR_DATABASE_URL is not set in LiteLLM's environment "
                    "(e.g. postgresql://victor@host.docker.internal:5433/victor, "
                    "the password in PGPASSWORD)"
                )
            self.session = ChatSession(
                settings, timeout=timeout, pool_size=POOL_SIZE, log=log, name="victor"
            )
        return self.session


victor_hook = VictorHook()
