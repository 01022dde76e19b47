"""`victor openwebui install-function` where no Open WebUI is needed: what it installs, and its
errors for a wrong URL. Against a real Open WebUI (create, update, preset, bad token, missing
base model) it runs in tests/e2e."""

from __future__ import annotations

import os
import socket

import pytest

from tests.conftest import victor_cli
from tests.plugins import FUNCTION_FILE
from tests.support.fake_llm import FakeLLM
from victor import openwebui


@pytest.fixture
def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OPEN_WEBUI_")}


def test_installs_the_function_from_the_checkout():
    assert openwebui.function_source() == FUNCTION_FILE.read_text(encoding="utf-8")


def test_preset_id_from_its_name():
    assert openwebui.slug("Claude · Lua") == "claude-lua"
    assert openwebui.slug("  GPT-5 (code) ") == "gpt-5-code"
    assert openwebui.slug("···") == "lua-codebase"


def test_preset_prompt_asks_for_citations():
    assert "`path:start-end`" in openwebui.PRESET_SYSTEM_PROMPT
    # the filter recognises its own block by this tag: the prompt must not contain it
    assert "<lua_codebase_context>" not in openwebui.PRESET_SYSTEM_PROMPT


def test_nothing_listening_is_one_clear_line(cli_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = victor_cli(
        "openwebui",
        "install-function",
        "--url",
        f"http://127.0.0.1:{port}",
        "--token",
        "t",
        env=cli_env,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"victor: error: Cannot reach Open WebUI at http://127.0.0.1:{port}"
    )
    assert "Traceback" not in done.stderr


def test_another_server_is_not_taken_for_open_webui(cli_env):
    with FakeLLM() as other:  # an HTTP server that is not Open WebUI (like LiteLLM on :4000)
        done = victor_cli(
            "openwebui",
            "install-function",
            "--url",
            other.url,
            "--token",
            "t",
            env=cli_env,
            check=False,
        )
    assert done.returncode == 1
    assert "is this the URL of Open WebUI" in done.stderr
    assert other.requests == []  # it never tried to post a Function there


def test_token_is_required(cli_env):
    done = victor_cli("openwebui", "install-function", env=cli_env, check=False)
    assert done.returncode == 2 and "--token" in done.stderr
